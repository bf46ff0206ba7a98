"""Commands loaded on first use, so that `shoal admin` does not pay for importing pydantic, boto3 or aiohttp."""

from __future__ import annotations

import importlib

import click

LAZY = {
    "server": ("shoal.cli_serve", "server"),
    "config": ("shoal.cli_serve", "config"),
    "healthcheck": ("shoal.cli_serve", "healthcheck"),
    "mirror": ("shoal.cli_transfer", "mirror"),
    "import": ("shoal.cli_transfer", "import_"),
    "export": ("shoal.cli_transfer", "export"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY and cmd_name not in self.commands:
            module, attr = LAZY[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


def install(group: click.Group) -> None:
    """Make ``group`` (the top-level ``shoal`` group) load the commands above when they are asked for."""
    group.__class__ = LazyGroup
