"""Bucket lifecycle configuration: parsing and validating it as S3 does, storing it, rendering it back, and
deciding (without doing it) what its rules make due.

The configuration is stored in the bucket's config under ``lifecycle`` as the parsed rules, kept in the shape of
the XML (element names as keys) so that GET gives back what PUT was given. :class:`Rule` is the compiled form
used to evaluate objects; :func:`plan_key` and :func:`plan_upload` say what is due for one key's versions or one
multipart upload. The background worker that acts on these plans lives in :mod:`shoal.lifecycle`.

Time: a lifecycle "day" lasts ``day_seconds`` (86400 unless scaled down for tests). With real days, due times
are rounded up to the next midnight UTC as S3 does; with a scaled day they are exactly start + days * day.
"""

from __future__ import annotations

import base64
import calendar
import datetime
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.http import xml
from shoal.s3.service import S3Service
from shoal.storage.records import Bucket, ObjectRecord, Upload

DAY = 86400.0
MAX_RULES = 1000
MAX_ID_LENGTH = 255
MAX_NEWER_NONCURRENT = 100
MAX_OBJECT_SIZE = 5 * 1024**4  # 5 TiB: the bound of ObjectSizeGreaterThan / ObjectSizeLessThan
TRANSITION_CLASSES = {"GLACIER", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "DEEP_ARCHIVE", "GLACIER_IR"}
MIN_SIZE_HEADER = "x-amz-transition-default-minimum-object-size"
MIN_SIZE_VALUES = {"all_storage_classes_128K", "varies_by_storage_class"}
CONFIG_KEY = "lifecycle"

_RULE_ELEMENTS = {"ID", "Prefix", "Filter", "Status", "Expiration", "Transition", "NoncurrentVersionTransition",
                  "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload"}
_INT = re.compile(r"^\s*[+-]?\d+\s*$")
_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?)?$"
)


def malformed() -> S3Error:
    return S3Error("MalformedXML")


def invalid(message: str, name: str | None = None, value: object = None) -> S3Error:
    if name is None:
        return S3Error("InvalidArgument", message)
    return S3Error("InvalidArgument", message, ArgumentName=name, ArgumentValue=str(value))


# -- parsing and validation ---------------------------------------------------------------------------------


def _one(node, tag: str):
    found = node.findall(tag)
    if len(found) > 1:
        raise malformed()
    return found[0] if found else None


def _text(node) -> str:
    return node.text or ""


def _int(node) -> int:
    text = _text(node)
    if not _INT.match(text):
        raise malformed()
    return int(text)


def _only(node, allowed: set[str]) -> None:
    for child in node:
        if child.tag not in allowed:
            raise malformed()


def parse_date(text: str) -> float:
    """An ISO 8601 date or date-time; MalformedXML if it is not one, InvalidArgument if not at midnight UTC."""
    m = _DATE.match(text.strip())
    if m is None:
        raise malformed()
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        epoch = calendar.timegm((int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                                 int(second or 0), 0, 0, 0))
        datetime.date(int(year), int(month), int(day))  # timegm normalises 2021-02-30; S3 refuses it
    except ValueError:
        raise malformed() from None
    if int(hour or 0) > 23 or int(minute or 0) > 59 or int(second or 0) > 59:
        raise malformed()
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    if (fraction and int(fraction)) or epoch % 86400:
        raise invalid("'Date' must be at midnight GMT", "Date", text)
    return float(epoch)


def format_date(epoch: float) -> str:
    return xml.iso8601(epoch)


def _parse_tag(node) -> list[str]:
    _only(node, {"Key", "Value"})
    key, value = _one(node, "Key"), _one(node, "Value")
    if key is None or value is None:
        raise malformed()
    if not _text(key) or len(_text(key)) > 128 or len(_text(value)) > 256:
        raise S3Error("InvalidTag", "The TagKey you have provided is invalid", TagKey=_text(key))
    return [_text(key), _text(value)]


