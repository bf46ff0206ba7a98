"""Object lock (WORM): bucket configuration with default retention, per-version retention and legal hold,
and the rule every delete path asks: may this version go?

A version is protected while it has a legal hold, or a retention date in the future. GOVERNANCE retention
yields to a caller that sends ``x-amz-bypass-governance-retention: true``; COMPLIANCE yields to no one.
Stored in the version's meta: ``lk`` = {"m": mode, "u": retain-until ISO 8601}, ``lh`` = "ON".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3 import access
from shoal.s3.names import check_version_id
from shoal.s3.service import S3Service
from shoal.storage.records import Bucket, ObjectRecord

MODES = ("GOVERNANCE", "COMPLIANCE")


@dataclass(slots=True)
class Retention:
    mode: str
    until: str  # ISO 8601, UTC

    def epoch(self) -> float:
        return parse_date(self.until)


def parse_date(value: str) -> float:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise S3Error("InvalidArgument", "The retain until date must be a valid ISO 8601 date",
                      ArgumentName="RetainUntilDate", ArgumentValue=value) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch % 1 * 1000):03d}Z"


def enabled(bucket: Bucket) -> bool:
    return bool(bucket.config.get("object_lock"))


def retention_of(record: ObjectRecord) -> Retention | None:
    lock = record.meta.get("lk")
    return Retention(lock["m"], lock["u"]) if lock else None


def legal_hold_of(record: ObjectRecord) -> bool:
    return record.meta.get("lh") == "ON"


def check_deletable(record: ObjectRecord, bypass_governance: bool, now: float | None = None) -> None:
    """AccessDenied if this version is protected against deletion (or overwrite of its lock)."""
    if record.delete_marker:
        return
    if legal_hold_of(record):
        raise S3Error("AccessDenied", "Object is under legal hold and cannot be deleted")
    retention = retention_of(record)
    if retention is None:
        return
    active = retention.epoch() > (time.time() if now is None else now)
    if active and (retention.mode == "COMPLIANCE" or not bypass_governance):
        raise S3Error("AccessDenied", "Object is WORM protected and cannot be overwritten")


def may_bypass(identity: Identity | None, bucket: Bucket, key: str, requested: bool) -> bool:
    """Whether ``x-amz-bypass-governance-retention: true`` counts: only for a caller allowed
    s3:BypassGovernanceRetention (without it, S3 treats the request as if the header were absent)."""
    if not requested:
        return False
    try:
        access.authorize(identity, bucket, "s3:BypassGovernanceRetention", key)
    except S3Error:
        return False
    return True


def is_protected(record: ObjectRecord, now: float | None = None) -> bool:
    try:
        check_deletable(record, bypass_governance=False, now=now)
    except S3Error:
        return True
    return False


# -- at write time ------------------------------------------------------------------------------------------


def write_settings(bucket: Bucket, mode: str | None, until: str | None, legal_hold: str | None) -> dict:
    """Meta fields for a new version: explicit headers, else the bucket's default retention."""
    meta: dict = {}
    if (mode is not None or until is not None or legal_hold is not None) and not enabled(bucket):
        raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")
    if (mode is None) != (until is None):
        raise S3Error("InvalidArgument", "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both "
                      "be supplied")
    if mode is not None and until is not None:
        if mode not in MODES:
            raise S3Error("InvalidArgument", "Unknown wormMode directive.", ArgumentName="x-amz-object-lock-mode",
                          ArgumentValue=mode)
        epoch = parse_date(until)
        if epoch <= time.time():
            raise S3Error("InvalidArgument", "The retain until date must be in the future!",
                          ArgumentName="x-amz-object-lock-retain-until-date", ArgumentValue=until)
        meta["lk"] = {"m": mode, "u": iso(epoch)}
    elif enabled(bucket):
        default = bucket.config["object_lock"].get("rule")
        if default:
            days = default.get("days") or 0
            years = default.get("years") or 0
            until_dt = datetime.now(UTC) + timedelta(days=days + 365 * years)
            meta["lk"] = {"m": default["mode"], "u": iso(until_dt.timestamp())}
    if legal_hold is not None:
        if legal_hold not in ("ON", "OFF"):
            raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'",
                          ArgumentName="x-amz-object-lock-legal-hold", ArgumentValue=legal_hold)
        if legal_hold == "ON":
            meta["lh"] = "ON"
    return meta


# -- bucket configuration -----------------------------------------------------------------------------------


def creation_config() -> dict:
    return {"enabled": True}


