"""HTTP side of bucket lifecycle configuration: Put/Get/DeleteBucketLifecycle(Configuration)."""

from __future__ import annotations

from shoal.http.app import S3Request, xml_response
from shoal.http.response import Response, StreamResponse
from shoal.s3 import lifecycle
from shoal.s3.service import S3Service


async def put_bucket_lifecycle(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    min_size = await lifecycle.put_configuration(svc, req.identity, req.bucket, req.read_body,
                                                 req.headers.get(lifecycle.MIN_SIZE_HEADER))
    return Response(status=200, headers={lifecycle.MIN_SIZE_HEADER: min_size})


async def get_bucket_lifecycle(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    config = lifecycle.get_configuration(svc, req.identity, req.bucket)
    return xml_response("LifecycleConfiguration", lifecycle.render_rules(config["rules"]),
                        headers={lifecycle.MIN_SIZE_HEADER: config.get("min_size", "all_storage_classes_128K")})


async def delete_bucket_lifecycle(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await lifecycle.delete_configuration(svc, req.identity, req.bucket)
    return Response(status=204)


HANDLERS = {
    "PutBucketLifecycleConfiguration": put_bucket_lifecycle,
    "GetBucketLifecycleConfiguration": get_bucket_lifecycle,
    "DeleteBucketLifecycle": delete_bucket_lifecycle,
}
