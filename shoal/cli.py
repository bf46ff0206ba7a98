"""The ``shoal`` command."""

from __future__ import annotations

import sys

import click

from shoal import __version__
from shoal.crypto.keys import DEFAULT_KMS_KEY_ID, parse_master_key
from shoal.server import DEV_ROOT_PASSWORD, DEV_ROOT_USER, ServerSettings, UserSpec, run


def _parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        raise click.BadParameter(f"expected HOST:PORT or :PORT, got {value!r}", param_hint="--address")
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        raise click.BadParameter(f"port must be a number, got {port!r}", param_hint="--address") from None
    if not 0 < number < 65536:
        raise click.BadParameter(f"port out of range: {number}", param_hint="--address")
    return host, number


def _parse_user(value: str) -> UserSpec:
    fields = value.split(":")
    if len(fields) < 2 or len(fields) > 4 or not fields[0] or not fields[1]:
        raise click.BadParameter(f"expected ACCESS_KEY:SECRET_KEY[:DISPLAY_NAME[:USER_ID]], got {fields[0]}:***",
                                 param_hint="--user")
    access_key, secret = fields[0], fields[1]
    name = fields[2] if len(fields) > 2 and fields[2] else None
    user_id = fields[3] if len(fields) > 3 and fields[3] else None
    return UserSpec(access_key, secret, name=name, user_id=user_id)


@click.group()
@click.version_option(__version__, prog_name="shoal")
def main() -> None:
    """Shoal: an S3-compatible object store."""


@main.command()
@click.argument("data_dir", default="./data", type=click.Path(file_okay=False))
@click.option("--address", default=":9000", show_default=True, envvar="SHOAL_ADDRESS",
              help="HOST:PORT to listen on (MinIO's default port).")
@click.option("--root-user", envvar=["SHOAL_ROOT_USER", "MINIO_ROOT_USER"],
              help="Root access key [env SHOAL_ROOT_USER or MINIO_ROOT_USER].")
@click.option("--root-password", envvar=["SHOAL_ROOT_PASSWORD", "MINIO_ROOT_PASSWORD"],
              help="Root secret key [env SHOAL_ROOT_PASSWORD or MINIO_ROOT_PASSWORD].")
@click.option("--user", "users", multiple=True, metavar="AK:SK[:NAME[:ID]]",
              help="An additional, independent user: access key, secret key, optional display name and canonical "
                   "user id (repeatable) [env SHOAL_USERS, comma-separated].")
@click.option("--bucket", "buckets", multiple=True, metavar="NAME",
              help="Create this bucket at start if missing (repeatable) [env SHOAL_BUCKETS, comma-separated].")
@click.option("--domain", envvar="SHOAL_DOMAIN", help="Domain for virtual-hosted-style requests (BUCKET.DOMAIN).")
@click.option("--region", default="us-east-1", show_default=True, envvar="SHOAL_REGION")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256), envvar="SHOAL_WORKERS",
              help="Worker processes sharing the port.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browsers from ORIGIN ('*' for any) on buckets without their own CORS rules "
                   "(repeatable; off unless set) [env SHOAL_CORS_ORIGINS, comma-separated].")
@click.option("--access-log/--no-access-log", default=False, envvar="SHOAL_ACCESS_LOG", help="Log every request.")
@click.option("--lifecycle-day-seconds", default=86400.0, show_default=True, envvar="SHOAL_LIFECYCLE_DAY_SECONDS",
              type=click.FloatRange(min=0, min_open=True),
              help="How many seconds a lifecycle rule's day lasts (scale it down to test lifecycle rules).")
@click.option("--lifecycle-interval", default=60.0, show_default=True, envvar="SHOAL_LIFECYCLE_INTERVAL",
              type=click.FloatRange(min=0), help="Seconds between lifecycle passes (0: no lifecycle worker).")
@click.option("--master-key", envvar="SHOAL_MASTER_KEY", metavar="BASE64",
              help="Master key for server-side encryption (base64 of 32 bytes) [env SHOAL_MASTER_KEY]. Default: "
                   "generated once and kept in DATA_DIR/.shoal/master.key.")
@click.option("--kms-default-key-id", default=DEFAULT_KMS_KEY_ID, show_default=True, envvar="SHOAL_KMS_DEFAULT_KEY_ID",
              help="KMS key id used for aws:kms requests that name none.")
