"""Taking in an object body: every byte is hashed (MD5 for the ETag, plus any requested checksums) and
written in the same pass, in bounded buffers.

Small bodies stay in memory and are stored inline in the metadata (one group-committed write, no file).
Larger ones go to a blob writer: each 1 MiB buffer goes through lanes on worker threads (MD5; the other hashes;
the write), each taking its buffers in order, while the event loop receives the next ones (hashlib and os.write
release the GIL, so this uses both cores).

Given a data key (server-side encryption), the same pass hashes the plaintext and seals it (AES-GCM releases
the GIL too): blobs get an encrypting writer, inline bytes are sealed with a fresh salt (``inline_salt``).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from shoal.crypto import blocks
from shoal.errors import S3Error
from shoal.lanes import Lane, Work, finished
from shoal.s3 import checksums
from shoal.storage.interfaces import BlobStore, BlobWriter

BUFFER = 1 << 20  # per upload, when few run at once: large handoffs keep worker-thread overhead low
MIN_BUFFER = 128 << 10
BUFFER_BUDGET = 32 << 20  # shared by concurrent uploads: with many at once each gets less, so memory stays flat
_active_blob_uploads = 0


def buffer_size() -> int:
    """This upload's handoff size: 1 MiB alone, shrinking (to 128 KiB) as concurrent uploads share the budget."""
    share = BUFFER_BUDGET // max(1, _active_blob_uploads)
    return max(MIN_BUFFER, min(BUFFER, share))


POOL_LIMIT = 8 << 20  # bytes of idle buffers kept for the next uploads
_pool: dict[int, list[bytearray]] = {}
_pooled = 0
_direct_in_use = 0  # bytes of buffers held by uploads in _ingest_direct and _ingest_whole


def _take_buffer(size: int) -> bytearray:
    """A buffer of ``size`` bytes, reused when one is idle: a fresh one is a fresh mapping (glibc's mmap threshold,
    see shoal.server._tune_malloc), and the kernel faulting its pages in costs more than filling them."""
    global _pooled
    idle = _pool.get(size)
    if idle:
        _pooled -= size
        return idle.pop()
    return bytearray(size)


def _return_buffer(buf: bytearray) -> None:
    global _pooled
    if _pooled + len(buf) <= POOL_LIMIT:
        _pool.setdefault(len(buf), []).append(buf)
        _pooled += len(buf)
MAX_OBJECT_SIZE = 5 * 1024**4  # 5 TiB, S3's limit
MAX_PUT_SIZE = 5 * 1024**3  # 5 GiB: S3's limit for one PutObject (larger objects are uploaded in parts)


class Body(Protocol):
    """A request body as the front end hands it over (see shoal.http.body)."""

    @property
    def length(self) -> int | None: ...  # read-only here, so bodies whose length is always known (int) qualify

    trailers: dict[str, str]
    wants_sha256: bool  # the client signed a payload hash: call check_sha256 with the hash of the bytes

    async def read(self) -> bytes: ...  # b"" at the end; raises S3Error on a transport-level failure

    def check_sha256(self, hexdigest: str) -> None: ...


@dataclass(slots=True)
class Ingested:
    size: int
    md5: bytes
    checksums: dict[str, str]  # algorithm -> base64 value, for the algorithms that were asked for
    inline: bytes | None = None  # sealed when a data key was given
    writer: BlobWriter | None = None
    inline_salt: bytes | None = None
    _finished: bool = field(default=False)

    @property
    def etag(self) -> str:
        return self.md5.hex()

    async def finish(self) -> None:
        """Make the blob durable; after this its id may be committed in metadata."""
        if self.writer is not None and not self._finished:
            await asyncio.get_running_loop().run_in_executor(None, self.writer.finish)
            self._finished = True

    def discard(self, blobs: BlobStore) -> None:
        if self.writer is not None:
            _drop(self.writer, self._finished, blobs)


def _drop(writer: BlobWriter, durable: bool, blobs: BlobStore) -> None:
    """Throw an upload's blob away: a durable one is deleted from the store, an unfinished one aborted."""
    if durable:
        blobs.delete(writer.blob_id)
    else:
        writer.abort()


_GIL_KEEPING_SLICE = 2047  # hashlib releases the GIL for updates of 2048 bytes or more (HASHLIB_GIL_MINSIZE)


