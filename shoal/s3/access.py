"""Who may do what.

For now: a bucket belongs to the user who created it and only that user (or an admin) may act on it;
requests without credentials are refused. Bucket policies, ACLs and identity policies extend ``authorize``.
"""

from __future__ import annotations

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.storage.records import Bucket


def require_identity(identity: Identity | None) -> None:
    if identity is None:
        raise S3Error("AccessDenied")


def can_see(identity: Identity, bucket: Bucket) -> bool:
    return identity.is_admin or bucket.owner == identity.user_id


def authorize(identity: Identity | None, bucket: Bucket, action: str) -> None:
    """Raise AccessDenied unless ``identity`` may perform ``action`` (an IAM action name) on ``bucket``."""
    if identity is None or not can_see(identity, bucket):
        raise S3Error("AccessDenied")
