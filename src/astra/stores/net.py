"""Outgoing HTTP to a store's API that a seller cannot turn against Astra's own network.

The base URL is `ASTRA_STORE_API_URL` with `{domain}` replaced. When the store's domain is
the host (the default `https://{domain}`, or with a port or a path prefix), the seller
chose where the call goes, so it goes over HTTPS to a public address only: the host is
resolved here, every address it resolves to must be public, and the connection goes to the
address that was checked (no second lookup a DNS server could answer differently), while
TLS still checks the certificate against the hostname (SNI) and the Host header names it.
A URL with a fixed host (a proxy, a test store) is the operator's choice, called as it is.

Every call has a deadline, follows no redirect and reads at most a capped number of bytes.
Failures become `StoreProblem`s; logs carry the domain, method, path, status and duration,
never headers, bodies or query strings.

One call goes elsewhere: `lines(url)` downloads a file the store's API named (a Shopify bulk
operation's result, on a cloud storage host). Whatever `ASTRA_STORE_API_URL` says, that URL
came from an answer, so it is always held to the seller's rules: HTTPS, every address its
host resolves to public, the checked address connected to, no redirect; streamed line by
line under a size cap and an overall deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from astra.settings import Settings, store_host_is_the_domain
from astra.stores.problems import StoreProblem, retry_after

log = logging.getLogger(__name__)
# httpx logs every request's URL, query string included, at INFO; ours says what is safe.
logging.getLogger("httpx").setLevel(logging.WARNING)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

_HOSTNAME = re.compile(r"[a-z0-9.-]{1,253}", re.IGNORECASE)
# Ranges Python's is_global still calls global (3.11) but that no store lives in.
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(net)
    for net in (
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # deprecated 6to4 relays
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host`, in its order of preference."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any: the
    packets end up there, so that is the address to judge."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: IPAddress) -> bool:
    """Whether `address` is on the public internet: not loopback, private, link-local,
    multicast, reserved, unspecified, shared (CGNAT) or documentation space."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)
    special = (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )
    return address.is_global and not special and not any(address in net for net in _NOT_PUBLIC)


@dataclass(frozen=True, slots=True)
class StoreResponse:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    @property
    def retry_after(self) -> float | None:
        """How long the store asked to wait (429, 503), in seconds."""
        return retry_after(self.headers.get("retry-after"))


class DownloadRefused(StoreProblem):
    """The host of a download answered 4xx: a signed link that expired, or was revoked."""

    def __init__(self, host: str, status: int) -> None:
        super().__init__(
            "store_unavailable",
            f"{host} refused the download link (HTTP {status}): it has expired.",
        )
        self.status = status


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


