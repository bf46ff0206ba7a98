"""Request bodies: plain, or ``aws-chunked`` with per-chunk signatures and trailing checksums.

A body is read with ``await body.read()`` until it returns ``b""``. Integrity checks that belong to the
transport (chunk signatures, the chunked framing, Content-Length) fail inside ``read()``; the payload hash of
a signed non-streaming request is checked by whoever hashes the bytes (``wants_sha256`` / ``check_sha256``),
because the S3 layer hashes each byte once for every purpose. Either way the failure comes before the last
byte is handed on, so nothing is committed.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import weakref

from shoal.auth import sigv4
from shoal.errors import S3Error
from shoal.http.stream import BodyStream
from shoal.lanes import Lane, Work, finished

MAX_READ = 1 << 20
MAX_CHUNK_HEADER = 4096
# A plain body with at least this much still to arrive is received straight into the reader's buffer (see
# _Receiver); below it the stream's buffering costs little and the connection's parser sees every byte.
DIRECT_MIN = 256 << 10
DRAIN_LIMIT = 64 << 20  # at most this much of a failed upload's rest is read (and dropped) before answering
MAX_TRAILER_BYTES = 16 * 1024
# An aws-chunked body is received in fills of MAX_READ while few are under way; with many at once they share
# CHUNKED_BUDGET (each at least MIN_FILL), so that memory stays flat with the number of uploads (see ChunkedBody).
CHUNKED_BUDGET = 8 << 20
MIN_FILL = 64 << 10
CHECKS_AHEAD_FILLS = 4  # fills of signed chunks parsed but not yet hashed by their check lane (see _ChunkChecks)
CHECK_EVENT_COST = 256  # counted in the check lane's backlog for each piece and chunk end, whatever its size
MAX_PIECES = 1024  # chunks' pieces one read hands on, at most


class _Continue:
    """Sends ``100 Continue`` the first time the body is read, so an early refusal costs the client no upload."""

    def __init__(self, connection, expect: bool) -> None:
        self._connection = connection  # a shoal.http.protocol.HttpProtocol
        self._pending = expect

    @property
    def pending(self) -> bool:
        """The client asked for ``100 Continue`` and has not been sent it (so it may be holding the body back)."""
        return self._pending

    async def __call__(self) -> None:
        if self._pending:
            self._pending = False
            try:
                self._connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            except ConnectionError:  # the client went away
                raise S3Error("IncompleteBody", "The client closed the connection before sending the body.") \
                    from None


async def _within(timeout: float | None, awaitable):
    """Await one read of the body; a client that sends nothing for ``timeout`` seconds gets RequestTimeout (the
    error response closes the connection, since the body was not read to its end)."""
    if timeout is None:
        return await awaitable
    try:
        # asyncio.timeout, as _Receiver.fill: wait_for on Python 3.11 can swallow a cancellation (shutdown).
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError:
        raise S3Error("RequestTimeout") from None


async def _read_some(stream: BodyStream, n: int, timeout: float | None) -> bytes:
    """Up to ``n`` bytes: those already received at once (no timer to arm: most small bodies arrive with their
    headers), otherwise waiting at most ``timeout`` for more."""
    data = stream.read_nowait(n)
    if data or stream.at_eof():
        return data
    return await _within(timeout, stream.read(n))


class EmptyBody:
    length = 0
    trailers: dict[str, str] = {}
    wants_sha256 = False

    async def read(self) -> bytes:
        return b""

    def check_sha256(self, hexdigest: str) -> None:
        pass


class _Released(asyncio.Transport):
    """What a receiver holds once it has handed its connection back, or lost it: a transport already closing.

    The event loop's transport keeps the receiver's bound ``get_buffer``/``buffer_updated`` after the protocol is
    switched back (uvloop's and asyncio's TLS layers both do), so a receiver still holding the transport would
    close a reference cycle. Left to the cyclic GC, which a server streaming large bodies reaches rarely, a
    closed TLS connection's SSL object and buffers (~0.5 MiB) outlived it: RSS grew with every upload."""

    def is_closing(self) -> bool:
        return True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


