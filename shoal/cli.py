"""The ``shoal`` command."""

from __future__ import annotations

import sys

import click

from shoal import __version__

# The same as shoal.server's. The server module is imported only by the commands that need it: importing it
# (aiohttp and the whole S3 layer) would slow every `shoal admin` call down by most of a second.
DEV_ROOT_USER = "minioadmin"
DEV_ROOT_PASSWORD = "minioadmin"


@click.group()
@click.version_option(__version__, prog_name="shoal")
def main() -> None:
    """Shoal: an S3-compatible object store."""


# `shoal server`, `shoal config`, `shoal healthcheck` (shoal.cli_serve: options made from the typed settings in
# shoal.config) and `shoal mirror` / `import` / `export` (shoal.cli_transfer), loaded when used.
from shoal import cli_lazy  # noqa: E402

cli_lazy.install(main)


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


@main.command("scrub")
@click.argument("data_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--rate", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="MB/s to read at most (0: as fast as possible).")
@click.option("--no-quarantine", is_flag=True, help="Only report corrupt blobs; leave them in place.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def scrub_command(data_dir: str, rate: float, no_quarantine: bool, as_json: bool) -> None:
    """Read every blob in DATA_DIR back and check it against its recorded CRC64NVME.

    Reports corrupt blobs (and moves them to .shoal/quarantine/ unless --no-quarantine), blobs the metadata
    refers to but whose file is missing, orphaned blob files, and inline objects whose bytes do not match their
    ETag. Safe while a server runs on DATA_DIR. Exit status 1 when anything is wrong.
    """
    import dataclasses
    import json
    import logging
    import os

    from shoal.storage.engine import Storage
    from shoal.storage.scrub import scrub

    if not os.path.exists(os.path.join(data_dir, ".shoal", "meta.sqlite3")):
        raise click.UsageError(f"no Shoal store in {data_dir}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)
    storage = Storage.open_local(data_dir)
    try:
        report = scrub(storage, rate=rate * 1e6 if rate else None, quarantine=not no_quarantine)
    finally:
        storage.close()
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report) | {"clean": report.clean}, indent=1))
    else:
        click.echo(f"scrub {data_dir}: {report.summary()}")
        for item in report.corrupt:
            state = "quarantined" if item["quarantined"] else "left in place"
            click.echo(f"  corrupt: blob {item['blob']} ({state}); used by {item['referrers']}")
        for item in report.missing:
            click.echo(f"  missing: blob {item['blob']}" + (" (quarantined earlier)" if item["quarantined"] else ""))
        for blob_id in report.orphans:
            click.echo(f"  orphan: blob file {blob_id} (removed at next server start or by fsck --repair)")
        for bucket, key, version_id in report.inline_corrupt:
            click.echo(f"  corrupt inline object: {bucket}/{key} version {version_id}")
    sys.exit(0 if report.clean else 1)


@main.command("fsck")
@click.argument("data_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--repair", is_flag=True, help="Repair what can be repaired (the server must be stopped).")
def fsck_command(data_dir: str, repair: bool) -> None:
    """Reconcile DATA_DIR's metadata with its files: SQLite integrity, blobs and garbage tables against the blob
    files, versions and parts whose data is gone. See the README for exactly what --repair does.

    Exit status: 0 nothing wrong (or all repaired), 1 problems remain, 2 could not run.
    """
    from shoal.storage.fsck import StoreBusy, fsck

    try:
        report = fsck(data_dir, repair=repair)
    except (StoreBusy, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for line in report.lines():
        click.echo(line)
    if repair:
        report = fsck(data_dir)
        click.echo("after repair:")
        for line in report.lines():
            click.echo(f"  {line}")
    sys.exit(1 if report.problems() else 0)


# -- shoal admin: users, access keys and policies on a running server ------------------------------------------


class _AdminContext:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str, as_json: bool) -> None:
        from shoal.admin_client import AdminClient

        self.client = AdminClient(endpoint, access_key, secret_key, region)
        self.as_json = as_json


def _json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def _call(ctx: _AdminContext, fn, *args, **kwargs):
    from shoal.admin_client import AdminError

    try:
        return fn(*args, **kwargs)
    except AdminError as exc:
        click.echo(f"error: {exc.code}: {exc.message}", err=True)
        sys.exit(1)
    except OSError as exc:
        click.echo(f"error: cannot reach {ctx.client.endpoint}: {exc}", err=True)
        sys.exit(1)


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _show(ctx: _AdminContext, as_json: bool, value, render) -> None:
    import json

    if ctx.as_json or as_json:
        click.echo(json.dumps(value, indent=2))
    else:
        click.echo(render(value))