class _Hashers:
    def __init__(self, algorithms: set[str], with_sha256: bool) -> None:
        self.md5 = hashlib.md5()
        self.others = {a: checksums.new_hasher(a) for a in algorithms}
        self.sha256 = None
        if with_sha256:
            self.sha256 = self.others.get("SHA256") or hashlib.sha256()
        # Every hash but MD5, once each (a requested SHA256 checksum doubles as the signed payload's hash).
        self._rest = [h.update for h in self.others.values()]
        if self.sha256 is not None and "SHA256" not in self.others:
            self._rest.append(self.sha256.update)

    def update(self, data: bytes | memoryview) -> None:
        self.md5.update(data)
        for update in self._rest:
            update(data)

    def update_small(self, data: bytes | bytearray) -> None:
        """update() for a small body on the event loop: fed in slices under hashlib's 2 KiB threshold for letting
        go of the GIL. Letting go gains nothing for a few µs of hashing, and taking the GIL back from a busy
        thread (the metadata writer) cost more than the hashing itself under load."""
        view = memoryview(data)
        for start in range(0, len(view), _GIL_KEEPING_SLICE):
            self.update(view[start:start + _GIL_KEEPING_SLICE])

    def lanes(self) -> tuple[Callable[[memoryview], None], ...]:
        """update() split into calls that may run at the same time on different threads: MD5 alone, every other
        hash in a second call. MD5 is the slowest (~790 MB/s here, SHA-256 ~1.8 GB/s); a boto3 upload over plain
        HTTP asks for MD5, SHA-256 (its signed payload hash) and CRC32 of every byte, which one after the other
        were the bottleneck of a single upload (~2.4 ms per MiB). Each call still sees the buffers in order."""
        rest = self._rest
        if not rest:
            return (self.md5.update,)
        if len(rest) == 1:
            return (self.md5.update, rest[0])

        def others(data: memoryview) -> None:
            for update in rest:
                update(data)

        return (self.md5.update, others)


class DirectBody(Body, Protocol):
    """A body that can fill a caller's buffer (shoal.http.body.PlainBody)."""

    async def readinto(self, view: memoryview) -> int: ...  # fills view unless the body ends first; 0 at the end


def _lanes_for(lanes: tuple[Callable[[memoryview], None], ...], writer: BlobWriter, work: Work) -> list[Lane]:
    """An upload's lanes: one per hash lane (``_Hashers.lanes``), one for the blob write."""
    return [Lane(fn, work) for fn in (*lanes, writer.write)]


_DIRECT_BUFFERS = 3
WHOLE_LIMIT = 256 << 10  # bodies (over the inline limit) shorter than this take _ingest_whole


async def _ingest_whole(body: DirectBody, declared: int, hashers: _Hashers, new_writer: Callable[[], BlobWriter],
                        blobs: BlobStore, work: Work) -> tuple[int, BlobWriter]:
    """A body of ``declared`` bytes, less than WHOLE_LIMIT but too large to be kept inline: received whole into one
    buffer, then hashed, written and made durable (``BlobWriter.finish``) in one call on a worker thread. At this
    size handing each buffer to the lanes and each step to a thread cost more than the work itself (a 96 KiB upload
    made ~70 futex calls, and took ~2 ms of CPU against ~0.5 for a 64 KiB one kept inline). Returns the size and
    the writer, its blob already durable."""
    global _direct_in_use
    capacity = MIN_BUFFER if declared < MIN_BUFFER else WHOLE_LIMIT  # two sizes of pooled buffers
    buffer = _take_buffer(capacity)
    _direct_in_use += capacity
    view = memoryview(buffer)
    call: concurrent.futures.Future | None = None
    try:
        size = 0
        while n := await body.readinto(view[size:]):
            size += n
            if size == len(view):  # decoded data beyond the declared length (an aws-chunked body)
                raise S3Error("IncompleteBody", "The decoded body length does not match x-amz-decoded-content-length.")
        data = view[:size]

        def store() -> BlobWriter:
            writer = new_writer()
            try:
                hashers.update(data)
                writer.write(data)
                writer.finish()
            except BaseException:
                writer.abort()
                raise
            return writer

        call = work.submit(store)
        await finished((call,))
        return size, call.result()
    except BaseException:
        try:
            await work.settle()  # the thread may still use the buffer
        finally:  # also when cancelled again while settling: its blob must not outlive the upload
            if call is not None and call.done() and not call.cancelled() and call.exception() is None:
                blobs.delete(call.result().blob_id)
        raise
    finally:
        _direct_in_use -= capacity
        _return_buffer(buffer)


