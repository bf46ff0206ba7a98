"""Running the server: recovery, sockets, worker processes, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shoal.auth.identities import Identity, IdentityStore, canonical_id
from shoal.crypto import keys
from shoal.http.app import S3App
from shoal.http.protocol import Front
from shoal.http.request import Request
from shoal.http.response import Response
from shoal.lifecycle import LifecycleWorker
from shoal.s3 import context as s3_context
from shoal.s3.service import S3Service
from shoal.storage.engine import Storage
from shoal.storage.fsck import hold_shared_lock
from shoal.storage.scrub import BackgroundScrubber

log = logging.getLogger("shoal")

DEV_ROOT_USER = "minioadmin"  # MinIO's development defaults, so existing compose files keep working
DEV_ROOT_PASSWORD = "minioadmin"


@dataclass
class UserSpec:
    access_key: str
    secret_key: str
    name: str | None = None
    user_id: str | None = None
    policies: list = field(default_factory=list)  # canned names or documents, attached at every start

    def identity(self, admin: bool = False) -> Identity:
        return Identity(self.access_key, self.secret_key, self.user_id or canonical_id(self.access_key),
                        self.name or self.access_key, is_admin=admin)


@dataclass
class ServerSettings:
    data_dir: str = "./data"
    host: str = "0.0.0.0"
    port: int = 9000
    root_user: str = DEV_ROOT_USER
    root_password: str = DEV_ROOT_PASSWORD
    users: list[UserSpec] = field(default_factory=list)
    buckets: list = field(default_factory=list)  # names, or shoal.config.BucketDecl declarations
    seeds: list = field(default_factory=list)  # shoal.config.SeedDecl: directories uploaded at start
    domain: str | None = None
    region: str = "us-east-1"
    workers: int = 1
    event_loop: str = "auto"  # "auto" (uvloop when installed), "uvloop" or "asyncio"
    durable: bool = True
    shutdown_timeout: float = 30.0
    access_log: bool = False
    log_format: str = "text"  # or "json"
    log_level: str = "info"
    metrics: bool = True  # Prometheus metrics at /metrics
    tls: tuple[str, str] | None = None  # (certificate chain, private key) PEM files: serve HTTPS
    cors_origins: list[str] = field(default_factory=list)  # server-wide CORS for buckets without their own
    lifecycle_day_seconds: float = 86400.0  # how long a lifecycle "day" lasts (scaled down for tests)
    lifecycle_interval: float = 60.0  # seconds between lifecycle passes; 0 disables the worker
    master_key: str | None = None  # base64 of 32 bytes; else DATA_DIR/.shoal/master.key (generated once)
    kms_default_key_id: str = keys.DEFAULT_KMS_KEY_ID
    scrub_interval: float = 0.0  # seconds between background scrub passes; 0: none
    scrub_rate: float | None = 32e6  # bytes per second the background scrub may read
    verify_reads: bool = True
    idle_timeout: float = 60.0  # a connection without a complete request head for this long is closed
    body_timeout: float = 60.0  # a request body stalled this long fails with RequestTimeout

    def key_service(self) -> keys.KeyService:
        if self.master_key:
            master = keys.parse_master_key(self.master_key)
        else:
            master = keys.load_or_create_master_key(os.path.join(self.data_dir, ".shoal"))
        return keys.KeyService(master, self.kms_default_key_id)

    def directory(self, storage: Storage, key_service: keys.KeyService | None = None):
        """The user database (root, declared and API-made users) as the server's identity store."""
        from shoal.auth.users import UserDirectory

        return UserDirectory(storage.meta, key_service or self.key_service())

    def identities(self) -> IdentityStore:
        """The root and declared users only, in memory (no database)."""
        store = IdentityStore()
        store.add(UserSpec(self.root_user, self.root_password, "root").identity(admin=True))
        for user in self.users:
            store.add(user.identity())
        return store


def default_cors_rules(origins: list[str]) -> list | None:
    if not origins:
        return None
    from shoal.s3.cors import METHODS, Rule

    return [Rule(origins=list(origins), methods=list(METHODS), allowed_headers=["*"],
                 expose_headers=["ETag", "x-amz-version-id", "x-amz-request-id"], max_age=3600)]


