"""Zero-copy sends of file ranges (``os.sendfile``) on any event loop.

asyncio's own ``loop.sendfile`` works only on its selector loop; uvloop raises NotImplementedError. This sends on a
duplicate of the connection's socket descriptor: the event loop's registration of the original (for reading) is
left alone, and waiting for the socket to drain is a writer callback on the duplicate, so the loop keeps serving
other connections meanwhile. Nothing else writes to the connection while a range is being sent: the transport's
own buffer is empty first (the response headers, written through it, have gone out). Plain TCP only: a TLS
connection's bytes must pass through its encryption (the caller copies them instead).
"""

from __future__ import annotations

import asyncio
import os


async def send_range(transport: asyncio.Transport, fd: int, offset: int, count: int,
                     stall_timeout: float | None = None) -> None:
    """Send ``count`` bytes of file ``fd`` from ``offset``; raises ConnectionError if the client goes away, or
    stops reading for ``stall_timeout`` seconds (the connection is then aborted: a client that holds a response
    open without reading would otherwise pin a task, the blob's file and a socket for good)."""
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    if sock is None:
        raise ConnectionResetError
    out = os.dup(sock.fileno())
    try:
        while transport.get_write_buffer_size():  # the headers (or a body prefix) still queued: they go first
            if transport.is_closing():
                raise ConnectionResetError
            await _writable(loop, out, transport, stall_timeout)
            await asyncio.sleep(0)  # the transport's own write callback runs in this loop turn
        while count > 0:
            if transport.is_closing():
                raise ConnectionResetError
            try:
                sent = os.sendfile(out, fd, offset, count)
            except BlockingIOError:
                await _writable(loop, out, transport, stall_timeout)
                continue
            if sent == 0:
                raise OSError("blob shorter than its metadata")
            offset += sent
            count -= sent
    finally:
        os.close(out)


async def _writable(loop: asyncio.AbstractEventLoop, fd: int, transport: asyncio.Transport,
                    stall_timeout: float | None) -> None:
    waiter = loop.create_future()

    def ready() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_writer(fd, ready)
    try:
        async with asyncio.timeout(stall_timeout):
            await waiter
    except TimeoutError:
        transport.abort()
        raise ConnectionAbortedError("the client stopped reading") from None
    finally:
        loop.remove_writer(fd)
