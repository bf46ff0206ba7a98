"""The HTTP/1.1 front end: one ``HttpProtocol`` per connection, parsing requests with httptools (llhttp, in C)
and handing each to the app (shoal.http.app.S3App.handle), one at a time, in order.

Why our own and not a framework's: a 4 KiB GET spent ~100k of its CPU instructions in aiohttp's server (request
and response objects, URL parsing, a task per connection waiting on a queue, header preparation); this does only
what S3 needs. It also owns the connection outright, so a large body can be received straight into the reader's
buffer (shoal.http.body._Receiver) without reaching into a framework's parser.

What it handles: keep-alive (HTTP/1.1 default, HTTP/1.0 on request), pipelined requests (answered in order;
reading holds while parsed ones wait, and answers wait for a client that is slow to read them), bodies of a
Content-Length or ``Transfer-Encoding: chunked`` (decoded by llhttp, trailers dropped) through a flow-controlled
stream, limits on the request target, headers, head and trailer sizes, malformed requests (an S3 XML error, then a
lingering close), requests asking for an upgrade (served as HTTP/1.1, then close), an idle timeout (which also
cuts off trickled request heads), stalled readers (cut off after the body timeout), and shutdown (idle connections
close; requests under way finish, within a deadline). A connection never closes on a client still sending a body
without first answering and reading on for a moment (see CLOSE_LINGER_SECONDS).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from shoal.errors import S3Error
from shoal.http.request import Request
from shoal.http.response import Response, StreamResponse, head, whole
from shoal.http.stream import EMPTY_BODY, BodyStream

if TYPE_CHECKING:
    from shoal.http.app import S3App

log = logging.getLogger("shoal.http")

MAX_LINE = 16 * 1024  # the request target; S3 itself refuses request headers beyond 8 KiB
MAX_FIELD = 16 * 1024  # one header's name, or its value
MAX_HEADERS = 256
# The request head as a whole. llhttp buffers a header until its end, so this bounds what one unfinished header
# can hold (the header limits above apply once it is complete). Counted per read, so approximate: a read that
# ends one request's body and starts the next head counts whole.
MAX_HEAD = 1 << 20
STREAM_LIMIT = 64 * 1024  # a body stream pauses the connection beyond twice this, unread
LINGER_BYTES = 1 << 20  # an unread rest of a body up to this size is read and dropped to keep the connection
LINGER_SECONDS = 2.0
# Closing with unread bytes from the client resets the connection, and a reset can destroy the answer before the
# client reads it (most clients send a whole body before reading). So a connection closing with a request's body
# unread sends its answer, then the end of its stream, and reads and drops what the client still sends for up to
# this long (as aiohttp did).
CLOSE_LINGER_SECONDS = 10.0
CLOSE_LINGER_BYTES = 256 << 20  # and at most this much (a client that never stops gets reset)
# Headers that a request must not repeat (as aiohttp refused them): a second Host could make the request mean one
# thing to a proxy and another here.
_SINGLE = ("Host", "Content-Type", "Content-Range", "Content-Location", "User-Agent", "Authorization")
SWEEPS = 4  # the idle timeout is checked this many times over its length


class _Done(Exception):
    """Raised from a parser callback: stop parsing, nothing more is read on this connection."""


class _Refused(Exception):
    """Raised from a parser callback: the request breaks a limit; answered with ``error``."""

    def __init__(self, error: S3Error) -> None:
        self.error = error


def _version(text: str) -> tuple[int, int]:
    return (1, 0) if text == "1.0" else (1, 1)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.app = front.app
        self.loop = front.loop
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self.secure = False
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._raw: list[bytes] = []  # the request's header names and values, alternating, as received
        self._in_head = False  # in a request's head, or in a chunked body's trailer section (bytes counted)
        self._trailers = False  # the head is complete: header callbacks now bring a chunked body's trailers
        self._upgrade_body: tuple[BodyStream, bool, int | None] | None = None  # see data_received
        self._refused_body: BodyStream | None = None  # the body a refusal is about: its request gets no answer
        self._dropped: int | None = None  # bytes read and dropped while closing (None: not closing so)
        self._eof = False  # the client sent its FIN
        self._linger_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._stream: BodyStream | None = None  # the body being received
        self._task: asyncio.Task | None = None  # serving requests, while there are any
        self._pending: deque[Request] = deque()  # parsed while another was served
        self._refusal: S3Error | None = None  # a malformed request, answered after those before it
        self._last = False  # no request after the current one is read (closing, or the parser was given up)
        self._reading_paused = False  # by the body stream's flow control (see shoal.http.stream)
        self._held = False  # reading stopped for our own reasons (a request pending, closing)
        self._transport_paused = False
        self.requests = 0  # heads received (the idle sweep sees whether any came since its last look)
        self.idle_sweeps = 0  # sweeps that found this connection idle, in a row
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- the connection ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # dead peers are found, in time
            except OSError:
                pass
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else (str(peer) if peer else None)
        self.secure = transport.get_extra_info("ssl_object") is not None
        self.front.connections.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.front.connections.discard(self)
        self.transport = None
        # The parser holds our bound callbacks, a reference cycle through everything this connection kept. Left to
        # the cyclic GC, a closed TLS connection's SSL object and buffers (~0.5 MiB) lived on until a full
        # collection, which a server streaming large bodies (few allocations) reaches rarely: RSS grew with every
        # connection. Nothing is parsed after the connection is lost.
        self._parser = httptools.HttpRequestParser(_Detached)
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        stream, self._stream = self._stream, None
        if stream is not None and not stream.is_eof():
            stream.set_exception(ConnectionResetError("the client closed the connection"))
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionResetError("Connection lost"))
        self._pending.clear()

    def eof_received(self) -> bool:
        # The client will send nothing more: a body still expected is cut short; a request under way is still
        # answered (the transport stays open for writing until then).
        stream = self._stream
        if stream is not None and not stream.is_eof():
            stream.set_exception(ConnectionResetError("the client closed the connection"))
            self._stream = None
        self._last = True
        self._eof = True
        # Keeping the transport open to answer is not possible on TLS (asyncio warns when asked).
        return self._task is not None and not self.secure

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait while the transport's buffer is full. A client that reads nothing for the body timeout (the stall
        limit of every response) is cut off: it would otherwise hold the connection and the buffered answer."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Connection lost")
        if not self._writing_paused:
            return
        waiter = self._drain_waiter
        if waiter is None:
            waiter = self._drain_waiter = self.loop.create_future()
        limit = self.app.body_timeout
        timer = self.loop.call_later(limit, self._write_stalled, waiter) if limit else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()

    def _write_stalled(self, waiter: asyncio.Future) -> None:
        if not waiter.done() and self.transport is not None:
            self.transport.abort()  # connection_lost fails the waiter

    def write(self, data) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        transport.write(data)

    # -- reading, and its flow control --------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.transport is not None

    def pause_reading(self) -> None:
        self._reading_paused = True
        self._set_reading()

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False
        self._set_reading()

    def _hold(self, held: bool) -> None:
        self._held = held
        self._set_reading()

    def _set_reading(self) -> None:
        pause = self._reading_paused or self._held
        transport = self.transport
        if pause == self._transport_paused or transport is None or transport.is_closing():
            return
        self._transport_paused = pause
        try:
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()
        except (AttributeError, NotImplementedError, RuntimeError):
            pass

    def renew_parser(self) -> None:
        """Start a fresh parser for the next request: the current one still expects a body that was received past
        it (shoal.http.body._Receiver)."""
        self._parser = httptools.HttpRequestParser(self)
        self._stream = None
        self._transport_paused = True  # as the receiver leaves it

    def close(self) -> None:
        """Read no further requests: the connection closes after the current response."""
        self._last = True
        self._hold(True)

    def force_close(self) -> None:
        """Close now (what was written is flushed first)."""
        self._last = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._last:
            # After a request we will not answer (a refusal, an upgrade), or while closing: dropped.
            if self._dropped is not None:
                self._dropped += len(data)
                if self._dropped > CLOSE_LINGER_BYTES and self.transport is not None:
                    self.transport.close()
            return
        upgrade_at = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # What the callback raised is also its context, except when feed_data runs inside an except block.
            raised = exc.__context__
            if isinstance(raised, _Done):
                return  # the last body this connection reads has ended: the rest is not parsed
            if isinstance(raised, _Refused):
                self._refuse(raised.error)
            else:
                log.exception("request parsing failed", exc_info=raised)
                self._refuse(S3Error("InternalError"))
        except httptools.HttpParserUpgrade as exc:
            upgrade_at = exc.args[0]
        except httptools.HttpParserError as exc:
            detail = str(exc).strip().splitlines()
            self._refuse(S3Error("BadRequest", f"The HTTP request is malformed: {detail[0]}" if detail else None))
        else:
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD:
                    self._refuse(S3Error("RequestHeaderSectionTooLarge"))
        if upgrade_at is not None:
            self._upgraded(data[upgrade_at:])

    def _upgraded(self, rest: bytes) -> None:
        """After a request asking for an upgrade: it is served as any other (no protocol is switched to), and the
        connection closes after it. ``rest``: what followed its head in the same read."""
        upgrade = self._upgrade_body
        if upgrade is None:
            self._last = True
            self._hold(True)
            return
        # llhttp skips the body of a request that asks for an upgrade ("Upgrade: h2c" from curl --http2 on a PUT),
        # and what follows its head is that body: a parser of its own decodes it, as the head framed it.
        self._upgrade_body = None
        stream, chunked, length = upgrade
        self._stream = stream
        self._parser = httptools.HttpRequestParser(_BodyOnly(self))
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % (length or 0)
        self.data_received(b"PUT / HTTP/1.1\r\n" + framing + b"\r\n\r\n" + rest)

    def _refuse(self, error: S3Error) -> None:
        self._last = True
        self._hold(True)
        stream, self._stream = self._stream, None
        if stream is not None and not stream.is_eof():
            stream.set_exception(ConnectionResetError("the request's body is malformed"))
            self._refused_body = stream  # the refusal is that request's answer (see _serve)
        if self._task is None:
            self._send_refusal(error)
        else:
            self._refusal = error  # answered after the request under way

    def _send_refusal(self, error: S3Error) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        log.info("refused a malformed request from %s: %s", self.remote, error.message)
        request = Request(self, "GET", "", (1, 1), CIMultiDictProxy(CIMultiDict()), False, None, None)
        self.transport.write(self._error_answer(request, error))
        self._close_lingering()

    def _error_answer(self, request: Request, error: S3Error) -> bytes:
        """An S3 error document for something the front end itself refuses; the connection closes after it."""
        response = self.app.connection_error(error)
        response.force_close()
        return whole(request, response)

    def _close_lingering(self) -> None:
        """Close after what was written, without resetting a client still sending (see CLOSE_LINGER_SECONDS)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._last = True
        if self._eof or not transport.can_write_eof():  # nothing more is coming; or TLS
            transport.close()
            return
        transport.write_eof()
        self._dropped = 0
        self._reading_paused = self._held = False
        self._set_reading()
        self._linger_timer = self.loop.call_later(CLOSE_LINGER_SECONDS, transport.close)

    # -- httptools callbacks ------------------------------------------------------------------------------------

    # The callbacks of every request: kept to a few bytecodes each (the limits are checked once the head is
    # complete; until then MAX_HEAD bounds what an unfinished head can hold).

    def on_message_begin(self) -> None:
        self._in_head = True
        self._trailers = False
        self._url = b""
        self._raw = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._trailers:
            self._raw += (name, value)
        # A chunked body's trailers are dropped (S3's are aws-chunked, inside the body); their bytes count
        # against MAX_HEAD (see on_chunk_header).

    def on_chunk_header(self) -> None:
        # Until this chunk's data comes, bytes may be the last chunk's trailer section: counted like a head.
        self._in_head = True

    def on_chunk_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._trailers = True
        self._head_bytes = 0
        self.requests += 1
        raw = self._raw
        url = self._url
        if len(url) > MAX_LINE or len(raw) > 2 * MAX_HEADERS or (raw and max(map(len, raw)) > MAX_FIELD):
            raise _Refused(S3Error("RequestHeaderSectionTooLarge"))
        parser = self._parser
        # Bytes that are not UTF-8 survive as surrogates (and are sent back as they came). Decoded in one piece
        # (llhttp refuses NUL in a head, so it can separate them) and paired in C.
        text = b"\0".join(raw).decode("utf-8", "surrogateescape").split("\0") if raw else []
        names = text[::2]
        headers = CIMultiDictProxy(CIMultiDict(list(zip(names, text[1::2], strict=True))))
        if len(set(map(str.lower, names))) != len(names):  # a name repeated (rare): allowed?
            for name in _SINGLE:
                if len(headers.getall(name, ())) > 1:
                    raise _Refused(S3Error("BadRequest", f"The HTTP request is malformed: {name} repeated"))
        version = _version(parser.get_http_version())
        if version == (1, 1) and "Host" not in headers:
            raise _Refused(S3Error("BadRequest", "The HTTP request is malformed: no Host header"))
        chunked = "Transfer-Encoding" in headers
        length: int | None = None
        if not chunked:
            value = headers.get("Content-Length")
            if value is not None:
                length = int(value)  # llhttp has checked it: digits, and one value
        stream = None
        if chunked or length:
            stream = self._stream = BodyStream(self, STREAM_LIMIT, self.loop)
        upgrade = parser.should_upgrade()
        if upgrade and stream is not None:
            self._upgrade_body = (stream, chunked, length)  # received past llhttp: see data_received
        request = Request(self, parser.get_method().decode("ascii"), url.decode("utf-8", "surrogateescape"),
                          version, headers, parser.should_keep_alive() and not upgrade, stream, length)
        if self._task is None:
            self._task = self.loop.create_task(self._serve(request))
        else:
            self._pending.append(request)
            self._hold(True)  # one request waiting is enough: the rest stays in the socket

    def on_body(self, body: bytes) -> None:
        self._in_head = False  # a chunk's data: not its trailers (see on_chunk_header)
        self._head_bytes = 0
        stream = self._stream
        if stream is not None:
            stream.feed_data(body)

    def on_message_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._upgrade_body is not None:
            return  # not the end of its body: llhttp skipped it (see data_received)
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.feed_eof()

    # -- serving ------------------------------------------------------------------------------------------------

    async def _serve(self, request: Request) -> None:
        answered = False  # the request in hand got its answer
        try:
            while True:
                answered = False
                try:
                    response = await self.app.handle(request)
                except ConnectionError:
                    break
                if request.content is self._refused_body:
                    break  # its body was malformed: the refusal is its answer
                answered = True
                if not response.prepared and not self._send(request, response):
                    break
                if response._close or not request.keep_alive or (self._last and not self._pending):
                    break
                if request.content is not EMPTY_BODY and not request.content.is_eof() \
                        and not await self._linger(request):
                    break
                if self._writing_paused:
                    await self.drain()  # a client that pipelines but does not read gets no further answers
                if not self._pending:
                    self._task = None
                    if self._refusal is not None:
                        break
                    if self._held:
                        self._hold(False)
                    return
                request = self._pending.popleft()
                if not self._last and not self._pending:
                    self._hold(False)  # its body, if any, is still to come (the others' are read already)
        except asyncio.CancelledError:
            if self.transport is not None:
                self.transport.abort()
            raise
        except ConnectionError:
            pass  # the client went away, or was cut off for not reading
        except Exception:
            log.exception("serving a request failed")
        self._task = None
        if self._refusal is not None and not (answered and self._refused_body is request.content):
            self._send_refusal(self._refusal)
        else:
            # Also when the body found malformed is that of a request already answered (its rest was being read
            # and dropped): one answer per request.
            self._close_lingering()

    def _send(self, request: Request, response: StreamResponse) -> bool:
        """Send a response its handler left unsent (most are: whole responses go out here, in one write); False if
        the connection must close."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        try:
            if isinstance(response, Response):
                transport.write(whole(request, response))
            else:  # a stream response with no body written: its head alone
                transport.write(head(request, response))
                response.prepared = True
        except ValueError:  # a line break in a header
            log.exception("refusing to send a response with a malformed header")
            transport.write(self._error_answer(request, S3Error("InternalError")))
            return False
        return True

    async def _linger(self, request: Request) -> bool:
        """Read and drop a small unread rest of the body, so the connection can carry the next request."""
        stream = request.content
        dropped = 0
        try:
            async with asyncio.timeout(LINGER_SECONDS):
                while not stream.is_eof() and dropped <= LINGER_BYTES:
                    dropped += len(await stream.readany())
        except Exception:  # timed out, gone, or the rest was malformed
            return False
        return stream.is_eof()

    def close_if_idle(self) -> bool:
        """Close now if no request is under way. One that is keeps reading its body, and closes after its answer
        (the app marks every answer so while draining)."""
        if self._task is None:
            if self.transport is not None:
                self.transport.close()
            return True
        return False


class _BodyOnly:
    """Parser callbacks for a body alone (behind a synthetic head): the body of a request that asked for an
    upgrade, which llhttp does not read itself."""

    def __init__(self, protocol: HttpProtocol) -> None:
        self._protocol = protocol

    def on_header(self, name: bytes, value: bytes) -> None:
        pass  # a chunked body's trailers (their bytes count against MAX_HEAD, as the protocol's own)

    def on_chunk_header(self) -> None:
        self._protocol.on_chunk_header()

    def on_chunk_complete(self) -> None:
        self._protocol.on_chunk_complete()

    def on_body(self, body: bytes) -> None:
        self._protocol.on_body(body)

    def on_message_complete(self) -> None:
        protocol = self._protocol
        stream, protocol._stream = protocol._stream, None
        if stream is not None:
            stream.feed_eof()
        protocol._last = True  # nothing after it is read: the connection closes after the answer
        protocol._hold(True)
        raise _Done


class _Detached:
    """The callbacks of a lost connection's parser: none."""


