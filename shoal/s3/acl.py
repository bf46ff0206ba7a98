"""Access control lists: canned ACLs, x-amz-grant-* headers, AccessControlPolicy documents, and what a grant
permits. A grant is (kind, value, permission) with kind "id" (canonical user), "uri" (group) or "email"."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from shoal.errors import S3Error

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = {ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY}
PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
GRANT_HEADERS = {
    "x-amz-grant-read": "READ",
    "x-amz-grant-write": "WRITE",
    "x-amz-grant-read-acp": "READ_ACP",
    "x-amz-grant-write-acp": "WRITE_ACP",
    "x-amz-grant-full-control": "FULL_CONTROL",
}
CANNED = ("private", "public-read", "public-read-write", "authenticated-read", "bucket-owner-read",
          "bucket-owner-full-control", "log-delivery-write", "aws-exec-read")

Grant = tuple[str, str, str]


def owner_only(owner: str) -> list[Grant]:
    return [("id", owner, "FULL_CONTROL")]


def canned(name: str, owner: str, bucket_owner: str) -> list[Grant]:
    grants = owner_only(owner)
    if name == "private" or name == "aws-exec-read":
        pass
    elif name == "public-read":
        grants.append(("uri", ALL_USERS, "READ"))
    elif name == "public-read-write":
        grants += [("uri", ALL_USERS, "READ"), ("uri", ALL_USERS, "WRITE")]
    elif name == "authenticated-read":
        grants.append(("uri", AUTHENTICATED_USERS, "READ"))
    elif name == "bucket-owner-read":
        if bucket_owner != owner:
            grants.append(("id", bucket_owner, "READ"))
    elif name == "bucket-owner-full-control":
        if bucket_owner != owner:
            grants.append(("id", bucket_owner, "FULL_CONTROL"))
    elif name == "log-delivery-write":
        grants += [("uri", LOG_DELIVERY, "WRITE"), ("uri", LOG_DELIVERY, "READ_ACP")]
    else:
        raise S3Error("InvalidArgument", None, ArgumentName="x-amz-acl", ArgumentValue=name)
    return grants


_GRANTEE = re.compile(r'\s*(id|emailAddress|uri)\s*=\s*"?([^",]*)"?\s*(?:,|$)')


def check_grantee(kind: str, value: str, user_exists: Callable[[str], bool]) -> None:
    if kind == "id" and not user_exists(value):
        raise S3Error("InvalidArgument", "Invalid id", ArgumentName="CanonicalUser/ID", ArgumentValue=value)
    if kind == "email":
        raise S3Error("UnresolvableGrantByEmailAddress", "The e-mail address you provided does not match any "
                      "account on record.", EmailAddress=value)
    if kind == "uri" and value not in GROUPS:
        raise S3Error("InvalidArgument", "Invalid group uri", ArgumentName="Group/URI", ArgumentValue=value)


def from_headers(
    headers: Mapping[str, str], owner: str, bucket_owner: str, user_exists: Callable[[str], bool]
) -> list[Grant] | None:
    """The ACL a request sets through headers, or None when it sets none."""
    canned_name = headers.get("x-amz-acl")
    grant_headers = [(h, p) for h, p in GRANT_HEADERS.items() if h in headers]
    if canned_name is not None and grant_headers:
        raise S3Error("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed")
    if canned_name is not None:
        return canned(canned_name.strip(), owner, bucket_owner)
    if not grant_headers:
        return None
    grants: list[Grant] = []
    for header, permission in grant_headers:
        text = headers[header]
        pos = 0
        while pos < len(text):
            match = _GRANTEE.match(text, pos)
            if match is None:
                raise S3Error("InvalidArgument", f"Invalid {header} header", ArgumentName=header, ArgumentValue=text)
            kind = "email" if match.group(1) == "emailAddress" else match.group(1)
            check_grantee(kind, match.group(2), user_exists)
            grants.append((kind, match.group(2), permission))
            pos = match.end()
    return grants


def grantee_matches(grant: Grant, user_id: str | None) -> bool:
    kind, value, _ = grant
    if kind == "uri":
        return value == ALL_USERS or (value == AUTHENTICATED_USERS and user_id is not None)
    return kind == "id" and user_id is not None and value == user_id


def allows(grants: list[Grant], user_id: str | None, permission: str, *, ignore_public: bool = False) -> bool:
    for grant in grants:
        if ignore_public and grant[0] == "uri" and grant[1] in (ALL_USERS, AUTHENTICATED_USERS):
            continue
        if grant[2] in (permission, "FULL_CONTROL") and grantee_matches(grant, user_id):
            return True
    return False


def is_public(grants: list[Grant]) -> bool:
    return any(g[0] == "uri" and g[1] in (ALL_USERS, AUTHENTICATED_USERS) for g in grants)


# Which ACL permission an action needs, on the bucket or on the object.
BUCKET_PERMISSION = {
    "s3:ListBucket": "READ", "s3:ListBucketVersions": "READ", "s3:ListBucketMultipartUploads": "READ",
    "s3:PutObject": "WRITE", "s3:DeleteObject": "WRITE", "s3:DeleteObjectVersion": "WRITE",
    "s3:AbortMultipartUpload": "WRITE", "s3:ListMultipartUploadParts": "WRITE",
    "s3:PutObjectTagging": "WRITE", "s3:PutObjectVersionTagging": "WRITE", "s3:DeleteObjectTagging": "WRITE",
    "s3:DeleteObjectVersionTagging": "WRITE",
    "s3:GetBucketAcl": "READ_ACP", "s3:PutBucketAcl": "WRITE_ACP",
}
OBJECT_PERMISSION = {
    "s3:GetObject": "READ", "s3:GetObjectVersion": "READ", "s3:GetObjectAttributes": "READ",
    "s3:GetObjectVersionAttributes": "READ", "s3:GetObjectTagging": "READ", "s3:GetObjectVersionTagging": "READ",
    "s3:GetObjectAcl": "READ_ACP", "s3:GetObjectVersionAcl": "READ_ACP",
    "s3:PutObjectAcl": "WRITE_ACP", "s3:PutObjectVersionAcl": "WRITE_ACP",
}