def _user_text(u: dict) -> str:
    lines = [f"User:         {u['name']}", f"Display name: {u['display_name']}", f"User id:      {u['user_id']}",
             f"Enabled:      {'yes' if u['enabled'] else 'no'}", f"Admin:        {'yes' if u['admin'] else 'no'}",
             f"Source:       {u['source']}", f"Created:      {u['created']}",
             f"Policies:     {', '.join(u['policies']) or '(none)'}"]
    if u.get("access_keys"):
        lines += ["", _table(u["access_keys"], ["access_key", "status", "created", "source"])]
    if u.get("new_key"):
        lines += ["", _key_text(u["new_key"])]
    return "\n".join(lines)


def _key_text(k: dict) -> str:
    text = f"Access key: {k['access_key']}\nUser:       {k['user']}\nStatus:     {k['status']}"
    if k.get("secret_key"):
        text += f"\nSecret key: {k['secret_key']}\n(the secret is shown only now: store it safely)"
    return text


@main.group()
@click.option("--endpoint", envvar="SHOAL_ENDPOINT", default="http://127.0.0.1:9000", show_default=True,
              help="The server's URL [env SHOAL_ENDPOINT].")
@click.option("--access-key", envvar=["SHOAL_ROOT_USER", "MINIO_ROOT_USER"], default=DEV_ROOT_USER,
              help="An administrator's access key [env SHOAL_ROOT_USER or MINIO_ROOT_USER].")
@click.option("--secret-key", envvar=["SHOAL_ROOT_PASSWORD", "MINIO_ROOT_PASSWORD"], default=DEV_ROOT_PASSWORD,
              help="Its secret key [env SHOAL_ROOT_PASSWORD or MINIO_ROOT_PASSWORD].")
@click.option("--region", envvar="SHOAL_REGION", default="us-east-1", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def admin(ctx: click.Context, endpoint: str, access_key: str, secret_key: str, region: str, as_json: bool) -> None:
    """Manage users, access keys and policies of a running server (through its admin API)."""
    ctx.obj = _AdminContext(endpoint, access_key, secret_key, region, as_json)


@admin.group("user")
def admin_user() -> None:
    """Users."""


@admin_user.command("add")
@click.argument("name")
@click.option("--policy", "policies", multiple=True, metavar="POLICY",
              help="Attach a policy: readonly, readwrite, writeonly, admin, or @FILE.json (repeatable).")
@click.option("--display-name", help="Shown as the owner of its buckets and objects (default: NAME).")
@click.option("--with-key", is_flag=True, help="Also create an access key and print its secret.")
@_json_option
@click.pass_obj
def admin_user_add(ctx: _AdminContext, name: str, policies: tuple[str, ...], display_name: str | None,
                   with_key: bool, as_json: bool) -> None:
    """Create user NAME."""
    docs = []
    for value in policies:
        doc, suggested = _policy_arg(value)
        docs.append({"policy": doc, "name": suggested} if suggested else doc)
    user = _call(ctx, ctx.client.create_user, name, docs, display_name, with_key)
    _show(ctx, as_json, user, _user_text)


@admin_user.command("list")
@_json_option
@click.pass_obj
def admin_user_list(ctx: _AdminContext, as_json: bool) -> None:
    """List users."""
    users = _call(ctx, ctx.client.list_users)
    _show(ctx, as_json, users, lambda us: _table(
        [u | {"enabled": "yes" if u["enabled"] else "no", "admin": "yes" if u["admin"] else "no",
              "policies": ",".join(u["policies"]) or "-"} for u in us],
        ["name", "enabled", "admin", "policies", "access_keys", "source", "display_name"]))


@admin_user.command("info")
@click.argument("name")
@_json_option
@click.pass_obj
def admin_user_info(ctx: _AdminContext, name: str, as_json: bool) -> None:
    """Show user NAME, its access keys and policies."""
    _show(ctx, as_json, _call(ctx, ctx.client.get_user, name), _user_text)


def _set_enabled(ctx: _AdminContext, name: str, enabled: bool, as_json: bool) -> None:
    user = _call(ctx, ctx.client.set_enabled, name, enabled)
    _show(ctx, as_json, user, lambda u: f"{u['name']}: {'enabled' if u['enabled'] else 'disabled'}")


@admin_user.command("disable")
@click.argument("name")
@_json_option
@click.pass_obj
def admin_user_disable(ctx: _AdminContext, name: str, as_json: bool) -> None:
    """Disable user NAME: its keys stop working at once (its buckets stay)."""
    _set_enabled(ctx, name, False, as_json)


@admin_user.command("enable")
@click.argument("name")
@_json_option
@click.pass_obj
def admin_user_enable(ctx: _AdminContext, name: str, as_json: bool) -> None:
    """Enable user NAME again."""
    _set_enabled(ctx, name, True, as_json)


@admin_user.command("remove")
@click.argument("name")
@click.pass_obj
def admin_user_remove(ctx: _AdminContext, name: str) -> None:
    """Delete user NAME and its access keys (its buckets stay, owned by its user id)."""
    _call(ctx, ctx.client.delete_user, name)
    click.echo(f"removed user {name}")


@admin.group("key")
def admin_key() -> None:
    """Access keys."""


@admin_key.command("add")
@click.argument("user")
@click.option("--access-key", "new_access_key", help="Choose the access key id (default: random).")
@click.option("--secret-key", "new_secret_key", help="Choose the secret (default: random); prefer the default.")
@_json_option
@click.pass_obj
def admin_key_add(ctx: _AdminContext, user: str, new_access_key: str | None, new_secret_key: str | None,
                  as_json: bool) -> None:
    """Create an access key for USER and print it with its secret (shown only this once)."""
    key = _call(ctx, ctx.client.create_key, user, new_access_key, new_secret_key)
    _show(ctx, as_json, key, _key_text)


@admin_key.command("list")
@click.argument("user")
@_json_option
@click.pass_obj
def admin_key_list(ctx: _AdminContext, user: str, as_json: bool) -> None:
    """List USER's access keys (never their secrets)."""
    keys = _call(ctx, ctx.client.list_keys, user)
    _show(ctx, as_json, keys, lambda ks: _table(ks, ["access_key", "status", "created", "source"]))


def _set_key_status(ctx: _AdminContext, access_key: str, status: str, as_json: bool) -> None:
    key = _call(ctx, ctx.client.set_key_status, access_key, status)
    _show(ctx, as_json, key, lambda k: f"{k['access_key']}: {k['status']}")


@admin_key.command("disable")
@click.argument("access_key")
@_json_option
@click.pass_obj
def admin_key_disable(ctx: _AdminContext, access_key: str, as_json: bool) -> None:
    """Deactivate ACCESS_KEY (it stops working at once)."""
    _set_key_status(ctx, access_key, "inactive", as_json)


@admin_key.command("enable")
@click.argument("access_key")
@_json_option
@click.pass_obj
def admin_key_enable(ctx: _AdminContext, access_key: str, as_json: bool) -> None:
    """Activate ACCESS_KEY again."""
    _set_key_status(ctx, access_key, "active", as_json)


@admin_key.command("remove")
@click.argument("access_key")
@click.pass_obj
def admin_key_remove(ctx: _AdminContext, access_key: str) -> None:
    """Delete ACCESS_KEY."""
    _call(ctx, ctx.client.delete_key, access_key)
    click.echo(f"removed access key {access_key}")


@admin.group("policy")
def admin_policy() -> None:
    """Identity policies attached to users."""


def _policy_arg(value: str) -> tuple[object, str | None]:
    """(canned name or parsed document, name suggested by the file name)."""
    import json
    import os

    if value.startswith("@"):
        path = value[1:]
        try:
            with open(path) as f:
                text = f.read()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="POLICY") from None
        try:
            doc = json.loads(text)
        except ValueError:
            raise click.BadParameter(f"{path} is not valid JSON", param_hint="POLICY") from None
        return doc, os.path.splitext(os.path.basename(path))[0]
    if value.lstrip().startswith("{"):
        try:
            return json.loads(value), None
        except ValueError:
            raise click.BadParameter("not valid JSON", param_hint="POLICY") from None
    return value, None