class Front:
    """The protocol factory for ``loop.create_server``, and the set of open connections (for shutdown)."""

    def __init__(self, app: S3App, *, idle_timeout: float | None = 60.0) -> None:
        self.app = app
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpProtocol] = set()
        self._seen: dict[HttpProtocol, int] = {}  # each connection's request count at the last sweep
        self._sweeper: asyncio.TimerHandle | None = None
        if idle_timeout:
            # One timer for all connections, not one per request: a connection idle (no request under way, no
            # new head completed) at SWEEPS sweeps in a row, idle_timeout apart in all, is closed. That includes
            # one whose head is still trickling in.
            self._interval = idle_timeout / SWEEPS
            self._sweeper = self.loop.call_later(self._interval, self._sweep)

    def _sweep(self) -> None:
        seen = self._seen
        self._seen = {}
        for connection in list(self.connections):
            count = connection.requests
            if connection._task is None and seen.get(connection) == count:
                connection.idle_sweeps += 1
                transport = connection.transport
                if connection.idle_sweeps >= SWEEPS and transport is not None:
                    if transport.get_write_buffer_size():
                        transport.abort()  # its answers were never read: closing would wait for ever
                    else:
                        transport.close()
                    continue
            else:
                connection.idle_sweeps = 0
            self._seen[connection] = count
        self._sweeper = self.loop.call_later(self._interval, self._sweep)

    def __call__(self) -> HttpProtocol:
        return HttpProtocol(self)

    async def shutdown(self, timeout: float) -> None:
        """Close idle connections; give requests under way ``timeout`` seconds, then cancel them."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close_if_idle()
        deadline = self.loop.time() + timeout
        while any(c._task is not None for c in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        tasks = [c._task for c in self.connections if c._task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
