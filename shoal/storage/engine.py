"""A metadata store and a blob store working as one: start-up recovery and freeing space."""

from __future__ import annotations

import asyncio
import logging
import os
import time

from shoal import metrics
from shoal.storage.errors import CorruptBlobError
from shoal.storage.local_blobs import LocalBlobStore
from shoal.storage.sqlite_meta import SqliteMetadataStore

log = logging.getLogger(__name__)

# A blob file younger than this may belong to a write whose metadata commit is still on its way.
ORPHAN_GRACE_SECONDS = 3600.0
COALESCE_SECONDS = 0.05  # how long the collector lets garbage gather after being told of some


class Storage:
    def __init__(self, meta: SqliteMetadataStore, blobs: LocalBlobStore) -> None:
        self.meta = meta
        self.blobs = blobs
        self._garbage_signal: asyncio.Event | None = None
        self._collector: asyncio.Task | None = None
        self._stopping = False

    @classmethod
    def open_local(cls, data_dir: str, *, durable: bool = True) -> Storage:
        meta_dir = os.path.join(data_dir, ".shoal")
        os.makedirs(meta_dir, exist_ok=True)
        meta = SqliteMetadataStore(os.path.join(meta_dir, "meta.sqlite3"), durable=durable)
        blobs = LocalBlobStore(meta_dir, durable=durable)
        return cls(meta, blobs)

    # -- recovery ----------------------------------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Run once before serving, in the only process touching the store: make it consistent again."""
        swept_tmp = self.blobs.sweep_temporary()
        freed = self.collect_garbage_sync()
        orphans = self.sweep_orphans(older_than=time.time())
        if swept_tmp or freed or orphans:
            log.info("recovery: %d temp files, %d unreferenced blobs, %d orphans removed", swept_tmp, freed, orphans)
        return {"tmp": swept_tmp, "garbage": freed, "orphans": orphans}

    def sweep_orphans(self, older_than: float) -> int:
        """Delete blob files that no metadata refers to (a crash between a blob's rename and its commit)."""
        count = 0
        for blob_id in self.blobs.iter_blob_ids(older_than):
            if not self.meta.blob_known(blob_id):
                self.blobs.delete(blob_id)
                count += 1
        return count

    def collect_garbage_sync(self) -> int:
        total = 0
        while batch := self.meta.garbage(1000):
            for blob_id in batch:
                self.blobs.delete(blob_id)
            self.meta.forget_garbage_sync(batch)
            total += len(batch)
        metrics.gc_freed(total)
        return total

    # -- damaged data -------------------------------------------------------------------------------------

    def quarantine(self, error: CorruptBlobError, where: str) -> bool:
        """Move a blob that failed its checksum out of the way (``.shoal/quarantine/``) and report it. Metadata
        keeps referring to it: reads of the objects using it fail cleanly until they are rewritten, deleted or
        ``shoal fsck --repair`` removes them."""
        try:
            referrers = self.meta.referrers(error.blob_id)
        except Exception:  # a report must not fail for want of detail
            referrers = []
        moved = self.blobs.quarantine(error.blob_id, {
            "reason": "checksum mismatch" if error.actual != "short" else "file shorter than recorded",
            "expected_crc64": error.expected, "actual_crc64": error.actual, "size": error.size,
            "detected_by": where, "referrers": referrers,
        })
        if moved:
            log.error("CORRUPT blob %s quarantined (detected by %s; CRC64NVME %s, recorded %s); used by %s",
                      error.blob_id, where, error.actual, error.expected, referrers or "nothing")
        return moved

    # -- background freeing of space --------------------------------------------------------------------

    def start_background(self) -> None:
        self._stopping = False
        self._garbage_signal = asyncio.Event()
        self._collector = asyncio.create_task(self._collect_loop())

    async def stop_background(self) -> None:
        collector = self._collector
        if collector is not None:
            # Told twice: a flag it checks after every wait, and a cancellation for when it is busy. The flag is
            # what counts: on Python 3.11 asyncio.wait_for swallows a cancellation that lands just after its wait
            # was satisfied (garbage made at the moment of shutdown), and the collector would go on forever.
            self._stopping = True
            if self._garbage_signal is not None:
                self._garbage_signal.set()
            collector.cancel()
            await asyncio.wait([collector])  # its end, however it ends
            self._collector = None
        await asyncio.get_running_loop().run_in_executor(None, self.collect_garbage_sync)

    def garbage_made(self) -> None:
        if self._garbage_signal is not None:
            self._garbage_signal.set()

    async def _collect_loop(self) -> None:
        assert self._garbage_signal is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._garbage_signal.wait(), timeout=30)
            except TimeoutError:
                pass
            if self._stopping:
                return
            # Writes signal after every commit that may have made garbage: gather a moment's worth first, so
            # thousands of overwrites a second cost a few passes, not one each (a pass and its wake-up were ~5%
            # of a 4 KiB PUT's instructions).
            await asyncio.sleep(COALESCE_SECONDS)
            self._garbage_signal.clear()
            try:
                freed = 0
                while batch := self.meta.garbage(500):
                    await loop.run_in_executor(None, self._delete_files, batch)
                    await self.meta.forget_garbage(batch)
                    freed += len(batch)
                metrics.gc_freed(freed)
            except Exception:
                log.exception("garbage collection failed; will retry")
                await asyncio.sleep(5)

    def _delete_files(self, blob_ids: list[str]) -> None:
        for blob_id in blob_ids:
            self.blobs.delete(blob_id)

    def close(self) -> None:
        self.meta.close()