@admin_policy.command("attach")
@click.argument("user")
@click.argument("policy")
@click.option("--name", help="Name for a JSON policy (default: the file's name, or a hash of the document).")
@_json_option
@click.pass_obj
def admin_policy_attach(ctx: _AdminContext, user: str, policy: str, name: str | None, as_json: bool) -> None:
    """Attach POLICY to USER: readonly, readwrite, writeonly, admin, @FILE.json or a JSON document."""
    doc, suggested = _policy_arg(policy)
    result = _call(ctx, ctx.client.attach_policy, user, doc, name or suggested)
    _show(ctx, as_json, result, lambda u: f"{u['name']}: policies {', '.join(u['policies']) or '(none)'}")


@admin_policy.command("detach")
@click.argument("user")
@click.argument("policy_name")
@_json_option
@click.pass_obj
def admin_policy_detach(ctx: _AdminContext, user: str, policy_name: str, as_json: bool) -> None:
    """Detach the policy named POLICY_NAME from USER."""
    result = _call(ctx, ctx.client.detach_policy, user, policy_name)
    _show(ctx, as_json, result, lambda u: f"{u['name']}: policies {', '.join(u['policies']) or '(none)'}")


@admin_policy.command("list")
@click.argument("user")
@_json_option
@click.pass_obj
def admin_policy_list(ctx: _AdminContext, user: str, as_json: bool) -> None:
    """Show the policies attached to USER, with their documents."""
    import json

    u = _call(ctx, ctx.client.get_user, user)
    _show(ctx, as_json, u["policy_documents"],
          lambda docs: "\n\n".join(f"{n}:\n{json.dumps(d, indent=2)}" for n, d in docs.items()) or "(none)")


if __name__ == "__main__":
    main()
