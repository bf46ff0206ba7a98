"""What handlers answer with: a whole ``Response`` (status, headers, bytes), or a ``StreamResponse`` whose body is
written after its head (large and encrypted objects). The front end (shoal.http.protocol) serialises them.

Their constructors take the arguments aiohttp's ``web.Response`` took, so handlers read as they did. Headers are a
plain dict (a case-insensitive multidict cost ~3% of a small GET's instructions): names are spelled one way
throughout, standard ones capitalised (``Content-Type``, ``ETag``), ``x-amz-*`` in lower case.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shoal.http.request import Request

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_EMPTY_BODY_STATUS = frozenset({204, 304})  # and 1xx, never sent as a final response here
_date_cache: tuple[int, str] = (0, "")


def http_date(now: float) -> str:
    """The Date header's value, formatted once a second."""
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


class StreamResponse:
    """A response whose body is written piece by piece after ``prepare``. Give ``content_length`` when known; a
    response without one is delimited by closing the connection."""

    __slots__ = ("_close", "_request", "content_length", "headers", "prepared", "reason", "status")

    def __init__(self, *, status: int = 200, reason: str | None = None, headers=None) -> None:
        self.status = status
        self.reason = reason or _REASONS.get(status, "Unknown")
        self.headers: dict[str, str] = dict(headers) if headers else {}
        self.content_length: int | None = None
        self.prepared = False  # the head is sent
        self._close = False
        self._request: Request | None = None

    def force_close(self) -> None:
        """Close the connection once this response is sent."""
        self._close = True

    async def prepare(self, request: Request) -> None:
        if self.prepared:
            return
        self.prepared = True
        self._request = request
        body_allowed = request.method != "HEAD" and self.status not in _EMPTY_BODY_STATUS
        if self.content_length is not None:
            self.headers["Content-Length"] = str(self.content_length)
        elif body_allowed:
            self._close = True  # no length: the end of the body is the end of the connection
        request.protocol.write(head(request, self))
        await request.protocol.drain()

    async def write(self, data) -> None:
        assert self._request is not None, "prepare() first"
        protocol = self._request.protocol
        protocol.write(data)
        await protocol.drain()

    async def write_eof(self) -> None:
        pass


class Response(StreamResponse):
    """A complete response: head and body go out in one write."""

    __slots__ = ("body",)

    def __init__(self, *, status: int = 200, reason: str | None = None, headers=None, body: bytes | None = None,
                 text: str | None = None, content_type: str | None = None) -> None:
        # Not through StreamResponse.__init__: most requests make one of these, and each call counts.
        self.status = status
        self.reason = reason or _REASONS.get(status, "Unknown")
        self.headers = dict(headers) if headers else {}
        self.prepared = False
        self._close = False
        self._request = None
        if text is not None:
            body = text.encode()
            if content_type is None:
                content_type = "text/plain; charset=utf-8"
        self.body = body
        self.content_length = len(body) if body is not None else None
        if content_type is not None:
            self.headers["Content-Type"] = content_type

    async def prepare(self, request: Request) -> None:
        if not self.prepared:
            request.protocol.write(whole(request, self))

    async def write(self, data) -> None:
        raise RuntimeError("a whole Response cannot be written to")


def whole(request: Request, response: Response) -> bytes:
    """Head and body of a whole response, as sent (and marks it sent)."""
    response.prepared = True
    body = response.body
    headers = response.headers
    status = response.status
    if status in _EMPTY_BODY_STATUS:
        headers.pop("Content-Length", None)
        return head(request, response)
    head_only = request.method == "HEAD"
    if "Content-Length" not in headers and (body or not head_only):  # a HEAD tells a GET's length, if it knows
        headers["Content-Length"] = str(len(body)) if body else "0"
    if not body or head_only:
        return head(request, response)
    if "Content-Type" not in headers:
        headers["Content-Type"] = "application/octet-stream"
    return head(request, response) + body


def head(request: Request, response: StreamResponse) -> bytes:
    """The status line and headers (Date and Connection added), refusing a line break inside a header (response
    splitting) with ValueError."""
    headers = response.headers
    if "Date" not in headers:
        headers["Date"] = http_date(time.time())
    version = request.version
    if request.keep_alive and not response._close:
        if version == (1, 0) and "Connection" not in headers:
            headers["Connection"] = "keep-alive"
    else:
        response._close = True
        if version == (1, 1) and "Connection" not in headers:
            headers["Connection"] = "close"
    # Joined in C (no Python loop over the headers); each CR and LF found must be one of ours.
    lines = "\r\n".join(map(": ".join, headers.items()))
    breaks = len(headers) - 1
    if lines.count("\n") != breaks or lines.count("\r") != breaks:
        raise ValueError("a line break in a response header")
    text = f"HTTP/{version[0]}.{version[1]} {response.status} {response.reason}\r\n{lines}\r\n\r\n"
    return text.encode("utf-8", "surrogateescape")
