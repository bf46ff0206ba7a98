"""``shoal server``, ``shoal config`` and ``shoal healthcheck``: every option made from :mod:`shoal.config`."""

from __future__ import annotations

import os
import sys

import click

from shoal import __version__

CONTEXT = {"max_content_width": 120, "help_option_names": ["-h", "--help"]}


def _help_text(meta: dict) -> str:
    notes = []
    if meta["env"]:
        notes.append("env " + ", ".join(meta["env"]))
    default = meta["default"]
    if default not in (None, [], ""):
        notes.append(f"default {str(default).lower() if isinstance(default, bool) else default}")
    return meta["help"] + (f" [{'; '.join(notes)}]" if notes else "")


def config_options(fn):
    """Decorate a command with one option per setting (and --config); it receives them as ``**flags``."""
    from shoal.config import settings_info

    options = []
    for name, meta in settings_info().items():
        if meta["argument"]:
            options.append(click.argument(name, required=False, metavar=f"[{meta['metavar']}]"))
        elif meta["is_bool"]:
            options.append(click.option(f"{meta['flag']}/--no-{meta['flag'][2:]}", name, default=None,
                                        help=_help_text(meta)))
        else:
            options.append(click.option(meta["flag"], name, multiple=meta["multiple"], default=None,
                                        metavar=meta["metavar"], help=_help_text(meta)))
    options.append(click.option("--config", "config_path", metavar="FILE",
                                help="TOML (.toml) or YAML configuration file; keys are the setting names "
                                     "(see `shoal config reference`) [env SHOAL_CONFIG]."))
    options.append(click.option("--console-address", "console_address", metavar="ADDR", hidden=False,
                                help="Accepted for MinIO compatibility and ignored (Shoal has no web console)."))
    for option in reversed(options):
        fn = option(fn)
    return fn


def load_or_exit(flags: dict):
    """The effective configuration, or a one-line error and exit status 2."""
    from shoal.config import ConfigError, load

    config_path = flags.pop("config_path", None)
    flags.pop("console_address", None)
    try:
        return load(flags, config_path=config_path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.command(context_settings=CONTEXT)
@config_options
def server(**flags) -> None:
    """Serve S3 from DATA_DIR (created if missing).

    Settings come from flags, then the environment, then a configuration file (--config / SHOAL_CONFIG);
    declared buckets, users, policies and seed files are applied at every start, before the server is ready.
    DATA_DIR may also be set as SHOAL_DATA_DIR (default ./data).
    """
    from shoal.config import DEV_ROOT_PASSWORD, DEV_ROOT_USER

    config = load_or_exit(flags)
    settings = config.server_settings()
    from shoal.server import run

    if not config.root_user:
        click.echo(
            f"WARNING: no root credentials set; using the development defaults {DEV_ROOT_USER}/{DEV_ROOT_PASSWORD}. "
            "Set --root-user/--root-password (or SHOAL_ROOT_USER/SHOAL_ROOT_PASSWORD) for anything but local use.",
            err=True,
        )
    scheme = "https" if settings.tls else "http"
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    click.echo(f"Shoal {__version__} serving S3 at {scheme}://{shown}:{settings.port}  "
               f"data: {os.path.abspath(settings.data_dir)}", err=True)
    click.echo(f"Access key: {settings.root_user}", err=True)
    try:
        run(settings)
    except (OSError, ValueError) as exc:  # e.g. port in use, unreadable data dir, damaged master.key, bad cert
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@click.group(context_settings=CONTEXT)
def config() -> None:
    """Inspect the configuration."""


@config.command("show", context_settings=CONTEXT)
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_show(as_json: bool, **flags) -> None:
    """Print the effective configuration (flags > environment > file), secrets masked, and where each value
    came from. Takes the same options as `shoal server`."""
    import json

    from shoal.config import render_show

    cfg = load_or_exit(flags)
    if as_json:
        click.echo(json.dumps(cfg.masked(), indent=2))
    else:
        click.echo(render_show(cfg))


@config.command("reference", context_settings=CONTEXT)
def config_reference() -> None:
    """Print the configuration reference (a Markdown table, as in the README)."""
    from shoal.config import reference_markdown

    click.echo(reference_markdown())


@click.command(context_settings=CONTEXT)
@click.option("--ready", is_flag=True, help="Check readiness (/minio/health/ready) instead of liveness.")
@click.option("--url", help="Check this URL instead of the one the configuration implies.")
@click.option("--timeout", default=3.0, show_default=True, type=float)
def healthcheck(ready: bool, url: str | None, timeout: float) -> None:
    """Exit 0 if the local server answers its health check (for Docker's HEALTHCHECK; no curl needed).

    The address and TLS settings come from the environment (and SHOAL_CONFIG), as for `shoal server`.
    """
    import ssl
    import urllib.request

    if url is None:
        from shoal.config import ConfigError, load

        try:
            cfg = load()
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if cfg.tls_files() else "http"
        url = f"{scheme}://{host}:{cfg.port}/minio/health/{'ready' if ready else 'live'}"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # our own server, on this machine
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        click.echo(f"unhealthy: {url}: {exc}", err=True)
        sys.exit(1)
    if status != 200:
        click.echo(f"unhealthy: {url}: HTTP {status}", err=True)
        sys.exit(1)
    click.echo(f"ok: {url}")

