"""HTTP side of bucket operations and listings."""

from __future__ import annotations

import base64
import functools
from urllib.parse import quote

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.http.response import Response, StreamResponse
from shoal.s3 import listing
from shoal.s3.service import S3Service
from shoal.storage.records import ObjectRecord


def owner_element(user_id: str, svc: S3Service) -> str:
    name = user_id
    for identity in svc.identities.all():
        if identity.user_id == user_id:
            name = identity.display_name
            break
    return "<Owner>" + xml.el("ID", user_id) + xml.el("DisplayName", name) + "</Owner>"


MAX_BUCKETS = 10000


async def list_buckets(svc: S3Service, req: S3Request) -> StreamResponse:
    q = req.query
    limit = None
    if "max-buckets" in q:
        try:
            limit = int(q["max-buckets"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_BUCKETS:
            raise S3Error("InvalidArgument", f"Argument max-buckets must be an integer between 1 and {MAX_BUCKETS}",
                          ArgumentName="max-buckets", ArgumentValue=q["max-buckets"])
    token = q.get("continuation-token")
    after = _token_decode(token) if token else ""
    prefix = q.get("prefix", "")
    buckets, more = svc.list_buckets(req.identity, prefix, q.get("bucket-region") or None, after, limit)
    assert req.identity is not None
    inner = owner_element(req.identity.user_id, svc) + "<Buckets>"
    inner += "".join(
        "<Bucket>" + xml.el("Name", b.name) + xml.el("CreationDate", xml.iso8601(b.created))
        + xml.el("BucketRegion", b.region) + "</Bucket>"
        for b in buckets
    )
    inner += "</Buckets>"
    if more:
        inner += xml.el("ContinuationToken", _token_encode(buckets[-1].name))
    if "prefix" in q:
        inner += xml.el("Prefix", prefix)
    return xml_response("ListAllMyBucketsResult", inner)


async def create_bucket(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    body = await req.read_body()
    location = None
    if body.strip():
        root = xml.parse(body)
        if root.tag != "CreateBucketConfiguration":
            raise S3Error("MalformedXML")
        location = xml.child_text(root, "LocationConstraint") or None
    await svc.create_bucket(req.identity, req.bucket, location, req.headers)
    return Response(status=200, headers={"Location": f"/{req.bucket}"})


async def head_bucket(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    bucket = svc.bucket(req.identity, req.bucket, "s3:ListBucket")
    return Response(status=200, headers={"x-amz-bucket-region": bucket.region})


async def delete_bucket(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    await svc.delete_bucket(req.identity, req.bucket)
    return Response(status=204)


async def get_bucket_location(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    bucket = svc.bucket(req.identity, req.bucket, "s3:GetBucketLocation")
    region = "" if bucket.region == "us-east-1" else bucket.region
    return Response(body=xml.document("LocationConstraint", xml.esc(region)), content_type="application/xml")


# -- listings -----------------------------------------------------------------------------------------------


def encoder(req: S3Request):
    encoding = req.query.get("encoding-type")
    if encoding is None:
        return xml.esc
    if encoding.lower() != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type", ArgumentValue=encoding)
    return lambda value: xml.esc(quote(str(value), safe="/"))


@functools.lru_cache(maxsize=64)
def _storage_class(value: str) -> str:
    return xml.el("StorageClass", value)


@functools.lru_cache(maxsize=64)
def _checksum_elements(algorithms: tuple[str, ...], kind: str) -> str:
    return "".join(xml.el("ChecksumAlgorithm", a) for a in algorithms) + xml.el("ChecksumType", kind)


def _contents(record: ObjectRecord, enc, owner: str | None) -> str:
    # LastModified, ETag (hex digits and "-N") and Size never need escaping. The storage class and checksum
    # elements repeat from key to key: rendered once each (a page has up to 1000 keys).
    meta = record.meta
    ck = meta.get("ck")
    return (
        f"<Contents><Key>{enc(record.key)}</Key><LastModified>{xml.iso8601(record.last_modified)}</LastModified>"
        f"<ETag>&quot;{record.etag}&quot;</ETag><Size>{record.size}</Size>{_storage_class(meta.get('sc', 'STANDARD'))}"
        f"{owner or ''}{_checksum_elements(tuple(ck), meta['ckt']) if ck else ''}</Contents>"
    )


def _owners(svc: S3Service):
    """owner_element, remembered for the length of one listing (it scans the identities)."""
    cache: dict[str, str] = {}

    def owner(user_id: str) -> str:
        element = cache.get(user_id)
        if element is None:
            element = cache[user_id] = owner_element(user_id, svc)
        return element

    return owner


def _prefixes(prefixes: list[str], enc) -> str:
    return "".join(f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>" for p in prefixes)


async def list_objects(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    q = req.query
    enc = encoder(req)
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
    max_keys = listing.parse_max_keys(q.get("max-keys"))
    page = listing.list_objects(svc, req.identity, req.bucket, prefix, delimiter, marker, max_keys)
    # As S3 (and botocore, which decodes the other fields but not this one): ListObjects (V1) never URL-encodes
    # the Prefix it echoes, even with encoding-type=url.
    inner = xml.el("Name", req.bucket) + xml.el("Prefix", prefix) + f"<Marker>{enc(marker)}</Marker>"
    inner += xml.el("MaxKeys", max_keys)
    if delimiter:
        inner += f"<Delimiter>{enc(delimiter)}</Delimiter>"
    inner += xml.el("IsTruncated", "true" if page.truncated else "false")
    if page.truncated and delimiter and page.last is not None:
        inner += f"<NextMarker>{enc(page.last)}</NextMarker>"
    if "encoding-type" in q:
        inner += xml.el("EncodingType", "url")
    owner = _owners(svc)
    inner += "".join(_contents(r, enc, owner(r.meta.get("o", ""))) for r in page.contents)
    inner += _prefixes(page.prefixes, enc)
    return xml_response("ListBucketResult", inner)


def _token_encode(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8", "surrogatepass")).decode()


def _token_decode(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode("utf-8", "surrogatepass")
    except ValueError:
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token") from None


async def list_objects_v2(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    q = req.query
    enc = encoder(req)
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    start_after = q.get("start-after", "")
    token = q.get("continuation-token")
    # An empty token is no position (boto3 paginators may send one) but is still echoed back.
    after = _token_decode(token) if token else start_after
    max_keys = listing.parse_max_keys(q.get("max-keys"))
    fetch_owner = q.get("fetch-owner", "").lower() == "true"
    page = listing.list_objects(svc, req.identity, req.bucket, prefix, delimiter, after, max_keys)
    inner = xml.el("Name", req.bucket) + f"<Prefix>{enc(prefix)}</Prefix>"
    if start_after:
        inner += f"<StartAfter>{enc(start_after)}</StartAfter>"
    if token is not None:
        inner += xml.el("ContinuationToken", token)
    inner += xml.el("KeyCount", len(page.contents) + len(page.prefixes)) + xml.el("MaxKeys", max_keys)
    if delimiter:
        inner += f"<Delimiter>{enc(delimiter)}</Delimiter>"
    inner += xml.el("IsTruncated", "true" if page.truncated else "false")
    if page.truncated and page.last is not None:
        inner += xml.el("NextContinuationToken", _token_encode(page.last))
    if "encoding-type" in q:
        inner += xml.el("EncodingType", "url")
    owner = _owners(svc)
    inner += "".join(_contents(r, enc, owner(r.meta.get("o", "")) if fetch_owner else None) for r in page.contents)
    inner += _prefixes(page.prefixes, enc)
    return xml_response("ListBucketResult", inner)


HANDLERS = {
    "ListBuckets": list_buckets,
    "CreateBucket": create_bucket,
    "HeadBucket": head_bucket,
    "DeleteBucket": delete_bucket,
    "GetBucketLocation": get_bucket_location,
    "ListObjects": list_objects,
    "ListObjectsV2": list_objects_v2,
}
