"""Request bodies: plain, or ``aws-chunked`` with per-chunk signatures and trailing checksums.

A body is read with ``await body.read()`` until it returns ``b""``. Integrity checks that belong to the
transport (chunk signatures, the chunked framing, Content-Length) fail inside ``read()``; the payload hash of
a signed non-streaming request is checked by whoever hashes the bytes (``wants_sha256`` / ``check_sha256``),
because the S3 layer hashes each byte once for every purpose. Either way the failure comes before the last
byte is handed on, so nothing is committed.
"""

from __future__ import annotations

import asyncio
import hashlib

from aiohttp import StreamReader

from shoal.auth import sigv4
from shoal.errors import S3Error

MAX_READ = 1 << 20
MAX_CHUNK_HEADER = 4096
MAX_TRAILER_BYTES = 16 * 1024


class _Continue:
    """Sends ``100 Continue`` the first time the body is read, so an early refusal costs the client no upload."""

    def __init__(self, writer, expect: bool) -> None:
        self._writer = writer
        self._pending = expect

    @property
    def pending(self) -> bool:
        """The client asked for ``100 Continue`` and has not been sent it (so it may be holding the body back)."""
        return self._pending

    async def __call__(self) -> None:
        if self._pending:
            self._pending = False
            try:
                await self._writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            except ConnectionError:  # the client went away (aiohttp: "Cannot write to closing transport")
                raise S3Error("IncompleteBody", "The client closed the connection before sending the body.") \
                    from None


async def _within(timeout: float | None, awaitable):
    """Await one read of the body; a client that sends nothing for ``timeout`` seconds gets RequestTimeout (the
    error response closes the connection, since the body was not read to its end)."""
    if timeout is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise S3Error("RequestTimeout") from None


async def _read_some(stream: StreamReader, n: int, timeout: float | None) -> bytes:
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


class PlainBody:
    def __init__(
        self, stream: StreamReader, length: int | None, expected_sha256: str | None, send_continue: _Continue
    ) -> None:
        self.length = length  # None: HTTP chunked transfer, read to the end of the stream
        self._stream = stream
        self._remaining = length if length is not None else 1 << 62
        self._expected = expected_sha256
        self._continue = send_continue
        self.trailers: dict[str, str] = {}
        self.wants_sha256 = expected_sha256 is not None
        self.timeout: float | None = None  # seconds a read may wait for the client (set by the app)

    async def begin_raw(self) -> StreamReader:
        """The stream itself, for a handler that parses the body on its own (HTML form uploads); asks a client
        waiting for ``100 Continue`` to send it. Neither ``read`` nor the payload hash apply then."""
        await self._continue()
        return self._stream

    async def read(self) -> bytes:
        if self._remaining <= 0:
            return b""
        await self._continue()
        try:
            data = await _read_some(self._stream, min(self._remaining, MAX_READ), self.timeout)
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


class ChunkedBody:
    """Decodes ``aws-chunked``: ``hex-size[;chunk-signature=sig]\\r\\n data \\r\\n`` ... ``0...\\r\\n`` trailers."""

    def __init__(
        self,
        stream: StreamReader,
        decoded_length: int | None,
        signer: ChunkSigner | None,
        expect_trailer: bool,
        send_continue: _Continue,
    ) -> None:
        self.length = decoded_length
        self.trailers: dict[str, str] = {}
        self.wants_sha256 = False
        self._stream = stream
        self._signer = signer
        self._expect_trailer = expect_trailer
        self._continue = send_continue
        self._chunk_left = 0
        self._chunk_hash: hashlib._Hash | None = None
        self._chunk_signature = ""
        self._done = False
        self._decoded = 0
        self.timeout: float | None = None  # seconds a read may wait for the client (set by the app)

    def check_sha256(self, hexdigest: str) -> None:
        pass

    async def _line(self) -> bytes:
        try:
            line = await _within(self.timeout, self._stream.readuntil(b"\n"))
        except S3Error:
            raise
        except ValueError as exc:  # over the reader's limit
            raise S3Error("IncompleteBody", "Malformed chunked encoding: header line too long.") from exc
        except Exception as exc:
            raise S3Error("IncompleteBody", "The chunked body ended early.") from exc
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
        self._chunk_hash = hashlib.sha256() if self._signer is not None else None
        if size == 0:
            self._end_chunk()
            return False
        return True

    def _end_chunk(self) -> None:
        if self._signer is not None:
            assert self._chunk_hash is not None
            self._signer.verify_chunk(self._chunk_hash.hexdigest(), self._chunk_signature)

    async def _finish(self) -> None:
        trailer_lines: list[bytes] = []
        total = 0
        while True:
            line = await self._line()
            if not line:
                break
            total += len(line)
            if total > MAX_TRAILER_BYTES:
                raise S3Error("InvalidRequest", "The trailing headers are too large.")
            trailer_lines.append(line)
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

    async def read(self) -> bytes:
        if self._done:
            return b""
        await self._continue()
        while self._chunk_left == 0:
            if not await self._start_chunk():
                await self._finish()
                return b""
        try:
            data = await _read_some(self._stream, min(self._chunk_left, MAX_READ), self.timeout)
        except S3Error:
            raise
        except Exception as exc:
            raise S3Error("IncompleteBody") from exc
        if not data:
            raise S3Error("IncompleteBody", "The chunked body ended early.")
        self._chunk_left -= len(data)
        self._decoded += len(data)
        if self._chunk_hash is not None:
            self._chunk_hash.update(data)
        if self._chunk_left == 0:
            try:
                end = await _within(self.timeout, self._stream.readexactly(2))
            except S3Error:
                raise
            except Exception as exc:
                raise S3Error("IncompleteBody", "The chunked body ended early.") from exc
            if end != b"\r\n":
                raise S3Error("IncompleteBody", "Malformed chunked encoding: missing CRLF after chunk data.")
            self._end_chunk()
        return data
