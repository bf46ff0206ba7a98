"""What the S3 layer may know about the request beyond its arguments: the facts policy conditions test.

The HTTP front sets it once per request (a contextvar, so each request's task sees its own); the S3 layer
stays free of HTTP types.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestContext:
    source_ip: str | None = None
    secure: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)  # looked up by lower-case names (case-insensitive)
    query: dict[str, str] = field(default_factory=dict)
    signature_version: str | None = None  # "AWS4-HMAC-SHA256" or "AWS" (V2); None when anonymous
    auth_type: str | None = None  # "REST-HEADER", "REST-QUERY-STRING", "POST"
    first_write_taken: bool = False  # see first_write()


current: ContextVar[RequestContext | None] = ContextVar("shoal_request_context", default=None)
_EMPTY = RequestContext()

_HEADER_KEYS = (
    "x-amz-acl", "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
    "x-amz-grant-full-control", "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-customer-algorithm", "x-amz-copy-source", "x-amz-metadata-directive",
    "x-amz-storage-class", "x-amz-content-sha256", "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold", "x-amz-website-redirect-location",
)


def header_names(headers: Mapping[str, str]) -> str:
    """Every header name in lower case, one per line: one substring test then tells a parser whether a family of
    headers (x-amz-meta-, x-amz-checksum-, SSE...) is there at all, before it looks any up. (Also for HTML form
    fields shaped like headers.)"""
    return "\n".join(headers.keys()).lower()


def first_write() -> bool:
    """True once per request, for the first metadata write of the request this task serves; False outside a
    request (background work such as lifecycle). The front end lets only that write commit on the event loop's
    thread (shoal.storage.sqlite_meta): writes a request starts together, DeleteObjects' up to 1000 deletes,
    must share the writer thread's commits rather than each pay an fsync on the loop."""
    ctx = current.get()
    if ctx is None or ctx.first_write_taken:
        return False
    ctx.first_write_taken = True
    return True


def expected_owner() -> str | None:
    """x-amz-expected-bucket-owner, when the caller sent it."""
    ctx = current.get()
    return None if ctx is None else ctx.headers.get("x-amz-expected-bucket-owner")


def condition_keys(user_id: str | None, username: str | None, tags: list | None = None,
                   request_tags: list | None = None) -> dict[str, list[str]]:
    """Condition-key values (lower-case keys) for policy evaluation."""
    ctx = current.get() or _EMPTY
    now = time.time()
    keys: dict[str, list[str]] = {
        "aws:securetransport": ["true" if ctx.secure else "false"],
        "aws:currenttime": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))],
        "aws:epochtime": [str(int(now))],
        "aws:principaltype": ["Anonymous" if user_id is None else "User"],
    }
    if ctx.source_ip:
        keys["aws:sourceip"] = [ctx.source_ip]
    if user_id is not None:
        keys["aws:userid"] = [user_id]
        if username:
            keys["aws:username"] = [username]
    for header, name in (("referer", "aws:referer"), ("user-agent", "aws:useragent")):
        if header in ctx.headers:
            keys[name] = [ctx.headers[header]]
    for name in ("prefix", "delimiter", "max-keys"):
        if name in ctx.query:
            keys[f"s3:{name}"] = [ctx.query[name]]
    if "versionId" in ctx.query:
        keys["s3:versionid"] = [ctx.query["versionId"]]
    for header in _HEADER_KEYS:
        if header in ctx.headers:
            keys[f"s3:{header}"] = [ctx.headers[header]]
    if ctx.signature_version:
        keys["s3:signatureversion"] = [ctx.signature_version]
    if ctx.auth_type:
        keys["s3:authtype"] = [ctx.auth_type]
    for key, value in tags or []:
        keys[f"s3:existingobjecttag/{key.lower()}"] = [value]
    if request_tags is not None:
        keys["s3:requestobjecttagkeys"] = [k for k, _ in request_tags]
        for key, value in request_tags:
            keys[f"s3:requestobjecttag/{key.lower()}"] = [value]
    return keys
