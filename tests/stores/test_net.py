"""Safe outgoing calls: only public addresses with the default URL, the checked address is
the one connected to (certificate and Host still the store's name), no redirects, a
deadline and a size cap; each failure a StoreProblem."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from astra.settings import Settings
from astra.stores.net import Resolver, StoreHttp, is_public_address
from astra.stores.problems import StoreProblem
from testkit.simulators.base import SimulatedStore
from testkit.simulators.server import StoreServer


class EchoStore(SimulatedStore):
    """Answers every call with what it was asked, and counts the calls."""

    def __init__(self, domain: str) -> None:
        super().__init__(domain, seed=0, order_count=0, first_order_id=1)
        self.calls: list[str] = []

    async def handle(self, request: Request, path: str) -> Response:
        self.calls.append(path)
        return JSONResponse({"path": path, "host": request.headers.get("host")})


def resolving_to(*addresses: str) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        return list(addresses)

    return resolve


async def must_not_resolve(host: str, port: int) -> Sequence[str]:
    raise AssertionError("the operator's URL is called as configured, without a lookup")


async def problem_of(http: StoreHttp, path: str = "/wp-json/") -> StoreProblem:
    with pytest.raises(StoreProblem) as caught:
        await http.request("GET", path)
    return caught.value


def default_url_settings(server: StoreServer) -> Settings:
    """Calls to the store's own name, as with the default https://{domain}, on the test
    server's port (nothing listens on 443 here), trusting the test CA."""
    return server.settings(store_api_url=f"https://{{domain}}:{server.port}")


NOT_PUBLIC = [
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "127.0.0.1",
    "169.254.169.254",
    "0.0.0.0",  # noqa: S104 - an address to refuse, not to bind
    "100.64.0.1",
    "192.0.0.8",
    "198.18.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1%eth0",
    "ff02::1",
    "2001:db8::1",
    "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "addresses", [("127.0.0.1",), ("93.184.216.34", "10.0.0.5"), ("::ffff:127.0.0.1",)]
)
async def test_a_domain_resolving_to_a_private_address_is_refused_before_any_call(
    store_server: StoreServer, fresh_domain: Callable[[str], str], addresses: tuple[str, ...]
) -> None:
    store = store_server.add(EchoStore(fresh_domain("shop{}.example.com")))
    settings = default_url_settings(store_server)
    async with StoreHttp(settings, store.domain, resolver=resolving_to(*addresses)) as http:
        problem = await problem_of(http)
    assert problem.problem == "refused_address"
    assert "public internet" in problem.message
    assert store.calls == []