_RELEASED = _Released()


class _Receiver(asyncio.BufferedProtocol):
    """Takes the connection over from its protocol (shoal.http.protocol) for the rest of a plain body, so the
    kernel copies the bytes straight into the caller's buffer (``recv_into``): no per-read ``bytes`` objects, no
    pass through the parser, no queue in the body's stream. Those cost most of the event loop's time on a
    large upload, and freshly mapped memory for every 256 KiB received; here only the caller's (reused, bounded)
    buffers ever hold body bytes.

    It asks for no more than the body's remaining length, so the next request on the connection stays unread;
    reading is paused whenever no buffer is waiting to be filled. Connection loss and EOF are passed on to the
    connection's protocol, which still owns it."""

    def __init__(self, transport: asyncio.Transport, handler: asyncio.BaseProtocol, remaining: int) -> None:
        self._transport = transport
        self._handler = handler
        self.remaining = remaining
        self._view: memoryview | None = None
        self._filled = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: S3Error | None = None
        self._deadline: asyncio.Timeout | None = None  # the running fill's stall timeout, pushed back on progress
        self._timeout: float | None = None

    def get_buffer(self, sizehint: int) -> memoryview:
        assert self._view is not None  # reading is paused whenever there is no buffer to fill
        return self._view[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        assert self._view is not None
        if self._deadline is not None and self._timeout is not None:
            # The body timeout is about a client that stalls, not a slow one: every receipt restarts it.
            self._deadline.reschedule(asyncio.get_running_loop().time() + self._timeout)
        if self._filled == len(self._view):
            self._pause()
            self._wake()

    def _pause(self) -> None:
        # A connection torn down under us (TLS transports lose their protocol object first) keeps the error that
        # ended the read, rather than raising from the transport.
        if not self._transport.is_closing():
            try:
                self._transport.pause_reading()
            except (AttributeError, RuntimeError):
                pass

    def _resume(self) -> None:
        if not self._transport.is_closing():
            try:
                self._transport.resume_reading()
            except (AttributeError, RuntimeError):
                self._fail(S3Error("IncompleteBody"))

    def eof_received(self) -> bool | None:
        self._fail(S3Error("IncompleteBody"))
        return self._handler.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(S3Error("IncompleteBody"))
        self._transport = _RELEASED
        self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self._handler.pause_writing()

    def resume_writing(self) -> None:
        self._handler.resume_writing()

    def _fail(self, error: S3Error) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def fill(self, view: memoryview, timeout: float | None) -> int:
        """Fill ``view`` (at most ``remaining`` bytes long) completely; raises S3Error if the client stops."""
        if self._error is not None:
            raise self._error
        self._view, self._filled = view, 0
        self._waiter = asyncio.get_running_loop().create_future()
        self._timeout = timeout
        if self._transport.is_closing():
            self._fail(S3Error("IncompleteBody"))
        self._resume()
        try:
            if timeout is None:
                await self._waiter
            else:
                async with asyncio.timeout(timeout) as self._deadline:
                    await self._waiter
        except TimeoutError:
            raise S3Error("RequestTimeout") from None
        finally:
            self._pause()
            self._view = None
            self._waiter = None
            self._deadline = None
        if self._error is not None:
            raise self._error
        self.remaining -= self._filled
        return self._filled

    @property
    def broken(self) -> bool:
        return self._error is not None or self._transport.is_closing()

    async def discard(self, timeout: float | None) -> None:
        """Read the rest of the body into a scratch buffer and drop it."""
        scratch = memoryview(bytearray(min(self.remaining, 256 << 10)))
        while self.remaining > 0:
            await self.fill(scratch[: min(len(scratch), self.remaining)], timeout)

    def give_back(self, complete: bool) -> None:
        """Return the connection to its protocol. ``complete``: the whole body was read, and the connection may
        carry the next request once the protocol's parser (still expecting the body we took) is replaced;
        otherwise it is closed after the response."""
        handler = self._handler
        transport, self._transport = self._transport, _RELEASED
        if transport.is_closing():
            return
        try:
            transport.set_protocol(handler)  # type: ignore[arg-type]
        except (AttributeError, RuntimeError):  # torn down meanwhile: nothing left to give back
            return
        if complete:
            handler.renew_parser()  # type: ignore[attr-defined]
            handler.resume_reading()  # type: ignore[attr-defined]
        else:
            handler.close()  # type: ignore[attr-defined]  # ignore what follows; close after the response


class PlainBody:
    def __init__(
        self, stream: BodyStream, length: int | None, expected_sha256: str | None, send_continue: _Continue
    ) -> None:
        self.length = length  # None: HTTP chunked transfer, read to the end of the stream
        self._stream = stream
        self._receiver: _Receiver | None = None
        self._remaining = length if length is not None else 1 << 62
        self._expected = expected_sha256
        self._continue = send_continue
        self.trailers: dict[str, str] = {}
        self.wants_sha256 = expected_sha256 is not None
        self.timeout: float | None = None  # seconds a read may wait for the client (set by the app)

    @property
    def remaining(self) -> int:
        """Bytes of the body not yet read (for a body of known length)."""
        return self._remaining

    async def begin_raw(self) -> BodyStream:
        """The stream itself, for a handler that parses the body on its own (HTML form uploads); asks a client
        waiting for ``100 Continue`` to send it. Neither ``read`` nor the payload hash apply then."""
        await self._continue()
        return self._stream

    async def read(self, limit: int = MAX_READ) -> bytes:
        """The next bytes of the body, at most ``limit`` (and MAX_READ); b"" at the end."""
        if self._remaining <= 0:
            return b""
        await self._continue()
        try:
            data = await _read_some(self._stream, min(self._remaining, limit, MAX_READ), self.timeout)
        except S3Error:
            raise
        except Exception as exc:  # the client went away mid-body
            raise S3Error("IncompleteBody") from exc
        if not data:
            if self.length is None:
                self._remaining = 0
                return b""
            raise S3Error("IncompleteBody")
        self._remaining -= len(data)
        return data

    async def readinto(self, view: memoryview) -> int:
        """Fill ``view`` from the body (completely, unless the body ends first); 0 at the end. Large bodies are
        received straight into ``view`` (see _Receiver). Do not mix with ``read``."""
        if self._remaining <= 0 or self.length is None:
            return 0 if self._remaining <= 0 else await self._readinto_copying(view)
        await self._continue()
        want = min(len(view), self._remaining)
        filled = 0
        if self._receiver is None:
            # What the stream already holds first; once it is empty, every body byte received so far is
            # accounted for in total_bytes (the parser passes on each byte it is fed, at once).
            try:
                while filled < want:
                    data = self._stream.read_nowait(want - filled)
                    if not data:
                        break
                    view[filled:filled + len(data)] = data
                    filled += len(data)
            except Exception as exc:  # the client went away mid-body
                raise S3Error("IncompleteBody") from exc
            if filled < want:
                self._receiver = self._take_over(filled)
                if self._receiver is None:
                    self._remaining -= filled
                    return filled + await self._readinto_copying(view[filled:want])
        if filled < want:
            assert self._receiver is not None
            try:
                filled += await self._receiver.fill(view[filled:want], self.timeout)
            except BaseException:
                self._release(complete=False)
                raise
        self._remaining -= filled
        if self._remaining == 0 and self._receiver is not None:
            self._release(complete=True)
        return filled

    async def _readinto_copying(self, view: memoryview) -> int:
        filled = 0
        while filled < len(view):
            data = await self.read(len(view) - filled)
            if not data:
                break
            view[filled:filled + len(data)] = data
            filled += len(data)
        return filled

    def _take_over(self, drained: int) -> _Receiver | None:
        """Install a _Receiver for the rest of the body, once the stream holds none of it (``drained`` bytes were
        just taken from it). None where that cannot be done (the caller keeps reading through the stream)."""
        stream = self._stream
        protocol = getattr(stream, "_protocol", None)  # the connection's shoal.http.protocol.HttpProtocol
        transport = getattr(protocol, "transport", None)
        # protocol is None implies transport is None: tested first only so that mypy sees it is not None below.
        if (protocol is None or transport is None or stream.is_eof() or stream.exception() is not None
                or transport.is_closing() or not hasattr(transport, "set_protocol")
                or not hasattr(protocol, "renew_parser")):
            return None
        assert self.length is not None
        on_wire = self.length - stream.total_bytes  # not yet received from the socket
        if on_wire != self._remaining - drained or on_wire < DIRECT_MIN:
            return None
        receiver = _Receiver(transport, protocol, on_wire)
        transport.pause_reading()
        transport.set_protocol(receiver)
        return receiver

    def _release(self, complete: bool) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is None:
            return
        receiver.give_back(complete)
        if not self._stream.is_eof():
            self._stream.feed_eof()  # nobody must wait for (or linger over) the bytes we took

    async def abandon(self) -> bool:
        """The request is answered without all of a body that was being received directly (it failed midway):
        give the connection back to its protocol, to be closed after the response. True if it must close.

        The client is most likely still sending (most write the whole body before reading): the rest is read and
        discarded first, up to DRAIN_LIMIT bytes and each receipt within the body timeout, so that it reads the
        answer (a 503 with Retry-After, say) rather than meeting a connection reset for unread bytes."""
        receiver = self._receiver
        if receiver is None:
            return False
        if 0 < receiver.remaining <= DRAIN_LIMIT and not receiver.broken:
            try:
                await receiver.discard(self.timeout)
            except S3Error:
                pass  # stalled or gone: close without waiting any longer
        self._release(complete=False)
        return True

    def check_sha256(self, hexdigest: str) -> None:
        if self._expected is not None and self._expected != hexdigest:
            raise S3Error("XAmzContentSHA256Mismatch", ClientComputedContentSHA256=self._expected,
                          S3ComputedContentSHA256=hexdigest)


class ChunkSigner:
    """The running signature chain of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` body."""

    def __init__(self, key: bytes, amz_date: str, scope: sigv4.Scope, seed_signature: str) -> None:
        self.key = key
        self.amz_date = amz_date
        self.scope = scope
        self.previous = seed_signature

    def verify_chunk(self, data_sha256: str, given: str) -> None:
        expected = sigv4.sign(self.key, sigv4.chunk_string_to_sign(self.amz_date, self.scope, self.previous,
                                                                     data_sha256))
        if not sigv4.signatures_match(expected, given):
            raise S3Error("SignatureDoesNotMatch", "The chunk signature does not match.")
        self.previous = expected

    def verify_trailer(self, trailer_text: bytes, given: str) -> None:
        digest = hashlib.sha256(trailer_text).hexdigest()
        expected = sigv4.sign(self.key, sigv4.trailer_string_to_sign(self.amz_date, self.scope, self.previous,
                                                                       digest))
        if not sigv4.signatures_match(expected, given):
            raise S3Error("SignatureDoesNotMatch", "The trailer signature does not match.")


class _ChunkChecks:
    """Every chunk's SHA-256 and the check of its signature, for a signed aws-chunked body: on a worker thread, in
    the chunks' order, while the event loop parses on (hashed on the loop, signed uploads stopped at ~400 MB/s).
    What one read parsed goes to the lane at once (``flush``), so a body of small chunks costs one hand-over per
    read, not one per chunk. ``done`` waits for every check and raises the first failure; the body calls it before
    it reports its end, and before the trailer's signature (which chains on the last chunk's): nothing unverified
    is committed. A failure also surfaces at the next ``flush``, which stops a long upload early. The parsed data
    waiting for its check is bounded by the body (CHECKS_AHEAD_FILLS of its fills)."""

    def __init__(self, signer: ChunkSigner) -> None:
        self._signer = signer
        self._lane = Lane(self._apply, Work())  # a thread still hashing after the request ended reads only bytes
        self._hash = hashlib.sha256()  # of the current chunk, on the lane's thread
        self._events: list[tuple[memoryview | None, str]] = []  # (data, "") or (None, signature): not yet handed on
        self._events_bytes = 0
        self._calls: collections.deque = collections.deque()  # (future, bytes) handed on, not yet known done
        self._ahead = 0

    def data(self, piece: memoryview) -> None:
        self._events.append((piece, ""))
        self._events_bytes += len(piece) + CHECK_EVENT_COST

    def end_of_chunk(self, signature: str) -> None:
        self._events.append((None, signature))
        self._events_bytes += CHECK_EVENT_COST

    def _apply(self, events: list[tuple[memoryview | None, str]]) -> None:
        for data, signature in events:
            if data is not None:
                self._hash.update(data)
            else:
                digest, self._hash = self._hash.hexdigest(), hashlib.sha256()
                self._signer.verify_chunk(digest, signature)

    async def flush(self, ahead_limit: int) -> None:
        """Hand on what was parsed; wait while more than ``ahead_limit`` bytes of it are not yet checked."""
        if self._events:
            self._calls.append((self._lane.feed(self._events), self._events_bytes))
            self._ahead += self._events_bytes
            self._events, self._events_bytes = [], 0
        while self._calls and (self._calls[0][0].done() or self._ahead > ahead_limit):
            call, size = self._calls.popleft()
            await finished((call,))
            self._ahead -= size

    async def done(self) -> None:
        await self.flush(0)
        calls = tuple(call for call, _ in self._calls)
        self._calls.clear()
        self._ahead = 0
        await finished(calls)


_chunked_bodies: weakref.WeakSet[ChunkedBody] = weakref.WeakSet()  # those of requests under way


def fill_size() -> int:
    """How much of an aws-chunked body one fill receives: MAX_READ, or a share of CHUNKED_BUDGET when many are
    under way."""
    return max(MIN_FILL, min(MAX_READ, CHUNKED_BUDGET // max(1, len(_chunked_bodies))))


class ChunkedBody:
    """Decodes ``aws-chunked``: ``hex-size[;chunk-signature=sig]\\r\\n data \\r\\n`` ... ``0...\\r\\n`` trailers.

    The framing is parsed from buffers of our own, each filled in one large read: chunk headers and the CRLFs
    after each chunk are found in memory, and ``read`` hands on the data of every chunk already received (up to
    1 MiB) in one piece. Clients send 8-64 KiB chunks, so waiting on the stream for each header and CRLF cost more
    than the hashing.

    With the encoded length known (``wire_length``, the request's Content-Length) a fill is received like a plain
    body's (PlainBody.readinto: straight from the socket for large bodies), not through aiohttp's stream, whose
    buffers and per-read ``bytes`` added over 1 MiB per upload: 64 concurrent 64 MiB uploads took +145-155 MiB of
    RSS (plain ones +62), now +78-82. A fill is a fresh buffer (the check lane may still be hashing pieces of the
    last one); its size is the body's share of CHUNKED_BUDGET."""

    def __init__(
        self,
        stream: BodyStream,
        decoded_length: int | None,
        signer: ChunkSigner | None,
        expect_trailer: bool,
        send_continue: _Continue,
        wire_length: int | None = None,
    ) -> None:
        self.length = decoded_length
        self._raw = PlainBody(stream, wire_length, None, send_continue) if wire_length else None
        _chunked_bodies.add(self)
        self.trailers: dict[str, str] = {}
        self.wants_sha256 = False
        self._stream = stream
        self._signer = signer
        self._expect_trailer = expect_trailer
        self._continue = send_continue
        self._buf: bytes | bytearray = b""  # received, not yet parsed from self._pos on
        self._pos = 0
        self._chunk_left = 0
        self._checks = _ChunkChecks(signer) if signer is not None else None
        self._chunk_signature = ""
        self._done = False
        self._decoded = 0
        self._timeout: float | None = None
        self._fill_size = MAX_READ

    @property
    def timeout(self) -> float | None:
        """Seconds a read may wait for the client (set by the app)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = value
        if self._raw is not None:
            self._raw.timeout = value

    def check_sha256(self, hexdigest: str) -> None:
        pass

    async def abandon(self) -> bool:
        """See PlainBody.abandon: the request was answered before the encoded body was read to its end."""
        self._leave()
        return await self._raw.abandon() if self._raw is not None else False

    def _buffered(self) -> int:
        return len(self._buf) - self._pos

    async def _fill(self) -> None:
        """Add more of the body to the buffer, waiting if nothing has arrived yet."""
        # What is left unparsed is at most a partial header or CRLF (chunk data is handed on as it comes).
        left = self._buf[self._pos:]
        self._fill_size = fill_size()
        try:
            buf: bytes | bytearray
            if self._raw is None:
                data = await _read_some(self._stream, self._fill_size, self.timeout)
                n = len(data)
                buf = left + data if left else data
            else:
                n = min(self._fill_size, self._raw.remaining)
                buf = bytearray(len(left) + n)
                buf[:len(left)] = left
                if n:
                    got = await self._raw.readinto(memoryview(buf)[len(left):])
                    if got < n:  # a known length that ended early: not expected (readinto raises), but safe
                        buf = buf[:len(left) + got]
                    n = got
        except S3Error:
            raise
        except Exception as exc:
            raise S3Error("IncompleteBody", "The chunked body ended early.") from exc
        if not n:
            raise S3Error("IncompleteBody", "The chunked body ended early.")
        self._buf = buf
        self._pos = 0

    async def _line(self) -> bytes | bytearray:
        while (end := self._buf.find(b"\n", self._pos)) < 0:
            if self._buffered() > MAX_CHUNK_HEADER:
                raise S3Error("IncompleteBody", "Malformed chunked encoding: header line too long.")
            await self._fill()
        line = self._buf[self._pos : end + 1]
        self._pos = end + 1
        if len(line) > MAX_CHUNK_HEADER or not line.endswith(b"\r\n"):
            raise S3Error("IncompleteBody", "Malformed chunked encoding.")
        return line[:-2]

    async def _start_chunk(self) -> bool:
        """Read a chunk header; False at the final (zero-size) chunk."""
        header = (await self._line()).decode("latin-1")
        size_text, _, ext = header.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise S3Error("IncompleteBody", "Malformed chunk size in chunked encoding.") from None
        if size < 0:
            raise S3Error("IncompleteBody", "Malformed chunk size in chunked encoding.")
        signature = ""
        if ext:
            name, _, value = ext.partition("=")
            if name.strip() == "chunk-signature":
                signature = value.strip()
        if self._signer is not None and not signature:
            raise S3Error("SignatureDoesNotMatch", "A chunk has no signature.")
        self._chunk_left = size
        self._chunk_signature = signature
        if size == 0:
            self._end_chunk()
            return False
        return True

    async def _end_of_chunk_data(self) -> None:
        while self._buffered() < 2:
            await self._fill()
        if self._buf[self._pos : self._pos + 2] != b"\r\n":
            raise S3Error("IncompleteBody", "Malformed chunked encoding: missing CRLF after chunk data.")
        self._pos += 2
        self._end_chunk()

    def _end_chunk(self) -> None:
        if self._checks is not None:
            self._checks.end_of_chunk(self._chunk_signature)

    async def _finish(self) -> None:
        trailer_lines: list[bytes | bytearray] = []
        total = 0
        while True:
            line = await self._line()
            if not line:
                break
            total += len(line)
            if total > MAX_TRAILER_BYTES:
                raise S3Error("InvalidRequest", "The trailing headers are too large.")
            trailer_lines.append(line)
        if self._checks is not None:
            await self._checks.done()  # every chunk's signature, before the trailer's (which chains on them)
        signature = None
        signed_text = b""
        for line in trailer_lines:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise S3Error("IncompleteBody", "Malformed trailer in chunked encoding.")
            name = name.strip().lower()
            if name == "x-amz-trailer-signature":
                signature = value.strip()
            else:
                self.trailers[name] = value.strip()
                signed_text += f"{name}:{value.strip()}\n".encode("latin-1")
        if self._signer is not None and self._expect_trailer:
            if signature is None:
                raise S3Error("SignatureDoesNotMatch", "The trailer has no signature.")
            self._signer.verify_trailer(signed_text, signature)
        if self.length is not None and self._decoded != self.length:
            raise S3Error("IncompleteBody", "The decoded body length does not match x-amz-decoded-content-length.")
        self._done = True
        self._leave()

    def _leave(self) -> None:
        """Out of the fill budget, and its last fill let go: the body may outlive its request (aiohttp keeps the
        request of an idle keep-alive connection)."""
        self._buf = b""
        self._pos = 0
        _chunked_bodies.discard(self)

    async def read(self) -> bytes:
        """The data of the chunks received so far (at least one byte, at most 1 MiB); b"" after the last chunk and
        its trailers were read and checked."""
        return b"".join(await self._take(MAX_READ))

    async def readinto(self, view: memoryview) -> int:
        """Fill ``view`` with decoded data unless the body ends first (then the last chunk and its trailers have
        been read and checked); 0 at the end. Each byte is copied once, from the received buffers into ``view``:
        an upload then takes the same path as a plain body (shoal.s3.ingest._ingest_direct)."""
        filled = 0
        while filled < len(view):
            pieces = await self._take(len(view) - filled)
            if not pieces:
                break
            for piece in pieces:
                view[filled:filled + len(piece)] = piece
                filled += len(piece)
        return filled

    async def _take(self, limit: int) -> list[memoryview]:
        """Pieces of the chunks received so far, at least one byte and at most ``limit`` in all; none after the last
        chunk and its trailers were read and checked."""
        pieces = await self._parse(limit)
        if self._checks is not None:
            await self._checks.flush(CHECKS_AHEAD_FILLS * self._fill_size)
        return pieces

    async def _parse(self, limit: int) -> list[memoryview]:
        if self._done:
            return []
        await self._continue()
        pieces: list[memoryview] = []
        taken = 0
        while taken < limit and not self._done:
            if self._chunk_left == 0:
                if pieces and (not self._buffered() or len(pieces) >= MAX_PIECES):
                    # Hand on what we have rather than wait for the next chunk; and tiny chunks must not pile up
                    # (a 1 MiB read of 1-byte chunks would hold a million pieces and ~90 MB received).
                    break
                if not await self._start_chunk():
                    await self._finish()
                continue
            if not self._buffered():
                if pieces:
                    break
                await self._fill()
            n = min(self._chunk_left, self._buffered(), limit - taken)
            piece = memoryview(self._buf)[self._pos : self._pos + n]
            self._pos += n
            self._chunk_left -= n
            self._decoded += n
            taken += n
            if self._checks is not None:
                self._checks.data(piece)
            pieces.append(piece)
            if self._chunk_left == 0:
                await self._end_of_chunk_data()
        return pieces
