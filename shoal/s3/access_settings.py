"""Operations that change or show who may access a bucket or object: ACLs, bucket policies, ownership
controls and public access blocks. The decision itself is in access.py."""

from __future__ import annotations

from collections.abc import Mapping

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3 import access, acl, policy
from shoal.s3.names import check_version_id
from shoal.s3.service import S3Service
from shoal.storage.records import Bucket, ObjectRecord

OWNERSHIP_VALUES = ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter")
PAB_FIELDS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def user_exists(svc: S3Service, user_id: str) -> bool:
    return any(i.user_id == user_id for i in svc.identities.all())


def display_name(svc: S3Service, user_id: str) -> str:
    for identity in svc.identities.all():
        if identity.user_id == user_id:
            return identity.display_name
    return user_id


def _check_settable(bucket: Bucket, grants: list[acl.Grant] | None, owner: str, headers: Mapping[str, str]) -> None:
    if grants is None:
        return
    if access.ownership(bucket) == "BucketOwnerEnforced":
        # ACLs are disabled: only the ones that say "the bucket owner has full control" are accepted (the canned
        # bucket-owner-full-control or its equivalent in grants); even "private" is refused, as in S3.
        canned = headers.get("x-amz-acl")
        owners = {("id", owner, "FULL_CONTROL"), ("id", bucket.owner, "FULL_CONTROL")}
        if (canned is not None and canned.strip() != "bucket-owner-full-control") or any(g not in owners
                                                                                          for g in grants):
            raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs", status=400)
    if access.public_access_block(bucket).get("BlockPublicAcls") and acl.is_public(grants):
        raise S3Error("AccessDenied")


def grants_from_headers(
    svc: S3Service, bucket: Bucket, owner: str, headers: Mapping[str, str]
) -> list[acl.Grant] | None:
    """The ACL set by x-amz-acl / x-amz-grant-* on a write, validated against the bucket's settings."""
    grants = acl.from_headers(headers, owner, bucket.owner, lambda uid: user_exists(svc, uid))
    _check_settable(bucket, grants, owner, headers)
    return grants


def creation_settings(svc: S3Service, owner: str, headers: Mapping[str, str]) -> dict:
    """Bucket config set at CreateBucket time: ACL and object ownership."""
    config: dict = {}
    ownership = headers.get("x-amz-object-ownership")
    if ownership is not None:
        if ownership not in OWNERSHIP_VALUES:
            raise S3Error("InvalidArgument", "Invalid x-amz-object-ownership header",
                          ArgumentName="x-amz-object-ownership", ArgumentValue=ownership)
        config["ownership"] = ownership
    grants = acl.from_headers(headers, owner, owner, lambda uid: user_exists(svc, uid))
    if grants is not None:
        if config.get("ownership") == "BucketOwnerEnforced" and grants != acl.owner_only(owner):
            raise S3Error("InvalidBucketAclWithObjectOwnership", "Bucket cannot have ACLs set with ObjectOwnership's "
                          "BucketOwnerEnforced setting", status=400)
        if grants != acl.owner_only(owner):
            config["acl"] = [list(g) for g in grants]
    return config


def parse_policy_document(root, svc: S3Service) -> tuple[str | None, list[acl.Grant]]:
    """(owner id, grants) of an AccessControlPolicy document (namespaces already stripped)."""
    if root.tag != "AccessControlPolicy":
        raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate against "
                      "our published schema", status=400)
    owner_node = root.find("Owner")
    owner = None
    if owner_node is not None and owner_node.find("ID") is not None:
        owner = owner_node.find("ID").text or ""  # type: ignore[union-attr]
    grants: list[acl.Grant] = []
    for grant in root.iter("Grant"):
        grantee = grant.find("Grantee")
        permission = (grant.findtext("Permission") or "").strip()
        if grantee is None or permission not in acl.PERMISSIONS:
            raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate "
                          "against our published schema", status=400)
        if grantee.find("ID") is not None:
            kind, value = "id", grantee.findtext("ID") or ""
        elif grantee.find("URI") is not None:
            kind, value = "uri", grantee.findtext("URI") or ""
        elif grantee.find("EmailAddress") is not None:
            kind, value = "email", grantee.findtext("EmailAddress") or ""
        else:
            raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate "
                          "against our published schema", status=400)
        acl.check_grantee(kind, value.strip(), lambda uid: user_exists(svc, uid))
        grants.append((kind, value.strip(), permission))
    return owner, grants


