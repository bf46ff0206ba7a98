"""HTTP side of object and bucket tagging."""

from __future__ import annotations

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.http.response import Response, StreamResponse
from shoal.s3 import objects, tagging
from shoal.s3.service import S3Service


async def _read_tagset(req: S3Request) -> tagging.Tags:
    return parse_tagging(await req.read_body())


def parse_tagging(document: bytes) -> tagging.Tags:
    """A ``<Tagging><TagSet>`` document's tags (not yet checked against the limits)."""
    root = xml.parse(document)
    tag_set = root.find("TagSet")
    if root.tag != "Tagging" or tag_set is None:
        raise S3Error("MalformedXML")
    tags: tagging.Tags = []
    for node in tag_set.findall("Tag"):
        key, value = xml.child_text(node, "Key"), xml.child_text(node, "Value")
        if key is None or value is None:
            raise S3Error("MalformedXML")
        tags.append((key, value))
    return tags


def _render(tags: tagging.Tags) -> str:
    return "<TagSet>" + "".join("<Tag>" + xml.el("Key", k) + xml.el("Value", v) + "</Tag>" for k, v in tags) + \
        "</TagSet>"


async def get_object_tagging(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    record = tagging.get_object_tags(svc, req.identity, req.bucket, req.key, req.query.get("versionId"))
    return xml_response("Tagging", _render(tagging.object_tags(record)), headers=objects.version_header(svc, record))


async def put_object_tagging(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    tags = await _read_tagset(req)
    record = await tagging.set_object_tags(svc, req.identity, req.bucket, req.key, req.query.get("versionId"), tags)
    return Response(status=200, headers=objects.version_header(svc, record))


async def delete_object_tagging(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    record = await tagging.set_object_tags(svc, req.identity, req.bucket, req.key, req.query.get("versionId"), None)
    return Response(status=204, headers=objects.version_header(svc, record))


async def get_bucket_tagging(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    return xml_response("Tagging", _render(tagging.bucket_tags(svc, req.identity, req.bucket)))


async def put_bucket_tagging(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await tagging.set_bucket_tags(svc, req.identity, req.bucket, await _read_tagset(req))
    return Response(status=204)


async def delete_bucket_tagging(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await tagging.set_bucket_tags(svc, req.identity, req.bucket, None)
    return Response(status=204)


HANDLERS = {
    "GetObjectTagging": get_object_tagging,
    "PutObjectTagging": put_object_tagging,
    "DeleteObjectTagging": delete_object_tagging,
    "GetBucketTagging": get_bucket_tagging,
    "PutBucketTagging": put_bucket_tagging,
    "DeleteBucketTagging": delete_bucket_tagging,
}
