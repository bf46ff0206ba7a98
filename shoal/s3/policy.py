"""The AWS policy language, for bucket policies and identity policies: parsing, validation, evaluation.

Evaluation follows AWS: a statement applies when its principal, action, resource and every condition match;
an applicable Deny beats any Allow; with no applicable statement the policy has no opinion (None).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from shoal.errors import S3Error

MAX_POLICY_BYTES = 20 * 1024


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, in every form a policy may name them."""

    user_id: str | None  # None: anonymous
    access_key: str | None = None
    display_name: str | None = None

    def names(self) -> set[str]:
        if self.user_id is None:
            return set()
        names = {self.user_id, f"arn:aws:iam::{self.user_id}:root"}
        if self.access_key:
            names.add(self.access_key)
            names.add(f"arn:aws:iam::{self.user_id}:user/{self.access_key}")
        if self.display_name:
            names.add(f"arn:aws:iam::{self.user_id}:user/{self.display_name}")
        if "$" in self.user_id:  # tenant$user: the tenant is the account
            tenant, _, user = self.user_id.partition("$")
            names |= {f"arn:aws:iam::{tenant}:root", f"arn:aws:iam::{tenant}:user/{user}"}
        return names


@dataclass(slots=True)
class Statement:
    effect: str
    principal: Any  # None when the statement has no Principal (identity policies)
    not_principal: Any
    actions: list[str] | None
    not_actions: list[str] | None
    resources: list[str] | None
    not_resources: list[str] | None
    conditions: dict[str, dict[str, list[str]]] = field(default_factory=dict)


@dataclass(slots=True)
class Policy:
    statements: list[Statement]
    text: str


def _as_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    raise S3Error("MalformedPolicy", f"Invalid {what}")


def _principal_value(value: Any) -> Any:
    if value == "*":
        return "*"
    if isinstance(value, dict) and value:
        out: dict[str, list[str]] = {}
        for kind, names in value.items():
            if kind not in ("AWS", "CanonicalUser", "Service", "Federated"):
                raise S3Error("MalformedPolicy", "Invalid principal in policy")
            out[kind] = _as_list(names, "principal")
        return out
    raise S3Error("MalformedPolicy", "Invalid principal in policy")


def parse(text: str | bytes, *, bucket: str | None = None, require_principal: bool = True) -> Policy:
    """Parse and validate a policy document; MalformedPolicy on anything AWS would refuse."""
    if isinstance(text, bytes):
        if len(text) > MAX_POLICY_BYTES:
            raise S3Error("MalformedPolicy", "Policies must be no more than 20 KB")
        text = text.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested thousands deep
        raise S3Error("MalformedPolicy", "This policy contains invalid Json") from None
    if not isinstance(doc, dict):
        raise S3Error("MalformedPolicy", "This policy contains invalid Json")
    version = doc.get("Version")
    if version is not None and version not in ("2012-10-17", "2008-10-17"):
        raise S3Error("MalformedPolicy", "The policy must contain a valid version string")
    raw = doc.get("Statement")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise S3Error("MalformedPolicy", "Missing required field Statement")
    statements = []
    for s in raw:
        if not isinstance(s, dict):
            raise S3Error("MalformedPolicy", "Invalid statement")
        effect = s.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise S3Error("MalformedPolicy", "Invalid effect")
        has_p, has_np = "Principal" in s, "NotPrincipal" in s
        if has_np and effect == "Allow":
            # AWS refuses Allow with NotPrincipal: it would grant to everyone but a few, anonymous included.
            raise S3Error("MalformedPolicy", "NotPrincipal is only supported with Deny")
        if require_principal and not (has_p or has_np):
            raise S3Error("MalformedPolicy", "Missing required field Principal")
        if ("Action" in s) == ("NotAction" in s):
            raise S3Error("MalformedPolicy", "Missing required field Action")
        if ("Resource" in s) == ("NotResource" in s):
            raise S3Error("MalformedPolicy", "Missing required field Resource")
        conditions: dict[str, dict[str, list[str]]] = {}
        condition = s.get("Condition")
        if condition is None:
            condition = {}
        if not isinstance(condition, dict):
            raise S3Error("MalformedPolicy", "Invalid Condition block")
        for operator, block in condition.items():
            if not isinstance(block, dict) or not _known_operator(operator):
                raise S3Error("MalformedPolicy", f"Invalid Condition type : {operator}")
            conditions[operator] = {}
            for k, vals in block.items():
                values = vals if isinstance(vals, list) else [vals]
                if not values or any(isinstance(v, (dict, list)) or v is None for v in values):
                    raise S3Error("MalformedPolicy", f"Invalid Condition value for {operator} {k}")
                conditions[operator][k] = [str(v).lower() if isinstance(v, bool) else str(v) for v in values]
        actions = _as_list(s["Action"], "action") if "Action" in s else None
        not_actions = _as_list(s["NotAction"], "action") if "NotAction" in s else None
        for a in (actions or []) + (not_actions or []):
            if a != "*" and not a.lower().startswith("s3:"):
                raise S3Error("MalformedPolicy", "Policy has invalid action")
        resources = _as_list(s["Resource"], "resource") if "Resource" in s else None
        not_resources = _as_list(s["NotResource"], "resource") if "NotResource" in s else None
        if bucket is not None:
            for r in (resources or []) + (not_resources or []):
                if r != "*" and not _resource_in_bucket(r, bucket):
                    raise S3Error("MalformedPolicy", "Policy has invalid resource")
        statements.append(Statement(
            effect, _principal_value(s["Principal"]) if has_p else None,
            _principal_value(s["NotPrincipal"]) if has_np else None,
            actions, not_actions, resources, not_resources, conditions,
        ))
    return Policy(statements, text)