def server(
    data_dir: str,
    address: str,
    root_user: str | None,
    root_password: str | None,
    users: tuple[str, ...],
    buckets: tuple[str, ...],
    domain: str | None,
    region: str,
    workers: int,
    cors_origins: tuple[str, ...],
    access_log: bool,
    lifecycle_day_seconds: float,
    lifecycle_interval: float,
    master_key: str | None,
    kms_default_key_id: str,
) -> None:
    """Serve S3 from DATA_DIR (created if missing)."""
    import os

    host, port = _parse_address(address)
    user_specs = [_parse_user(u) for u in users]
    user_specs += [_parse_user(u.strip()) for u in os.environ.get("SHOAL_USERS", "").split(",") if u.strip()]
    bucket_names = list(buckets) + [b.strip() for b in os.environ.get("SHOAL_BUCKETS", "").split(",") if b.strip()]
    if bool(root_user) != bool(root_password):
        raise click.UsageError("set both the root user and the root password, or neither")
    if not root_user:
        click.echo(
            f"WARNING: no root credentials set; using the development defaults {DEV_ROOT_USER}/{DEV_ROOT_PASSWORD}. "
            "Set --root-user/--root-password (or SHOAL_ROOT_USER/SHOAL_ROOT_PASSWORD) for anything but local use.",
            err=True,
        )
    settings = ServerSettings(
        data_dir=data_dir, host=host, port=port,
        root_user=root_user or DEV_ROOT_USER, root_password=root_password or DEV_ROOT_PASSWORD,
        users=user_specs, buckets=bucket_names, domain=domain, region=region, workers=workers,
        access_log=access_log, lifecycle_day_seconds=lifecycle_day_seconds, lifecycle_interval=lifecycle_interval,
        cors_origins=list(cors_origins)
        + [o.strip() for o in os.environ.get("SHOAL_CORS_ORIGINS", "").split(",") if o.strip()],
        master_key=master_key or None, kms_default_key_id=kms_default_key_id,
    )
    if master_key:
        try:
            parse_master_key(master_key)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--master-key") from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"Shoal {__version__} serving S3 at http://{shown}:{port}  data: {os.path.abspath(data_dir)}", err=True)
    click.echo(f"Access key: {settings.root_user}", err=True)
    try:
        run(settings)
    except (OSError, ValueError) as exc:  # e.g. port in use, unreadable data dir, damaged master.key
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.group()
def lifecycle() -> None:
    """Bucket lifecycle administration."""


@lifecycle.command("apply")
@click.argument("bucket")
@click.argument("data_dir", default="./data", type=click.Path(file_okay=False))
@click.option("--lifecycle-day-seconds", default=86400.0, show_default=True, envvar="SHOAL_LIFECYCLE_DAY_SECONDS",
              type=click.FloatRange(min=0, min_open=True), help="How many seconds a lifecycle rule's day lasts.")
def lifecycle_apply(bucket: str, data_dir: str, lifecycle_day_seconds: float) -> None:
    """Apply BUCKET's lifecycle rules now, to the store in DATA_DIR.

    Safe while a server is running on the same DATA_DIR: SQLite serialises this process's writes with the
    server's, every deletion is conditional on the version or upload being unchanged since it was read, and the
    only files deleted are blobs no metadata refers to any more.
    """
    import asyncio
    import os

    from shoal.lifecycle import LifecycleWorker
    from shoal.storage.engine import Storage

    if not os.path.exists(os.path.join(data_dir, ".shoal", "meta.sqlite3")):
        raise click.UsageError(f"no Shoal store in {data_dir}")
    storage = Storage.open_local(data_dir)
    try:
        if storage.meta.get_bucket(bucket) is None:
            click.echo(f"error: no such bucket: {bucket}", err=True)
            sys.exit(1)
        worker = LifecycleWorker(storage, day_seconds=lifecycle_day_seconds)
        stats = asyncio.run(worker.run_pass([bucket]))
        freed = storage.collect_garbage_sync()
    finally:
        storage.close()
    click.echo(f"{bucket}: {stats}; {freed} blob files freed")


if __name__ == "__main__":
    main()