def _listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # One socket per worker: the kernel spreads connections evenly (a shared socket does not).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Readiness:
    """Ready when start-up has finished and storage answers: a SQLite query and a write in the data directory
    (checked at most once a second). Not ready while shutting down."""

    def __init__(self, storage: Storage, data_dir: str, interval: float = 1.0) -> None:
        self.storage = storage
        self.probe = os.path.join(data_dir, ".shoal", f"ready-probe-{os.getpid()}")
        self.interval = interval
        self.started = False
        self._checked = -1e9
        self._ok = False
        self.reason = "starting"

    def check_storage(self) -> None:
        """Raises when storage does not answer (OSError, sqlite3.Error)."""
        self.storage.meta.reader().execute("SELECT count(*) FROM buckets").fetchone()
        with open(self.probe, "wb") as f:
            f.write(b"ok")
        os.unlink(self.probe)

    def ready(self, draining: bool = False) -> bool:
        if draining:
            self.reason = "shutting down"
            return False
        if not self.started:
            return False
        now = time.monotonic()
        if now - self._checked >= self.interval:
            self._checked = now
            try:
                self.check_storage()
                self._ok, self.reason = True, ""
            except Exception as exc:  # sqlite3.Error, OSError
                self._ok, self.reason = False, f"storage check failed: {exc}"
                log.warning("not ready: %s", self.reason)
        return self._ok


def _health_routes(app: S3App, readiness: Readiness) -> None:
    async def live(request: Request) -> Response:
        return Response(status=200)

    async def ready(request: Request) -> Response:
        if readiness.ready(app.draining):
            return Response(status=200)
        return Response(status=503, text=readiness.reason + "\n", headers={"Retry-After": "1"})

    live.operation = ready.operation = "Health"  # type: ignore[attr-defined]
    for path in ("/minio/health/live", "/health/live"):
        app.extra_routes[path] = live
    for path in ("/minio/health/ready", "/minio/health/cluster", "/minio/health/cluster/read", "/health/ready"):
        app.extra_routes[path] = ready


def _metrics_routes(app: S3App, metrics) -> None:
    async def scrape(request: Request) -> Response | None:
        if request.path == "/metrics" and (request.query_string or "Authorization" in request.headers
                                           or app.service.storage.meta.get_bucket("metrics") is not None):
            return None  # an S3 request on a bucket named "metrics"
        body, content_type = await metrics.render()  # app.metrics (never replaced once set)
        return Response(body=body, headers={"Content-Type": content_type})

    scrape.operation = "Metrics"  # type: ignore[attr-defined]
    for path in ("/metrics", "/minio/v2/metrics/cluster", "/minio/v2/metrics/node", "/_shoal/metrics"):
        app.extra_routes[path] = scrape


def ssl_context(tls: tuple[str, str]):
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls[0], tls[1])
    return ctx


