"""Sending a complete (not streamed) response in one transport write, serialised here.

Most S3 answers are small and whole: an inline object's GET, every HEAD, PUT and DELETE, XML documents and
errors. aiohttp sends a ``web.Response`` through its general machinery (prepare, header preparation for
compression, chunking and cookies, a header buffer, write_eof); skipping it saves ~26k CPU instructions of a
4 KiB GET's ~520k (callgrind), ~5%. For a plain ``web.Response`` with a bytes body this module
applies the same HTTP rules (Content-Length, Content-Type default, Date, Connection, no body for HEAD/204/304)
and writes head and body at once; aiohttp then finds the response sent (its own prepare and write_eof return at
once). Anything else (a payload object, compression, cookies, chunking, a StreamResponse) takes aiohttp's path.

It reads a few of aiohttp's private attributes; if an aiohttp release renames them, ``ENABLED`` is False and
every response takes aiohttp's own path.
"""

from __future__ import annotations

from aiohttp import http_writer, web
from aiohttp.helpers import rfc822_formatted_time

_EMPTY_BODY_STATUS = frozenset({204, 304})  # and 1xx, which a whole response never has
_LARGE = 64 * 1024  # bigger bodies take aiohttp's path, which waits for the socket to drain


def _supported() -> bool:
    probe = web.Response(body=b"")
    return hasattr(http_writer, "_serialize_headers") and all(hasattr(probe, name) for name in (
        "_eof_sent", "_payload_writer", "_keep_alive", "_body", "_chunked", "_compression", "_cookies",
        "_headers", "_reason", "_body_length", "_status"))


ENABLED = _supported()
_serialize = http_writer._serialize_headers if ENABLED else None  # aiohttp's own (C), so the bytes are the same


def send(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Write ``response`` now if it is a plain whole response; otherwise leave it to aiohttp."""
    if not ENABLED or type(response) is not web.Response:
        return
    r = response
    body = r._body
    if body is None:
        body = b""  # aiohttp treats no body as an empty one
    elif type(body) is not bytes or len(body) > _LARGE:
        return
    if r._eof_sent or r._payload_writer is not None or r._chunked or r._compression or r._cookies:
        return
    transport = request.transport
    writer = request._payload_writer
    if transport is None or writer is None or transport.is_closing():
        return  # aiohttp's path reports the closed connection its own way
    method = request.method
    status = r._status
    headers = r._headers
    empty = status in _EMPTY_BODY_STATUS or method == "HEAD"
    if "Content-Length" in headers:
        if status in _EMPTY_BODY_STATUS:
            del headers["Content-Length"]
    elif body or (status != 304 and method != "HEAD"):
        headers["Content-Length"] = str(len(body))
    if body and not empty and "Content-Type" not in headers:
        headers["Content-Type"] = "application/octet-stream"
    if "Date" not in headers:
        headers["Date"] = rfc822_formatted_time()
    keep_alive = r._keep_alive
    if keep_alive is None:
        keep_alive = r._keep_alive = request.keep_alive
    version = request.version
    if "Connection" not in headers:
        if keep_alive:
            if version == (1, 0):
                headers["Connection"] = "keep-alive"
        elif version == (1, 1):
            headers["Connection"] = "close"
    try:
        # Refuses a line break inside a header (response splitting), as on aiohttp's own path.
        data = _serialize(f"HTTP/{version[0]}.{version[1]} {status} {r._reason}", headers)  # type: ignore[misc]
    except (ValueError, UnicodeError):
        return
    if body and not empty:
        data += body
    transport.write(data)
    writer.output_size += len(data)
    r._eof_sent = True
    r._body_length = 0 if empty else len(body)
