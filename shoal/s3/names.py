"""Validation of bucket names and object keys."""

from __future__ import annotations

import ipaddress
import re

from shoal.errors import S3Error

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket_name(name: str) -> None:
    """S3's general-purpose bucket naming rules."""
    ok = bool(_BUCKET_RE.match(name)) and ".." not in name and ".-" not in name and "-." not in name
    if ok:
        try:
            ipaddress.IPv4Address(name)
            ok = False
        except ValueError:
            pass
    if ok and (name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3"))):
        ok = False
    if not ok:
        raise S3Error("InvalidBucketName", BucketName=name)


def check_version_id(version_id: str | None) -> None:
    if version_id is not None and (not version_id or len(version_id) > 1024):
        raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName="versionId",
                      ArgumentValue=version_id)


def check_key(key: str) -> None:
    if not key:
        raise S3Error("InvalidArgument", "Object key must not be empty.")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", Size=str(len(key.encode("utf-8", "surrogatepass"))),
                      MaxSizeAllowed=str(MAX_KEY_BYTES))
