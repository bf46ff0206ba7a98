"""HTTP side of object operations: headers in, headers and bytes out (zero-copy sendfile for stored blobs)."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Mapping
from contextlib import aclosing
from typing import cast

from shoal import read_budget
from shoal.errors import S3Error
from shoal.http import xml, zerocopy
from shoal.http.app import S3Request, xml_response
from shoal.http.response import Response, StreamResponse
from shoal.s3 import checksums, integrity, objects, sse
from shoal.s3.acl import GRANT_HEADERS
from shoal.s3.conditions import Conditions, parse_http_date
from shoal.s3.context import header_names
from shoal.s3.lifecycle import expiration_header
from shoal.s3.objects import ChecksumRequest, CopySource, ObjectAttributes
from shoal.s3.service import S3Service
from shoal.s3.tagging import parse_header as tagging_header
from shoal.storage.errors import CorruptBlobError
from shoal.storage.records import ObjectRecord

log = logging.getLogger(__name__)

ACL_HEADERS = ("x-amz-acl", *GRANT_HEADERS)
CONTENT_HEADERS = ("Content-Encoding", "Content-Disposition", "Content-Language", "Cache-Control", "Expires")
_ANY_CONTENT_NAME = re.compile("|".join(name.lower() for name in CONTENT_HEADERS)).search
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


# -- request parsing ----------------------------------------------------------------------------------------


def object_attributes(req: S3Request) -> ObjectAttributes:
    return attributes_from_headers(req.headers, req.header_names())


def attributes_from_headers(h: Mapping[str, str], names: str | None = None) -> ObjectAttributes:
    """What a write sets on the object, from request headers (or form fields shaped like them)."""
    # All names in one lower-case string: substring tests then skip the loops for what a request lacks (most
    # carry no user metadata and no ACL headers); what they find is looked up properly.
    if names is None:
        names = header_names(h)
    headers: dict[str, str] = {}
    if _ANY_CONTENT_NAME(names):
        for name in CONTENT_HEADERS:
            value = h.get(name)
            if value is not None:
                headers[name] = value
    encoding = headers.get("Content-Encoding")
    if encoding is not None:
        # aws-chunked describes the transfer, not the object: S3 does not store it.
        # Drop that token only, keeping the client's own spelling of the rest ("gzip, identity").
        kept = [e for e in encoding.split(",") if e.strip() and e.strip().lower() != "aws-chunked"]
        if kept:
            headers["Content-Encoding"] = ",".join(kept).strip()
        else:
            del headers["Content-Encoding"]
    user: dict[str, str] = {}
    if "x-amz-meta-" in names:
        for name, value in h.items():
            low = name.lower()
            if low.startswith("x-amz-meta-"):
                meta_name = low[len("x-amz-meta-"):]
                user[meta_name] = f"{user[meta_name]},{value}" if meta_name in user else value
    tagging = h.get("x-amz-tagging")
    return ObjectAttributes(
        content_type=h.get("Content-Type"),
        headers=headers,
        user=user,
        storage_class=h.get("x-amz-storage-class", "STANDARD"),
        tags=tagging_header(tagging) if tagging is not None else [],
        acl_headers={n: h[n] for n in ACL_HEADERS if n in h}
        if "x-amz-acl" in names or "x-amz-grant-" in names else {},
        lock_mode=h.get("x-amz-object-lock-mode"),
        lock_until=h.get("x-amz-object-lock-retain-until-date"),
        legal_hold=h.get("x-amz-object-lock-legal-hold"),
    )


def checksum_request(req: S3Request) -> ChecksumRequest:
    return checksum_from_headers(req.headers, req.header_names())


def checksum_from_headers(h: Mapping[str, str], names: str | None = None) -> ChecksumRequest:
    if names is None:
        names = header_names(h)
    present = [(a, h[checksums.HEADER_FOR[a]]) for a in checksums.ALGORITHMS if checksums.HEADER_FOR[a] in h] \
        if "x-amz-checksum-" in names else []  # one substring test skips five lookups (most PUTs)
    if len(present) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are "
                      "not allowed.")
    trailer = h.get("x-amz-trailer")
    if trailer:
        name = trailer.strip().lower()
        for algorithm, header in checksums.HEADER_FOR.items():
            if header == name:
                return ChecksumRequest(algorithm, None, in_trailer=True)
        raise S3Error("InvalidRequest", f"The value specified in the x-amz-trailer header is not supported: {trailer}")
    if present:
        algorithm, value = present[0]
        if not checksums.is_valid_value(algorithm, value):
            # A value that cannot be the algorithm's digest cannot match either (ceph/s3-tests: BadDigest).
            raise S3Error("BadDigest", f"Value for {checksums.HEADER_FOR[algorithm]} header is invalid.")
        return ChecksumRequest(algorithm, value)
    sdk = h.get("x-amz-sdk-checksum-algorithm") or h.get("x-amz-checksum-algorithm")
    if sdk:
        algorithm = sdk.strip().upper()
        if algorithm not in checksums.ALGORITHMS:
            raise S3Error("InvalidRequest", f"Value for x-amz-sdk-checksum-algorithm header is invalid: {sdk}")
        return ChecksumRequest(algorithm)
    return ChecksumRequest()


_ANY_CONDITION_NAME = re.compile("if-match|if-none-match|if-modified-since|if-unmodified-since").search


def conditions(req: S3Request, prefix: str = "") -> Conditions | None:
    """The request's preconditions; None when it has none (most requests)."""
    h = req.headers
    if not prefix and not _ANY_CONDITION_NAME(req.header_names()):
        return None
    return Conditions(
        if_match=h.get(f"{prefix}If-Match"),
        if_none_match=h.get(f"{prefix}If-None-Match"),
        if_modified_since=parse_http_date(h.get(f"{prefix}If-Modified-Since")),
        if_unmodified_since=parse_http_date(h.get(f"{prefix}If-Unmodified-Since")),
    )


