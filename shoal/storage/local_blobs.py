"""Object bytes as plain files under the data directory.

File names are random ids, never derived from object keys, so no key can reach outside the data directory.
A blob is written under ``tmp/``, fsync'd, then renamed to ``blobs/ab/cd/<id>`` and the directory fsync'd;
only after that does metadata refer to it. Plain files keep zero-copy ``sendfile`` reads possible.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

READ_CHUNK = 1 << 20


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
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.size += n

    def copy_from(self, src_fd: int, offset: int, length: int) -> None:
        """Append a range of another file without passing the bytes through Python."""
        assert self._fd is not None
        while length > 0:
            n = os.copy_file_range(src_fd, self._fd, length, offset)
            if n == 0:
                raise OSError("short copy: source blob is shorter than its metadata says")
            offset += n
            length -= n
            self.size += n

    def finish(self) -> None:
        assert self._fd is not None
        fd, self._fd = self._fd, None
        try:
            if self._store.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        final = self._store.path(self.blob_id, create_dirs=True)
        os.rename(self._tmp, final)
        if self._store.durable:
            _fsync_dir(os.path.dirname(final))

    def abort(self) -> None:
        if self._fd is not None:
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
        os.makedirs(self.blob_dir, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)

    def path(self, blob_id: str, create_dirs: bool = False) -> str:
        if len(blob_id) != 32 or not all(c in "0123456789abcdef" for c in blob_id):
            raise ValueError("not a blob id")  # ids come from our own metadata; refuse anything else
        directory = os.path.join(self.blob_dir, blob_id[:2], blob_id[2:4])
        if create_dirs and not os.path.isdir(directory):
            os.makedirs(directory, exist_ok=True)
            if self.durable:
                _fsync_dir(os.path.dirname(directory))
                _fsync_dir(os.path.dirname(os.path.dirname(directory)))
        return os.path.join(directory, blob_id)

    def new_writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def local_path(self, blob_id: str) -> str:
        return self.path(blob_id)

    def open(self, blob_id: str):
        return open(self.path(blob_id), "rb", buffering=0)

    async def stream(self, blob_id: str, offset: int, length: int) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        f = self.open(blob_id)
        try:
            while length > 0:
                chunk = await loop.run_in_executor(None, os.pread, f.fileno(), min(length, READ_CHUNK), offset)
                if not chunk:
                    raise OSError("blob shorter than expected")
                offset += len(chunk)
                length -= len(chunk)
                yield chunk
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