def _parse_size(node) -> int:
    size = _int(node)
    if size < 0 or size > MAX_OBJECT_SIZE:
        raise invalid(f"'{node.tag}' must be between 0 and {MAX_OBJECT_SIZE}", node.tag, size)
    return size


def _check_sizes(sizes: dict[str, Any]) -> None:
    gt, lt = sizes.get("ObjectSizeGreaterThan"), sizes.get("ObjectSizeLessThan")
    if gt is not None and lt is not None and gt >= lt:
        raise invalid("ObjectSizeGreaterThan must be less than ObjectSizeLessThan", "ObjectSizeLessThan", lt)


def _parse_filter(node) -> dict[str, Any]:
    children = list(node)
    if not children:
        return {}
    if len(children) > 1:
        raise malformed()  # one condition, or several inside And
    child = children[0]
    if child.tag == "Prefix":
        return {"Prefix": _text(child)}
    if child.tag == "Tag":
        return {"Tag": _parse_tag(child)}
    if child.tag in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        return {child.tag: _parse_size(child)}
    if child.tag != "And":
        raise malformed()
    _only(child, {"Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"})
    conditions: dict[str, Any] = {}
    prefix = _one(child, "Prefix")
    if prefix is not None:
        conditions["Prefix"] = _text(prefix)
    tags = [_parse_tag(t) for t in child.findall("Tag")]
    if len({k for k, _ in tags}) != len(tags):
        raise S3Error("InvalidRequest", "Duplicate Tag Keys are not allowed.")
    if tags:
        conditions["Tags"] = tags
    for name in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        size = _one(child, name)
        if size is not None:
            conditions[name] = _parse_size(size)
    _check_sizes(conditions)
    return {"And": conditions}


def _positive(node, message: str) -> int:
    value = _int(node)
    if value <= 0:
        raise invalid(message, node.tag, value)
    return value


def _parse_expiration(node) -> dict[str, Any]:
    _only(node, {"Days", "Date", "ExpiredObjectDeleteMarker"})
    days, date, marker = _one(node, "Days"), _one(node, "Date"), _one(node, "ExpiredObjectDeleteMarker")
    if marker is not None and (days is not None or date is not None):
        raise malformed()  # ExpiredObjectDeleteMarker cannot be specified with Days or Date
    if days is not None and date is not None:
        raise malformed()
    if days is not None:
        return {"Days": _positive(days, "'Days' for Expiration action must be a positive integer")}
    if date is not None:
        return {"Date": format_date(parse_date(_text(date)))}
    if marker is not None:
        text = _text(marker).strip().lower()
        if text not in ("true", "false"):
            raise malformed()
        return {"ExpiredObjectDeleteMarker": text == "true"}
    raise malformed()


def _parse_newer(node) -> int:
    value = _int(node)
    if not 0 < value <= MAX_NEWER_NONCURRENT:
        raise invalid(f"NewerNoncurrentVersions must be between 1 and {MAX_NEWER_NONCURRENT}",
                      "NewerNoncurrentVersions", value)
    return value


def _parse_noncurrent_expiration(node) -> dict[str, Any]:
    _only(node, {"NoncurrentDays", "NewerNoncurrentVersions"})
    days, newer = _one(node, "NoncurrentDays"), _one(node, "NewerNoncurrentVersions")
    if days is None and newer is None:
        raise malformed()
    out: dict[str, Any] = {}
    if days is not None:
        out["NoncurrentDays"] = _positive(
            days, "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer")
    if newer is not None:
        out["NewerNoncurrentVersions"] = _parse_newer(newer)
    return out


def _storage_class(node) -> str:
    sc = _one(node, "StorageClass")
    if sc is None or _text(sc) not in TRANSITION_CLASSES:
        raise malformed()
    return _text(sc)


