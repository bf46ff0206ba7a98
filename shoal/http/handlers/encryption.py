"""HTTP side of bucket default encryption: Put/Get/DeleteBucketEncryption."""

from __future__ import annotations

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.http.response import Response, StreamResponse
from shoal.s3 import sse
from shoal.s3.service import S3Service


async def put_bucket_encryption(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    root = xml.parse(await req.read_body())
    rules = root.findall("Rule")
    if root.tag != "ServerSideEncryptionConfiguration" or len(rules) != 1:
        raise S3Error("MalformedXML")
    default = rules[0].find("ApplyServerSideEncryptionByDefault")
    if default is None:
        raise S3Error("MalformedXML")
    algorithm = (xml.child_text(default, "SSEAlgorithm") or "").strip()
    key_id = xml.child_text(default, "KMSMasterKeyID")
    bucket_key = (xml.child_text(rules[0], "BucketKeyEnabled") or "false").strip().lower()
    if bucket_key not in ("true", "false"):
        raise S3Error("MalformedXML")
    await sse.set_default(svc, req.identity, req.bucket, algorithm, key_id.strip() if key_id else None,
                          bucket_key == "true")
    return Response(status=200)


async def get_bucket_encryption(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    default = sse.get_default(svc, req.identity, req.bucket)
    inner = xml.el("SSEAlgorithm", default["a"])
    if default.get("kid"):
        inner += xml.el("KMSMasterKeyID", default["kid"])
    rule = "<ApplyServerSideEncryptionByDefault>" + inner + "</ApplyServerSideEncryptionByDefault>"
    rule += xml.el("BucketKeyEnabled", "true" if default.get("bk") else "false")
    return xml_response("ServerSideEncryptionConfiguration", f"<Rule>{rule}</Rule>")


async def delete_bucket_encryption(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await sse.set_default(svc, req.identity, req.bucket, None, None, False)
    return Response(status=204)


HANDLERS = {
    "PutBucketEncryption": put_bucket_encryption,
    "GetBucketEncryption": get_bucket_encryption,
    "DeleteBucketEncryption": delete_bucket_encryption,
}
