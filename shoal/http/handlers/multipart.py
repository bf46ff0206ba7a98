"""HTTP side of multipart uploads."""

from __future__ import annotations

from urllib.parse import quote

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request, xml_response
from shoal.http.handlers.objects import (
    checksum_headers,
    checksum_request,
    copy_source,
    object_attributes,
    require_content_length,
)
from shoal.http.response import Response, StreamResponse
from shoal.s3 import access_settings, checksums, multipart, objects, sse
from shoal.s3.lifecycle import expiration_header
from shoal.s3.listing import parse_max_keys
from shoal.s3.service import S3Service


async def create_multipart_upload(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    await req.read_body(0)
    algorithm = req.headers.get("x-amz-checksum-algorithm")
    if algorithm is not None:
        algorithm = algorithm.strip().upper()
        if algorithm not in checksums.ALGORITHMS:
            raise S3Error("InvalidRequest", f"Checksum algorithm provided is unsupported: {algorithm}")
    requested = sse.parse_write(req.headers, req.header_names())
    upload = await multipart.create_upload(
        svc, req.identity, req.bucket, req.key, object_attributes(req), algorithm,
        req.headers.get("x-amz-checksum-type"), requested,
    )
    inner = xml.el("Bucket", req.bucket) + xml.el("Key", req.key) + xml.el("UploadId", upload.upload_id)
    headers = sse.response_headers(upload.meta.get("e"), requested.customer)
    if algorithm:
        headers |= {"x-amz-checksum-algorithm": algorithm, "x-amz-checksum-type": upload.meta["ckt"]}
    return xml_response("InitiateMultipartUploadResult", inner, headers=headers)


async def upload_part(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    require_content_length(req)
    number = multipart.check_part_number(req.query.get("partNumber"))
    checksum = checksum_request(req)
    customer = sse.parse_customer_key(req.headers)
    part = await multipart.upload_part(
        svc, req.identity, req.bucket, req.key, req.query["uploadId"], number, req.body,  # type: ignore[arg-type]
        checksum, req.header("Content-MD5"), customer,
    )
    headers = {"ETag": f'"{part.etag}"', **_upload_sse_headers(svc, req, customer)}
    if checksum.algorithm:
        headers.update(checksum_headers({checksum.algorithm: part.checksums[checksum.algorithm]}))
    return Response(status=200, headers=headers)


async def upload_part_copy(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    number = multipart.check_part_number(req.query.get("partNumber"))
    await req.read_body(0)
    customer = sse.parse_customer_key(req.headers)
    source = copy_source(req)
    part = await multipart.upload_part_copy(
        svc, req.identity, req.bucket, req.key, req.query["uploadId"], number, source,
        req.headers.get("x-amz-copy-source-range"), customer,
        sse.parse_customer_key(req.headers, sse.COPY_SOURCE),
    )
    inner = xml.el("LastModified", xml.iso8601(part.last_modified)) + xml.el("ETag", f'"{part.etag}"')
    headers = _upload_sse_headers(svc, req, customer)
    if source.copied_version is not None:
        headers["x-amz-copy-source-version-id"] = source.copied_version
    return xml_response("CopyPartResult", inner, headers=headers)


def _upload_sse_headers(svc: S3Service, req: S3Request, customer: sse.CustomerKey | None) -> dict[str, str]:
    assert req.bucket and req.key
    upload = svc.storage.meta.get_upload(req.bucket, req.key, req.query["uploadId"])
    return sse.response_headers(upload.meta.get("e"), customer) if upload is not None else {}


async def complete_multipart_upload(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    root = xml.parse(await req.read_body())
    if root.tag != "CompleteMultipartUpload":
        raise S3Error("MalformedXML")
    parts = []
    for node in root.findall("Part"):
        number_text = xml.child_text(node, "PartNumber")
        etag = xml.child_text(node, "ETag")
        if number_text is None or etag is None:
            raise S3Error("MalformedXML")
        try:
            number = int(number_text)
        except ValueError:
            raise S3Error("MalformedXML") from None
        values = {}
        for algorithm in checksums.ALGORITHMS:
            value = xml.child_text(node, f"Checksum{algorithm}")
            if value:
                values[algorithm] = value
        parts.append(multipart.CompletedPart(number, etag, values))
    full = None
    for algorithm in checksums.ALGORITHMS:
        value = req.headers.get(checksums.HEADER_FOR[algorithm])
        if value:
            full = (algorithm, value)
    customer = sse.parse_customer_key(req.headers)
    record = await multipart.complete_upload(
        svc, req.identity, req.bucket, req.key, req.query["uploadId"], parts, full,
        req.headers.get("x-amz-checksum-type"),
        if_match=req.header("If-Match"), if_none_match=req.header("If-None-Match"), customer=customer,
    )
    location = f"http://{req.headers.get('Host', 'localhost')}/{req.bucket}/{quote(req.key)}"
    inner = xml.el("Location", location) + xml.el("Bucket", req.bucket) + xml.el("Key", req.key)
    inner += xml.el("ETag", f'"{record.etag}"')
    for algorithm, value in record.meta.get("ck", {}).items():
        inner += xml.el(f"Checksum{algorithm}", value)
    if record.meta.get("ck"):
        inner += xml.el("ChecksumType", record.meta.get("ckt"))
    headers = objects.version_header(svc, record, write=True) | expiration_header(svc, record)
    headers |= sse.response_headers(record.meta.get("e"), customer)
    return xml_response("CompleteMultipartUploadResult", inner, headers=headers)


async def abort_multipart_upload(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    await multipart.abort_upload(svc, req.identity, req.bucket, req.key, req.query["uploadId"])
    return Response(status=204)


def _int_param(req: S3Request, name: str, default: int) -> int:
    value = req.query.get(name)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise S3Error("InvalidArgument", f"Provided {name} not an integer or within integer range",
                      ArgumentName=name, ArgumentValue=value) from None
    if n < 0:
        raise S3Error("InvalidArgument", f"Argument {name} must be an integer between 0 and 2147483647",
                      ArgumentName=name, ArgumentValue=value)
    return n


def _initiator_and_owner(svc: S3Service, user_id: str) -> str:
    who = xml.el("ID", user_id) + xml.el("DisplayName", access_settings.display_name(svc, user_id))
    return f"<Initiator>{who}</Initiator><Owner>{who}</Owner>"


async def list_parts(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    marker = _int_param(req, "part-number-marker", 0)
    max_parts = min(_int_param(req, "max-parts", 1000), 1000)
    upload, parts, truncated = multipart.list_parts(
        svc, req.identity, req.bucket, req.key, req.query["uploadId"], marker, max_parts
    )
    owner = upload.meta.get("o", "")
    inner = xml.el("Bucket", req.bucket) + xml.el("Key", req.key) + xml.el("UploadId", upload.upload_id)
    inner += _initiator_and_owner(svc, owner)
    inner += xml.el("StorageClass", upload.meta.get("sc", "STANDARD"))
    inner += xml.el("PartNumberMarker", marker)
    if parts:
        inner += xml.el("NextPartNumberMarker", parts[-1].number)
    inner += xml.el("MaxParts", max_parts) + xml.el("IsTruncated", "true" if truncated else "false")
    if upload.meta.get("cka"):
        inner += xml.el("ChecksumAlgorithm", upload.meta["cka"]) + xml.el("ChecksumType", upload.meta["ckt"])
    algorithm = upload.meta.get("cka")
    for p in parts:
        inner += "<Part>" + xml.el("PartNumber", p.number) + xml.el("LastModified", xml.iso8601(p.last_modified))
        inner += xml.el("ETag", f'"{p.etag}"') + xml.el("Size", p.size)
        if algorithm and algorithm in p.checksums:
            inner += xml.el(f"Checksum{algorithm}", p.checksums[algorithm])
        inner += "</Part>"
    return xml_response("ListPartsResult", inner)


async def list_multipart_uploads(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    q = req.query
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    limit = parse_max_keys(q.get("max-uploads"))
    page = multipart.list_uploads(svc, req.identity, req.bucket, prefix, delimiter, key_marker, id_marker, limit)
    inner = xml.el("Bucket", req.bucket) + xml.el("KeyMarker", key_marker) + xml.el("UploadIdMarker", id_marker)
    if page.uploads:
        last = page.uploads[-1]
        inner += xml.el("NextKeyMarker", last.key) + xml.el("NextUploadIdMarker", last.upload_id)
    inner += xml.el("Prefix", prefix)
    if delimiter:
        inner += xml.el("Delimiter", delimiter)
    inner += xml.el("MaxUploads", limit) + xml.el("IsTruncated", "true" if page.truncated else "false")
    for u in page.uploads:
        owner = u.meta.get("o", "")
        inner += "<Upload>" + xml.el("Key", u.key) + xml.el("UploadId", u.upload_id)
        inner += _initiator_and_owner(svc, owner)
        inner += xml.el("StorageClass", u.meta.get("sc", "STANDARD")) + xml.el("Initiated", xml.iso8601(u.initiated))
        if u.meta.get("cka"):
            inner += xml.el("ChecksumAlgorithm", u.meta["cka"]) + xml.el("ChecksumType", u.meta["ckt"])
        inner += "</Upload>"
    inner += "".join(f"<CommonPrefixes>{xml.el('Prefix', p)}</CommonPrefixes>" for p in page.prefixes)
    return xml_response("ListMultipartUploadsResult", inner)


HANDLERS = {
    "CreateMultipartUpload": create_multipart_upload,
    "UploadPart": upload_part,
    "UploadPartCopy": upload_part_copy,
    "CompleteMultipartUpload": complete_multipart_upload,
    "AbortMultipartUpload": abort_multipart_upload,
    "ListParts": list_parts,
    "ListMultipartUploads": list_multipart_uploads,
}
