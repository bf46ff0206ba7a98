"""Prometheus metrics (prometheus_client), served at ``/metrics`` and MinIO's ``/minio/v2/metrics/cluster``.

Request metrics are tallied per request in plain dicts by :meth:`Metrics.observe` and added to the
prometheus_client metrics in batches: when this process answers a scrape, and within a second of any request.
(prometheus_client's own per-request calls, each behind a lock, cost ~8 µs of a ~120 µs GET.) Storage metrics
(objects and bytes per bucket, free disk) are computed when scraped, from one SQL aggregate cached for
``stats_ttl`` seconds, so a scrape every few seconds costs at most one table scan per ``stats_ttl``.

With ``--workers N`` the server runs prometheus_client's multiprocess mode: the parent points
``PROMETHEUS_MULTIPROC_DIR`` at ``DATA_DIR/.shoal/metrics`` (emptied at start) before any worker starts, every
worker writes its counters there, and whichever worker answers a scrape sums them all. Counters are therefore
server-wide whichever worker is scraped; another worker's requests show up within a second. (Process metrics
such as memory are not exported in that mode.)
"""

from __future__ import annotations

import asyncio
import bisect
import os
import shutil
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from shoal import __version__

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("shoal_requests", "Requests answered, by S3 operation and HTTP status.", ["operation", "status"])
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LATENCY = Histogram("shoal_request_duration_seconds", "Time from a request's headers to its handler's answer.",
                    ["operation"], buckets=LATENCY_BUCKETS)
RECEIVED = Counter("shoal_received_bytes", "Request body bytes received (as declared by Content-Length).",
                   ["operation"])
SENT = Counter("shoal_sent_bytes", "Response body bytes sent (as declared by Content-Length).", ["operation"])
META_WRITES = Counter("shoal_metadata_writes", "Metadata writes (object and bucket changes) made durable.")
META_COMMITS = Counter("shoal_metadata_commits", "Metadata transactions that committed writes (one WAL fsync each "
                       "when durable), by thread: 'writer' commits groups of writes, 'loop' the first write of a "
                       "request while it is alone.", ["thread"])
GC_BLOBS = Counter("shoal_gc_blobs_freed", "Blob files deleted by the garbage collector.")
GC_RUNS = Counter("shoal_gc_runs", "Garbage collection rounds that freed at least one blob.")
LIFECYCLE_PASSES = Counter("shoal_lifecycle_passes", "Lifecycle passes completed.")
LIFECYCLE_ACTIONS = Counter("shoal_lifecycle_actions", "Lifecycle actions applied, by kind.", ["action"])
LIFECYCLE_ERRORS = Counter("shoal_lifecycle_errors", "Lifecycle passes that failed.")


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess(data_dir: str) -> str:
    """Before starting workers: a fresh directory for their metric files, in the environment they inherit."""
    path = os.path.join(os.path.abspath(data_dir), ".shoal", "metrics")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.environ[MULTIPROC_ENV] = path
    return path


def lifecycle_pass(stats) -> None:
    LIFECYCLE_PASSES.inc()
    for action in ("expired", "noncurrent", "markers", "uploads"):
        n = getattr(stats, action)
        if n:
            LIFECYCLE_ACTIONS.labels(action).inc(n)


def gc_freed(count: int) -> None:
    if count:
        GC_BLOBS.inc(count)
        GC_RUNS.inc()