def _tune_malloc() -> None:
    """Keep upload buffers from inflating RSS. glibc raises its mmap threshold each time a large block is freed,
    so after the first uploads the 1 MiB body buffers come from the heap, where freed memory stays mapped and
    fragments; a fixed threshold keeps them in their own mappings, returned to the system when freed. Must run
    before the worker threads start; a no-op where glibc is not the allocator.

    The threshold sits just above asyncio's 256 KiB socket reads: those ``bytes`` (one per recv, freed soon after)
    come from the heap and reuse its memory, where each would otherwise be a fresh mapping paying a page fault
    per 4 KiB (aws-chunked uploads: 5-7 -> 4-6 ms CPU/MiB, most of it kernel time)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 320 * 1024)  # M_MMAP_THRESHOLD: fixed, so no dynamic raise
    except (OSError, AttributeError):
        pass


class _IdleTrim:
    """Gives the heap's free memory back to the system after a burst: once a whole ``interval`` (5 s) passes with
    no new S3 or admin request after some were served, glibc's ``malloc_trim`` runs on a worker thread (never
    under steady load, where the memory is in use and each trim would cost a walk of the heap; health checks and
    metric scrapes, which come every few seconds, do not count). Freed
    buffers below the mmap threshold (the shares of many concurrent uploads and encrypted reads) stay mapped
    otherwise: after 64 concurrent aws-chunked uploads the server kept ~60 MiB it no longer used, and the next
    burst of another kind added its own on top. A no-op where glibc is not the allocator."""

    def __init__(self, app: S3App, interval: float = 5.0) -> None:
        self._app = app
        self._interval = interval
        self._seen = 0  # requests started, at the last look
        self._served = False  # requests were served since the last trim
        self._handle: asyncio.TimerHandle | None = None
        try:
            import ctypes

            self._trim: Callable[[int], object] | None = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self._trim = None

    def start(self) -> None:
        if self._trim is not None:
            self._handle = asyncio.get_running_loop().call_later(self._interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        started = self._app.requests_started
        if started != self._seen:
            self._seen = started
            self._served = True
        elif self._served and self._app.in_flight == 0:
            self._served = False
            assert self._trim is not None  # start() schedules no tick without it
            asyncio.get_running_loop().run_in_executor(None, self._trim, 0)
        self.start()


async def serve(settings: ServerSettings, reuse_port: bool = False, lifecycle: bool = True) -> None:
    """Serve until SIGTERM/SIGINT. ``lifecycle``: run the lifecycle worker here (in one process of several)."""
    _tune_malloc()
    from shoal.http import admin

    storage = Storage.open_local(settings.data_dir, durable=settings.durable)
    lock = hold_shared_lock(settings.data_dir)  # keeps fsck --repair away while serving
    key_service = settings.key_service()
    service = S3Service(storage, settings.directory(storage, key_service), region=settings.region,
                        lifecycle_day_seconds=settings.lifecycle_day_seconds,
                        default_cors=default_cors_rules(settings.cors_origins),
                        keys=key_service, verify_reads=settings.verify_reads)
    app = S3App(service, domain=settings.domain, region=settings.region)
    app.body_timeout = settings.body_timeout
    readiness = Readiness(storage, settings.data_dir)
    _health_routes(app, readiness)
    if settings.metrics:
        from shoal.metrics import Metrics

        app.metrics = Metrics(storage, settings.data_dir)
        _metrics_routes(app, app.metrics)
    app.prefix_routes.append((admin.PREFIX, admin.handle))
    # Also the time a new connection has to deliver its first request head: trickled headers are cut off.
    front = Front(app, idle_timeout=settings.idle_timeout)
    if hasattr(storage.meta, "quiet"):
        # A request alone in this worker may commit its first write on the event loop's thread (see
        # shoal.storage.sqlite_meta). Alone means one open connection too: the loop does not read other
        # connections while it commits, so with several clients "no other request in flight" would hold after
        # every commit and turn group commit into one fsync per request. Only the first write: the writes a
        # request starts together (DeleteObjects) share the writer thread's commits.
        storage.meta.quiet = lambda: (app.in_flight <= 1 and len(front.connections) <= 1
                                      and s3_context.first_write())
    sock = _listen_socket(settings.host, settings.port, reuse_port)
    listener = await asyncio.get_running_loop().create_server(
        front, sock=sock, ssl=ssl_context(settings.tls) if settings.tls else None, backlog=1024)
    storage.start_background()
    scrubber = None
    if lifecycle and settings.scrub_interval > 0:
        scrubber = BackgroundScrubber(storage, settings.scrub_interval, settings.scrub_rate)
        scrubber.start()
    worker = None
    if lifecycle and settings.lifecycle_interval > 0:
        worker = LifecycleWorker(storage, day_seconds=settings.lifecycle_day_seconds,
                                 interval=settings.lifecycle_interval)
        worker.start()
    trim = _IdleTrim(app)
    trim.start()
    # What exists now (modules, classes, configuration, caches' shells) lives as long as the process: collected
    # once, then left out of the cyclic GC's full collections. Each of those walked all of it, ~55k objects:
    # 30-40 ms pauses, a few every second under listings (LIST p99 43 -> 15 ms at 100k keys).
    gc.collect()
    gc.freeze()
    readiness.started = True
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    trim.stop()
    log.info("shutting down: finishing in-flight requests")
    listener.close()  # no new connections
    # Let requests in flight finish, uploads included; each connection closes after its current response.
    app.draining = True
    deadline = loop.time() + settings.shutdown_timeout
    while app.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if scrubber is not None:
        await scrubber.stop()
    if worker is not None:
        await worker.stop()  # its writes already submitted still commit; their garbage is collected below
    await front.shutdown(max(0.0, deadline - loop.time()))  # idle connections close; what still runs is cancelled
    await storage.stop_background()
    if app.metrics is not None:
        app.metrics.close()
    storage.close()
    os.close(lock)


def _worker_main(settings: ServerSettings, lifecycle: bool, parent: int) -> None:
    configure_logging(settings)
    _follow_parent(parent)  # the parent's pid as it passed it: it may have died while this worker started
    _run_loop(serve(settings, reuse_port=True, lifecycle=lifecycle), settings.event_loop)


def _follow_parent(parent: int, interval: float = 0.5) -> None:
    """Shut this worker down, as SIGTERM does, once the process that started it is gone. The parent forwards
    SIGTERM and SIGINT to its workers, but a parent killed outright (kill -9, the OOM killer) cannot: its
    workers would go on serving the port, and holding the data directory, with nobody to stop them."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        log.warning("the server's parent process %d is gone: shutting this worker down", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run_loop(main, choice: str) -> None:
    """Run the server's coroutine on uvloop (its transports, timers and callbacks are C: about 10% fewer
    instructions per small request, measured with callgrind) or on asyncio's own loop; "auto" takes uvloop
    when it is installed.

    (Until the metadata writers took turns, auto kept several workers on asyncio's loop: with --workers 2,
    4 KiB PUTs at 16 connections had a p99 of 26-55 ms on uvloop, from one worker's writer starving the
    other's. See SqliteMetadataStore._take_turn.)"""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise SystemExit("--event-loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            log.info("event loop: uvloop %s", uvloop.__version__)
            uvloop.run(main)
            return
    log.info("event loop: asyncio")
    asyncio.run(main)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and an access log line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z", "level": record.levelname.lower(), "logger": record.name}
        access = getattr(record, "access", None)
        if access is not None:
            out.update(access)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(settings: ServerSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, settings.log_level.upper(), logging.INFO))
    for noisy in ("botocore", "boto3", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("shoal.access").setLevel(logging.INFO if settings.access_log else logging.WARNING)


def prepare(settings: ServerSettings) -> None:
    """Recover the store and apply declared buckets, before any worker serves a request."""
    os.makedirs(settings.data_dir, exist_ok=True)
    storage = Storage.open_local(settings.data_dir, durable=settings.durable)
    try:
        key_service = settings.key_service()  # validate the master key, or generate it once before workers start
        storage.recover()
        # Store the root user and the declared users (secrets sealed under the master key), idempotently.
        directory = settings.directory(storage, key_service)
        directory.apply_declared(UserSpec(settings.root_user, settings.root_password), settings.users)
        _attach_declared_policies(storage, directory, settings.users)
        if settings.buckets or settings.seeds:
            from shoal import bootstrap

            service = S3Service(storage, directory, region=settings.region, keys=key_service,
                                lifecycle_day_seconds=settings.lifecycle_day_seconds)
            root = directory.get(settings.root_user)
            assert root is not None
            asyncio.run(bootstrap.apply(service, root, settings.buckets, settings.seeds))
    finally:
        storage.close()


def _attach_declared_policies(storage: Storage, directory, users: list[UserSpec]) -> None:
    """Attach the policies a configuration file declares for its users (replacing same-named ones)."""
    from shoal.auth.users import ROOT_USER_NAME
    from shoal.storage import iam

    for spec in users:
        if not spec.policies:
            continue
        name = spec.name or spec.access_key
        if name == ROOT_USER_NAME:
            name = spec.access_key if spec.access_key != ROOT_USER_NAME else "root-user"
        for p in spec.policies:
            storage.meta.write_sync(iam.attach_policy, name, directory._policy_entry(p))
    directory.invalidate()


def run(settings: ServerSettings) -> None:
    configure_logging(settings)
    if settings.workers > 1 and settings.metrics:
        from shoal import metrics

        metrics.prepare_multiprocess(settings.data_dir)  # before the workers start: they inherit it
    prepare(settings)
    if settings.workers <= 1:
        _run_loop(serve(settings), settings.event_loop)
        return
    ctx = multiprocessing.get_context("spawn")
    # Only the first worker runs the lifecycle worker: one pass at a time is enough (and all its writes are
    # conditional, so even overlapping passes could not delete anything twice or wrongly).
    workers = [ctx.Process(target=_worker_main, args=(settings, i == 0, os.getpid()), daemon=False)
               for i in range(settings.workers)]
    for w in workers:
        w.start()

    def forward(signum, frame) -> None:
        for w in workers:
            if w.pid is not None and w.is_alive():
                os.kill(w.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for w in workers:
        w.join()