async def put_configuration(
    svc: S3Service, identity: Identity | None, bucket_name: str, enabled_value: str | None, rule: dict | None
) -> None:
    bucket = svc.bucket(identity, bucket_name, "s3:PutBucketObjectLockConfiguration")
    if enabled_value != "Enabled":
        raise S3Error("MalformedXML")
    if not enabled(bucket) and bucket.config.get("versioning") != "Enabled":
        raise S3Error("InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                      "configuration", status=409)
    if rule is not None:
        if rule.get("mode") not in MODES:
            raise S3Error("MalformedXML")
        days, years = rule.get("days"), rule.get("years")
        if (days is None) == (years is None):
            raise S3Error("MalformedXML")
        if (days is not None and days <= 0) or (years is not None and years <= 0):
            raise S3Error("InvalidRetentionPeriod", "Default retention period must be a positive integer value",
                          status=400)
    config: dict[str, object] = {"enabled": True}
    if rule is not None:
        config["rule"] = rule
    await svc.storage.meta.set_bucket_config(bucket_name, "object_lock", config)


def get_configuration(svc: S3Service, identity: Identity | None, bucket_name: str) -> dict:
    bucket = svc.bucket(identity, bucket_name, "s3:GetBucketObjectLockConfiguration")
    if not enabled(bucket):
        raise S3Error("ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this "
                      "bucket", status=404, BucketName=bucket_name)
    return bucket.config["object_lock"]


# -- per-version retention and legal hold -------------------------------------------------------------------


def _version(svc: S3Service, identity: Identity | None, bucket_name: str, key: str, version_id: str | None,
             action: str) -> tuple[Bucket, ObjectRecord]:
    bucket = svc.existing_bucket(bucket_name)
    check_version_id(version_id)
    record = svc.storage.meta.get_object(bucket_name, key, version_id)
    access.authorize(identity, bucket, action, key, obj=record if record and not record.delete_marker else None)
    if not enabled(bucket):
        raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")
    if record is None or record.delete_marker:
        if version_id is not None:
            raise S3Error("NoSuchVersion", Key=key, VersionId=version_id)
        raise S3Error("NoSuchKey", Key=key)
    return bucket, record


async def put_retention(
    svc: S3Service, identity: Identity | None, bucket_name: str, key: str, version_id: str | None,
    retention: Retention | None, bypass_governance: bool,
) -> ObjectRecord:
    bucket, record = _version(svc, identity, bucket_name, key, version_id, "s3:PutObjectRetention")
    if retention is not None:
        if retention.mode not in MODES:
            raise S3Error("MalformedXML")
        new_until = retention.epoch()
        if new_until <= time.time():
            raise S3Error("InvalidArgument", "The retain until date must be in the future!",
                          ArgumentName="RetainUntilDate", ArgumentValue=retention.until)
    current = retention_of(record)
    if current is not None and current.epoch() > time.time():
        # Only extending an active lock in the same mode is free. Anything else (a shorter date, no retention, a
        # change of mode, even GOVERNANCE to COMPLIANCE) is refused under COMPLIANCE and needs the bypass under
        # GOVERNANCE.
        weakens = retention is None or new_until < current.epoch() or retention.mode != current.mode
        if weakens and (current.mode == "COMPLIANCE" or not may_bypass(identity, bucket, key, bypass_governance)):
            raise S3Error("AccessDenied", "Access Denied because object protected by object lock.")
    value = None if retention is None else {"m": retention.mode, "u": iso(new_until)}
    await svc.storage.meta.update_object_meta(bucket_name, key, record.version_id, {"lk": value})
    return record


def get_retention(
    svc: S3Service, identity: Identity | None, bucket_name: str, key: str, version_id: str | None
) -> Retention:
    _, record = _version(svc, identity, bucket_name, key, version_id, "s3:GetObjectRetention")
    retention = retention_of(record)
    if retention is None:
        raise S3Error("NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock "
                      "configuration", status=404)
    return retention


async def put_legal_hold(
    svc: S3Service, identity: Identity | None, bucket_name: str, key: str, version_id: str | None, status: str
) -> ObjectRecord:
    if status not in ("ON", "OFF"):
        raise S3Error("MalformedXML")
    _, record = _version(svc, identity, bucket_name, key, version_id, "s3:PutObjectLegalHold")
    await svc.storage.meta.update_object_meta(bucket_name, key, record.version_id,
                                              {"lh": "ON" if status == "ON" else None})
    return record


def get_legal_hold(
    svc: S3Service, identity: Identity | None, bucket_name: str, key: str, version_id: str | None
) -> bool:
    _, record = _version(svc, identity, bucket_name, key, version_id, "s3:GetObjectLegalHold")
    return legal_hold_of(record)
