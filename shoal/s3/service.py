"""The S3 service: shared state of the operations and the bucket operations.

Object, listing and multipart operations live in their own modules and take the service as first argument.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from shoal.auth.identities import Identity, IdentityStore
from shoal.crypto.keys import KeyService
from shoal.errors import S3Error
from shoal.s3 import access
from shoal.s3.names import check_bucket_name
from shoal.storage.engine import Storage
from shoal.storage.errors import BucketNotEmptyError
from shoal.storage.records import Bucket

# Small objects are kept inside the metadata database: one group-committed write instead of a file,
# an fsync and a rename (measured: the difference between ~5k and ~60k durable 4 KiB PUTs/s).
DEFAULT_INLINE_LIMIT = 64 * 1024

VALID_REGIONS = {
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "eu-west-1", "eu-west-2",
    "eu-west-3", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
    "ap-south-1", "ap-south-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
    "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-east-1", "sa-east-1", "me-south-1",
    "me-central-1", "af-south-1", "il-central-1", "mx-central-1", "cn-north-1", "cn-northwest-1",
    "us-gov-west-1", "us-gov-east-1", "EU",
}


@dataclass
class S3Service:
    storage: Storage
    identities: IdentityStore
    region: str = "us-east-1"
    inline_limit: int = DEFAULT_INLINE_LIMIT
    default_cors: list | None = None  # server-wide CORS rules for buckets without their own (dev setups)
    lifecycle_day_seconds: float = 86400.0  # how long a lifecycle "day" lasts (scaled down in tests)
    keys: KeyService | None = None  # server-side encryption (SSE-S3, SSE-KMS); SSE-C works without it
    verify_reads: bool = True  # check the CRC64NVME of whole-blob reads (see shoal.s3.integrity)

    # -- lookups used by every operation ----------------------------------------------------------------

    def lookup_bucket(self, name: str) -> Bucket | None:
        """The bucket record (the metadata store caches it until a bucket changes)."""
        return self.storage.meta.get_bucket(name)

    def existing_bucket(self, name: str) -> Bucket:
        bucket = self.lookup_bucket(name)
        if bucket is None:
            raise S3Error("NoSuchBucket", BucketName=name)
        return bucket

    def bucket(
        self, identity: Identity | None, name: str, action: str, key: str | None = None, **details
    ) -> Bucket:
        """The bucket, if it exists and the identity may perform ``action`` on it (or on ``key`` in it)."""
        bucket = self.existing_bucket(name)
        access.authorize(identity, bucket, action, key, **details)
        return bucket

    # -- bucket operations ------------------------------------------------------------------------------

    def list_buckets(
        self,
        identity: Identity | None,
        prefix: str = "",
        region: str | None = None,
        after: str = "",
        limit: int | None = None,
    ) -> tuple[list[Bucket], bool]:
        """The buckets ``identity`` may see, in name order: those named ``prefix``..., in ``region`` if given,
        after ``after``, at most ``limit``; and whether more follow."""
        access.require_identity(identity)
        assert identity is not None
        chosen = [
            b for b in self.storage.meta.list_buckets()
            if access.can_see(identity, b) and b.name.startswith(prefix) and b.name > after
            and (region is None or b.region == region)
        ]
        chosen.sort(key=lambda b: b.name)
        if limit is not None and len(chosen) > limit:
            return chosen[:limit], True
        return chosen, False

    async def create_bucket(
        self, identity: Identity | None, name: str, location: str | None, headers: Mapping[str, str] | None = None
    ) -> Bucket:
        from shoal.s3.access_settings import creation_settings  # (it builds on this module)

        access.require_identity(identity)
        assert identity is not None
        check_bucket_name(name)
        access.check_identity_deny(identity, "s3:CreateBucket", f"arn:aws:s3:::{name}")
        config = creation_settings(self, identity.user_id, headers or {})
        if (headers or {}).get("x-amz-bucket-object-lock-enabled", "").lower() == "true":
            config["object_lock"] = {"enabled": True}
            config["versioning"] = "Enabled"  # object lock needs versions
        region = location or self.region
        if location is not None and location not in VALID_REGIONS and location != self.region:
            raise S3Error("InvalidLocationConstraint", LocationConstraint=location)
        bucket = Bucket(name=name, owner=identity.user_id, created=time.time(), region=region, config=config)
        if not await self.storage.meta.create_bucket(bucket):
            existing = self.storage.meta.get_bucket(name)
            if existing is not None and existing.owner == identity.user_id:
                # us-east-1 answers 200 to a repeated create by the owner; other regions answer 409.
                if self.region == "us-east-1" and region == "us-east-1":
                    return existing
                raise S3Error("BucketAlreadyOwnedByYou", BucketName=name)
            raise S3Error("BucketAlreadyExists", BucketName=name)
        return bucket

    async def delete_bucket(self, identity: Identity | None, name: str) -> None:
        self.bucket(identity, name, "s3:DeleteBucket")
        try:
            await self.storage.meta.delete_bucket(name)
        except BucketNotEmptyError:
            raise S3Error("BucketNotEmpty", BucketName=name) from None
        self.storage.garbage_made()

    def bootstrap_bucket(self, owner: Identity, name: str) -> bool:
        """Create a bucket at start-up (declared by flag, env or config); True if it was new."""
        check_bucket_name(name)
        bucket = Bucket(name=name, owner=owner.user_id, created=time.time(), region=self.region)
        return self.storage.meta.create_bucket_sync(bucket)
