"""Answers for bucket and object configuration Shoal does not store yet: what S3 says when nothing is set.

Tools such as MinIO's ``mc``, the AWS console-style browsers and SDK helpers ask for these at start and
expect the "nothing configured" answer, not NotImplemented.
"""

from __future__ import annotations

from shoal.errors import S3Error
from shoal.http.app import S3Request, xml_response
from shoal.http.response import StreamResponse
from shoal.s3.service import S3Service


def _missing(code: str, message: str, http_status: int = 404):
    async def handler(svc: S3Service, req: S3Request) -> StreamResponse:
        assert req.bucket
        svc.bucket(req.identity, req.bucket, "s3:GetBucketConfiguration")
        raise S3Error(code, message, status=http_status, BucketName=req.bucket)

    return handler


def _empty(root: str, inner: str = ""):
    async def handler(svc: S3Service, req: S3Request) -> StreamResponse:
        assert req.bucket
        svc.bucket(req.identity, req.bucket, "s3:GetBucketConfiguration")
        return xml_response(root, inner)

    return handler


HANDLERS = {
    "GetBucketNotificationConfiguration": _empty("NotificationConfiguration"),
    "GetBucketLogging": _empty("BucketLoggingStatus"),
    "GetBucketAccelerateConfiguration": _empty("AccelerateConfiguration"),
    "GetBucketRequestPayment": _empty("RequestPaymentConfiguration", "<Payer>BucketOwner</Payer>"),
    "GetBucketWebsite": _missing("NoSuchWebsiteConfiguration", "The specified bucket does not have a website "
                                 "configuration"),
    "GetBucketReplication": _missing("ReplicationConfigurationNotFoundError",
                                     "The replication configuration was not found"),
}
