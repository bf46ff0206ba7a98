"""From a request line to (bucket, key, operation): a pure function, one S3 operation name per outcome.

Operation names are the S3 API's own (``PutObject``, ``ListObjectsV2``...), so a newcomer can find a
handler by searching for the name in the AWS documentation and in ``shoal/http/handlers/``.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote

from shoal.errors import S3Error

# Sub-resources that select a bucket operation, by method. Checked in order; the first present wins.
_BUCKET_SUBRESOURCES: dict[str, list[tuple[str, str]]] = {
    "GET": [
        ("uploads", "ListMultipartUploads"), ("versions", "ListObjectVersions"), ("location", "GetBucketLocation"),
        ("versioning", "GetBucketVersioning"), ("acl", "GetBucketAcl"), ("policyStatus", "GetBucketPolicyStatus"),
        ("policy", "GetBucketPolicy"), ("cors", "GetBucketCors"), ("lifecycle", "GetBucketLifecycleConfiguration"),
        ("tagging", "GetBucketTagging"), ("encryption", "GetBucketEncryption"),
        ("object-lock", "GetObjectLockConfiguration"), ("ownershipControls", "GetBucketOwnershipControls"),
        ("publicAccessBlock", "GetPublicAccessBlock"), ("website", "GetBucketWebsite"),
        ("logging", "GetBucketLogging"), ("notification", "GetBucketNotificationConfiguration"),
        ("replication", "GetBucketReplication"), ("accelerate", "GetBucketAccelerateConfiguration"),
        ("requestPayment", "GetBucketRequestPayment"), ("analytics", "GetBucketAnalyticsConfiguration"),
        ("metrics", "GetBucketMetricsConfiguration"), ("inventory", "GetBucketInventoryConfiguration"),
        ("intelligent-tiering", "GetBucketIntelligentTieringConfiguration"),
    ],
    "PUT": [
        ("versioning", "PutBucketVersioning"), ("acl", "PutBucketAcl"), ("policy", "PutBucketPolicy"),
        ("cors", "PutBucketCors"), ("lifecycle", "PutBucketLifecycleConfiguration"), ("tagging", "PutBucketTagging"),
        ("encryption", "PutBucketEncryption"), ("object-lock", "PutObjectLockConfiguration"),
        ("ownershipControls", "PutBucketOwnershipControls"), ("publicAccessBlock", "PutPublicAccessBlock"),
        ("website", "PutBucketWebsite"), ("logging", "PutBucketLogging"),
        ("notification", "PutBucketNotificationConfiguration"), ("replication", "PutBucketReplication"),
        ("accelerate", "PutBucketAccelerateConfiguration"), ("requestPayment", "PutBucketRequestPayment"),
    ],
    "DELETE": [
        ("policy", "DeleteBucketPolicy"), ("cors", "DeleteBucketCors"), ("lifecycle", "DeleteBucketLifecycle"),
        ("tagging", "DeleteBucketTagging"), ("encryption", "DeleteBucketEncryption"),
        ("ownershipControls", "DeleteBucketOwnershipControls"), ("publicAccessBlock", "DeletePublicAccessBlock"),
        ("website", "DeleteBucketWebsite"), ("replication", "DeleteBucketReplication"),
    ],
    "POST": [("delete", "DeleteObjects")],
}

_OBJECT_SUBRESOURCES: dict[str, list[tuple[str, str]]] = {
    "GET": [
        ("uploadId", "ListParts"), ("acl", "GetObjectAcl"), ("tagging", "GetObjectTagging"),
        ("retention", "GetObjectRetention"), ("legal-hold", "GetObjectLegalHold"),
        ("attributes", "GetObjectAttributes"), ("torrent", "GetObjectTorrent"),
    ],
    "PUT": [
        ("acl", "PutObjectAcl"), ("tagging", "PutObjectTagging"), ("retention", "PutObjectRetention"),
        ("legal-hold", "PutObjectLegalHold"),
    ],
    "DELETE": [("uploadId", "AbortMultipartUpload"), ("tagging", "DeleteObjectTagging")],
    "POST": [
        ("uploads", "CreateMultipartUpload"), ("uploadId", "CompleteMultipartUpload"), ("restore", "RestoreObject"),
        ("select", "SelectObjectContent"),
    ],
}


# The names of those sub-resources, per method: most requests carry none of them, which one set test tells.
_BUCKET_SUBRESOURCE_NAMES = {m: frozenset(n for n, _ in pairs) for m, pairs in _BUCKET_SUBRESOURCES.items()}
_OBJECT_SUBRESOURCE_NAMES = {m: frozenset(n for n, _ in pairs) for m, pairs in _OBJECT_SUBRESOURCES.items()}
_NONE: frozenset[str] = frozenset()


class Route(NamedTuple):
    bucket: str | None
    key: str | None
    operation: str


def split_target(raw_path: str, host: str, domain: str | None) -> tuple[str | None, str | None]:
    """Bucket and key from the raw (still percent-encoded) path, and the Host header for virtual hosting."""
    return split_path(decode_path(raw_path), host, domain)


def decode_path(raw_path: str) -> str:
    """The request path, percent-decoded; InvalidURI if it is not UTF-8 or holds a NUL."""
    path = raw_path.split("?", 1)[0]
    try:
        path = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI") from None
    if "\x00" in path:
        raise S3Error("InvalidURI")
    return path


def split_path(path: str, host: str, domain: str | None) -> tuple[str | None, str | None]:
    """Bucket and key from the decoded path (see decode_path), and the Host header for virtual hosting."""
    if domain:
        hostname = host.rsplit(":", 1)[0].lower() if host and not host.endswith("]") else (host or "").lower()
        if hostname.endswith("." + domain):
            bucket = hostname[: -len(domain) - 1]
            key = path[1:] if path.startswith("/") else path
            return bucket, key or None
    if not path.startswith("/"):
        raise S3Error("InvalidURI")
    bucket, _, key = path[1:].partition("/")
    return bucket or None, key or None


def resolve(method: str, bucket: str | None, key: str | None, query: dict[str, str], headers) -> Route:
    if method == "OPTIONS":
        return Route(bucket, key, "PreflightRequest")  # CORS preflight: never signed
    if bucket is None:
        if method == "GET":
            return Route(None, None, "ListBuckets")
        raise S3Error("MethodNotAllowed", Method=method, ResourceType="SERVICE")
    if key is None:
        if not _BUCKET_SUBRESOURCE_NAMES.get(method, _NONE).isdisjoint(query):
            for name, operation in _BUCKET_SUBRESOURCES[method]:
                if name in query:
                    return Route(bucket, None, operation)
        # Its own name: the loop's operation above is always a str, this one may be None.
        plain = {
            "GET": "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects",
            "PUT": "CreateBucket",
            "DELETE": "DeleteBucket",
            "HEAD": "HeadBucket",
            "POST": "PostObject",
        }.get(method)
        if plain is None:
            raise S3Error("MethodNotAllowed", Method=method, ResourceType="BUCKET")
        return Route(bucket, None, plain)
    if method == "PUT" and "uploadId" in query and "partNumber" in query:
        copy = "x-amz-copy-source" in headers
        return Route(bucket, key, "UploadPartCopy" if copy else "UploadPart")
    if not _OBJECT_SUBRESOURCE_NAMES.get(method, _NONE).isdisjoint(query):
        for name, operation in _OBJECT_SUBRESOURCES[method]:
            if name in query:
                return Route(bucket, key, operation)
    if method == "PUT":
        return Route(bucket, key, "CopyObject" if "x-amz-copy-source" in headers else "PutObject")
    plain = {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method)
    if plain is None:
        raise S3Error("MethodNotAllowed", Method=method, ResourceType="OBJECT")
    return Route(bucket, key, plain)
