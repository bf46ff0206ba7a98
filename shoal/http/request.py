"""One HTTP request as the front end (shoal.http.protocol) hands it to the app: its head, parsed, and its body as a
stream (shoal.http.stream, fed by the connection)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from multidict import CIMultiDictProxy

from shoal.http.stream import EMPTY_BODY, BodyStream

if TYPE_CHECKING:
    import asyncio

    from shoal.http.protocol import HttpProtocol


class AbandonableBody(Protocol):
    """A body reader that may take the rest of the body straight from the socket (see shoal.http.body)."""

    async def abandon(self) -> bool: ...


class Request:
    __slots__ = (
        "body",
        "content",
        "content_length",
        "headers",
        "keep_alive",
        "method",
        "operation",
        "protocol",
        "raw_path",
        "version",
    )

    def __init__(self, protocol: HttpProtocol, method: str, raw_path: str, version: tuple[int, int],
                 headers: CIMultiDictProxy[str], keep_alive: bool, content: BodyStream | None,
                 content_length: int | None) -> None:
        self.protocol = protocol
        self.method = method
        self.raw_path = raw_path  # as sent: percent-encoded, with the query
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive  # the client allows another request on this connection
        self.content: BodyStream = EMPTY_BODY if content is None else content
        self.content_length = content_length
        self.operation = "-"  # the S3 operation, once routed (for metrics and the access log, should it fail)
        self.body: AbandonableBody | None = None  # the body reader authentication made, while the request is under way

    @property
    def body_exists(self) -> bool:
        return self.content is not EMPTY_BODY

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.protocol.transport

    @property
    def remote(self) -> str | None:
        return self.protocol.remote

    @property
    def secure(self) -> bool:
        return self.protocol.secure

    @property
    def scheme(self) -> str:
        return "https" if self.protocol.secure else "http"

    @property
    def path(self) -> str:
        return self.raw_path.partition("?")[0]

    @property
    def query_string(self) -> str:
        return self.raw_path.partition("?")[2]
