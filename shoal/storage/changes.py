"""Change counters that every process on one metadata database shares, in a small memory-mapped file beside it.

Each reading thread caches bucket and object rows (see sqlite_meta). It must drop them as soon as anything is
committed, by this process or another worker. SQLite can tell a connection so (``PRAGMA data_version``), but
asking is a read transaction: a statement and two fcntl locks on every request, about 3% of a 4 KiB GET's
instructions and 4% of a PUT's (which also re-read a generation row after each of its own commits). Writers
bump these counters instead, and a reader compares them with what it last saw: one memory read.

Every write to the database goes through a store that bumps them: all worker processes, and the admin and
start-up writes (fsck --repair, the one program that writes on its own, needs the server stopped). A program
that wrote the database behind Shoal's back while a server runs would not be seen by the caches.

Writers move the counters under the metadata writer lock (one writer at a time across processes): to an odd
value just before COMMIT (``begin``), to the next even one just after (``end``). An odd value means a commit
may be under way, or was cut short by a writer killed between the two: readers then fill no cache that
outlives the read (see SqliteMetadataStore._fresh). So a row read in the moment before a COMMIT is never kept
past it, and a killed writer costs the other workers their caches until the next commit moves the counter on,
never a stale read. The bucket counter moves only for commits that change a bucket record (and to repair an odd
value left behind), first: a reader that sees the commit counter move sees the bucket counter's move too. (On
x86, where stores are seen in order; Python offers no barrier to say so elsewhere.) A process also begins and
ends once when it opens the store, under the writer lock too: an unlocked increment racing a writer's could move
a counter back to a value a reader has seen.
"""

from __future__ import annotations

import mmap
import os

_SIZE = 16  # two unsigned 64-bit counters
COMMITS = 0  # every commit: odd while one may be under way
BUCKETS = 1  # commits that changed a bucket record: odd while one may be under way


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

    def begin(self, buckets: bool) -> None:
        """Just before a COMMIT, under the writer lock (increments are read-modify-writes): to odd values."""
        values = self.values
        if buckets or values[BUCKETS] & 1:
            values[BUCKETS] += 1 + (values[BUCKETS] & 1)
        values[COMMITS] += 1 + (values[COMMITS] & 1)

    def end(self) -> None:
        """Just after the COMMIT (or its failure), under the writer lock: to even values."""
        values = self.values
        if values[BUCKETS] & 1:
            values[BUCKETS] += 1
        values[COMMITS] += 1

    def close(self) -> None:
        self.values.release()  # reads after this raise ValueError
        self._map.close()
