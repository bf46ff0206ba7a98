"""Object and bucket tags, with S3's limits."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3 import access
from shoal.s3.names import check_version_id
from shoal.s3.service import S3Service
from shoal.storage.records import ObjectRecord

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256

Tags = list[tuple[str, str]]

# What S3 allows in tag keys and values: letters, digits and spaces (Unicode), and _ . : / = + - @.
_TAG_CHARS = re.compile(r"[\w\s.:/=+\-@]*")
_HEADER_ERROR = ("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without "
                 "tag name duplicates.")


def validate(tags: Tags, limit: int) -> Tags:
    if len(tags) > limit:
        raise S3Error("InvalidTag", f"Object tags cannot be greater than {limit}" if limit == MAX_OBJECT_TAGS
                      else f"Bucket tags cannot be greater than {limit}")
    seen: set[str] = set()
    for key, value in tags:
        if not key or len(key) > MAX_KEY_LENGTH or not _TAG_CHARS.fullmatch(key):
            raise S3Error("InvalidTag", "The TagKey you have provided is invalid", TagKey=key)
        if len(value) > MAX_VALUE_LENGTH or not _TAG_CHARS.fullmatch(value):
            raise S3Error("InvalidTag", "The TagValue you have provided is invalid", TagKey=key, TagValue=value)
        if key.startswith("aws:"):
            raise S3Error("InvalidTag", "Your TagKey cannot be prefixed with aws:", TagKey=key)
        if key in seen:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key", TagKey=key)
        seen.add(key)
    return tags


def parse_header(value: str) -> Tags:
    """``x-amz-tagging: k1=v1&k2=v2`` (URL query encoding). As S3: a header that does not decode to distinct keys
    and values of allowed characters is an InvalidArgument; counts, lengths and aws: keys are InvalidTag."""
    try:
        pairs = parse_qsl(value, keep_blank_values=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise S3Error("InvalidArgument", _HEADER_ERROR, ArgumentName="x-amz-tagging", ArgumentValue=value) from None
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys) or not all(_TAG_CHARS.fullmatch(k) and _TAG_CHARS.fullmatch(v) for k, v in pairs):
        raise S3Error("InvalidArgument", _HEADER_ERROR, ArgumentName="x-amz-tagging", ArgumentValue=value)
    return sorted(validate(pairs, MAX_OBJECT_TAGS))


def object_tags(record: ObjectRecord) -> Tags:
    return [tuple(t) for t in record.meta.get("t", [])]  # type: ignore[misc]


def _version(
    svc: S3Service, identity: Identity | None, bucket: str, key: str, version_id: str | None, action: str
) -> ObjectRecord:
    check_version_id(version_id)
    bucket_record = svc.existing_bucket(bucket)
    record = svc.storage.meta.get_object(bucket, key, version_id)
    access.authorize(identity, bucket_record, action, key,
                     obj=record if record is not None and not record.delete_marker else None)
    if record is None:
        if version_id is not None:
            raise S3Error("NoSuchVersion", Key=key, VersionId=version_id)
        raise S3Error("NoSuchKey", Key=key)
    if record.delete_marker:
        if version_id is not None:
            raise S3Error("MethodNotAllowed", headers={"x-amz-delete-marker": "true"}, Method="PUT",
                          ResourceType="DeleteMarker")
        raise S3Error("NoSuchKey", Key=key)
    return record


def get_object_tags(
    svc: S3Service, identity: Identity | None, bucket: str, key: str, version_id: str | None
) -> ObjectRecord:
    action = "s3:GetObjectVersionTagging" if version_id else "s3:GetObjectTagging"
    return _version(svc, identity, bucket, key, version_id, action)


async def set_object_tags(
    svc: S3Service, identity: Identity | None, bucket: str, key: str, version_id: str | None, tags: Tags | None
) -> ObjectRecord:
    verb = "Put" if tags is not None else "Delete"
    action = f"s3:{verb}ObjectVersionTagging" if version_id else f"s3:{verb}ObjectTagging"
    record = _version(svc, identity, bucket, key, version_id, action)
    if tags is not None:
        validate(tags, MAX_OBJECT_TAGS)
    await svc.storage.meta.update_object_meta(bucket, key, record.version_id,
                                              {"t": [list(t) for t in sorted(tags or [])] or None})
    return record


def bucket_tags(svc: S3Service, identity: Identity | None, bucket_name: str) -> Tags:
    bucket = svc.bucket(identity, bucket_name, "s3:GetBucketTagging")
    tags = bucket.config.get("tags")
    if not tags:
        raise S3Error("NoSuchTagSet", "The TagSet does not exist", status=404, BucketName=bucket_name)
    return [tuple(t) for t in tags]  # type: ignore[misc]


async def set_bucket_tags(svc: S3Service, identity: Identity | None, bucket_name: str, tags: Tags | None) -> None:
    svc.bucket(identity, bucket_name, "s3:PutBucketTagging")
    if tags is not None:
        validate(tags, MAX_BUCKET_TAGS)
    await svc.storage.meta.set_bucket_config(bucket_name, "tags", [list(t) for t in tags] if tags else None)