class StoreHttp:
    """One store's API, for one operation (a check, a webhook set-up): open it with
    `async with`, make a few calls, let it close. The host is resolved once per instance."""

    def __init__(
        self,
        settings: Settings,
        domain: str,
        *,
        resolver: Resolver = resolve_host,
        address_allowed: Callable[[IPAddress], bool] = is_public_address,
    ) -> None:
        self.domain = domain
        self._base = settings.store_api_url.replace("{domain}", domain)
        self._checked = store_host_is_the_domain(settings.store_api_url)
        self._timeout = settings.store_api_timeout_seconds
        self._max_bytes = settings.store_api_max_response_bytes
        self._bulk_max_bytes = settings.store_bulk_max_bytes
        self._bulk_seconds = settings.store_bulk_download_seconds
        self._resolver = resolver
        self._address_allowed = address_allowed
        self._address: str | None = None
        context = ssl.create_default_context(
            cafile=str(settings.store_ca_bundle) if settings.store_ca_bundle else None
        )
        self._client = httpx.AsyncClient(
            verify=context,
            timeout=httpx.Timeout(self._timeout),
            follow_redirects=False,
            # Proxies from the environment would connect to whatever they resolve.
            trust_env=False,
        )

    @property
    def secure(self) -> bool:
        """Whether the calls go over TLS."""
        return self._base.startswith("https://")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> StoreResponse:
        """`method` `path` (below the base URL) at the store; the whole exchange, lookup
        included, within the configured timeout. Raises StoreProblem."""
        started = time.perf_counter()
        status: int | None = None
        try:
            async with asyncio.timeout(self._timeout):
                target = await self._target(path)
                request = self._client.build_request(
                    method,
                    target.url,
                    params=params,
                    headers={**(headers or {}), **target.headers},
                    json=json,
                    data=data,
                    extensions=target.extensions,
                )
                response = await self._client.send(request, auth=auth, stream=True)
                status = response.status_code
                try:
                    if 300 <= status < 400:
                        raise self._redirected(response.headers.get("location"))
                    body = await self._read(response)
                finally:
                    await response.aclose()
        except StoreProblem as problem:
            self._log(method, path, params, status, started, problem.problem)
            raise
        except (TimeoutError, httpx.TimeoutException):
            self._log(method, path, params, status, started, "timeout")
            raise StoreProblem(
                "timeout",
                f"{self.domain} did not answer within {self._timeout:g} seconds. "
                "Check that the store is online, then try again.",
                transient=True,
            ) from None
        except httpx.DecodingError:
            self._log(method, path, params, status, started, "undecodable")
            raise StoreProblem(
                "store_unavailable",
                f"{self.domain} sent an answer that couldn't be decompressed. Try again later.",
                transient=True,
            ) from None
        except httpx.TransportError as exc:
            self._log(method, path, params, status, started, "unreachable")
            raise self._unreachable(exc) from None
        self._log(method, path, params, status, started, None)
        return StoreResponse(status, response.headers, body)

    async def lines(self, url: str) -> AsyncGenerator[bytes]:
        """The lines (without their line breaks) of the file at `url`, an HTTPS URL on a
        public host, streamed: at most `store_bulk_max_bytes` in all and
        `store_api_max_response_bytes` a line, the whole download within
        `store_bulk_download_seconds` (time the caller spends between lines included).
        Close it (`contextlib.aclosing`) when stopping early. Raises StoreProblem; a 4xx
        answer is `DownloadRefused` (a link expired or revoked)."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._bulk_seconds
        try:
            # The lookup too: a resolver that never answers is a timeout like a host's.
            async with asyncio.timeout(self._timeout):
                target = await self._download_target(url)
        except TimeoutError:
            raise StoreProblem(
                "timeout",
                f"Astra couldn't look up where {self.domain}'s export is within "
                f"{self._timeout:g} seconds. Try again later.",
                transient=True,
            ) from None
        host = target.extensions["sni_hostname"]
        status: int | None = None
        total = 0
        try:
            async with asyncio.timeout(self._timeout):
                request = self._client.build_request(
                    "GET", target.url, headers=target.headers, extensions=target.extensions
                )
                response = await self._client.send(request, stream=True)
            status = response.status_code
            try:
                if 300 <= status < 400:
                    raise self._download_problem(host, "redirected Astra elsewhere")
                if status in (408, 429):
                    # The host's own pace (its request rate, a slow request), not the
                    # link's: ask again, after the Retry-After it sent.
                    raise StoreProblem(
                        "store_unavailable",
                        f"{host} asked Astra to slow down the download of {self.domain}'s "
                        f"export (HTTP {status}). Try again in a few minutes.",
                        transient=True,
                        retry_after=retry_after(response.headers.get("retry-after")),
                    )
                if 400 <= status < 500:
                    raise DownloadRefused(host, status)
                if status != 200:
                    raise StoreProblem(
                        "store_unavailable",
                        f"{host} couldn't send {self.domain}'s export right now "
                        f"(HTTP {status}). Try again in a few minutes.",
                        transient=True,
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self._bulk_max_bytes:
                    raise self._export_too_large()
                pending = bytearray()
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > self._bulk_max_bytes:
                        raise self._export_too_large()
                    if loop.time() > deadline:
                        raise self._download_problem(
                            host, f"did not finish within {self._bulk_seconds:g} seconds"
                        )
                    pending += chunk
                    start = 0
                    while (end := pending.find(b"\n", start)) >= 0:
                        if end - start > self._max_bytes:
                            raise self._line_too_long(host)
                        yield bytes(pending[start:end])
                        start = end + 1
                    del pending[:start]
                    if len(pending) > self._max_bytes:
                        raise self._line_too_long(host)
                if pending:
                    yield bytes(pending)
            finally:
                await response.aclose()
        except StoreProblem as problem:
            self._log_download(host, target, status, started, total, problem.problem)
            raise
        except (TimeoutError, httpx.TimeoutException):
            self._log_download(host, target, status, started, total, "timeout")
            raise StoreProblem(
                "timeout",
                f"{host} stopped sending {self.domain}'s export for more than "
                f"{self._timeout:g} seconds. Try again later.",
                transient=True,
            ) from None
        except httpx.DecodingError:
            # Sent compressed (Content-Encoding) but not decodable: the same file is as
            # broken on the next try.
            self._log_download(host, target, status, started, total, "undecodable")
            raise self._download_problem(host, "couldn't be decompressed") from None
        except httpx.TransportError:
            self._log_download(host, target, status, started, total, "unreachable")
            raise StoreProblem(
                "unreachable",
                f"Astra couldn't download {self.domain}'s export from {host}. Try again later.",
                transient=True,
            ) from None
        self._log_download(host, target, status, started, total, None)

    async def _download_target(self, url: str) -> _Target:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            parsed = None
        host = parsed.host.lower() if parsed is not None else ""
        if parsed is None or parsed.scheme != "https" or not host or parsed.userinfo:
            raise StoreProblem(
                "refused_address",
                f"{self.domain}'s answer named a download that isn't an HTTPS address, and "
                "Astra downloads only over HTTPS. Try again later.",
            )
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                found = await self._resolver(host, parsed.port or 443)
            except (socket.gaierror, UnicodeError):
                found = []
            if not found:
                raise StoreProblem(
                    "unreachable",
                    f"Astra couldn't find {host}, where {self.domain}'s export is. "
                    "Try again later.",
                    transient=True,
                )
            addresses = [ipaddress.ip_address(address) for address in found]
        if not all(self._address_allowed(address) for address in addresses):
            raise StoreProblem(
                "refused_address",
                f"{self.domain}'s answer named a download on a private or reserved network "
                "address, and Astra only downloads from the public internet.",
            )
        named = f"[{host}]" if ":" in host else host  # an IPv6 literal, bracketed
        authority = named if parsed.port is None else f"{named}:{parsed.port}"
        return _Target(
            parsed.copy_with(host=str(addresses[0])),
            {"Host": authority},
            {"sni_hostname": host},
        )

    def _export_too_large(self) -> StoreProblem:
        return StoreProblem(
            "store_unavailable",
            f"{self.domain}'s export is larger than Astra accepts "
            f"({self._bulk_max_bytes / 1024**3:g} GiB).",
        )

    def _line_too_long(self, host: str) -> StoreProblem:
        return self._download_problem(host, "sent a line longer than Astra reads")

    def _download_problem(self, host: str, what: str) -> StoreProblem:
        return StoreProblem(
            "store_unavailable",
            f"The download of {self.domain}'s export from {host} {what}. Try again later.",
        )

    def _log_download(
        self,
        host: str,
        target: _Target,
        status: int | None,
        started: float,
        read: int,
        problem: str | None,
    ) -> None:
        # The path names the file; the query string is a signature, never logged.
        extra: dict[str, Any] = {
            "store_domain": self.domain,
            "download_host": host,
            "path": target.url.path,
            "status": status,
            "bytes": read,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if problem is None:
            log.info("store download", extra=extra)
        else:
            log.warning("store download failed", extra={**extra, "problem": problem})

    async def _target(self, path: str) -> _Target:
        url = httpx.URL(self._base + path)
        if not self._checked:
            return _Target(url, {}, {})
        address = await self._checked_address()
        host = self.domain if url.port is None else f"{self.domain}:{url.port}"
        return _Target(
            url.copy_with(host=address),
            # The certificate and the virtual host are the store's name, not the address.
            {"Host": host},
            {"sni_hostname": self.domain},
        )

    async def _checked_address(self) -> str:
        if self._address is None:
            try:
                addresses = await self._resolver(self.domain, 443)
            except (socket.gaierror, UnicodeError):
                addresses = []
            if not addresses:
                raise StoreProblem(
                    "unreachable",
                    f"Astra couldn't find {self.domain} on the internet. "
                    "Check the store's domain for typos.",
                )
            parsed = [ipaddress.ip_address(address) for address in addresses]
            if not all(self._address_allowed(address) for address in parsed):
                raise StoreProblem(
                    "refused_address",
                    f"{self.domain} points to a private or reserved network address, and "
                    "Astra only calls stores on the public internet. "
                    "Check the domain's DNS records.",
                )
            self._address = str(parsed[0])
        return self._address

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise self._too_large()
        body = bytearray()
        # Decoded bytes are counted, so a compressed answer cannot unpack past the cap.
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self._max_bytes:
                raise self._too_large()
        return bytes(body)

    def _too_large(self) -> StoreProblem:
        return StoreProblem(
            "store_unavailable",
            f"{self.domain} sent a larger answer than Astra accepts "
            f"({self._max_bytes / 1048576:g} MiB). Try again later.",
        )

    def _redirected(self, location: str | None) -> StoreProblem:
        host = httpx.URL(location).host if location else ""
        where = f" to {host}" if host and _HOSTNAME.fullmatch(host) else " elsewhere"
        return StoreProblem(
            "unreachable",
            f"{self.domain} redirected Astra's call{where}. Enter the store's own address "
            "(the one its admin uses), not one that forwards to it.",
        )

    def _unreachable(self, exc: httpx.TransportError) -> StoreProblem:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return StoreProblem(
                    "unreachable",
                    f"{self.domain}'s HTTPS certificate isn't valid for that address. "
                    "Check the store's domain, or renew its certificate.",
                )
            cause = cause.__cause__ or cause.__context__
        return StoreProblem(
            "unreachable",
            f"Astra couldn't connect to {self.domain}. "
            "Check the store's domain and that the store is online.",
            # A store restarting, or a connection dropped on the way, is back soon.
            transient=True,
        )

    def _log(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        status: int | None,
        started: float,
        problem: str | None,
    ) -> None:
        extra: dict[str, Any] = {
            "store_domain": self.domain,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        # WooCommerce without pretty permalinks names its route in the query string.
        if params and "rest_route" in params:
            extra["route"] = params["rest_route"]
        if problem is None:
            log.info("store call", extra=extra)
        else:
            log.warning("store call failed", extra={**extra, "problem": problem})
