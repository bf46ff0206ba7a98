"""AWS Signature Version 2, still used by older tools (s3cmd's default in some setups, legacy SDKs)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping

# Query parameters that are part of the signed resource.
SUBRESOURCES = frozenset(
    ["acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy", "requestPayment", "restore", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website", "object-lock", "retention", "legal-hold", "encryption", "replication", "accelerate", "inventory", "analytics", "metrics", "ownershipControls", "publicAccessBlock", "policyStatus", "intelligent-tiering", "attributes", "response-content-type", "response-content-language", "response-expires", "response-cache-control", "response-content-disposition", "response-content-encoding"]
)


def canonical_resource(bucket_from_host: str | None, raw_path: str, query: Iterable[tuple[str, str]]) -> str:
    resource = (f"/{bucket_from_host}" if bucket_from_host else "") + raw_path
    sub = sorted((k, v) for k, v in query if k in SUBRESOURCES)
    if sub:
        resource += "?" + "&".join(f"{k}={v}" if v != "" else k for k, v in sub)
    return resource


def string_to_sign(
    method: str,
    headers: Mapping[str, list[str]],
    date_value: str,
    resource: str,
) -> str:
    amz = sorted(
        (name, ",".join(v.strip() for v in values))
        for name, values in headers.items()
        if name.startswith("x-amz-")
    )
    amz_lines = "".join(f"{name}:{value}\n" for name, value in amz)
    content_md5 = ",".join(headers.get("content-md5", []))
    content_type = ",".join(headers.get("content-type", []))
    return f"{method}\n{content_md5}\n{content_type}\n{date_value}\n{amz_lines}{resource}"


def sign(secret: str, text: str) -> str:
    digest = hmac.digest(secret.encode(), text.encode("utf-8", "surrogateescape"), hashlib.sha1)
    return base64.b64encode(digest).decode()
