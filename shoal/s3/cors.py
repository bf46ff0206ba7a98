"""Cross-origin resource sharing: bucket CORS rules, preflight decisions and headers for actual requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3.policy import _wildcard
from shoal.s3.service import S3Service
from shoal.storage.records import Bucket

METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
MAX_RULES = 100


@dataclass(slots=True)
class Rule:
    origins: list[str]
    methods: list[str]
    allowed_headers: list[str] = field(default_factory=list)
    expose_headers: list[str] = field(default_factory=list)
    max_age: int | None = None
    rule_id: str | None = None

    def to_json(self) -> dict:
        return {"o": self.origins, "m": self.methods, "h": self.allowed_headers, "e": self.expose_headers,
                "a": self.max_age, "i": self.rule_id}

    @classmethod
    def from_json(cls, d: dict) -> Rule:
        return cls(d["o"], d["m"], d.get("h", []), d.get("e", []), d.get("a"), d.get("i"))

    def matches(self, origin: str, method: str, request_headers: list[str]) -> bool:
        if method not in self.methods or not any(_wildcard(o, origin) for o in self.origins):
            return False
        return all(any(_wildcard(a.lower(), h.lower()) for a in self.allowed_headers) for h in request_headers)


def validate(rules: list[Rule]) -> None:
    if not rules or len(rules) > MAX_RULES:
        raise S3Error("MalformedXML")
    for rule in rules:
        if not rule.origins or not rule.methods:
            raise S3Error("MalformedXML")
        for method in rule.methods:
            if method not in METHODS:
                raise S3Error("InvalidRequest", f"Found unsupported HTTP method in CORS config. Unsupported method "
                              f"is {method}")
        for origin in rule.origins:
            if origin.count("*") > 1:
                raise S3Error("InvalidRequest", f"AllowedOrigin \"{origin}\" can not have more than one wildcard.")
        for header in rule.allowed_headers:
            if header.count("*") > 1:
                raise S3Error("InvalidRequest", f"AllowedHeader \"{header}\" can not have more than one wildcard.")


def rules_of(bucket: Bucket | None, default: list[Rule] | None = None) -> list[Rule] | None:
    if bucket is not None and bucket.config.get("cors"):
        return [Rule.from_json(r) for r in bucket.config["cors"]]
    return default


async def put_rules(svc: S3Service, identity: Identity | None, bucket_name: str, rules: list[Rule]) -> None:
    svc.bucket(identity, bucket_name, "s3:PutBucketCORS")
    validate(rules)
    await svc.storage.meta.set_bucket_config(bucket_name, "cors", [r.to_json() for r in rules])


def get_rules(svc: S3Service, identity: Identity | None, bucket_name: str) -> list[Rule]:
    bucket = svc.bucket(identity, bucket_name, "s3:GetBucketCORS")
    rules = rules_of(bucket)
    if not rules:
        raise S3Error("NoSuchCORSConfiguration", "The CORS configuration does not exist", status=404,
                      BucketName=bucket_name)
    return rules


async def delete_rules(svc: S3Service, identity: Identity | None, bucket_name: str) -> None:
    svc.bucket(identity, bucket_name, "s3:PutBucketCORS")
    await svc.storage.meta.set_bucket_config(bucket_name, "cors", None)


def _response_headers(rule: Rule, origin: str) -> dict[str, str]:
    headers = {
        "Access-Control-Allow-Origin": "*" if rule.origins == ["*"] else origin,
        "Access-Control-Allow-Methods": ", ".join(rule.methods),
        "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    }
    if rule.origins != ["*"]:
        # As S3: a rule naming origins lets the browser send credentials (cookies, Authorization) with the request;
        # never with "*", which browsers refuse together with credentials anyway.
        headers["Access-Control-Allow-Credentials"] = "true"
    if rule.expose_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule.expose_headers)
    if rule.max_age is not None:
        headers["Access-Control-Max-Age"] = str(rule.max_age)
    return headers


def preflight(rules: list[Rule] | None, origin: str | None, method: str | None, request_headers: str | None
              ) -> dict[str, str]:
    """Headers for a successful preflight; S3Error when it must be refused."""
    if not origin or not method:
        raise S3Error("BadRequest", "Insufficient information. Origin request header needed.", status=400)
    if not rules:
        raise S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", status=403,
                      Method=method, ResourceType="BUCKET")
    wanted = [h.strip() for h in (request_headers or "").split(",") if h.strip()]
    for rule in rules:
        if rule.matches(origin, method, wanted):
            headers = _response_headers(rule, origin)
            if wanted:
                headers["Access-Control-Allow-Headers"] = ", ".join(wanted)
            return headers
    raise S3Error("AccessForbidden", "CORSResponse: This CORS request is not allowed. This is usually because the "
                  "evalution of Origin, request method / Access-Control-Request-Method or "
                  "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.", status=403,
                  Method=method, ResourceType="OBJECT")


def actual_headers(rules: list[Rule] | None, origin: str, method: str) -> dict[str, str]:
    """CORS headers for a non-preflight request from ``origin`` (empty when no rule allows it)."""
    for rule in rules or ():
        if rule.matches(origin, method, []):
            return _response_headers(rule, origin)
    return {}