def copy_source(req: S3Request) -> CopySource:
    bucket, key, version_id = objects.parse_copy_source(req.headers["x-amz-copy-source"])
    # With a prefix, conditions() always returns one (it returns None only for requests without any).
    return CopySource(bucket, key, version_id, cast(Conditions, conditions(req, "x-amz-copy-source-")))


# -- response headers ---------------------------------------------------------------------------------------


def object_headers(record: ObjectRecord, with_checksums: bool) -> dict[str, str]:
    meta = record.meta
    headers = {
        "ETag": f'"{record.etag}"',
        "Last-Modified": xml.http_date(record.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Type": meta.get("ct") or "binary/octet-stream",
    }
    headers.update(meta.get("h", {}))
    for name, value in meta.get("u", {}).items():
        headers[f"x-amz-meta-{name}"] = value
    if "sc" in meta:
        headers["x-amz-storage-class"] = meta["sc"]
    if meta.get("t"):
        headers["x-amz-tagging-count"] = str(len(meta["t"]))
    if meta.get("lk"):
        headers["x-amz-object-lock-mode"] = meta["lk"]["m"]
        headers["x-amz-object-lock-retain-until-date"] = meta["lk"]["u"]
    if meta.get("lh"):
        headers["x-amz-object-lock-legal-hold"] = meta["lh"]
    if with_checksums and meta.get("ck"):
        for algorithm, value in meta["ck"].items():
            headers[checksums.HEADER_FOR[algorithm]] = value
        headers["x-amz-checksum-type"] = meta.get("ckt", "FULL_OBJECT")
    return headers


def checksum_headers(values: dict[str, str], kind: str | None = None) -> dict[str, str]:
    headers = {checksums.HEADER_FOR[a]: v for a, v in values.items()}
    if values and kind:
        headers["x-amz-checksum-type"] = kind
    return headers


# -- handlers -----------------------------------------------------------------------------------------------


def bypass_governance(req: S3Request) -> bool:
    return req.headers.get("x-amz-bypass-governance-retention", "").strip().lower() == "true"


def require_content_length(req: S3Request) -> None:
    if "Content-Length" not in req.headers and "chunked" not in req.headers.get("Transfer-Encoding", "").lower():
        raise S3Error("MissingContentLength")


async def put_object(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    require_content_length(req)
    checksum = checksum_request(req)
    requested = sse.parse_write(req.headers, req.header_names())
    record = await objects.put_object(
        svc, req.identity, req.bucket, req.key, req.body, object_attributes(req), checksum,  # type: ignore[arg-type]
        req.header("Content-MD5"), if_match=req.header("If-Match"), if_none_match=req.header("If-None-Match"),
        requested=requested,
    )
    headers = {"ETag": f'"{record.etag}"', **objects.version_header(svc, record, write=True),
               **expiration_header(svc, record),
               **sse.response_headers(record.meta.get("e"), requested.customer)}
    if checksum.algorithm:
        headers.update(checksum_headers({checksum.algorithm: record.meta["ck"][checksum.algorithm]}, "FULL_OBJECT"))
    return Response(status=200, headers=headers)


async def copy_object(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    directive = req.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.", ArgumentName="x-amz-metadata-directive",
                      ArgumentValue=directive)
    tag_directive = req.headers.get("x-amz-tagging-directive", "COPY").upper()
    if tag_directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown tagging directive.", ArgumentName="x-amz-tagging-directive",
                      ArgumentValue=tag_directive)
    await req.read_body(0)
    algorithm = req.headers.get("x-amz-checksum-algorithm")
    requested = sse.parse_write(req.headers, req.header_names())
    source = copy_source(req)
    record = await objects.copy_object(
        svc, req.identity, req.bucket, req.key, source, directive == "REPLACE", object_attributes(req),
        tag_directive == "REPLACE",
        algorithm.upper() if algorithm else None,
        if_match=req.header("If-Match"), if_none_match=req.header("If-None-Match"),
        requested=requested, source_customer=sse.parse_customer_key(req.headers, sse.COPY_SOURCE),
    )
    inner = xml.el("LastModified", xml.iso8601(record.last_modified)) + xml.el("ETag", f'"{record.etag}"')
    for name, value in record.meta.get("ck", {}).items():
        inner += xml.el(f"Checksum{name}", value)
    headers = objects.version_header(svc, record, write=True) | expiration_header(svc, record)
    headers |= sse.response_headers(record.meta.get("e"), requested.customer)
    if source.copied_version is not None:
        headers["x-amz-copy-source-version-id"] = source.copied_version
    return xml_response("CopyObjectResult", inner, headers=headers)


def _override_value(param: str, value: str) -> str:
    """A ``response-*`` value becomes a response header: no control characters (no header injection)."""
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        raise S3Error("InvalidArgument", f"Invalid value for {param}.", ArgumentName=param)
    return value


async def get_object(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    q = req.query
    part_number = q.get("partNumber")
    customer = sse.read_headers(req.headers, req.header_names())
    if part_number is not None and req.headers.get("Range"):
        raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter")
    for attempt in range(5):
        record = objects.head_object(svc, req.identity, req.bucket, req.key, conditions(req), q.get("versionId"))
        dek = sse.open_key(svc, record.meta.get("e"), customer)
        status = 200
        headers = object_headers(record, req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED")
        headers.update(objects.version_header(svc, record))
        headers.update(expiration_header(svc, record))
        headers.update(sse.response_headers(record.meta.get("e"), customer, write=False))
        start, length = 0, record.size
        if part_number is not None:
            from shoal.s3.multipart import check_part_number

            if "Range" in req.headers:
                raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter")

            start, length = objects.part_range(record, check_part_number(part_number))
            count = objects.parts_count(record)
            if count is not None:
                headers["x-amz-mp-parts-count"] = str(count)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{record.size}" if length else \
                    f"bytes */{record.size}"
        else:
            parsed = objects.parse_range(req.headers.get("Range"), record.size)
            if parsed is not None:
                start, length = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{record.size}"
        if status == 206:
            for algorithm in checksums.ALGORITHMS:
                headers.pop(checksums.HEADER_FOR[algorithm], None)
            headers.pop("x-amz-checksum-type", None)
            if part_number is not None and req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
                headers.update(objects.part_checksum_headers(record, int(part_number)))
        if not RESPONSE_OVERRIDES.keys().isdisjoint(q):
            for param, header in RESPONSE_OVERRIDES.items():
                if param in q:
                    headers[header] = _override_value(param, q[param])
        headers.update(req.response_headers)
        if req.method == "HEAD":
            # A plain Response (not streamed): sent in one write, with the length a GET would have.
            headers["Content-Length"] = str(length)
            return Response(status=status, headers=headers)
        if dek is None and record.inline is not None:
            # Stored inline (a small object): headers and body go out in one write.
            return Response(status=status, headers=headers, body=record.inline[start:start + length])
        pieces = objects.plan_read(record, start, length)
        try:
            files = objects.open_pieces(svc, pieces)
            break
        except FileNotFoundError as exc:
            # Overwritten between reading metadata and opening its blob: read the new version instead.
            if attempt == 4:
                raise integrity.missing(svc, exc) from None
    response = StreamResponse(status=status, headers=headers)
    response.content_length = length
    # Tells checks still running on worker threads that nobody waits for them (none for inline objects).
    stop = threading.Event() if any(f is not None for f in files) else None
    decrypted = None
    try:
        checks = integrity.whole_blob_checks(svc, pieces) if dek is None and req.method == "GET" else {}
        if checks and sum(pieces[i].length for i in checks) <= integrity.VERIFY_BEFORE_SEND:
            # Small enough to check before the headers: damage is then a clean 500.
            try:
                # checks only has pieces of stored blobs: their blob_id is set.
                await asyncio.gather(*(integrity.verify(cast(str, pieces[i].blob_id), files[i].fileno(), c, stop)
                                       for i, c in checks.items()))
            except CorruptBlobError as exc:
                raise integrity.corrupt(svc, exc, "GET") from None
            checks = {}
        first = None
        if dek is not None and pieces:
            # Encrypted: no sendfile; blocks are read and opened on a worker thread, 1 MiB at a time. The first
            # chunk is read before the headers go out, so a key or data failure is still a clean error.
            decrypted = objects.read_pieces(record, pieces, files, dek).__aiter__()
            first = await anext(decrypted, None)
        await response.prepare(req.http)
        if decrypted is None:
            await _send_pieces(req, response, record, pieces, files, checks, stop)
        else:
            if first is not None:
                await response.write(first)
            async for chunk in decrypted:
                await response.write(chunk)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass
    except CorruptBlobError as exc:
        # Found while sending (a large blob): its last bytes were held back, so the client sees a short body.
        integrity.corrupt(svc, exc, "GET")
        log.error("GET %s/%s: cut short, stored bytes are damaged", req.bucket, req.key)
        if req.http.transport is not None:
            req.http.transport.close()
    except Exception:
        if not response.prepared:
            raise
        # Headers are out: the only honest way to report a failure now is to cut the connection short.
        log.exception("GET %s/%s failed while sending", req.bucket, req.key)
        if req.http.transport is not None:
            req.http.transport.close()
    finally:
        if stop is not None:
            stop.set()
        try:
            if decrypted is not None:
                await decrypted.aclose()  # a reader cut off (the client gone) gives back its read share now
        finally:
            for f in files:
                if f is not None:
                    f.close()
    return response


async def _send_pieces(req: S3Request, response: StreamResponse, record: ObjectRecord, pieces, files,
                       checks: dict[int, tuple[str, int]], stop: threading.Event | None) -> None:
    for index, (piece, f) in enumerate(zip(pieces, files, strict=True)):
        if f is None:
            assert record.inline is not None
            await response.write(record.inline[piece.offset : piece.offset + piece.length])
            continue
        check = checks.get(index)
        if check is None:
            await _send_range(req, response, f, piece.offset, piece.length)
            continue
        # Check the blob on a worker thread while sendfile sends it; hold its last bytes back until the check
        # has passed (see shoal.s3.integrity).
        verifying = asyncio.ensure_future(integrity.verify(piece.blob_id, f.fileno(), check, stop))
        head = max(piece.length - integrity.HELD_BACK, 0)
        try:
            await _send_range(req, response, f, piece.offset, head)
        except BaseException:
            verifying.cancel()
            raise
        await verifying
        await _send_range(req, response, f, piece.offset + head, piece.length - head)


async def _send_range(req: S3Request, response: StreamResponse, f, offset: int, length: int) -> None:
    if length <= 0:
        return
    transport = req.http.transport
    if transport is None:
        raise ConnectionResetError
    if transport.get_extra_info("ssl_object") is None:
        await zerocopy.send_range(transport, f.fileno(), offset, length,  # type: ignore[arg-type]
                                  req.stall_timeout)
        return
    # TLS: the bytes must pass through the encryption, so they are read (on a worker thread) and written, in
    # shares of the read budget (64 concurrent 64 MiB GETs took +206 MiB with 1 MiB reads each).
    async with aclosing(read_budget.pread_chunks(f.fileno(), offset, length)) as chunks:
        async for chunk in chunks:
            await response.write(chunk)
            length -= len(chunk)
    if length > 0:
        raise OSError("blob shorter than its metadata")


async def head_object(svc: S3Service, req: S3Request) -> StreamResponse:
    return await get_object(svc, req)


async def delete_object(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    outcome = await objects.delete_object(svc, req.identity, req.bucket, req.key, req.query.get("versionId"),
                                          bypass_governance(req))
    headers = {}
    if outcome.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    if outcome.version_id is not None:
        headers["x-amz-version-id"] = outcome.version_id
    return Response(status=204, headers=headers)


async def delete_objects(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    root = xml.parse(await req.read_body())
    if root.tag != "Delete":
        raise S3Error("MalformedXML")
    quiet = (xml.child_text(root, "Quiet") or "").strip().lower() == "true"
    keys: list[tuple[str, str | None]] = []
    for node in root.findall("Object"):
        key = xml.child_text(node, "Key")
        if key is None:
            raise S3Error("MalformedXML")
        keys.append((key, xml.child_text(node, "VersionId")))
    if not keys or len(keys) > 1000:
        raise S3Error("MalformedXML")
    outcomes = await objects.delete_objects(svc, req.identity, req.bucket, keys, bypass_governance(req))
    parts = []
    for (_, requested_version), outcome in zip(keys, outcomes, strict=True):
        if outcome.error is not None:
            version = xml.el("VersionId", outcome.version_id) if outcome.version_id is not None else ""
            parts.append("<Error>" + xml.el("Key", outcome.key) + version + xml.el("Code", outcome.error.code)
                         + xml.el("Message", outcome.error.message) + "</Error>")
        elif not quiet:
            inner = xml.el("Key", outcome.key)
            if requested_version is not None:
                inner += xml.el("VersionId", requested_version)
            if outcome.delete_marker:
                # The marker made, or the marker removed by its id: S3 names it either way.
                inner += xml.el("DeleteMarker", "true") + xml.el("DeleteMarkerVersionId", outcome.version_id)
            parts.append("<Deleted>" + inner + "</Deleted>")
    return xml_response("DeleteResult", "".join(parts))


ATTRIBUTE_NAMES = {"ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"}


async def get_object_attributes(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket and req.key
    wanted = {a.strip() for a in req.headers.get("x-amz-object-attributes", "").split(",") if a.strip()}
    if not wanted or not wanted <= ATTRIBUTE_NAMES:
        raise S3Error("InvalidArgument", "Invalid attribute name specified.")
    customer = sse.read_headers(req.headers, req.header_names())
    record = objects.head_object(svc, req.identity, req.bucket, req.key, conditions(req), req.query.get("versionId"))
    sse.open_key(svc, record.meta.get("e"), customer)
    meta = record.meta
    inner = ""
    if "ETag" in wanted:
        inner += xml.el("ETag", record.etag)
    if "Checksum" in wanted and meta.get("ck"):
        inner += "<Checksum>" + "".join(xml.el(f"Checksum{a}", v) for a, v in meta["ck"].items())
        inner += xml.el("ChecksumType", meta.get("ckt", "FULL_OBJECT")) + "</Checksum>"
    if "ObjectParts" in wanted and meta.get("p"):
        parts = meta["p"]
        max_parts = int(req.headers.get("x-amz-max-parts", "1000"))
        marker = int(req.headers.get("x-amz-part-number-marker", "0"))
        chosen = [(i + 1, p) for i, p in enumerate(parts) if i + 1 > marker][:max_parts]
        algorithm = next(iter(meta.get("ck", {})), None)
        inner += "<ObjectParts>" + xml.el("PartsCount", len(parts)) + xml.el("PartNumberMarker", marker)
        if chosen:
            inner += xml.el("NextPartNumberMarker", chosen[-1][0])
        inner += xml.el("MaxParts", max_parts)
        inner += xml.el("IsTruncated", "true" if chosen and chosen[-1][0] < len(parts) else "false")
        for number, (size, _etag, value) in chosen:
            inner += "<Part>" + xml.el("PartNumber", number) + xml.el("Size", size)
            if algorithm and value:
                inner += xml.el(f"Checksum{algorithm}", value)
            inner += "</Part>"
        inner += "</ObjectParts>"
    if "StorageClass" in wanted:
        inner += xml.el("StorageClass", meta.get("sc", "STANDARD"))
    if "ObjectSize" in wanted:
        inner += xml.el("ObjectSize", record.size)
    return xml_response("GetObjectAttributesResponse", inner,
                        headers={"Last-Modified": xml.http_date(record.last_modified),
                                 **objects.version_header(svc, record)})


HANDLERS = {
    "PutObject": put_object,
    "CopyObject": copy_object,
    "GetObject": get_object,
    "HeadObject": head_object,
    "DeleteObject": delete_object,
    "DeleteObjects": delete_objects,
    "GetObjectAttributes": get_object_attributes,
}
