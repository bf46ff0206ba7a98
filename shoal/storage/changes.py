"""Change counters that every process on one metadata database shares, in a small memory-mapped file beside it.

Each reading thread caches bucket and object rows (see sqlite_meta). It must drop them as soon as anything is
committed, by this process or another worker. SQLite can tell a connection so (``PRAGMA data_version``), but
asking is a read transaction: a statement and two fcntl locks on every request, about 3% of a 4 KiB GET's
instructions and 4% of a PUT's (which also re-read a generation row after each of its own commits). Writers
bump these counters instead, and a reader compares them with what it last saw: one memory read.

Every write to the database goes through a store that bumps them: all worker processes, and the admin and
start-up writes (fsck --repair, the one program that writes on its own, needs the server stopped). A program
that wrote the database behind Shoal's back while a server runs would not be seen by the caches.

Writers bump under the metadata writer lock (one at a time across processes), once just before COMMIT and once
just after. The first covers a writer killed between the two: a reader can then only have cached rows read
before the commit in the moment between the first bump and the commit. The second tells readers that what they
read in that moment is old. A process also bumps both when it opens the store (under the writer lock too: an
unlocked increment racing a writer's could move a counter back to a value a reader has seen).
"""

from __future__ import annotations

import mmap
import os

_SIZE = 16  # two unsigned 64-bit counters
COMMITS = 0  # every commit
BUCKETS = 1  # commits that changed a bucket record


class ChangeCounters:
    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)  # zeros; two processes doing this at once both make the same file
            self._map = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)
        # Indexed by readers on every request: an aligned 8-byte load, never torn on the machines Python runs on.
        self.values = memoryview(self._map).cast("Q")

    def bump(self, buckets: bool) -> None:
        """After (and just before) a commit, under the writer lock: increments are read-modify-writes. The bucket
        counter moves first: a reader that sees the commit counter move then also sees the bucket counter's."""
        values = self.values
        if buckets:
            values[BUCKETS] += 1
        values[COMMITS] += 1

    def close(self) -> None:
        self.values.release()
        self._map.close()