def _resource_in_bucket(resource: str, bucket: str) -> bool:
    if not resource.startswith("arn:aws:s3:::"):
        return False
    name = resource[len("arn:aws:s3:::"):].split("/", 1)[0]
    return _wildcard(name, bucket)


_OPERATORS = {
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike",
    "StringNotLike", "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
    "NumericGreaterThan", "NumericGreaterThanEquals", "DateEquals", "DateNotEquals", "DateLessThan",
    "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals", "Bool", "BinaryEquals", "IpAddress",
    "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Null",
}


def _split_operator(operator: str) -> tuple[str | None, str, bool]:
    qualifier = None
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
    if_exists = operator.endswith("IfExists") and operator != "IfExists"
    if if_exists:
        operator = operator[: -len("IfExists")]
    return qualifier, operator, if_exists


def _known_operator(operator: str) -> bool:
    qualifier, base, _ = _split_operator(operator)
    return base in _OPERATORS and qualifier in (None, "ForAnyValue", "ForAllValues")


@lru_cache(maxsize=4096)
def _compile(pattern: str, ignore_case: bool) -> re.Pattern:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """AWS wildcards: * any run of characters, ? one character; nothing else is special."""
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == value.lower() if ignore_case else pattern == value
    escaped = pattern.replace("[", "[[]")
    return _compile(escaped, ignore_case).match(value) is not None


def _principal_matches(spec: Any, who: Principal) -> bool:
    if spec == "*":
        return True
    names = who.names()
    for kind, values in spec.items():
        for value in values:
            if kind == "AWS" and value == "*":
                return True
            if kind in ("AWS", "CanonicalUser") and value in names:
                return True
    return False


def _date(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return None


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _compare(base: str, actual: str, expected: str) -> bool:
    if base == "StringEquals":
        return actual == expected
    if base == "StringNotEquals":
        return actual != expected
    if base == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    if base == "StringNotEqualsIgnoreCase":
        return actual.lower() != expected.lower()
    if base == "StringLike":
        return _wildcard(expected, actual)
    if base == "StringNotLike":
        return not _wildcard(expected, actual)
    if base in ("ArnEquals", "ArnLike"):
        return _wildcard(expected, actual)
    if base in ("ArnNotEquals", "ArnNotLike"):
        return not _wildcard(expected, actual)
    if base == "Bool":
        return actual.lower() == expected.lower()
    if base == "BinaryEquals":
        return actual == expected
    if base in ("IpAddress", "NotIpAddress"):
        try:
            inside = ipaddress.ip_address(actual) in ipaddress.ip_network(expected, strict=False)
        except ValueError:
            return False
        return inside if base == "IpAddress" else not inside
    if base.startswith("Numeric"):
        a, e = _number(actual), _number(expected)
        if a is None or e is None:
            return False
        op = base[len("Numeric"):]
    elif base.startswith("Date"):
        a, e = _date(actual), _date(expected)
        if a is None or e is None:
            return False
        op = base[len("Date"):]
    else:
        return False
    return {
        "Equals": a == e, "NotEquals": a != e, "LessThan": a < e, "LessThanEquals": a <= e,
        "GreaterThan": a > e, "GreaterThanEquals": a >= e,
    }[op]


_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
            "NotIpAddress", "NumericNotEquals", "DateNotEquals"}