def _parse_transition(node) -> dict[str, Any]:
    _only(node, {"Days", "Date", "StorageClass"})
    days, date = _one(node, "Days"), _one(node, "Date")
    if (days is None) == (date is None):
        raise malformed()
    out: dict[str, Any] = {}
    if days is not None:
        value = _int(days)
        if value < 0:
            raise invalid("'Days' for Transition action must be a positive integer", "Days", value)
        out["Days"] = value
    else:
        assert date is not None
        out["Date"] = format_date(parse_date(_text(date)))
    out["StorageClass"] = _storage_class(node)
    return out


def _parse_noncurrent_transition(node) -> dict[str, Any]:
    _only(node, {"NoncurrentDays", "NewerNoncurrentVersions", "StorageClass"})
    days, newer = _one(node, "NoncurrentDays"), _one(node, "NewerNoncurrentVersions")
    if days is None:
        raise malformed()
    value = _int(days)
    if value < 0:
        raise invalid("'NoncurrentDays' for NoncurrentVersionTransition action must be a positive integer",
                      "NoncurrentDays", value)
    out: dict[str, Any] = {"NoncurrentDays": value}
    if newer is not None:
        out["NewerNoncurrentVersions"] = _parse_newer(newer)
    out["StorageClass"] = _storage_class(node)
    return out


def _new_rule_id() -> str:
    return base64.b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")


def _parse_rule(node) -> dict[str, Any]:
    _only(node, _RULE_ELEMENTS)
    rule: dict[str, Any] = {}
    rule_id = _one(node, "ID")
    if rule_id is not None and _text(rule_id):
        if len(_text(rule_id)) > MAX_ID_LENGTH:
            raise invalid("ID length should not exceed allowed limit of 255", "ID", _text(rule_id))
        rule["ID"] = _text(rule_id)
    else:
        rule["ID"] = _new_rule_id()
    prefix, filt = _one(node, "Prefix"), _one(node, "Filter")
    if prefix is not None and filt is not None:
        raise malformed()
    if prefix is None and filt is None:
        raise malformed()
    if prefix is not None:
        rule["Prefix"] = _text(prefix)
    else:
        rule["Filter"] = _parse_filter(filt)
    status = _one(node, "Status")
    if status is None or _text(status) not in ("Enabled", "Disabled"):
        raise malformed()
    rule["Status"] = _text(status)
    expiration = _one(node, "Expiration")
    if expiration is not None:
        rule["Expiration"] = _parse_expiration(expiration)
    transitions = [_parse_transition(t) for t in node.findall("Transition")]
    if transitions:
        rule["Transitions"] = transitions
    noncurrent_transitions = [_parse_noncurrent_transition(t) for t in node.findall("NoncurrentVersionTransition")]
    if noncurrent_transitions:
        rule["NoncurrentVersionTransitions"] = noncurrent_transitions
    noncurrent = _one(node, "NoncurrentVersionExpiration")
    if noncurrent is not None:
        rule["NoncurrentVersionExpiration"] = _parse_noncurrent_expiration(noncurrent)
    abort = _one(node, "AbortIncompleteMultipartUpload")
    if abort is not None:
        _only(abort, {"DaysAfterInitiation"})
        days = _one(abort, "DaysAfterInitiation")
        if days is None:
            raise malformed()
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": _positive(
            days, "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer")}
    _check_rule(rule)
    return rule


def _check_rule(rule: dict[str, Any]) -> None:
    actions = ("Expiration", "Transitions", "NoncurrentVersionTransitions", "NoncurrentVersionExpiration",
               "AbortIncompleteMultipartUpload")
    if not any(a in rule for a in actions):
        raise S3Error("InvalidRequest", "At least one action needs to be specified in a rule")
    compiled = Rule.from_stored(rule)
    if compiled.tags:
        if "AbortIncompleteMultipartUpload" in rule:
            raise S3Error("InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags.")
        if rule.get("Expiration", {}).get("ExpiredObjectDeleteMarker"):
            raise S3Error("InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tags.")


