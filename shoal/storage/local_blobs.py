"""Object bytes as plain files under the data directory.

File names are random ids, never derived from object keys, so no key can reach outside the data directory.
A blob is written under ``tmp/``, fsync'd, then renamed to ``blobs/ab/cd/<id>`` and the directory fsync'd;
only after that does metadata refer to it. Plain files keep zero-copy ``sendfile`` reads possible.

Every byte written is also run through CRC64NVME (awscrt, ~20 GB/s with carry-less multiply instructions) in the
same call that writes it: the blob's checksum and size go into the metadata with its id, so reads and the
scrubber can tell a damaged file from a good one. Blobs found damaged are moved to ``quarantine/``.

Write-behind: the kernel would start writing a large upload's dirty pages only at the final fsync (its own
writeback waits for gigabytes of dirty memory or 30 seconds), so the disk would idle while the body arrives and
the client would then wait for the whole file to reach it. Every ``WRITE_BEHIND`` bytes a background
``fdatasync`` sends what is written so far, so the disk works during the upload and the final fsync has little
left (1 GiB here: 2.7 s -> 1.5 s to durable). An error from it fails the upload like one from the final fsync.
Flushed ranges then leave the page cache (see ``_flush``), so a large upload cycles through a few MiB of it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import aclosing

from awscrt.checksums import crc64nvme

from shoal import read_budget
from shoal.storage import faults

READ_CHUNK = 1 << 20
WRITE_BEHIND = 8 << 20
# fdatasync waits on the disk, not the CPU: its own small pool, so it never queues behind hashing work.
_flusher = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-flush")


def _flush(fd: int, start: int, end: int) -> None:
    faults.check("fsync")
    os.fdatasync(fd)
    # Written and durable: let the page cache drop [start, end) now. Those pages go straight back to the next
    # writes, where a page cache that keeps growing takes never-used memory, which costs the most to hand out
    # (on this VM 2-3 ms of kernel time per MiB against 0.35: single-stream PUT 350-550 -> 650 MB/s). Large
    # objects are read back from the disk then, as with MinIO's O_DIRECT writes; small ones never get here.
    os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)


def crc_hex(value: int) -> str:
    return f"{value:016x}"


def checksum_fd(fd: int, size: int, *, pace: Callable[[int], None] | None = None,
                stop: Callable[[], bool] | None = None) -> tuple[str, int]:
    """(CRC64NVME as hex, bytes read) of the first ``size`` bytes of an open file, read 1 MiB at a time into one
    reused buffer. Fewer bytes than ``size`` means the file is short. ``pace`` is called after each chunk with
    its length (rate limiting); ``stop`` returning True abandons the read (the result is then meaningless)."""
    buf = bytearray(min(READ_CHUNK, max(size, 1)))
    view = memoryview(buf)
    crc = 0
    done = 0
    while done < size:
        faults.check("read")
        n = os.preadv(fd, [view[: min(len(buf), size - done)]], done)
        if n == 0:
            break
        crc = crc64nvme(view[:n], crc)
        done += n
        if pace is not None:
            pace(n)
        if stop is not None and stop():
            break
    return crc_hex(crc), done


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        self.blob_id = uuid.uuid4().hex
        self._tmp = os.path.join(store.tmp_dir, self.blob_id)
        self._fd: int | None = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.size = 0  # bytes in the file
        self.crc = 0  # CRC64NVME of those bytes
        self._flushed_to = 0  # the size when the last write-behind flush started
        self._flushing: Future | None = None

    @property
    def check(self) -> tuple[str, int]:
        """(checksum, size) of the stored bytes, for the metadata."""
        return crc_hex(self.crc), self.size

    def write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        faults.check("write")
        view = memoryview(data)
        self.crc = crc64nvme(view, self.crc)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.size += n
        if self._store.durable and self.size - self._flushed_to >= WRITE_BEHIND and \
                (self._flushing is None or self._flushing.done()):
            if self._flushing is not None:
                self._flushing.result()  # a failed flush fails the upload now
            start, self._flushed_to = self._flushed_to, self.size
            self._flushing = _flusher.submit(_flush, self._fd, start, self.size)

    def _settle_flush(self) -> None:
        """Wait for the write-behind flush, if one runs (the file must stay open until it is done)."""
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            flushing.result()

    def copy_from(self, src_fd: int, offset: int, length: int) -> str:
        """Append a range of another file without writing the bytes through Python (they are read once, from
        the page cache, for the checksum). Returns the CRC64NVME of the range, so a caller copying a whole blob
        can compare it with the source's."""
        assert self._fd is not None
        faults.check("write")
        piece = 0
        buf = bytearray(min(READ_CHUNK, max(length, 1)))
        view = memoryview(buf)
        position, left = offset, length
        while left > 0:
            n = os.copy_file_range(src_fd, self._fd, left, position)
            if n == 0:
                raise OSError("short copy: source blob is shorter than its metadata says")
            done = 0
            while done < n:
                faults.check("read")
                got = os.preadv(src_fd, [view[: min(len(buf), n - done)]], position + done)
                if got == 0:
                    raise OSError("short read: source blob is shorter than its metadata says")
                piece = crc64nvme(view[:got], piece)
                self.crc = crc64nvme(view[:got], self.crc)
                done += got
            position += n
            left -= n
            self.size += n
        return crc_hex(piece)

    def finish(self) -> None:
        assert self._fd is not None
        fd, self._fd = self._fd, None
        try:
            self._settle_flush()
            if self._store.durable:
                faults.check("fsync")
                os.fsync(fd)
        finally:
            os.close(fd)
        final = self._store.path(self.blob_id, create_dirs=True)
        faults.check("rename")
        os.rename(self._tmp, final)
        if self._store.durable:
            _fsync_dir(os.path.dirname(final))

    def abort(self) -> None:
        if self._fd is not None:
            try:
                self._settle_flush()
            except OSError:
                pass  # the blob is being thrown away anyway
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass


class LocalBlobStore:
    def __init__(self, root: str, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        self.blob_dir = os.path.join(root, "blobs")
        self.tmp_dir = os.path.join(root, "tmp")
        self.quarantine_dir = os.path.join(root, "quarantine")
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)
        self._synced_uppers: set[str] = set()  # blobs/ab directories known to be fsync'd into blobs/

    def path(self, blob_id: str, create_dirs: bool = False) -> str:
        if len(blob_id) != 32 or not all(c in "0123456789abcdef" for c in blob_id):
            raise ValueError("not a blob id")  # ids come from our own metadata; refuse anything else
        directory = os.path.join(self.blob_dir, blob_id[:2], blob_id[2:4])
        if create_dirs and not os.path.isdir(directory):
            # Each directory is fsync'd into its parent, also when another upload made it just now (its own fsync
            # may not have run yet). An upper directory is fsync'd once per process (its set holds at most 256):
            # they exist early on, so most new leaves cost one journal commit here, not two.
            parent = os.path.dirname(directory)
            for made, into in ((parent, self.blob_dir), (directory, parent)):
                if made in self._synced_uppers:
                    continue
                try:
                    os.mkdir(made)
                except FileExistsError:
                    pass
                if self.durable:
                    _fsync_dir(into)
                if made == parent:
                    self._synced_uppers.add(made)
        return os.path.join(directory, blob_id)

    def new_writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def local_path(self, blob_id: str) -> str:
        return self.path(blob_id)

    def open(self, blob_id: str):
        faults.check("read")
        return open(self.path(blob_id), "rb", buffering=0)

    def quarantine(self, blob_id: str, report: dict) -> bool:
        """Move a damaged blob out of ``blobs/`` into ``quarantine/`` with a JSON report beside it. False when
        the file was already gone (another reader quarantined it first, or it was freed)."""
        os.makedirs(self.quarantine_dir, exist_ok=True)
        target = os.path.join(self.quarantine_dir, blob_id)
        try:
            os.rename(self.path(blob_id), target)
        except FileNotFoundError:
            return False
        with open(target + ".json", "w") as f:
            json.dump({"blob": blob_id, "quarantined": time.time(), **report}, f, indent=1)
        if self.durable:
            _fsync_dir(self.quarantine_dir)
        return True

    def quarantined(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.quarantine_dir) if not n.endswith(".json"))
        except FileNotFoundError:
            return []

    async def stream(self, blob_id: str, offset: int, length: int) -> AsyncIterator[bytes]:
        f = self.open(blob_id)
        try:
            async with aclosing(read_budget.pread_chunks(f.fileno(), offset, length)) as chunks:
                async for chunk in chunks:
                    length -= len(chunk)
                    yield chunk
            if length > 0:
                raise OSError("blob shorter than expected")
        finally:
            f.close()

    def delete(self, blob_id: str) -> None:
        try:
            os.unlink(self.path(blob_id))
        except FileNotFoundError:
            pass

    def sweep_temporary(self) -> int:
        """Delete leftovers of writes that never finished (run before serving, when no write is running)."""
        count = 0
        for entry in os.scandir(self.tmp_dir):
            try:
                os.unlink(entry.path)
                count += 1
            except OSError:
                pass
        return count

    def iter_blob_ids(self, older_than: float) -> Iterator[str]:
        for first in os.scandir(self.blob_dir):
            if not first.is_dir():
                continue
            for second in os.scandir(first.path):
                if not second.is_dir():
                    continue
                for entry in os.scandir(second.path):
                    try:
                        if entry.stat().st_mtime < older_than:
                            yield entry.name
                    except FileNotFoundError:
                        continue

    def disk_usage(self) -> int:
        total = 0
        for blob_id in self.iter_blob_ids(time.time() + 3600):
            try:
                total += os.stat(self.path(blob_id)).st_size
            except (FileNotFoundError, ValueError):
                pass
        return total
