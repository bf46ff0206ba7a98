"""Random tokens handed to users (upload ids, secret keys) that command lines take as they are."""

from __future__ import annotations

import secrets


def cli_safe_token(nbytes: int) -> str:
    """``secrets.token_urlsafe``, never starting with "-": the AWS CLI (argparse) reads ``--upload-id -abc`` as a
    missing value followed by an option. (One token in 64 would start with it.)"""
    token = secrets.token_urlsafe(nbytes)
    return "A" + token[1:] if token.startswith("-") else token
