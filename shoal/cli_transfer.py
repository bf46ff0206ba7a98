"""``shoal mirror``, ``shoal import`` and ``shoal export`` (see shoal.transfer)."""

from __future__ import annotations

import logging
import sys

import click

CONTEXT = {"max_content_width": 120, "help_option_names": ["-h", "--help"]}


def _common(fn):
    options = [
        click.option("--parallel", "-j", default=8, show_default=True, type=click.IntRange(1, 256),
                     help="Objects transferred at once."),
        click.option("--region", default="us-east-1", show_default=True, envvar="SHOAL_REGION"),
        click.option("--insecure", is_flag=True, help="Do not verify TLS certificates."),
        click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True), envvar="AWS_CA_BUNDLE",
                     help="Verify TLS certificates against this PEM file [env AWS_CA_BUNDLE]."),
        click.option("--progress/--no-progress", default=None,
                     help="Show a progress bar (default: when stderr is a terminal)."),
        click.option("--quiet", "-q", is_flag=True, help="Print only errors and the summary."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _setup(quiet: bool, progress: bool | None) -> bool:
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, format="%(levelname)s: %(message)s",
                        stream=sys.stderr)
    if progress is None:
        progress = sys.stderr.isatty() and not quiet
    return progress


def _verify(insecure: bool, ca_bundle: str | None):
    return False if insecure else (ca_bundle or True)


def _finish(summary, verb: str) -> None:
    for line in summary.errors[:20]:
        click.echo(f"error: {line}", err=True)
    if len(summary.errors) > 20:
        click.echo(f"error: ... and {len(summary.errors) - 20} more", err=True)
    click.echo(summary.line(verb))
    sys.exit(0 if summary.ok else 1)


@click.command(context_settings=CONTEXT)
@click.argument("source")
@click.argument("destination")
@_common
@click.option("--latest-only", is_flag=True, help="Copy only current objects, even from a versioned bucket.")
@click.option("--no-bucket-settings", is_flag=True, help="Do not copy bucket policy, CORS, lifecycle and tags.")
@click.option("--dry-run", is_flag=True, help="List what would be copied; change nothing.")
def mirror(source: str, destination: str, parallel: int, region: str, insecure: bool, ca_bundle: str | None,
           progress: bool | None, quiet: bool, latest_only: bool, no_bucket_settings: bool, dry_run: bool) -> None:
    """Copy buckets and objects from SOURCE to DESTINATION (S3 servers: MinIO, AWS, another Shoal...).

    Each side is s3://[ACCESS:SECRET@]HOST:PORT[/BUCKET[/PREFIX]] (plain HTTP; or http://, https://). Without a
    bucket, every bucket of the source is copied under the same name. Credentials not in the URL come from
    SHOAL_SOURCE_ACCESS_KEY / SHOAL_SOURCE_SECRET_KEY (SHOAL_DEST_... for the destination), else
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else SHOAL_ROOT_USER / SHOAL_ROOT_PASSWORD or MinIO's.

    Copies metadata, content types, tags and (from a versioned bucket) every version and delete marker, with
    the source's multipart layout, so ETags are equal on both sides. Every byte is checked against the ETag.
    Run it again to resume: objects whose ETag and size already match are skipped.
    """
    from shoal import transfer

    progress = _setup(quiet, progress)
    try:
        src_loc, dst_loc = transfer.parse_location(source), transfer.parse_location(destination)
        verify = _verify(insecure, ca_bundle)
        src = transfer.make_client(src_loc, transfer.credentials(src_loc, "SOURCE"), region, verify, parallel + 4)
        dst = transfer.make_client(dst_loc, transfer.credentials(dst_loc, "DEST"), region, verify, parallel + 4)
        job = transfer.Mirror(src_loc, dst_loc, src, dst, parallel=parallel, versions=not latest_only,
                              bucket_settings=not no_bucket_settings, progress=progress, dry_run=dry_run)
        summary = job.run()
    except transfer.TransferError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _finish(summary, "mirror (dry run)" if dry_run else "mirror")


def _endpoint_options(fn):
    options = [
        click.option("--endpoint", envvar="SHOAL_ENDPOINT", default="http://127.0.0.1:9000", show_default=True,
                     help="The server's URL [env SHOAL_ENDPOINT]."),
        click.option("--access-key", envvar=["AWS_ACCESS_KEY_ID", "SHOAL_ROOT_USER", "MINIO_ROOT_USER"],
                     default="minioadmin",
                     help="Access key [env AWS_ACCESS_KEY_ID, SHOAL_ROOT_USER or MINIO_ROOT_USER]."),
        click.option("--secret-key", envvar=["AWS_SECRET_ACCESS_KEY", "SHOAL_ROOT_PASSWORD", "MINIO_ROOT_PASSWORD"],
                     default="minioadmin",
                     help="Secret key [env AWS_SECRET_ACCESS_KEY, SHOAL_ROOT_PASSWORD or MINIO_ROOT_PASSWORD]."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("import", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.argument("target")
@_endpoint_options
@_common
def import_(directory: str, target: str, endpoint: str, access_key: str, secret_key: str, parallel: int,
            region: str, insecure: bool, ca_bundle: str | None, progress: bool | None, quiet: bool) -> None:
    """Upload DIRECTORY's files to TARGET, BUCKET[/PREFIX] on the server (created if missing).

    Keys are the files' paths relative to DIRECTORY, under PREFIX. Resumable: a file whose size and MD5 match
    the object already there is skipped. Content types are guessed from file names.
    """
    from shoal import transfer

    progress = _setup(quiet, progress)
    try:
        loc = transfer.parse_target(target, endpoint)
        client = transfer.make_client(loc, (access_key, secret_key), region, _verify(insecure, ca_bundle),
                                      parallel + 4)
        summary = transfer.import_dir(client, directory, loc.bucket or "", loc.prefix, parallel=parallel,
                                      progress=progress)
    except transfer.TransferError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _finish(summary, "import")


@click.command("export", context_settings=CONTEXT)
@click.argument("source")
@click.argument("directory", type=click.Path(file_okay=False))
@_endpoint_options
@_common
def export(source: str, directory: str, endpoint: str, access_key: str, secret_key: str, parallel: int, region: str,
           insecure: bool, ca_bundle: str | None, progress: bool | None, quiet: bool) -> None:
    """Download the objects of SOURCE, BUCKET[/PREFIX] on the server, into DIRECTORY.

    Each key becomes a file under DIRECTORY (relative to PREFIX); keys that cannot be safe local paths (with
    '..' or empty segments) are reported and skipped. Resumable: files whose size and MD5 match are skipped.
    """
    from shoal import transfer

    progress = _setup(quiet, progress)
    try:
        loc = transfer.parse_target(source, endpoint)
        client = transfer.make_client(loc, (access_key, secret_key), region, _verify(insecure, ca_bundle),
                                      parallel + 4)
        summary = transfer.export_bucket(client, loc.bucket or "", loc.prefix, directory, parallel=parallel,
                                         progress=progress)
    except transfer.TransferError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _finish(summary, "export")