async def _ingest_direct(body: DirectBody, lanes: tuple[Callable[[memoryview], None], ...], writer: BlobWriter,
                         max_size: int, work: Work) -> int:
    """Stream a body into ``writer`` through three reused buffers. Each buffer, once filled from the socket, goes
    to every lane: the hash lanes (MD5 on one, any other hashes on another: ``_Hashers.lanes``) and the write
    (with the blob's CRC), each a ``shoal.lanes.Lane`` on worker threads. A buffer is filled again once every
    lane is done with it. MD5 is the slowest; with two buffers queued behind the one it hashes it never waits, while the
    loop receives and the other lanes run on the other core. Returns the size."""
    global _direct_in_use
    # The buffers come out of the shared budget: a fair share of it while uploads start together (they all count
    # as active before the first reaches here), never more than what is left of it.
    count = _DIRECT_BUFFERS
    share = min(BUFFER_BUDGET // (count * max(1, _active_blob_uploads)), (BUFFER_BUDGET - _direct_in_use) // count)
    size_each = max(MIN_BUFFER, min(BUFFER, share))
    buffers = [_take_buffer(size_each) for _ in range(count)]
    _direct_in_use += count * size_each
    workers = _lanes_for(lanes, writer, work)
    reading: list[tuple[concurrent.futures.Future, ...]] = [()] * count  # per buffer: the lanes' calls on it
    size = 0
    turn = 0
    try:
        while True:
            await finished(reading[turn])
            reading[turn] = ()
            view = memoryview(buffers[turn])
            n = await body.readinto(view)
            if not n:
                break
            size += n
            if size > max_size:
                raise S3Error("EntityTooLarge", ProposedSize=str(size), MaxSizeAllowed=str(max_size))
            filled = view[:n]
            reading[turn] = tuple(lane.feed(filled) for lane in workers)
            turn = (turn + 1) % count
        for calls in reading:
            await finished(calls)
    finally:
        try:
            await work.settle()  # the buffers go back to the pool only once no worker thread can still read them
        finally:  # also when cancelled again while settling (settle has waited for the threads by then)
            _direct_in_use -= count * size_each
            for buf in buffers:
                _return_buffer(buf)
    return size


async def ingest(
    body: Body,
    blobs: BlobStore,
    algorithms: set[str],
    *,
    inline_limit: int,
    max_size: int = MAX_OBJECT_SIZE,
    dek: bytes | None = None,
) -> Ingested:
    """Read the whole body; raises S3Error (and leaves nothing behind) when it is bad."""
    global _active_blob_uploads
    declared = getattr(body, "length", None)
    if declared is not None and declared > max_size:
        # Refused from the declared length, before a byte of the body is read (or 100 Continue sent).
        raise S3Error("EntityTooLarge", ProposedSize=str(declared), MaxSizeAllowed=str(max_size))
    hashers = _Hashers(algorithms, body.wants_sha256)
    loop = asyncio.get_running_loop()
    work = Work()
    buffer = bytearray()
    size = 0
    writer: BlobWriter | None = None
    pending: tuple[concurrent.futures.Future, ...] = ()  # the lanes' calls still reading the previous buffer
    lanes = hashers.lanes()
    workers: list[Lane] = []

    def new_writer() -> BlobWriter:
        inner = blobs.new_writer()
        return inner if dek is None else blocks.EncryptingWriter(inner, dek)

    def feed(chunk: bytearray) -> tuple[concurrent.futures.Future, ...]:
        """Hand a filled buffer itself (no copy) to every lane of the upload, made at the first."""
        nonlocal workers
        assert writer is not None
        workers = workers or _lanes_for(lanes, writer, work)
        return tuple(lane.feed(memoryview(chunk)) for lane in workers)

    counted = False
    durable = False  # the blob writer has been finished (by _ingest_whole)

    try:
        if inline_limit < 0:  # the caller needs a blob even for an empty body (multipart parts)
            writer = await loop.run_in_executor(None, new_writer)
            counted = True
            _active_blob_uploads += 1
        if writer is None and hasattr(body, "readinto") and declared is not None \
                and inline_limit < declared < WHOLE_LIMIT:
            # Not held to the buffer budget: the streaming path it would fall back to takes more (3 x 128 KiB).
            size, writer = await _ingest_whole(body, declared, hashers, new_writer, blobs,  # type: ignore[arg-type]
                                               work)
            durable = True
        elif hasattr(body, "readinto") and declared is not None and declared > inline_limit:
            if writer is None:
                writer = await loop.run_in_executor(None, new_writer)
                counted = True
                _active_blob_uploads += 1
            size = await _ingest_direct(body, lanes, writer, max_size, work)  # type: ignore[arg-type]
        while True:
            data = await body.read()
            if not data:
                break
            size += len(data)
            if size > max_size:
                raise S3Error("EntityTooLarge", ProposedSize=str(size), MaxSizeAllowed=str(max_size))
            buffer += data
            if writer is None and len(buffer) > inline_limit:
                writer = await loop.run_in_executor(None, new_writer)
                counted = True
                _active_blob_uploads += 1
            if writer is not None and len(buffer) >= buffer_size():
                await finished(pending)
                chunk, buffer = buffer, bytearray()
                pending = feed(chunk)
        await finished(pending)
        inline = salt = None
        if writer is None:
            hashers.update_small(buffer)
            inline = bytes(buffer)
            if dek is not None:
                salt, inline = blocks.seal_inline(dek, inline)
        elif buffer:
            await finished(feed(buffer))
        if hashers.sha256 is not None:
            body.check_sha256(hashers.sha256.hexdigest())
    except BaseException:
        try:
            await work.settle()  # no worker thread may still write to the file being aborted
        finally:  # also when cancelled again while settling (settle has waited for the threads by then)
            if writer is not None:
                _drop(writer, durable, blobs)
        raise
    finally:
        if counted:
            _active_blob_uploads -= 1
    values = {a: checksums.b64(h.digest()) for a, h in hashers.others.items()}
    return Ingested(size=size, md5=hashers.md5.digest(), checksums=values, inline=inline, writer=writer,
                    inline_salt=salt, _finished=durable)


def check_content_md5(header: str | None, md5: bytes) -> None:
    if header is None:
        return
    try:
        given = base64.b64decode(header, validate=True)
    except ValueError:
        raise S3Error("InvalidDigest") from None
    if len(given) != 16:
        raise S3Error("InvalidDigest")
    if given != md5:
        raise S3Error("BadDigest", ExpectedDigest=header)