def parse_configuration(body: bytes) -> list[dict[str, Any]]:
    """The rules of a ``LifecycleConfiguration`` document, validated as S3 does."""
    root = xml.parse(body)
    if root.tag != "LifecycleConfiguration":
        raise malformed()
    _only(root, {"Rule"})
    nodes = root.findall("Rule")
    if not nodes or len(nodes) > MAX_RULES:
        raise malformed()
    rules = [_parse_rule(n) for n in nodes]
    seen: set[str] = set()
    for rule in rules:
        if rule["ID"] in seen:
            raise invalid("Rule ID must be unique. Found same ID for more than one rule", "ID", rule["ID"])
        seen.add(rule["ID"])
    return rules


# -- rendering ----------------------------------------------------------------------------------------------


def _render_tag(tag: list[str]) -> str:
    return "<Tag>" + xml.el("Key", tag[0]) + xml.el("Value", tag[1]) + "</Tag>"


def _render_filter(f: dict[str, Any]) -> str:
    out = ""
    if "Prefix" in f:
        out += xml.el("Prefix", f["Prefix"])
    if "Tag" in f:
        out += _render_tag(f["Tag"])
    for name in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if name in f:
            out += xml.el(name, f[name])
    if "And" in f:
        a = f["And"]
        inner = xml.el("Prefix", a["Prefix"]) if "Prefix" in a else ""
        inner += "".join(_render_tag(t) for t in a.get("Tags", []))
        for name in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
            if name in a:
                inner += xml.el(name, a[name])
        out += f"<And>{inner}</And>"
    return out


def _render_fields(d: dict[str, Any]) -> str:
    out = ""
    for name, value in d.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        out += xml.el(name, value)
    return out


def render_rules(rules: list[dict[str, Any]]) -> str:
    out = ""
    for rule in rules:
        inner = xml.el("ID", rule["ID"])
        if "Prefix" in rule:
            inner += xml.el("Prefix", rule["Prefix"])
        if "Filter" in rule:
            inner += f"<Filter>{_render_filter(rule['Filter'])}</Filter>"
        inner += xml.el("Status", rule["Status"])
        if "Expiration" in rule:
            inner += f"<Expiration>{_render_fields(rule['Expiration'])}</Expiration>"
        for t in rule.get("Transitions", []):
            inner += f"<Transition>{_render_fields(t)}</Transition>"
        for t in rule.get("NoncurrentVersionTransitions", []):
            inner += f"<NoncurrentVersionTransition>{_render_fields(t)}</NoncurrentVersionTransition>"
        if "NoncurrentVersionExpiration" in rule:
            inner += ("<NoncurrentVersionExpiration>" + _render_fields(rule["NoncurrentVersionExpiration"])
                      + "</NoncurrentVersionExpiration>")
        if "AbortIncompleteMultipartUpload" in rule:
            inner += ("<AbortIncompleteMultipartUpload>" + _render_fields(rule["AbortIncompleteMultipartUpload"])
                      + "</AbortIncompleteMultipartUpload>")
        out += f"<Rule>{inner}</Rule>"
    return out


# -- the S3 operations --------------------------------------------------------------------------------------


async def put_configuration(svc: S3Service, identity: Identity | None, bucket_name: str, body_reader,
                            min_size: str | None) -> str:
    svc.bucket(identity, bucket_name, "s3:PutLifecycleConfiguration")
    if min_size is not None and min_size not in MIN_SIZE_VALUES:
        raise S3Error("InvalidRequest", f"Invalid value for {MIN_SIZE_HEADER}: {min_size}")
    rules = parse_configuration(await body_reader())
    min_size = min_size or "all_storage_classes_128K"
    await svc.storage.meta.set_bucket_config(bucket_name, CONFIG_KEY, {"rules": rules, "min_size": min_size})
    return min_size