# -- bucket ACL ---------------------------------------------------------------------------------------------


def get_bucket_acl(svc: S3Service, identity: Identity | None, bucket_name: str) -> tuple[str, list[acl.Grant]]:
    bucket = svc.bucket(identity, bucket_name, "s3:GetBucketAcl")
    return bucket.owner, access.bucket_grants(bucket)


async def put_bucket_acl(
    svc: S3Service, identity: Identity | None, bucket_name: str, headers: Mapping[str, str],
    document: tuple[str | None, list[acl.Grant]] | None,
) -> None:
    bucket = svc.bucket(identity, bucket_name, "s3:PutBucketAcl")
    grants = acl.from_headers(headers, bucket.owner, bucket.owner, lambda uid: user_exists(svc, uid))
    if document is not None:
        if grants is not None:
            raise S3Error("UnexpectedContent", "This request does not support content")
        owner, grants = document
        if owner is not None and owner != bucket.owner:
            raise S3Error("AccessDenied")
    if grants is None:
        raise S3Error("MissingSecurityHeader", "Your request was missing a required header",
                      MissingHeaderName="x-amz-acl")
    _check_settable(bucket, grants, bucket.owner, headers)
    value = None if grants == acl.owner_only(bucket.owner) else [list(g) for g in grants]
    # An empty list is stored as such: every grant revoked (the owner still controls the bucket).
    await svc.storage.meta.set_bucket_config(bucket_name, "acl", value if value is not None or grants else [])


# -- object ACL ---------------------------------------------------------------------------------------------


def _object(svc: S3Service, identity: Identity | None, bucket: Bucket, key: str, version_id: str | None,
            action: str) -> ObjectRecord:
    check_version_id(version_id)
    record = svc.storage.meta.get_object(bucket.name, key, version_id)
    access.authorize(identity, bucket, action, key, obj=record if record and not record.delete_marker else None)
    if record is None or (record.delete_marker and version_id is None):
        if version_id is not None:
            raise S3Error("NoSuchVersion", Key=key, VersionId=version_id)
        raise S3Error("NoSuchKey", Key=key)
    if record.delete_marker:
        raise S3Error("MethodNotAllowed", headers={"x-amz-delete-marker": "true"}, Method="GET",
                      ResourceType="DeleteMarker")
    return record


def get_object_acl(
    svc: S3Service, identity: Identity | None, bucket_name: str, key: str, version_id: str | None
) -> tuple[ObjectRecord, str, list[acl.Grant]]:
    bucket = svc.existing_bucket(bucket_name)
    record = _object(svc, identity, bucket, key, version_id,
                     "s3:GetObjectVersionAcl" if version_id else "s3:GetObjectAcl")
    return record, record.meta.get("o", ""), access.object_grants(record)


async def put_object_acl(
    svc: S3Service, identity: Identity | None, bucket_name: str, key: str, version_id: str | None,
    headers: Mapping[str, str], document: tuple[str | None, list[acl.Grant]] | None,
) -> ObjectRecord:
    bucket = svc.existing_bucket(bucket_name)
    record = _object(svc, identity, bucket, key, version_id,
                     "s3:PutObjectVersionAcl" if version_id else "s3:PutObjectAcl")
    owner = record.meta.get("o", bucket.owner)
    grants = acl.from_headers(headers, owner, bucket.owner, lambda uid: user_exists(svc, uid))
    if document is not None:
        if grants is not None:
            raise S3Error("UnexpectedContent", "This request does not support content")
        _, grants = document
    if grants is None:
        raise S3Error("MissingSecurityHeader", "Your request was missing a required header",
                      MissingHeaderName="x-amz-acl")
    _check_settable(bucket, grants, owner, headers)
    value = None if grants == acl.owner_only(owner) else [list(g) for g in grants]
    await svc.storage.meta.update_object_meta(bucket_name, key, record.version_id, {"acl": value})
    return record


# -- bucket policy ------------------------------------------------------------------------------------------


