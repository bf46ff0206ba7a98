"""Scrubbing: read every stored blob back and compare it with the CRC64NVME recorded when it was written.

Finds corrupt blobs (checksum or size mismatch: quarantined unless told not to), missing blobs (metadata refers
to a file that is not there) and orphaned files (a blob file no metadata knows, older than a write in progress
could be). Inline objects (kept in SQLite) whose ETag is a plain MD5 are checked against it too.

Safe while the server runs: it only reads, paced to a byte rate, and a blob freed while being read is skipped.
The server can run it in the background (``--scrub-interval``); ``shoal scrub DATA_DIR`` runs one pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shoal.storage.engine import ORPHAN_GRACE_SECONDS, Storage
from shoal.storage.errors import CorruptBlobError
from shoal.storage.local_blobs import checksum_fd

if TYPE_CHECKING:
    import asyncio  # imported where it is used at run time

log = logging.getLogger(__name__)

PAGE = 500


@dataclass
class ScrubReport:
    blobs_checked: int = 0
    bytes_checked: int = 0
    unchecked: int = 0  # blobs from before checksums were kept
    inline_checked: int = 0
    corrupt: list[dict] = field(default_factory=list)  # {"blob", "expected", "actual", "quarantined"}
    missing: list[dict] = field(default_factory=list)  # {"blob", "quarantined" (an earlier scrub moved it)}
    orphans: list[str] = field(default_factory=list)
    inline_corrupt: list[list[str]] = field(default_factory=list)  # [bucket, key, version id]
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.corrupt or self.missing or self.orphans or self.inline_corrupt)

    def summary(self) -> str:
        return (f"{self.blobs_checked} blobs ({self.bytes_checked / 1e6:.1f} MB) and {self.inline_checked} inline "
                f"objects checked in {self.seconds:.1f}s: {len(self.corrupt)} corrupt, {len(self.missing)} missing, "
                f"{len(self.orphans)} orphaned, {len(self.inline_corrupt)} damaged inline, "
                f"{self.unchecked} without a recorded checksum")


class Pacer:
    """Sleeps as needed to keep the average read rate at or below ``rate`` bytes per second (None: no limit)."""

    def __init__(self, rate: float | None, stop: threading.Event | None = None) -> None:
        self.rate = rate
        self.stop = stop
        self.start = time.monotonic()
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.rate:
            return
        ahead = self.done / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            if self.stop is not None:
                self.stop.wait(ahead)
            else:
                time.sleep(ahead)


def scrub(storage: Storage, *, rate: float | None = None, quarantine: bool = True,
          orphan_grace: float = ORPHAN_GRACE_SECONDS, stop: threading.Event | None = None) -> ScrubReport:
    """One pass over the store (blocking: run it on a thread). ``rate`` in bytes per second."""
    report = ScrubReport()
    started = time.monotonic()
    pacer = Pacer(rate, stop)
    meta, blobs = storage.meta, storage.blobs
    quarantined = set(blobs.quarantined())
    conn = meta._reader()
    after = ""
    while stop is None or not stop.is_set():
        rows = conn.execute("SELECT id, crc64, size FROM blobs WHERE id > ? ORDER BY id LIMIT ?",
                            (after, PAGE)).fetchall()
        if not rows:
            break
        after = rows[-1][0]
        for blob_id, crc, size in rows:
            if stop is not None and stop.is_set():
                break
            _check_blob(storage, report, pacer, blob_id, crc, size, quarantine, quarantined, stop)
    if stop is None or not stop.is_set():
        _check_inline(storage, report, stop)
    if stop is None or not stop.is_set():
        for blob_id in blobs.iter_blob_ids(time.time() - orphan_grace):
            if not meta.blob_known(blob_id):
                report.orphans.append(blob_id)
    report.seconds = time.monotonic() - started
    return report


def _still_referenced(storage: Storage, blob_id: str) -> bool:
    row = storage.meta._reader().execute("SELECT 1 FROM blobs WHERE id=?", (blob_id,)).fetchone()
    return row is not None


def _check_blob(storage: Storage, report: ScrubReport, pacer: Pacer, blob_id: str, crc: str | None,
                size: int | None, quarantine: bool, quarantined: set[str], stop: threading.Event | None) -> None:
    try:
        f = storage.blobs.open(blob_id)
    except FileNotFoundError:
        if _still_referenced(storage, blob_id):  # not freed meanwhile
            report.missing.append({"blob": blob_id, "quarantined": blob_id in quarantined})
        return
    with f:
        if crc is None or size is None:
            report.unchecked += 1
            return
        actual_size = os.fstat(f.fileno()).st_size
        actual, read = checksum_fd(f.fileno(), size, pace=pacer, stop=stop.is_set if stop is not None else None)
    if stop is not None and stop.is_set():
        return
    report.blobs_checked += 1
    report.bytes_checked += read
    if actual_size != size or actual != crc:
        if not _still_referenced(storage, blob_id):
            return
        error = CorruptBlobError(blob_id, crc, actual if read == size else "short", size)
        moved = quarantine and storage.quarantine(error, "scrub")
        if not quarantine:
            log.error("CORRUPT blob %s (CRC64NVME %s, recorded %s; %d bytes, recorded %d)", blob_id, actual, crc,
                      actual_size, size)
        report.corrupt.append({"blob": blob_id, "expected": crc, "actual": actual, "size": actual_size,
                               "recorded_size": size, "quarantined": bool(moved),
                               "referrers": storage.meta.referrers(blob_id)})


def _check_inline(storage: Storage, report: ScrubReport, stop: threading.Event | None) -> None:
    """Inline objects are in SQLite (whose pages have no checksums): compare unencrypted single-PUT ones with
    their ETag, which is their MD5. Encrypted ones are authenticated by AES-GCM when read."""
    conn = storage.meta._reader()
    last = ("", "", -1)
    while stop is None or not stop.is_set():
        rows = conn.execute(
            "SELECT bucket, key, seq, version_id, etag, meta, inline FROM versions WHERE inline IS NOT NULL "
            "AND (bucket, key, seq) > (?, ?, ?) ORDER BY bucket, key, seq LIMIT ?", (*last, PAGE)).fetchall()
        if not rows:
            return
        last = rows[-1][:3]
        for bucket, key, _, version_id, etag, meta_json, inline in rows:
            if len(etag) != 32 or "e" in json.loads(meta_json):
                continue
            report.inline_checked += 1
            if hashlib.md5(inline).hexdigest() != etag:
                log.error("CORRUPT inline object %s/%s version %s: MD5 does not match its ETag", bucket, key,
                          version_id)
                report.inline_corrupt.append([bucket, key, version_id])


class BackgroundScrubber:
    """Runs a scrub pass every ``interval`` seconds (the first one ``interval`` after start), on a thread,
    paced to ``rate`` bytes per second; damage found is quarantined and logged."""

    def __init__(self, storage: Storage, interval: float, rate: float | None) -> None:
        self.storage = storage
        self.interval = interval
        self.rate = rate
        self.stop_event = threading.Event()
        self.last: ScrubReport | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        import asyncio

        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            try:
                report = await loop.run_in_executor(
                    None, lambda: scrub(self.storage, rate=self.rate, stop=self.stop_event))
            except Exception:
                log.exception("scrub pass failed; will retry")
                continue
            if self.stop_event.is_set():
                return
            self.last = report
            (log.info if report.clean else log.error)("scrub: %s", report.summary())

    async def stop(self) -> None:
        import asyncio

        self.stop_event.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