def get_configuration(svc: S3Service, identity: Identity | None, bucket_name: str) -> dict[str, Any]:
    bucket = svc.bucket(identity, bucket_name, "s3:GetLifecycleConfiguration")
    config = bucket.config.get(CONFIG_KEY)
    if not config:
        raise S3Error("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist", status=404,
                      BucketName=bucket_name)
    return config


async def delete_configuration(svc: S3Service, identity: Identity | None, bucket_name: str) -> None:
    svc.bucket(identity, bucket_name, "s3:PutLifecycleConfiguration")
    await svc.storage.meta.set_bucket_config(bucket_name, CONFIG_KEY, None)


# -- evaluation ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Rule:
    """One rule, compiled for evaluation."""

    id: str
    enabled: bool
    prefix: str = ""
    tags: list[tuple[str, str]] = field(default_factory=list)
    greater_than: int | None = None
    less_than: int | None = None
    expiration_days: int | None = None
    expiration_date: float | None = None
    expired_object_delete_marker: bool = False
    noncurrent_days: int | None = None
    newer_noncurrent: int = 0
    abort_days: int | None = None

    @classmethod
    def from_stored(cls, r: dict[str, Any]) -> Rule:
        rule = cls(r["ID"], r["Status"] == "Enabled")
        conditions = dict(r.get("Filter", {}))
        conditions.update(conditions.pop("And", {}))
        rule.prefix = cast(str, r.get("Prefix", conditions.get("Prefix", "")))  # stored by parse(): a str
        tags = conditions.get("Tags") or ([conditions["Tag"]] if "Tag" in conditions else [])
        rule.tags = [(k, v) for k, v in tags]
        rule.greater_than = conditions.get("ObjectSizeGreaterThan")
        rule.less_than = conditions.get("ObjectSizeLessThan")
        expiration = r.get("Expiration", {})
        rule.expiration_days = expiration.get("Days")
        if "Date" in expiration:
            rule.expiration_date = parse_date(expiration["Date"])
        rule.expired_object_delete_marker = bool(expiration.get("ExpiredObjectDeleteMarker"))
        noncurrent = r.get("NoncurrentVersionExpiration")
        if noncurrent is not None:
            rule.noncurrent_days = noncurrent.get("NoncurrentDays", 0)
            rule.newer_noncurrent = noncurrent.get("NewerNoncurrentVersions", 0)
        rule.abort_days = r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
        return rule

    def matches(self, key: str, tags: list | None, size: int) -> bool:
        if not key.startswith(self.prefix):
            return False
        if self.tags:
            have = {(t[0], t[1]) for t in tags or ()}
            if not all(t in have for t in self.tags):
                return False
        if self.greater_than is not None and not size > self.greater_than:
            return False
        return self.less_than is None or size < self.less_than

    def matches_record(self, record: ObjectRecord) -> bool:
        return self.matches(record.key, record.meta.get("t"), record.size)

    @property
    def acts_on_objects(self) -> bool:
        return (self.expiration_days is not None or self.expiration_date is not None
                or self.expired_object_delete_marker or self.noncurrent_days is not None)


def bucket_rules(bucket: Bucket) -> list[Rule]:
    """The bucket's enabled rules."""
    config = bucket.config.get(CONFIG_KEY)
    if not config:
        return []
    return [rule for rule in (Rule.from_stored(r) for r in config["rules"]) if rule.enabled]


def due_time(start: float, days: int, day_seconds: float) -> float:
    """When something started at ``start`` is ``days`` lifecycle days old. With real days S3 rounds up to the next
    midnight UTC; with a scaled day there is no rounding."""
    t = start + days * day_seconds
    if day_seconds == DAY:
        t = math.ceil(t / DAY) * DAY
    return t


