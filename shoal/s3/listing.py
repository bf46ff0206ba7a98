"""Listing objects (v1, v2 and the unversioned form of ListObjectVersions) with prefixes and delimiters.

A page costs a bounded number of index range scans whatever the bucket's size: keys rolled up into a common
prefix are skipped with one seek past the prefix, not read one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3.service import S3Service
from shoal.storage.records import ObjectRecord
from shoal.storage.sqlite_meta import prefix_upper_bound

MAX_KEYS = 1000
_BATCH = 1000


@dataclass(slots=True)
class ListPage:
    contents: list[ObjectRecord] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: str | None = None  # the last key or common prefix on the page: where the next page starts


def parse_max_keys(value: str | None) -> int:
    if value is None:
        return MAX_KEYS
    try:
        n = int(value)
    except ValueError:
        raise S3Error("InvalidArgument", "Provided max-keys not an integer or within integer range",
                      ArgumentName="max-keys", ArgumentValue=value) from None
    if n < 0:
        raise S3Error("InvalidArgument", "Argument maxKeys must be an integer between 0 and 2147483647",
                      ArgumentName="max-keys", ArgumentValue=value)
    return min(n, MAX_KEYS)


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    idx = key.find(delimiter, len(prefix))
    return None if idx < 0 else key[: idx + len(delimiter)]


def list_page(
    svc: S3Service, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
) -> ListPage:
    page = ListPage()
    if max_keys == 0:
        return page
    meta = svc.storage.meta
    cursor, inclusive = after, False
    # Resuming right after a common prefix: skip every key under it.
    if after.startswith(prefix) and _common_prefix(after, prefix, delimiter) == after:
        upper = prefix_upper_bound(after)
        if upper is None:
            return page
        cursor, inclusive = upper, True
    count = 0
    while True:
        batch = meta.list_objects(bucket, cursor, prefix, _BATCH, inclusive=inclusive)
        restarted = False
        seen = 0
        for record in batch:
            seen += 1
            if record.delete_marker:
                cursor, inclusive = record.key, False
                continue
            common = _common_prefix(record.key, prefix, delimiter)
            if count == max_keys:
                page.truncated = True
                return page
            count += 1
            if common is not None:
                page.prefixes.append(common)
                page.last = common
                upper = prefix_upper_bound(common)
                if upper is None:
                    return page
                cursor, inclusive = upper, True
                restarted = True
                break
            page.contents.append(record)
            page.last = record.key
            cursor, inclusive = record.key, False
        if not restarted and seen < _BATCH:
            return page


def list_objects(
    svc: S3Service,
    identity: Identity | None,
    bucket: str,
    prefix: str,
    delimiter: str,
    after: str,
    max_keys: int,
) -> ListPage:
    svc.bucket(identity, bucket, "s3:ListBucket")
    return list_page(svc, bucket, prefix, delimiter, after, max_keys)
