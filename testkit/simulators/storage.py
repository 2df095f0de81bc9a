"""A simulated cloud storage host (Google Cloud Storage, where Shopify puts bulk operation
results): objects served over the store server's HTTPS under the host name
`storage.googleapis.com`, each reachable only by a signed link that expires.

A link carries GCS's V4 query parameters (`X-Goog-Date`, `X-Goog-Expires`,
`X-Goog-Signature`, ...). As GCS does: a link whose signature doesn't match answers 403
`SignatureDoesNotMatch`, one past its expiry 400 `ExpiredToken`, an unknown object 404
`NoSuchKey`, each an XML error document; a good one streams the object in chunks.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

HOST = "storage.googleapis.com"
BUCKET = "shopify-tiers-assets-prod-us-east1"
CHUNK = 64 * 1024
_DATE = "%Y%m%dT%H%M%SZ"


@dataclass
class StoredObject:
    data: bytes
    content_type: str
    # The clock the links are judged by (the store's, so tests can let days pass).
    clock: Callable[[], datetime]
    # Stored compressed (`gzip`): served as stored, with its Content-Encoding, as GCS does
    # for a client that accepts it.
    content_encoding: str | None = None


class SimulatedStorage:
    def __init__(self) -> None:
        self.objects: dict[str, StoredObject] = {}
        self._key = secrets.token_bytes(32)
        # Every download asked for: (path, status answered).
        self.downloads: list[tuple[str, int]] = []
        self.port = 443
        # Set: the next download stops after this many bytes, its connection dropped.
        self.drop_next_after: int | None = None
        # Set: the next this many good links are answered 429 (the bucket's request rate
        # exceeded), with a Retry-After of `throttle_seconds`.
        self.throttle_next = 0
        self.throttle_seconds = 1

    def put(
        self,
        data: bytes,
        *,
        clock: Callable[[], datetime],
        content_type: str = "application/jsonl",
        prefix: str = "bulk-operation-outputs",
        content_encoding: str | None = None,
    ) -> str:
        """Store `data` (already encoded, with `content_encoding`) under a fresh name; its
        path."""
        path = f"/{BUCKET}/{prefix}/{secrets.token_hex(12)}-final"
        self.objects[path] = StoredObject(data, content_type, clock, content_encoding)
        return path

    def signed_url(
        self, path: str, *, signed_at: datetime, lifetime: timedelta, scheme: str = "https"
    ) -> str:
        """A V4-style signed link to the object at `path`, valid for `lifetime` from
        `signed_at`."""
        date = signed_at.astimezone(UTC).strftime(_DATE)
        expires = str(max(int(lifetime.total_seconds()), 0))
        params = {
            "X-Goog-Algorithm": "GOOG4-RSA-SHA256",
            "X-Goog-Credential": f"bulk-ops@shopify-tiers.iam.gserviceaccount.com/{date[:8]}"
            "/auto/storage/goog4_request",
            "X-Goog-Date": date,
            "X-Goog-Expires": expires,
            "X-Goog-SignedHeaders": "host",
            "X-Goog-Signature": self._sign(path, date, expires),
        }
        port = "" if self.port == 443 else f":{self.port}"
        return f"{scheme}://{HOST}{port}{path}?{urlencode(params)}"

    def _sign(self, path: str, date: str, expires: str) -> str:
        message = f"{path}\n{date}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    async def serve(self, request: Request) -> Response:
        path = request.url.path
        status, response = self._answer(request, path)
        self.downloads.append((path, status))
        return response

    def _answer(self, request: Request, path: str) -> tuple[int, Response]:
        if request.method != "GET":
            return 405, _error(405, "MethodNotAllowed", "The specified method is not allowed.")
        stored = self.objects.get(path)
        if stored is None:
            return 404, _error(404, "NoSuchKey", "The specified key does not exist.")
        query = request.query_params
        date, expires = query.get("X-Goog-Date", ""), query.get("X-Goog-Expires", "")
        signature = query.get("X-Goog-Signature", "")
        if not hmac.compare_digest(signature, self._sign(path, date, expires)):
            return 403, _error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        signed_at = datetime.strptime(date, _DATE).replace(tzinfo=UTC)
        if stored.clock() > signed_at + timedelta(seconds=int(expires)):
            return 400, _error(400, "ExpiredToken", "The provided token has expired.")

        if self.throttle_next > 0:
            self.throttle_next -= 1
            throttled = _error(429, "SlowDown", "Please reduce your request rate.")
            throttled.headers["Retry-After"] = str(self.throttle_seconds)
            return 429, throttled

        cut, self.drop_next_after = self.drop_next_after, None

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(stored.data), CHUNK):
                if cut is not None and start >= cut:
                    raise ConnectionResetError("the simulated storage dropped the download")
                yield stored.data[start : start + CHUNK]

        headers = {"Content-Length": str(len(stored.data))}
        if stored.content_encoding is not None:
            headers["Content-Encoding"] = stored.content_encoding
        return 200, StreamingResponse(chunks(), media_type=stored.content_type, headers=headers)


def _error(status: int, code: str, message: str) -> Response:
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml; charset=UTF-8")
