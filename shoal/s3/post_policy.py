"""Browser-based uploads (S3 "POST Object"): who signed the form, and whether the form obeys its policy.

A POST policy is a base64 JSON document ``{"expiration": "...", "conditions": [...]}`` signed with the
uploader's secret (Signature V4: hex HMAC-SHA256 under the ``x-amz-credential`` signing key; V2: base64
HMAC-SHA1 under the secret itself). The signature covers the base64 text exactly as it is in the form.

Conditions, as AWS evaluates them (field names are case-insensitive, values are not):

- ``{"field": "value"}`` and ``["eq", "$field", "value"]``: exact match;
- ``["starts-with", "$field", "prefix"]`` (an empty prefix allows any value; for Content-Type every
  comma-separated type must start with it);
- ``["content-length-range", min, max]``: bounds on the size of the file.

A field the form does not have counts as the empty string. Every form field must be named by some condition,
except those the policy mechanism itself uses (policy, signatures, file, ``x-ignore-*``) and the checksum
fields, which only constrain the content. The bucket is always a field (the bucket the form was posted to).

No HTTP here: the front end hands over the form fields as a mapping of lower-case names to values.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from shoal.auth import sigv2, sigv4
from shoal.auth.identities import Identity, IdentityStore
from shoal.errors import S3Error

# Fields that need no condition in the policy.
EXEMPT = frozenset({"policy", "signature", "x-amz-signature", "awsaccesskeyid", "file"})
EXEMPT_PREFIXES = ("x-ignore-", "x-amz-checksum-")
SIGNATURE_FIELDS = ("awsaccesskeyid", "signature", "x-amz-signature", "x-amz-credential", "x-amz-algorithm",
                    "x-amz-date")
MAX_POLICY_BYTES = 64 * 1024
_EXPIRATION = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z$")


@dataclass(frozen=True, slots=True)
class Condition:
    operator: str  # "eq" or "starts-with"
    field: str  # lower-case, without the "$"
    value: str
    text: str  # how the policy wrote it, for error messages

    def holds(self, fields: Mapping[str, str]) -> bool:
        actual = fields.get(self.field, "")
        if self.operator == "eq":
            return actual == self.value
        if self.field == "content-type" and "," in actual:
            return all(part.strip().startswith(self.value) for part in actual.split(","))
        return actual.startswith(self.value)


@dataclass(slots=True)
class PostPolicy:
    expiration: float  # epoch seconds
    conditions: list[Condition] = field(default_factory=list)
    min_size: int = 0
    max_size: int | None = None

    def check_expiration(self, now: float) -> None:
        if now > self.expiration:
            raise S3Error("AccessDenied", "Invalid according to Policy: Policy expired.")

    def check_fields(self, fields: Mapping[str, str]) -> None:
        """Every condition holds and every field is named by one. ``fields``: lower-case names."""
        for condition in self.conditions:
            if not condition.holds(fields):
                raise S3Error("AccessDenied", f"Invalid according to Policy: Policy Condition failed: "
                              f"{condition.text}")
        covered = {c.field for c in self.conditions}
        extra = [name for name in fields
                 if name not in covered and name not in EXEMPT and not name.startswith(EXEMPT_PREFIXES)]
        if extra:
            raise S3Error("AccessDenied", f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")

    def check_size(self, size: int, final: bool) -> None:
        """``size`` bytes of the file so far (``final``: all of it) against content-length-range."""
        if self.max_size is not None and size > self.max_size:
            raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size",
                          ProposedSize=str(size), MaxSizeAllowed=str(self.max_size))
        if final and size < self.min_size:
            raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size",
                          ProposedSize=str(size), MinSizeAllowed=str(self.min_size))


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {message}")


def parse_expiration(value: object) -> float:
    """ISO 8601 UTC (``2030-01-01T00:00:00Z``, optionally with fractional seconds) -> epoch seconds."""
    match = _EXPIRATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise _invalid(f"Invalid 'expiration' value: '{value}'")
    # By name, not *: for mypy an unpacking of unknown length could also fill tzinfo.
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        when = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: '{value}'") from None
    return when.timestamp() + float(match.group(7) or 0)


def _length_bound(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError


def _condition_text(item: object) -> str:
    try:
        return json.dumps(item, ensure_ascii=False, separators=(", ", ": "))[:1024]
    except RecursionError:
        return "(nested too deeply)"


def parse(encoded: str) -> PostPolicy:
    """The policy of a form, from its base64 text; 400 InvalidPolicyDocument when it is not a valid policy."""
    if len(encoded) > MAX_POLICY_BYTES:
        raise _invalid("Policy document is too large.")
    try:
        raw = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid("Invalid 'Base64' encoding.") from None
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: lists nested thousands deep
        raise _invalid("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid("Invalid JSON.")
    if "expiration" not in document:
        raise _invalid("Policy missing expiration.")
    policy = PostPolicy(parse_expiration(document["expiration"]))
    conditions = document.get("conditions")
    if conditions is None:
        raise _invalid("Policy missing conditions.")
    if not isinstance(conditions, list):
        raise _invalid("Invalid 'conditions' value: must be a list.")
    for item in conditions:
        _add_condition(policy, item)
    return policy


def _add_condition(policy: PostPolicy, item: object) -> None:
    if isinstance(item, dict):
        if len(item) != 1:
            raise _invalid("Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")
        name, value = next(iter(item.items()))
        if not isinstance(value, str):
            raise _invalid(f"Invalid Simple-Condition: value of '{name}' must be a string.")
        text = _condition_text(["eq", f"${name}", value])
        policy.conditions.append(Condition("eq", name.lower().removeprefix("$"), value, text))
        return
    if not isinstance(item, list) or not item or not isinstance(item[0], str):
        raise _invalid(f"Invalid Condition: {_condition_text(item)}")
    operator = item[0].lower()
    if operator == "content-length-range":
        if len(item) != 3:
            raise _invalid("Invalid content-length-range: it needs a minimum and a maximum.")
        try:
            low, high = _length_bound(item[1]), _length_bound(item[2])
        except ValueError:
            raise _invalid("Invalid content-length-range: the bounds must be integers.") from None
        if low < 0 or high < 0 or low > high:
            raise _invalid("Invalid content-length-range: the bounds must be non-negative, minimum first.")
        policy.min_size = max(policy.min_size, low)
        policy.max_size = high if policy.max_size is None else min(policy.max_size, high)
        return
    if operator not in ("eq", "starts-with"):
        raise _invalid(f"Invalid Condition: unknown operation '{item[0]}'.")
    if len(item) != 3 or not isinstance(item[1], str) or not isinstance(item[2], str):
        raise _invalid(f"Invalid Condition: {_condition_text(item)}: expected [\"{operator}\", \"$field\", "
                       f"\"value\"].")
    if not item[1].startswith("$"):
        raise _invalid(f"Invalid Condition: field name '{item[1]}' must start with '$'.")
    policy.conditions.append(Condition(operator, item[1][1:].lower(), item[2], _condition_text(item)))


# -- who signed the form ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signer:
    identity: Identity | None  # None: an anonymous form (no policy)
    signature_version: str | None = None  # "AWS4-HMAC-SHA256" or "AWS" (V2)


def _missing(name: str) -> S3Error:
    return S3Error("InvalidArgument", f"Bucket POST must contain a field named '{name}'.  If it is specified, "
                   "please check the order of the fields.", ArgumentName=name, ArgumentValue="")


def _lookup(identities: IdentityStore, access_key: str) -> Identity:
    identity = identities.get(access_key)
    if identity is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return identity


def authenticate(identities: IdentityStore, fields: Mapping[str, str]) -> Signer:
    """The identity whose signature covers the form's policy; anonymous when the form has no policy.

    ``fields``: lower-case names. Raises 400 for incomplete signing fields, 403 for unknown keys and wrong
    signatures (compared in constant time)."""
    encoded = fields.get("policy")
    if encoded is None:
        present = [name for name in SIGNATURE_FIELDS if name in fields]
        if present:
            raise _missing("policy")
        return Signer(None)
    if any(name in fields for name in ("x-amz-signature", "x-amz-credential", "x-amz-algorithm")):
        return _authenticate_v4(identities, fields, encoded)
    if "awsaccesskeyid" not in fields:
        raise _missing("AWSAccessKeyId")
    if "signature" not in fields:
        raise _missing("Signature")
    identity = _lookup(identities, fields["awsaccesskeyid"])
    if not sigv4.signatures_match(sigv2.sign(identity.secret_key, encoded), fields["signature"]):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=identity.access_key)
    return Signer(identity, "AWS")


def _authenticate_v4(identities: IdentityStore, fields: Mapping[str, str], encoded: str) -> Signer:
    for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
        if name not in fields:
            raise _missing(name)
    if fields["x-amz-algorithm"] != sigv4.ALGORITHM:
        raise S3Error("InvalidArgument", f"The algorithm must be {sigv4.ALGORITHM}.", ArgumentName="x-amz-algorithm",
                      ArgumentValue=fields["x-amz-algorithm"])
    try:
        access_key, scope = sigv4.parse_credential(fields["x-amz-credential"])
    except ValueError:
        raise S3Error("InvalidArgument", "The credential is malformed; expected "
                      "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".", ArgumentName="x-amz-credential",
                      ArgumentValue=fields["x-amz-credential"]) from None
    try:
        time.strptime(fields["x-amz-date"], "%Y%m%dT%H%M%SZ")
    except ValueError:
        raise S3Error("InvalidArgument", "x-amz-date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'.",
                      ArgumentName="x-amz-date", ArgumentValue=fields["x-amz-date"]) from None
    identity = _lookup(identities, access_key)
    key = sigv4.signing_key(identity.secret_key, scope.date, scope.region, scope.service)
    if not sigv4.signatures_match(sigv4.sign(key, encoded), fields["x-amz-signature"]):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key)
    return Signer(identity, sigv4.ALGORITHM)