def current_expiry(rules: list[Rule], record: ObjectRecord, day_seconds: float) -> tuple[float, str] | None:
    """(when, rule id) the earliest rule expires this current version, if any rule does."""
    best: tuple[float, str] | None = None
    for rule in rules:
        if rule.expiration_days is None and rule.expiration_date is None:
            continue
        if not rule.matches_record(record):
            continue
        if rule.expiration_days is not None:
            when = due_time(record.last_modified, rule.expiration_days, day_seconds)
        else:
            assert rule.expiration_date is not None
            when = rule.expiration_date
        if best is None or when < best[0]:
            best = (when, rule.id)
    return best


def expiration_header(svc: S3Service, record: ObjectRecord) -> dict[str, str]:
    """``x-amz-expiration`` for the current version of an object that a rule will expire."""
    if record.delete_marker or not record.is_latest:
        return {}
    bucket = svc.lookup_bucket(record.bucket)
    if bucket is None or CONFIG_KEY not in bucket.config:
        return {}
    found = current_expiry(bucket_rules(bucket), record, svc.lifecycle_day_seconds)
    if found is None:
        return {}
    when, rule_id = found
    rule_id = rule_id.replace("\\", "\\\\").replace('"', '\\"')
    return {"x-amz-expiration": f'expiry-date="{xml.http_date(math.ceil(when))}", rule-id="{rule_id}"'}


@dataclass(slots=True)
class Action:
    """One thing a rule makes due. kind: "delete" (the current version of an unversioned bucket),
    "expire" (make a delete marker the current version), "noncurrent" (remove a noncurrent version),
    "marker" (remove a delete marker that is the only version left)."""

    kind: str
    record: ObjectRecord
    rule_id: str


def plan_key(versions: list[ObjectRecord], rules: list[Rule], versioned: bool, now: float,
             day_seconds: float) -> list[Action]:
    """What is due among the versions of one key (newest first, the first being the current one)."""
    if not versions or not versions[0].is_latest:
        return []
    actions: list[Action] = []
    current = versions[0]
    if not current.delete_marker:
        found = current_expiry(rules, current, day_seconds)
        if found is not None and found[0] <= now:
            actions.append(Action("expire" if versioned else "delete", current, found[1]))
    removed = 0
    kept = 0  # noncurrent object versions (not delete markers) kept, newer than the one being looked at
    for i in range(1, len(versions)):
        version = versions[i]
        noncurrent_since = versions[i - 1].last_modified  # it stopped being current when the next one came
        rule_id = None
        for rule in rules:
            if rule.noncurrent_days is None or not rule.matches_record(version):
                continue
            if kept >= rule.newer_noncurrent and due_time(noncurrent_since, rule.noncurrent_days,
                                                          day_seconds) <= now:
                rule_id = rule.id
                break
        if rule_id is not None:
            actions.append(Action("noncurrent", version, rule_id))
            removed += 1
        elif not version.delete_marker:
            kept += 1
    if current.delete_marker and removed == len(versions) - 1:
        # An expired object delete marker: nothing left behind it.
        for rule in rules:
            if not rule.matches(current.key, None, 0):
                continue
            if rule.expired_object_delete_marker or (
                    rule.expiration_days is not None
                    and due_time(current.last_modified, rule.expiration_days, day_seconds) <= now):
                actions.append(Action("marker", current, rule.id))
                break
    return actions


def plan_upload(upload: Upload, rules: list[Rule], now: float, day_seconds: float) -> str | None:
    """The id of a rule that makes this incomplete multipart upload due to be aborted, if one does."""
    for rule in rules:
        if rule.abort_days is None or not upload.key.startswith(rule.prefix):
            continue
        if due_time(upload.initiated, rule.abort_days, day_seconds) <= now:
            return rule.id
    return None


def scan_prefixes(rules: list[Rule], wanted) -> list[str]:
    """The fewest key prefixes that cover every rule satisfying ``wanted``."""
    prefixes = sorted({r.prefix for r in rules if wanted(r)})
    out: list[str] = []
    for p in prefixes:
        if not any(p.startswith(q) for q in out):
            out.append(p)
    return out
