"""The lifecycle worker: applies every bucket's enabled lifecycle rules in the background.

Each pass re-reads everything it needs from metadata (no state of its own, so a restart loses nothing): for every
bucket with enabled rules it walks the versions under the rules' prefixes, asks :func:`plan_key` what is due and
does it, then aborts due multipart uploads. Every change is a conditional metadata write (the version or upload
must still be exactly as read), so a request racing with the worker always wins: an object overwritten since it
was read is not deleted. Removed versions release their blobs as garbage in the same transaction, and the
storage's collector deletes the files, as for any DELETE.

Bounded work per tick: at most ``batch`` keys' actions are submitted at once (the metadata writer commits them
together), reads run off the event loop, and the worker yields between batches so requests are never held up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shoal import metrics
from shoal.s3 import object_lock
from shoal.s3.lifecycle import DAY, Action, Rule, bucket_rules, plan_key, plan_upload, scan_prefixes
from shoal.s3.objects import new_version_id, versioning
from shoal.storage.engine import Storage
from shoal.storage.records import Bucket, ObjectRecord, Upload

log = logging.getLogger("shoal.lifecycle")

PAGE = 1000  # rows read per metadata query


@dataclass(slots=True)
class PassStats:
    expired: int = 0  # current versions deleted, or hidden behind a new delete marker in versioned buckets
    noncurrent: int = 0  # noncurrent versions (and noncurrent delete markers) removed
    markers: int = 0  # expired object delete markers removed
    uploads: int = 0  # incomplete multipart uploads aborted

    @property
    def total(self) -> int:
        return self.expired + self.noncurrent + self.markers + self.uploads

    def __str__(self) -> str:
        return (f"{self.expired} expired, {self.noncurrent} noncurrent versions removed, {self.markers} delete "
                f"markers removed, {self.uploads} uploads aborted")


class LifecycleWorker:
    def __init__(self, storage: Storage, *, day_seconds: float = DAY, interval: float = 60.0, batch: int = 256,
                 pause: float = 0.0, clock=time.time) -> None:
        self.storage = storage
        self.day_seconds = day_seconds
        self.interval = interval
        self.batch = batch
        self.pause = pause
        self.clock = clock
        self._task: asyncio.Task | None = None

    # -- running in the server --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="lifecycle")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                stats = await self.run_pass()
                metrics.lifecycle_pass(stats)
                if stats.total:
                    log.info("lifecycle pass: %s", stats)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.LIFECYCLE_ERRORS.inc()
                log.exception("lifecycle pass failed; will retry")
            await asyncio.sleep(self.interval)

    # -- one pass -----------------------------------------------------------------------------------------

    async def run_pass(self, bucket_names: list[str] | None = None) -> PassStats:
        """Apply the rules of every bucket (or of the named ones) once."""
        stats = PassStats()
        meta = self.storage.meta
        if bucket_names is None:
            bucket_names = [b.name for b in await self._read(meta.list_buckets) if b.config.get("lifecycle")]
        for name in bucket_names:
            bucket = await self._read(meta.get_bucket, name)
            if bucket is None:
                continue
            rules = bucket_rules(bucket)
            if not rules:
                continue
            try:
                await self.apply_bucket(bucket, rules, stats)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lifecycle of bucket %s failed", name)
        return stats

    async def apply_bucket(self, bucket: Bucket, rules: list[Rule], stats: PassStats) -> None:
        versioned = versioning(bucket) is not None
        object_rules = [r for r in rules if r.acts_on_objects]
        for prefix in scan_prefixes(object_rules, lambda r: True):
            pending: list[list[Action]] = []
            async for versions in self._key_versions(bucket.name, prefix):
                actions = plan_key(versions, object_rules, versioned, self.clock(), self.day_seconds)
                if actions:
                    pending.append(actions)
                if len(pending) >= self.batch:
                    await self._apply_actions(bucket, pending, stats)
                    pending = []
            if pending:
                await self._apply_actions(bucket, pending, stats)
        upload_rules = [r for r in rules if r.abort_days is not None]
        for prefix in scan_prefixes(upload_rules, lambda r: True):
            key_marker = upload_marker = ""
            while True:
                page = await self._read(self.storage.meta.list_uploads, bucket.name, prefix, key_marker,
                                        upload_marker, PAGE)
                now = self.clock()
                due = [u for u in page if plan_upload(u, upload_rules, now, self.day_seconds) is not None]
                for start in range(0, len(due), self.batch):
                    await self._abort_uploads(due[start : start + self.batch], stats)
                if len(page) < PAGE:
                    break
                key_marker, upload_marker = page[-1].key, page[-1].upload_id

    # -- reading ------------------------------------------------------------------------------------------

    async def _read(self, fn, *args):
        """A metadata read on a worker thread (with its own connection), never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))

    async def _key_versions(self, bucket: str, prefix: str) -> AsyncIterator[list[ObjectRecord]]:
        """Every key under prefix with its versions, newest first, read a page at a time."""
        after_key, after_seq = "", None
        key: str | None = None
        versions: list[ObjectRecord] = []
        while True:
            page = await self._read(self.storage.meta.list_versions, bucket, prefix, after_key, after_seq, PAGE)
            for record in page:
                if record.key != key:
                    if versions:
                        yield versions
                    key, versions = record.key, []
                versions.append(record)
            if len(page) < PAGE:
                break
            after_key, after_seq = page[-1].key, page[-1].seq
        if versions:
            yield versions

    # -- acting -------------------------------------------------------------------------------------------

    async def _apply_actions(self, bucket: Bucket, groups: list[list[Action]], stats: PassStats) -> None:
        async def one_key(actions: list[Action]) -> None:
            for action in actions:  # in order: a delete marker goes only after what was behind it
                try:
                    await self._apply(bucket, action, stats)
                except Exception:
                    log.exception("lifecycle rule %s on %s/%s failed", action.rule_id, bucket.name,
                                  action.record.key)

        await asyncio.gather(*(one_key(g) for g in groups))
        self.storage.garbage_made()
        await asyncio.sleep(self.pause)

    async def _apply(self, bucket: Bucket, action: Action, stats: PassStats) -> None:
        meta = self.storage.meta
        record = action.record
        if action.kind in ("delete", "noncurrent") and object_lock.is_protected(record):
            return  # retention or a legal hold outranks lifecycle, as in S3
        if action.kind == "expire":
            marker = ObjectRecord(bucket.name, record.key, new_version_id(bucket), 0, "", time.time(),
                                  {"o": bucket.owner}, delete_marker=True)
            if await meta.expire_current(record, marker):
                stats.expired += 1
        elif action.kind == "delete":
            if await meta.expire_version(record):
                stats.expired += 1
        elif action.kind == "noncurrent":
            if await meta.expire_version(record):
                stats.noncurrent += 1
        elif action.kind == "marker":
            if await meta.expire_version(record, alone=True):
                stats.markers += 1
        else:
            raise ValueError(action.kind)
        log.debug("lifecycle rule %s: %s %s/%s version %s", action.rule_id, action.kind, bucket.name, record.key,
                  record.version_id)

    async def _abort_uploads(self, uploads: list[Upload], stats: PassStats) -> None:
        results = await asyncio.gather(*(self.storage.meta.expire_upload(u) for u in uploads),
                                       return_exceptions=True)
        for upload, result in zip(uploads, results, strict=True):
            if isinstance(result, Exception):
                log.error("lifecycle: aborting upload %s of %s failed: %s", upload.upload_id, upload.key, result)
            elif result:
                stats.uploads += 1
        self.storage.garbage_made()
        await asyncio.sleep(self.pause)