class StorageStats:
    """Objects and bytes per bucket and free disk space, refreshed at most every ``ttl`` seconds."""

    def __init__(self, storage, data_dir: str, ttl: float = 10.0) -> None:
        self.storage = storage
        self.data_dir = data_dir
        self.ttl = ttl
        self.at = 0.0
        self.buckets: list[tuple[str, int, int, int, int]] = []
        self.disk: tuple[int, int] = (0, 0)
        self._lock = asyncio.Lock()

    def _read(self) -> None:
        conn = self.storage.meta.reader()
        rows = conn.execute(
            "SELECT b.name,"
            " coalesce(sum(v.is_latest = 1 AND v.delete_marker = 0), 0),"
            " coalesce(sum(CASE WHEN v.is_latest = 1 AND v.delete_marker = 0 THEN v.size ELSE 0 END), 0),"
            " count(v.key), coalesce(sum(v.size), 0)"
            " FROM buckets b LEFT JOIN versions v ON v.bucket = b.name GROUP BY b.name ORDER BY b.name").fetchall()
        self.buckets = [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]
        usage = shutil.disk_usage(self.data_dir)
        self.disk = (usage.free, usage.total)
        self.at = time.monotonic()

    async def refresh(self) -> None:
        if time.monotonic() - self.at < self.ttl:
            return
        async with self._lock:
            if time.monotonic() - self.at >= self.ttl:
                await asyncio.get_running_loop().run_in_executor(None, self._read)

    def collect(self):
        objects = GaugeMetricFamily("shoal_bucket_objects", "Current objects per bucket (no delete markers).",
                                    labels=["bucket"])
        size = GaugeMetricFamily("shoal_bucket_bytes", "Bytes of current objects per bucket.", labels=["bucket"])
        versions = GaugeMetricFamily("shoal_bucket_versions", "Versions (delete markers included) per bucket.",
                                     labels=["bucket"])
        stored = GaugeMetricFamily("shoal_bucket_stored_bytes", "Bytes of all versions per bucket.",
                                   labels=["bucket"])
        for name, count, nbytes, nversions, all_bytes in self.buckets:
            objects.add_metric([name], count)
            size.add_metric([name], nbytes)
            versions.add_metric([name], nversions)
            stored.add_metric([name], all_bytes)
        yield objects
        yield size
        yield versions
        yield stored
        yield GaugeMetricFamily("shoal_buckets", "Buckets.", value=len(self.buckets))
        yield GaugeMetricFamily("shoal_disk_free_bytes", "Free space on the data directory's file system.",
                                value=self.disk[0])
        yield GaugeMetricFamily("shoal_disk_total_bytes", "Size of the data directory's file system.",
                                value=self.disk[1])
        info = GaugeMetricFamily("shoal_build_info", "Shoal's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

    def describe(self):
        return []


def _add_to_histogram(child, seconds: float, bucket_counts: list[int]) -> None:
    """Add a batch of observations (their sum, and how many fell in each bucket) to a histogram's label child.
    prometheus_client has no public call for that, so this adds to its bucket values (there since 0.4). Should
    they ever move, each observation is replayed at its bucket's bound instead: counts stay exact, the sum
    becomes an upper estimate."""
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if buckets is not None and total is not None and len(buckets) == len(bucket_counts):
        total.inc(seconds)
        for value, count in zip(buckets, bucket_counts, strict=True):
            if count:
                value.inc(count)
        return
    for bound, count in zip((*LATENCY_BUCKETS, 2 * LATENCY_BUCKETS[-1]), bucket_counts, strict=True):
        for _ in range(count):
            child.observe(bound)


class Metrics:
    """The server's hooks: :meth:`observe` per request, :meth:`render` per scrape."""

    def __init__(self, storage, data_dir: str, stats_ttl: float = 10.0) -> None:
        self.stats = StorageStats(storage, data_dir, stats_ttl)
        self._requests: dict[tuple[str, int], object] = {}
        self._per_op: dict[str, tuple] = {}
        self._counts: dict[tuple[str, int], int] = {}  # requests not yet flushed, by (operation, status)
        self._tallies: dict[str, list] = {}  # and their latencies and bytes, by operation (see observe)
        self._flush_timer: asyncio.TimerHandle | None = None
        self._meta_counts = (0, 0, 0)  # the metadata store's (writes, writer commits, loop commits) at the last flush
        if multiprocess_dir():
            from prometheus_client import multiprocess

            self.registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.registry)
        else:
            from prometheus_client import REGISTRY

            self.registry = REGISTRY
        self.registry.register(self.stats)

    def observe(self, operation: str, status: int, seconds: float, received: int, sent: int) -> None:
        """Tally one request (see :meth:`flush`)."""
        key = (operation, status)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        tally = self._tallies.get(operation)
        if tally is None:
            # [seconds, received, sent, then one count per latency bucket, +Inf last]
            tally = self._tallies[operation] = [0.0, 0, 0] + [0] * (len(LATENCY_BUCKETS) + 1)
        tally[0] += seconds
        tally[1] += received
        tally[2] += sent
        tally[3 + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket with seconds <= its bound
        if self._flush_timer is None:
            try:
                self._flush_timer = asyncio.get_running_loop().call_later(1.0, self.flush)
            except RuntimeError:  # no loop (tests calling it directly): at once
                self.flush()

    def flush(self) -> None:
        """Add the tallies to the prometheus_client metrics (which, with workers, write them where every worker's
        scrape reads them)."""
        self._flush_timer = None
        self._flush_meta_counts()
        counts, self._counts = self._counts, {}
        tallies, self._tallies = self._tallies, {}
        for (operation, status), count in counts.items():
            child = self._requests.get((operation, status))
            if child is None:
                child = self._requests[(operation, status)] = REQUESTS.labels(operation, str(status))
            child.inc(count)  # type: ignore[attr-defined]
        for operation, tally in tallies.items():
            per_op = self._per_op.get(operation)
            if per_op is None:
                per_op = self._per_op[operation] = (LATENCY.labels(operation), RECEIVED.labels(operation),
                                                    SENT.labels(operation))
            latency, received, sent = per_op
            if tally[1]:
                received.inc(tally[1])  # type: ignore[attr-defined]
            if tally[2]:
                sent.inc(tally[2])  # type: ignore[attr-defined]
            _add_to_histogram(latency, tally[0], tally[3:])

    def _flush_meta_counts(self) -> None:
        meta = self.stats.storage.meta
        counts = (getattr(meta, "writes", 0), getattr(meta, "commits_by_writer", 0), getattr(meta, "commits_here", 0))
        writes, by_writer, here = (now - before for now, before in zip(counts, self._meta_counts, strict=True))
        self._meta_counts = counts
        if writes:
            META_WRITES.inc(writes)
        if by_writer:
            META_COMMITS.labels("writer").inc(by_writer)
        if here:
            META_COMMITS.labels("loop").inc(here)

    async def render(self) -> tuple[bytes, str]:
        self.flush()
        await self.stats.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self.flush()
        try:
            self.registry.unregister(self.stats)
        except KeyError:
            pass