async def test_the_checked_address_is_connected_to_with_the_store_name_for_tls_and_host(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    # Nothing resolves the made-up name but the test's resolver, and the server routes by
    # Host: the call only succeeds if it went to the pinned address while TLS checked the
    # store's name (the certificate names *.example.com) and Host named the store.
    store = store_server.add(EchoStore(fresh_domain("shop{}.example.com")))
    async with StoreHttp(
        default_url_settings(store_server),
        store.domain,
        resolver=resolving_to("127.0.0.1"),
        address_allowed=lambda address: True,
    ) as http:
        response = await http.request("GET", "/wp-json/")
    assert response.status == 200
    assert response.json() == {
        "path": "/wp-json/",
        "host": f"{store.domain}:{store_server.port}",
    }


async def test_a_certificate_for_another_name_is_unreachable(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    store = store_server.add(EchoStore(fresh_domain("shop{}.example.net")))
    async with StoreHttp(
        default_url_settings(store_server),
        store.domain,
        resolver=resolving_to("127.0.0.1"),
        address_allowed=lambda address: True,
    ) as http:
        problem = await problem_of(http)
    assert problem.problem == "unreachable"
    assert "certificate" in problem.message
    assert store.calls == []


async def test_a_domain_that_does_not_resolve_is_unreachable(store_server: StoreServer) -> None:
    async def no_such_host(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async with StoreHttp(
        default_url_settings(store_server), "nowhere.example.com", resolver=no_such_host
    ) as http:
        problem = await problem_of(http, "/")
    assert problem.problem == "unreachable"
    assert "couldn't find nowhere.example.com" in problem.message


async def test_an_operator_url_is_called_without_the_address_check(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    store = store_server.add(EchoStore(fresh_domain("shop{}.example.com")))
    async with StoreHttp(store_server.settings(), store.domain, resolver=must_not_resolve) as http:
        response = await http.request("GET", "/wp-json/", params={"a": "1"})
    assert response.status == 200
    assert store.calls == ["/wp-json/"]


async def test_a_redirect_is_not_followed(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    store = store_server.add(EchoStore(fresh_domain("shop{}.example.com")))
    target = store_server.add(EchoStore(fresh_domain("www.shop{}.example.com")))
    store.redirect_to = f"https://127.0.0.1:{store_server.port}/{target.domain}/wp-json/"
    async with StoreHttp(store_server.settings(), store.domain) as http:
        problem = await problem_of(http)
    assert problem.problem == "unreachable"
    assert "redirected Astra's call to 127.0.0.1" in problem.message
    assert target.calls == []


async def test_an_answer_over_the_size_cap_is_cut(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    store = store_server.add(EchoStore(fresh_domain("shop{}.example.com")))
    settings = store_server.settings(store_api_max_response_bytes=4096)
    async with StoreHttp(settings, store.domain) as http:
        assert (await http.request("GET", "/small")).status == 200
        store.response_padding = 5000
        problem = await problem_of(http, "/big")
    assert problem.problem == "store_unavailable"
    assert "larger answer than Astra accepts" in problem.message


async def test_a_stalled_store_times_out(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    store = store_server.add(EchoStore(fresh_domain("shop{}.example.com")))
    store.stall_seconds = 2.0
    async with StoreHttp(
        store_server.settings(store_api_timeout_seconds=0.3), store.domain
    ) as http:
        problem = await problem_of(http)
    assert problem.problem == "timeout"
    assert "did not answer within 0.3 seconds" in problem.message


async def test_a_store_that_is_down_is_unreachable(store_server: StoreServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    settings = store_server.settings(store_api_url=f"https://127.0.0.1:{closed_port}/{{domain}}")
    async with StoreHttp(settings, "down.example.com") as http:
        problem = await problem_of(http)
    assert problem.problem == "unreachable"
    assert "couldn't connect to down.example.com" in problem.message


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://{domain}", True),
        ("https://{domain}:8443/shop", True),
        ("http://127.0.0.1:9000/{domain}", True),
        ("http://{domain}", False),  # the seller's host, without TLS
        ("https://127.0.0.1:9000/", False),  # no {domain}
        ("ftp://{domain}", False),
    ],
)
def test_the_store_api_url_setting(url: str, accepted: bool) -> None:
    if accepted:
        assert Settings(store_api_url=url).store_api_url == url
    else:
        with pytest.raises(ValueError, match="store_api_url"):
            Settings(store_api_url=url)


# --- a download the store's answer named (a Shopify bulk operation's result) -----------


def stored_file(
    server: StoreServer,
    data: bytes,
    *,
    lifetime: float = 3600,
    content_encoding: str | None = None,
) -> str:
    """A signed link to `data` on the simulated cloud storage host."""
    from datetime import UTC, datetime, timedelta

    path = server.storage.put(
        data, clock=lambda: datetime.now(UTC), content_encoding=content_encoding
    )
    return server.storage.signed_url(
        path, signed_at=datetime.now(UTC), lifetime=timedelta(seconds=lifetime)
    )


async def read_lines(http: StoreHttp, url: str) -> list[bytes]:
    return [line async for line in http.lines(url)]


async def download_problem(http: StoreHttp, url: str) -> StoreProblem:
    with pytest.raises(StoreProblem) as caught:
        await read_lines(http, url)
    return caught.value


async def test_a_download_streams_lines_from_its_own_host_at_the_checked_address(
    store_server: StoreServer,
) -> None:
    # Longer than the storage's chunks, so lines span chunks; no line break at the end.
    lines = [b'{"id":"gid://shopify/Order/%d","note":"%s"}' % (n, b"x" * 50) for n in range(3000)]
    url = stored_file(store_server, b"\n".join(lines))
    async with (
        StoreHttp(
            store_server.settings(),  # the shop's URL is a fixed host: the download is checked all the same
            "shop.myshopify.com",
            resolver=resolving_to("127.0.0.1"),
            address_allowed=lambda address: str(address) == "127.0.0.1",
        ) as http
    ):
        assert await read_lines(http, url) == lines


@pytest.mark.parametrize(
    "url",
    [
        "http://storage.googleapis.com/bucket/file",
        "ftp://storage.googleapis.com/bucket/file",
        "https://user:secret@storage.googleapis.com/bucket/file",
        "https:///bucket/file",
        "not a url",
    ],
)
async def test_a_download_that_is_not_plain_https_is_refused_before_any_call(
    store_server: StoreServer, url: str
) -> None:
    async with StoreHttp(
        store_server.settings(), "shop.myshopify.com", resolver=must_not_resolve
    ) as http:
        problem = await download_problem(http, url)
    assert problem.problem == "refused_address"
    assert "HTTPS" in problem.message


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("https://storage.googleapis.com/bucket/file", ("127.0.0.1",)),
        ("https://storage.googleapis.com/bucket/file", ("93.184.216.34", "169.254.169.254")),
        ("https://10.0.0.7/bucket/file", ()),
        ("https://[::1]:8443/bucket/file", ()),
    ],
)
async def test_a_download_from_a_private_address_is_refused_before_any_call(
    store_server: StoreServer, url: str, addresses: tuple[str, ...]
) -> None:
    before = len(store_server.storage.downloads)
    # The default rule for addresses: only public ones.
    async with StoreHttp(
        store_server.settings(), "shop.myshopify.com", resolver=resolving_to(*addresses)
    ) as http:
        problem = await download_problem(http, url)
    assert problem.problem == "refused_address"
    assert "private or reserved" in problem.message
    assert len(store_server.storage.downloads) == before


async def test_a_download_is_not_redirected(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    host = store_server.add(EchoStore(fresh_domain("files{}.example.com")))
    host.redirect_to = "https://169.254.169.254/latest/meta-data/"
    async with StoreHttp(
        store_server.settings(),
        "shop.myshopify.com",
        resolver=resolving_to("127.0.0.1"),
        address_allowed=lambda address: True,
    ) as http:
        problem = await download_problem(http, f"https://{host.domain}:{store_server.port}/f")
    assert problem.problem == "store_unavailable"
    assert "redirected Astra elsewhere" in problem.message


async def test_an_expired_link_is_refused_as_such(store_server: StoreServer) -> None:
    from astra.stores.net import DownloadRefused

    url = stored_file(store_server, b"{}\n", lifetime=0)
    async with StoreHttp(
        store_server.settings(),
        "shop.myshopify.com",
        resolver=resolving_to("127.0.0.1"),
        address_allowed=lambda address: True,
    ) as http:
        with pytest.raises(DownloadRefused) as caught:
            await read_lines(http, url)
    assert caught.value.status == 400  # GCS's ExpiredToken


@pytest.mark.parametrize(
    ("limits", "says"),
    [
        ({"store_bulk_max_bytes": 100_000}, "larger than Astra accepts"),
        ({"store_api_max_response_bytes": 1000}, "a line longer than Astra reads"),
        ({"store_bulk_download_seconds": 0.001}, "did not finish within"),
    ],
)
async def test_a_download_is_capped_in_size_line_length_and_time(
    store_server: StoreServer, limits: dict[str, float], says: str
) -> None:
    url = stored_file(store_server, (b"x" * 500 + b"\n") * 200 + b"y" * 2000 + b"\n" * 200_000)
    async with StoreHttp(
        store_server.settings(**limits),
        "shop.myshopify.com",
        resolver=resolving_to("127.0.0.1"),
        address_allowed=lambda address: True,
    ) as http:
        problem = await download_problem(http, url)
    assert says in problem.message


async def test_a_compressed_download_is_read_and_capped_by_what_it_holds(
    store_server: StoreServer,
) -> None:
    import gzip

    lines = [b'{"id":%d}' % n for n in range(5000)]
    packed = gzip.compress(b"\n".join(lines))
    # A small file that unpacks to far more than the cap is cut all the same.
    bomb = gzip.compress(b"\n" * 2_000_000)
    async with StoreHttp(
        store_server.settings(store_bulk_max_bytes=1_000_000),
        "shop.myshopify.com",
        resolver=resolving_to("127.0.0.1"),
        address_allowed=lambda address: True,
    ) as http:
        assert (
            await read_lines(http, stored_file(store_server, packed, content_encoding="gzip"))
            == lines
        )
        problem = await download_problem(
            http, stored_file(store_server, bomb, content_encoding="gzip")
        )
        assert "larger than Astra accepts" in problem.message


async def test_a_download_that_does_not_decompress_is_a_store_problem(
    store_server: StoreServer,
) -> None:
    import gzip

    broken = bytearray(gzip.compress(b'{"id":1}\n' * 50_000))
    broken[len(broken) // 2 : len(broken) // 2 + 64] = b"\xff" * 64
    async with StoreHttp(
        store_server.settings(),
        "shop.myshopify.com",
        resolver=resolving_to("127.0.0.1"),
        address_allowed=lambda address: True,
    ) as http:
        problem = await download_problem(
            http, stored_file(store_server, bytes(broken), content_encoding="gzip")
        )
    assert problem.problem == "store_unavailable"
    assert "couldn't be decompressed" in problem.message


class BrokenGzipStore(EchoStore):
    """Says its answer is gzip; it is not."""

    async def handle(self, request: Request, path: str) -> Response:
        self.calls.append(path)
        return Response(b"not gzip at all", headers={"Content-Encoding": "gzip"})


async def test_an_answer_that_does_not_decompress_is_a_store_problem(
    store_server: StoreServer, fresh_domain: Callable[[str], str]
) -> None:
    store = store_server.add(BrokenGzipStore(fresh_domain("shop{}.example.com")))
    async with StoreHttp(store_server.settings(), store.domain) as http:
        problem = await problem_of(http)
    assert (problem.problem, problem.transient) == ("store_unavailable", True)
    assert "couldn't be decompressed" in problem.message


async def test_a_download_whose_host_never_resolves_times_out(store_server: StoreServer) -> None:
    async def hangs(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(3600)
        return []

    async with StoreHttp(
        store_server.settings(store_api_timeout_seconds=0.2),
        "shop.myshopify.com",
        resolver=hangs,
    ) as http:
        async with asyncio.timeout(5):
            problem = await download_problem(http, "https://storage.googleapis.com/bucket/file")
    assert (problem.problem, problem.transient) == ("timeout", True)


async def test_a_download_from_an_ipv6_literal_names_it_in_brackets(
    store_server: StoreServer,
) -> None:
    # The Host header is an authority: an IPv6 address in it is bracketed (RFC 9110 7.2).
    async with StoreHttp(
        store_server.settings(), "shop.myshopify.com", address_allowed=lambda address: True
    ) as http:
        target = await http._download_target("https://[2001:db8::7]:8443/bucket/file")
        plain = await http._download_target("https://[2001:db8::7]/bucket/file")
    assert target.headers == {"Host": "[2001:db8::7]:8443"}
    assert plain.headers == {"Host": "[2001:db8::7]"}
    assert target.url.host == "2001:db8::7"
