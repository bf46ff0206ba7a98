"""HTTP side of bucket versioning: Put/GetBucketVersioning and ListObjectVersions."""

from __future__ import annotations

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.http.handlers.buckets import encoder, owner_element
from shoal.http.response import Response, StreamResponse
from shoal.s3 import versioning
from shoal.s3.listing import parse_max_keys
from shoal.s3.service import S3Service


async def put_bucket_versioning(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    root = xml.parse(await req.read_body())
    if root.tag != "VersioningConfiguration":
        raise S3Error("MalformedXML")
    status = xml.child_text(root, "Status")
    if status is None:
        svc.bucket(req.identity, req.bucket, "s3:PutBucketVersioning")
        return Response(status=200)  # only MfaDelete given (or nothing): nothing to change
    await versioning.set_state(svc, req.identity, req.bucket, status)
    return Response(status=200)


async def get_bucket_versioning(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    bucket = versioning.get_state(svc, req.identity, req.bucket)
    status = bucket.config.get("versioning")
    return xml_response("VersioningConfiguration", xml.el("Status", status) if status else "")


async def list_object_versions(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    q = req.query
    enc = encoder(req)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, version_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
    max_keys = parse_max_keys(q.get("max-keys"))
    page = versioning.list_versions(svc, req.identity, req.bucket, prefix, delimiter, key_marker, version_marker,
                                    max_keys)
    inner = xml.el("Name", req.bucket) + f"<Prefix>{enc(prefix)}</Prefix>" + f"<KeyMarker>{enc(key_marker)}</KeyMarker>"
    inner += xml.el("VersionIdMarker", version_marker) + xml.el("MaxKeys", max_keys)
    if delimiter:
        inner += f"<Delimiter>{enc(delimiter)}</Delimiter>"
    inner += xml.el("IsTruncated", "true" if page.truncated else "false")
    if page.truncated and page.next_key is not None:
        inner += f"<NextKeyMarker>{enc(page.next_key)}</NextKeyMarker>"
        if page.next_version is not None:
            inner += xml.el("NextVersionIdMarker", page.next_version)
    if "encoding-type" in q:
        inner += xml.el("EncodingType", "url")
    for r in page.versions:
        common = (
            f"<Key>{enc(r.key)}</Key>" + xml.el("VersionId", r.version_id)
            + xml.el("IsLatest", "true" if r.is_latest else "false")
            + xml.el("LastModified", xml.iso8601(r.last_modified))
        )
        if r.delete_marker:
            inner += "<DeleteMarker>" + common + owner_element(r.meta.get("o", ""), svc) + "</DeleteMarker>"
        else:
            inner += (
                "<Version>" + common + xml.el("ETag", f'"{r.etag}"') + xml.el("Size", r.size)
                + xml.el("StorageClass", r.meta.get("sc", "STANDARD")) + owner_element(r.meta.get("o", ""), svc)
                + "</Version>"
            )
    inner += "".join(f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>" for p in page.prefixes)
    return xml_response("ListVersionsResult", inner)


HANDLERS = {
    "PutBucketVersioning": put_bucket_versioning,
    "GetBucketVersioning": get_bucket_versioning,
    "ListObjectVersions": list_object_versions,
}
