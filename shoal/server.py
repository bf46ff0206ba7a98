"""Running the server: recovery, sockets, worker processes, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
from dataclasses import dataclass, field

from aiohttp import web

from shoal.auth.identities import Identity, IdentityStore, canonical_id
from shoal.crypto import keys
from shoal.http.app import S3App
from shoal.lifecycle import LifecycleWorker
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
    buckets: list[str] = field(default_factory=list)
    domain: str | None = None
    region: str = "us-east-1"
    workers: int = 1
    durable: bool = True
    shutdown_timeout: float = 30.0
    access_log: bool = False
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


def _health_routes(app: S3App) -> None:
    async def ok(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=200)

    for path in ("/minio/health/live", "/minio/health/ready", "/minio/health/cluster",
                 "/minio/health/cluster/read", "/health/live", "/health/ready"):
        app.extra_routes[path] = ok


async def serve(settings: ServerSettings, reuse_port: bool = False, lifecycle: bool = True) -> None:
    """Serve until SIGTERM/SIGINT. ``lifecycle``: run the lifecycle worker here (in one process of several)."""
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
    _health_routes(app)
    app.prefix_routes.append((admin.PREFIX, admin.handle))
    server = web.Server(
        app.handle,
        max_line_size=16 * 1024,
        max_field_size=16 * 1024,  # S3 refuses request headers beyond 8 KiB; leave room for long URLs
        max_headers=256,
        access_log=None,
        # A Content-Encoding on a PUT describes the object (a gzip file served as such), not the transfer:
        # its bytes are stored exactly as sent, never decompressed.
        auto_decompress=False,
        # Also the time a new connection has to deliver its first request head: trickled headers are cut off.
        keepalive_timeout=settings.idle_timeout,
    )
    runner = web.ServerRunner(server, shutdown_timeout=settings.shutdown_timeout, handle_signals=False)
    await runner.setup()
    sock = _listen_socket(settings.host, settings.port, reuse_port)
    site = web.SockSite(runner, sock)
    await site.start()
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
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: finishing in-flight requests")
    await site.stop()  # no new connections
    # Let requests in flight finish, uploads included, before aiohttp's own shutdown: that stops reading from
    # every connection at once, so an upload whose body is still arriving could never complete.
    app.draining = True
    deadline = loop.time() + settings.shutdown_timeout
    while app.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if scrubber is not None:
        await scrubber.stop()
    if worker is not None:
        await worker.stop()  # its writes already submitted still commit; their garbage is collected below
    await runner.cleanup()  # closes idle connections; cancels whatever is still running
    await storage.stop_background()
    storage.close()
    os.close(lock)


def _worker_main(settings: ServerSettings, lifecycle: bool) -> None:
    configure_logging(settings)
    asyncio.run(serve(settings, reuse_port=True, lifecycle=lifecycle))


def configure_logging(settings: ServerSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("shoal.access").setLevel(logging.INFO if settings.access_log else logging.WARNING)


def prepare(settings: ServerSettings) -> None:
    """Recover the store and apply declared buckets, before any worker serves a request."""
    os.makedirs(settings.data_dir, exist_ok=True)
    storage = Storage.open_local(settings.data_dir, durable=settings.durable)
    try:
        key_service = settings.key_service()  # validate the master key, or generate it once before workers start
        storage.recover()
        # Store the root user and the declared users (secrets sealed under the master key), idempotently.
        settings.directory(storage, key_service).apply_declared(
            UserSpec(settings.root_user, settings.root_password), settings.users)
        if settings.buckets:
            service = S3Service(storage, settings.identities(), region=settings.region)
            root = settings.identities().get(settings.root_user)
            assert root is not None
            for name in settings.buckets:
                if service.bootstrap_bucket(root, name):
                    log.info("created bucket %s", name)
    finally:
        storage.close()


def run(settings: ServerSettings) -> None:
    configure_logging(settings)
    prepare(settings)
    if settings.workers <= 1:
        asyncio.run(serve(settings))
        return
    ctx = multiprocessing.get_context("spawn")
    # Only the first worker runs the lifecycle worker: one pass at a time is enough (and all its writes are
    # conditional, so even overlapping passes could not delete anything twice or wrongly).
    workers = [ctx.Process(target=_worker_main, args=(settings, i == 0), daemon=False)
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