def _condition_holds(operator: str, key: str, expected: list[str], context: dict[str, list[str]]) -> bool:
    qualifier, base, if_exists = _split_operator(operator)
    actual = context.get(key.lower())
    if base == "Null":
        want_absent = bool(expected) and expected[0].lower() == "true"
        return (actual is None) == want_absent
    if actual is None:
        # A missing key: ...IfExists passes; negated operators match (nothing equals the value); others fail.
        return if_exists or (base in _NEGATED and qualifier != "ForAnyValue")
    if qualifier == "ForAllValues":
        return all(any(_compare(base, a, e) for e in expected) for a in actual)
    if base in _NEGATED:
        return all(all(_compare(base, a, e) for e in expected) for a in actual)
    return any(any(_compare(base, a, e) for e in expected) for a in actual)


def _matches(s: Statement, who: Principal, action: str, resource: str, context: dict[str, list[str]]) -> bool:
    if s.principal is not None and not _principal_matches(s.principal, who):
        return False
    if s.not_principal is not None and _principal_matches(s.not_principal, who):
        return False
    if s.actions is not None and not any(_wildcard(a, action, ignore_case=True) for a in s.actions):
        return False
    if s.not_actions is not None and any(_wildcard(a, action, ignore_case=True) for a in s.not_actions):
        return False
    if s.resources is not None and not any(_wildcard(r, resource) for r in s.resources):
        return False
    if s.not_resources is not None and any(_wildcard(r, resource) for r in s.not_resources):
        return False
    return all(
        _condition_holds(operator, key, expected, context)
        for operator, block in s.conditions.items()
        for key, expected in block.items()
    )


def evaluate(policy: Policy, who: Principal, action: str, resource: str, context: dict[str, list[str]]) -> str | None:
    """"Deny", "Allow", or None when no statement applies."""
    decision = None
    for s in policy.statements:
        if _matches(s, who, action, resource, context):
            if s.effect == "Deny":
                return "Deny"
            decision = "Allow"
    return decision


def is_public(policy: Policy) -> bool:
    """Does an Allow statement grant to everyone without a restricting condition (AWS's 'public' test)?"""
    for s in policy.statements:
        if s.effect != "Allow":
            continue
        everyone = s.principal == "*" or (isinstance(s.principal, dict) and "*" in s.principal.get("AWS", []))
        restricting = any(
            _split_operator(op)[1] in ("IpAddress", "StringEquals", "ArnEquals", "ArnLike")
            and any(k.lower() in ("aws:sourceip", "aws:sourcevpc", "aws:sourcevpce", "aws:sourceaccount",
                                  "aws:sourcearn", "aws:principalaccount", "aws:userid", "aws:principalarn")
                    for k in block)
            for op, block in s.conditions.items()
        )
        if everyone and not restricting:
            return True
    return False


def resource_arn(bucket: str, key: str | None) -> str:
    return f"arn:aws:s3:::{bucket}" if key is None else f"arn:aws:s3:::{bucket}/{key}"


# Canned identity policies, as MinIO offers them: attach by name to a user.
CANNED = {
    "readonly": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [
        "s3:GetBucketLocation", "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:ListBucketVersions",
        "s3:ListAllMyBuckets", "s3:GetObjectTagging", "s3:GetObjectAttributes", "s3:GetObjectVersionTagging"],
        "Resource": ["arn:aws:s3:::*"]}]},
    "writeonly": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [
        "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:ListBucketMultipartUploads"],
        "Resource": ["arn:aws:s3:::*"]}]},
    "readwrite": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"],
                                                           "Resource": ["arn:aws:s3:::*"]}]},
}