async def put_bucket_policy(svc: S3Service, identity: Identity | None, bucket_name: str, text: bytes) -> None:
    bucket = svc.bucket(identity, bucket_name, "s3:PutBucketPolicy")
    parsed = policy.parse(text, bucket=bucket_name)
    if access.public_access_block(bucket).get("BlockPublicPolicy") and policy.is_public(parsed):
        raise S3Error("AccessDenied")
    await svc.storage.meta.set_bucket_config(bucket_name, "policy", parsed.text)


def get_bucket_policy(svc: S3Service, identity: Identity | None, bucket_name: str) -> str:
    bucket = svc.bucket(identity, bucket_name, "s3:GetBucketPolicy")
    text = bucket.config.get("policy")
    if not text:
        raise S3Error("NoSuchBucketPolicy", "The bucket policy does not exist", status=404, BucketName=bucket_name)
    return text


async def delete_bucket_policy(svc: S3Service, identity: Identity | None, bucket_name: str) -> None:
    svc.bucket(identity, bucket_name, "s3:DeleteBucketPolicy")
    await svc.storage.meta.set_bucket_config(bucket_name, "policy", None)


def bucket_policy_is_public(svc: S3Service, identity: Identity | None, bucket_name: str) -> bool:
    """Whether the bucket is public through its policy or its ACL (ceph/s3-tests count both)."""
    bucket = svc.bucket(identity, bucket_name, "s3:GetBucketPolicyStatus")
    doc = access.bucket_policy(bucket)
    return (doc is not None and policy.is_public(doc)) or acl.is_public(access.bucket_grants(bucket))


# -- ownership controls and public access block --------------------------------------------------------------


async def put_ownership(svc: S3Service, identity: Identity | None, bucket_name: str, value: str) -> None:
    bucket = svc.bucket(identity, bucket_name, "s3:PutBucketOwnershipControls")
    if value not in OWNERSHIP_VALUES:
        raise S3Error("MalformedXML")
    if value == "BucketOwnerEnforced" and access.bucket_grants(bucket) != acl.owner_only(bucket.owner):
        # Turning ACLs off while the bucket ACL grants something would silently revoke it: S3 refuses.
        raise S3Error("InvalidBucketAclWithObjectOwnership", "Bucket cannot have ACLs set with ObjectOwnership's "
                      "BucketOwnerEnforced setting", status=400)
    await svc.storage.meta.set_bucket_config(bucket_name, "ownership", value)


def get_ownership(svc: S3Service, identity: Identity | None, bucket_name: str) -> str:
    bucket = svc.bucket(identity, bucket_name, "s3:GetBucketOwnershipControls")
    value = bucket.config.get("ownership")
    if value is None:
        raise S3Error("OwnershipControlsNotFoundError", "The bucket ownership controls were not found", status=404,
                      BucketName=bucket_name)
    return value


async def delete_ownership(svc: S3Service, identity: Identity | None, bucket_name: str) -> None:
    svc.bucket(identity, bucket_name, "s3:PutBucketOwnershipControls")
    await svc.storage.meta.set_bucket_config(bucket_name, "ownership", None)


async def put_public_access_block(
    svc: S3Service, identity: Identity | None, bucket_name: str, settings: dict[str, bool]
) -> None:
    svc.bucket(identity, bucket_name, "s3:PutBucketPublicAccessBlock")
    await svc.storage.meta.set_bucket_config(bucket_name, "pab", {k: bool(settings.get(k)) for k in PAB_FIELDS})


def get_public_access_block(svc: S3Service, identity: Identity | None, bucket_name: str) -> dict[str, bool]:
    bucket = svc.bucket(identity, bucket_name, "s3:GetBucketPublicAccessBlock")
    value = bucket.config.get("pab")
    if value is None:
        raise S3Error("NoSuchPublicAccessBlockConfiguration", "The public access block configuration was not found",
                      status=404, BucketName=bucket_name)
    return value


async def delete_public_access_block(svc: S3Service, identity: Identity | None, bucket_name: str) -> None:
    svc.bucket(identity, bucket_name, "s3:PutBucketPublicAccessBlock")
    await svc.storage.meta.set_bucket_config(bucket_name, "pab", None)

