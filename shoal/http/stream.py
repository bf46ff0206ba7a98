"""A request body as the connection receives it: bytes fed by the front end (shoal.http.protocol), read by the
body readers (shoal.http.body) and by aiohttp's multipart reader (POST uploads).

The methods are those of aiohttp's StreamReader that these callers use, with its flow control (the connection
pauses beyond twice ``limit`` unread bytes and resumes below ``limit``). Ours because of its cost on small
bodies: creating, feeding and reading aiohttp's took ~300 of a 4 KiB PUT's ~4900 bytecodes; this one ~60.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any


class BodyStream:
    __slots__ = ("_chunks", "_eof", "_error", "_high", "_loop", "_low", "_protocol", "_size", "_waiter",
                 "total_bytes")

    def __init__(self, protocol: Any, limit: int, loop: asyncio.AbstractEventLoop | None) -> None:
        # protocol: has pause_reading(), resume_reading() and _reading_paused (shoal.http.protocol.HttpProtocol)
        self._protocol = protocol
        self._loop = loop
        self._chunks: deque[bytes] = deque()
        self._size = 0  # bytes held, unread
        self._low = limit
        self._high = 2 * limit
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.total_bytes = 0  # bytes fed, ever

    # -- the connection's side ---------------------------------------------------------------------------------

    def feed_data(self, data: bytes) -> None:
        if not data:
            return
        self._chunks.append(data)
        self._size += len(data)
        self.total_bytes += len(data)
        if self._size > self._high and not self._protocol._reading_paused:
            self._protocol.pause_reading()
        if self._waiter is not None:
            self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        # A body received whole but not read (a request refused before its body) must not leave the connection
        # paused: its next request would never be read.
        if self._protocol._reading_paused:
            self._protocol.resume_reading()
        if self._waiter is not None:
            self._wake()

    def set_exception(self, exc: BaseException) -> None:
        self._error = exc
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    # -- the reader's side -------------------------------------------------------------------------------------

    def exception(self) -> BaseException | None:
        return self._error

    def is_eof(self) -> bool:
        """The whole body was received (some of it may be unread)."""
        return self._eof

    def at_eof(self) -> bool:
        """The whole body was received and read."""
        return self._eof and not self._chunks

    def read_nowait(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all held if negative) of what was received, without waiting: b"" if none."""
        if self._error is not None:
            raise self._error
        chunks = self._chunks
        if not chunks:
            return b""
        first = chunks[0]
        if 0 <= n < len(first):
            chunks[0] = first[n:]
            data = first[:n]
        elif len(chunks) == 1 or n == len(first):
            chunks.popleft()
            data = first
        else:
            data = self._take_several(n)
        self._consumed(len(data))
        return data

    def _take_several(self, n: int) -> bytes:
        chunks = self._chunks
        parts = []
        wanted = n if n >= 0 else self._size
        while chunks and wanted > 0:
            chunk = chunks.popleft()
            if len(chunk) > wanted:
                chunks.appendleft(chunk[wanted:])
                chunk = chunk[:wanted]
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(parts)

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes, waiting for some if none are held; b"" at the end. Negative: all, to the end."""
        if n == 0:
            return b""
        if n < 0:
            parts = []
            while chunk := await self.readany():
                parts.append(chunk)
            return b"".join(parts)
        while not self._chunks and not self._eof:
            await self._wait()
        return self.read_nowait(n)

    async def readany(self) -> bytes:
        """What was received next, as it came, waiting for it; b"" at the end."""
        while not self._chunks and not self._eof:
            await self._wait()
        if self._error is not None:
            raise self._error
        if not self._chunks:
            return b""
        data = self._chunks.popleft()
        self._consumed(len(data))
        return data

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        """Up to and including the next b"\\n" (or to the end); ValueError past ``max_line_length`` bytes (twice
        ``limit`` if not given)."""
        most = max_line_length or self._high
        parts = []
        length = 0
        while True:
            if self._error is not None:
                raise self._error
            if self._chunks:
                chunk = self._chunks.popleft()
                end = chunk.find(b"\n") + 1
                if end:
                    if end < len(chunk):
                        self._chunks.appendleft(chunk[end:])
                    chunk = chunk[:end]
                self._consumed(len(chunk))
                parts.append(chunk)
                length += len(chunk)
                if length > most:
                    raise ValueError("Line is too long")
                if end:
                    break
            elif self._eof:
                break
            else:
                await self._wait()
        return b"".join(parts)

    def unread_data(self, data: bytes) -> None:
        """Put ``data`` back before what is held (the multipart reader looks ahead)."""
        if data:
            self._chunks.appendleft(data)
            self._size += len(data)

    # -- internals -------------------------------------------------------------------------------------------

    def _consumed(self, n: int) -> None:
        self._size -= n
        if self._size < self._low and self._protocol._reading_paused:
            self._protocol.resume_reading()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        if self._waiter is not None:
            raise RuntimeError("the body is being read already")
        loop = self._loop
        assert loop is not None  # only EMPTY_BODY has none, and it never waits (it is at its end)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


def _empty() -> BodyStream:
    stream = BodyStream(None, 1, None)
    stream._eof = True
    return stream


# The body of every request without one: at its end, never fed (so one is enough).
EMPTY_BODY = _empty()
