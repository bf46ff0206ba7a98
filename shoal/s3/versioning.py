"""Bucket versioning: its state, and listing every version of every key."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3.service import S3Service
from shoal.storage.records import Bucket, ObjectRecord, version_sequence
from shoal.storage.sqlite_meta import prefix_upper_bound

_BATCH = 1000


def get_state(svc: S3Service, identity: Identity | None, bucket_name: str) -> Bucket:
    return svc.bucket(identity, bucket_name, "s3:GetBucketVersioning")


async def set_state(svc: S3Service, identity: Identity | None, bucket_name: str, status: str) -> None:
    bucket = svc.bucket(identity, bucket_name, "s3:PutBucketVersioning")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("MalformedXML")
    if status == "Suspended" and bucket.config.get("object_lock"):
        raise S3Error("InvalidBucketState", "An Object Lock configuration is present on this bucket, so the "
                      "versioning state cannot be changed.", status=409)
    await svc.storage.meta.set_bucket_config(bucket_name, "versioning", status)


@dataclass(slots=True)
class VersionsPage:
    versions: list[ObjectRecord] = field(default_factory=list)  # versions and delete markers, in list order
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_key: str | None = None
    next_version: str | None = None


def list_versions(
    svc: S3Service,
    identity: Identity | None,
    bucket_name: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    version_marker: str,
    max_keys: int,
) -> VersionsPage:
    svc.bucket(identity, bucket_name, "s3:ListBucketVersions")
    meta = svc.storage.meta
    page = VersionsPage()
    if max_keys == 0:
        return page
    after_key, after_seq, inclusive = key_marker, None, False
    if key_marker and version_marker:
        marker = meta.get_object(bucket_name, key_marker, version_marker)
        # A marker deleted since the previous page still says where it stood: its id encodes its position.
        after_seq = marker.seq if marker is not None else version_sequence(version_marker)
    elif version_marker and not key_marker:
        raise S3Error("InvalidArgument", "A version-id marker cannot be specified without a key marker.",
                      ArgumentName="version-id-marker", ArgumentValue=version_marker)
    if delimiter and after_seq is None and key_marker.startswith(prefix):
        idx = key_marker.find(delimiter, len(prefix))
        if idx >= 0 and key_marker[: idx + len(delimiter)] == key_marker:
            upper = prefix_upper_bound(key_marker)
            if upper is None:
                return page
            after_key, inclusive = upper, True
    count = 0
    last_prefix = None
    while True:
        batch = meta.list_versions(bucket_name, prefix, after_key, after_seq, _BATCH, inclusive=inclusive)
        if not batch:
            return page
        restarted = False
        for record in batch:
            common = None
            if delimiter:
                idx = record.key.find(delimiter, len(prefix))
                if idx >= 0:
                    common = record.key[: idx + len(delimiter)]
            if common is not None and common == last_prefix:
                continue
            if count == max_keys:
                page.truncated = True
                return page
            count += 1
            if common is not None:
                page.prefixes.append(common)
                last_prefix = common
                page.next_key, page.next_version = common, None
                upper = prefix_upper_bound(common)
                if upper is None:
                    return page
                after_key, after_seq, inclusive = upper, None, True
                restarted = True
                break
            page.versions.append(record)
            page.next_key, page.next_version = record.key, record.version_id
            after_key, after_seq, inclusive = record.key, record.seq, False
        if not restarted and len(batch) < _BATCH:
            return page
