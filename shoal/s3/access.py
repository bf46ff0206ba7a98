"""Who may do what: one decision combining identity policies, the bucket policy and ACLs, as AWS does.

Order of evaluation:
1. Admins (the root user) may do anything.
2. An explicit Deny in the caller's identity policy or in the bucket policy refuses the request, except that
   a bucket's owner can always read, change and delete its policy (so a bad policy can be fixed).
3. The bucket's owner may do anything with the bucket and its objects, except read (or read and change the ACL
   of) an object another user owns: that takes a grant in the object's ACL, as in S3 with ObjectWriter ownership.
4. An Allow in the identity policy or the bucket policy permits it.
5. An ACL grant on the bucket (bucket-level and write actions) or on the object (object reads and ACLs)
   permits it, unless the bucket enforces ownership (ACLs disabled) or blocks public ACLs.
6. Otherwise AccessDenied.
"""

from __future__ import annotations

from functools import lru_cache

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3 import acl, context, policy
from shoal.storage.records import Bucket, ObjectRecord

POLICY_ACTIONS = {"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:GetBucketPolicyStatus"}


def require_identity(identity: Identity | None) -> None:
    if identity is None:
        raise S3Error("AccessDenied")


def can_see(identity: Identity, bucket: Bucket) -> bool:
    """Whether ListBuckets shows the bucket to this identity: its own, or one its identity policy lets it list."""
    if identity.is_admin or bucket.owner == identity.user_id:
        return True
    doc = identity.policy
    return doc is not None and policy.evaluate(
        doc, principal(identity), "s3:ListBucket", policy.resource_arn(bucket.name, None),
        context.condition_keys(identity.user_id, identity.display_name)) == "Allow"


def check_identity_deny(identity: Identity, action: str, resource: str) -> None:
    """AccessDenied if the caller's identity policy explicitly denies ``action`` (for actions on no bucket yet,
    such as CreateBucket, which any user may otherwise do)."""
    doc = identity.policy
    if doc is None or identity.is_admin:
        return
    keys = context.condition_keys(identity.user_id, identity.display_name)
    if policy.evaluate(doc, principal(identity), action, resource, keys) == "Deny":
        raise S3Error("AccessDenied")


@lru_cache(maxsize=256)
def _parsed(text: str) -> policy.Policy:
    return policy.parse(text, require_principal=False)


def bucket_policy(bucket: Bucket) -> policy.Policy | None:
    text = bucket.config.get("policy")
    return _parsed(text) if text else None


def ownership(bucket: Bucket) -> str:
    return bucket.config.get("ownership", "ObjectWriter")


def public_access_block(bucket: Bucket) -> dict[str, bool]:
    return bucket.config.get("pab") or {}


def bucket_grants(bucket: Bucket) -> list[acl.Grant]:
    stored = bucket.config.get("acl")
    if stored is None:  # never set: the owner has full control
        return acl.owner_only(bucket.owner)
    return [tuple(g) for g in stored]  # type: ignore[misc]


def object_grants(record: ObjectRecord) -> list[acl.Grant]:
    return [tuple(g) for g in record.meta.get("acl", [])] or acl.owner_only(record.meta.get("o", ""))  # type: ignore


def principal(identity: Identity | None) -> policy.Principal:
    if identity is None:
        return policy.Principal(None)
    return policy.Principal(identity.user_id, identity.access_key, identity.display_name)


def authorize(
    identity: Identity | None,
    bucket: Bucket,
    action: str,
    key: str | None = None,
    obj: ObjectRecord | None = None,
    request_tags: list | None = None,
    extra_keys: dict[str, list[str]] | None = None,
) -> None:
    """Raise AccessDenied unless ``identity`` may perform ``action`` (an IAM action name). ``extra_keys`` adds
    or overrides condition keys (lower-case names) that the request itself does not carry."""
    expected = context.expected_owner()
    if expected is not None and expected != bucket.owner:
        raise S3Error("AccessDenied")  # x-amz-expected-bucket-owner: the caller guards against a wrong bucket
    if identity is not None and identity.is_admin:
        return
    is_owner = identity is not None and identity.user_id == bucket.owner
    if is_owner and obj is not None and action in acl.OBJECT_PERMISSION and ownership(bucket) != "BucketOwnerEnforced" \
            and obj.meta.get("o", bucket.owner) != bucket.owner:
        # ObjectWriter ownership: someone else's object is read (and its ACL read or changed) only through its
        # ACL, as in S3 (bucket-owner-read / bucket-owner-full-control exist for this). Deleting it needs none.
        is_owner = False
    who = principal(identity)
    decisions = []
    bucket_doc = bucket_policy(bucket)
    pab = public_access_block(bucket)
    identity_doc = identity.policy if identity is not None else None
    if bucket_doc is not None or identity_doc is not None:  # only policies read condition keys: skip otherwise
        resource = policy.resource_arn(bucket.name, key)
        keys = context.condition_keys(
            who.user_id, identity.display_name if identity else None,
            tags=obj.meta.get("t") if obj is not None else None, request_tags=request_tags,
        )
        if extra_keys:
            keys.update(extra_keys)
    if bucket_doc is not None:
        decision = policy.evaluate(bucket_doc, who, action, resource, keys)
        if decision == "Allow" and pab.get("RestrictPublicBuckets") and not is_owner and policy.is_public(bucket_doc):
            decision = None  # public policies only grant to the bucket owner's account
        decisions.append(decision)
    if identity_doc is not None:
        decisions.append(policy.evaluate(identity_doc, who, action, resource, keys))
    if "Deny" in decisions and not (is_owner and action in POLICY_ACTIONS):
        raise S3Error("AccessDenied")
    if is_owner or "Allow" in decisions:
        return
    if ownership(bucket) != "BucketOwnerEnforced":
        ignore_public = bool(pab.get("IgnorePublicAcls"))
        user_id = who.user_id
        if action in acl.OBJECT_PERMISSION:
            grants = object_grants(obj) if obj is not None else []
            permission = acl.OBJECT_PERMISSION[action]
        else:
            grants = bucket_grants(bucket)
            permission = acl.BUCKET_PERMISSION.get(action, "")
        if permission and acl.allows(grants, user_id, permission, ignore_public=ignore_public):
            return
    raise S3Error("AccessDenied")
