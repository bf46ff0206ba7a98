"""Answers for bucket and object configuration Shoal does not store yet: what S3 says when nothing is set.

Tools such as MinIO's ``mc``, the AWS console-style browsers and SDK helpers ask for these at start and
expect the "nothing configured" answer, not NotImplemented.
"""

from __future__ import annotations

from aiohttp import web

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.s3 import objects
from shoal.s3.service import S3Service


def _missing(code: str, message: str, http_status: int = 404):
    async def handler(svc: S3Service, req: S3Request) -> web.StreamResponse:
        assert req.bucket
        svc.bucket(req.identity, req.bucket, "s3:GetBucketConfiguration")
        raise S3Error(code, message, status=http_status, BucketName=req.bucket)

    return handler


def _empty(root: str, inner: str = ""):
    async def handler(svc: S3Service, req: S3Request) -> web.StreamResponse:
        assert req.bucket
        svc.bucket(req.identity, req.bucket, "s3:GetBucketConfiguration")
        return xml_response(root, inner)

    return handler


def _full_control(owner_id: str, name: str) -> str:
    owner = xml.el("ID", owner_id) + xml.el("DisplayName", name)
    grant = (
        '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
        + owner + "</Grantee><Permission>FULL_CONTROL</Permission></Grant>"
    )
    return f"<Owner>{owner}</Owner><AccessControlList>{grant}</AccessControlList>"


def _display_name(svc: S3Service, user_id: str) -> str:
    for identity in svc.identities.all():
        if identity.user_id == user_id:
            return identity.display_name
    return user_id


async def get_bucket_acl(svc: S3Service, req: S3Request) -> web.StreamResponse:
    assert req.bucket
    bucket = svc.bucket(req.identity, req.bucket, "s3:GetBucketAcl")
    return xml_response("AccessControlPolicy", _full_control(bucket.owner, _display_name(svc, bucket.owner)))


async def get_object_acl(svc: S3Service, req: S3Request) -> web.StreamResponse:
    assert req.bucket and req.key
    record = objects.head_object(svc, req.identity, req.bucket, req.key, version_id=req.query.get("versionId"))
    owner = record.meta.get("o", "")
    return xml_response("AccessControlPolicy", _full_control(owner, _display_name(svc, owner)))


async def preflight(svc: S3Service, req: S3Request) -> web.StreamResponse:
    """CORS preflight. No bucket has a CORS configuration yet, so every preflight is refused as S3 does."""
    if not req.headers.get("Origin") or not req.headers.get("Access-Control-Request-Method"):
        raise S3Error("BadRequest", "Insufficient information. Origin request header needed.", status=400)
    raise S3Error("AccessForbidden", "CORSResponse: CORS is not enabled for this bucket.", status=403)


HANDLERS = {
    "PreflightRequest": preflight,
    "GetBucketNotificationConfiguration": _empty("NotificationConfiguration"),
    "GetBucketLogging": _empty("BucketLoggingStatus"),
    "GetBucketAccelerateConfiguration": _empty("AccelerateConfiguration"),
    "GetBucketRequestPayment": _empty("RequestPaymentConfiguration", "<Payer>BucketOwner</Payer>"),
    "GetBucketCors": _missing("NoSuchCORSConfiguration", "The CORS configuration does not exist"),
    "GetBucketPolicy": _missing("NoSuchBucketPolicy", "The bucket policy does not exist"),
    "GetBucketLifecycleConfiguration": _missing("NoSuchLifecycleConfiguration",
                                                "The lifecycle configuration does not exist"),
    "GetObjectLockConfiguration": _missing("ObjectLockConfigurationNotFoundError",
                                           "Object Lock configuration does not exist for this bucket"),
    "GetBucketWebsite": _missing("NoSuchWebsiteConfiguration", "The specified bucket does not have a website "
                                 "configuration"),
    "GetBucketReplication": _missing("ReplicationConfigurationNotFoundError",
                                     "The replication configuration was not found"),
    "GetBucketOwnershipControls": _missing("OwnershipControlsNotFoundError",
                                           "The bucket ownership controls were not found"),
    "GetPublicAccessBlock": _missing("NoSuchPublicAccessBlockConfiguration",
                                     "The public access block configuration was not found"),
    "GetBucketAcl": get_bucket_acl,
    "GetObjectAcl": get_object_acl,
}
