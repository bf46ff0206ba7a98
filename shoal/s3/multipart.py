"""Multipart uploads. Each part is its own blob; completing an upload only writes metadata that strings the
parts' blobs together, so no byte is copied again."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3 import access_settings, checksums, object_lock, sse
from shoal.s3.ingest import Body, Ingested, check_content_md5, ingest
from shoal.s3.names import check_key
from shoal.s3.objects import (
    DEFAULT_CHECKSUM,
    ChecksumRequest,
    CopySource,
    ObjectAttributes,
    etag_condition,
    ingest_range,
    new_version_id,
    object_owner,
    precondition_error,
    read_copy_source,
)
from shoal.s3.service import S3Service
from shoal.storage.errors import NoSuchUploadError, PreconditionError
from shoal.storage.records import ObjectRecord, Part, Segment, Upload
from shoal.tokens import cli_safe_token

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000
MAX_PART_SIZE = 5 * 1024**3


def _upload(svc: S3Service, identity: Identity | None, bucket: str, key: str, upload_id: str, action: str) -> Upload:
    svc.bucket(identity, bucket, action, key)
    upload = svc.storage.meta.get_upload(bucket, key, upload_id)
    if upload is None:
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    return upload


def check_part_number(value: str | int | None) -> int:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                      ArgumentName="partNumber", ArgumentValue=str(value)) from None
    if not 1 <= number <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                      ArgumentName="partNumber", ArgumentValue=str(value))
    return number


async def create_upload(
    svc: S3Service,
    identity: Identity | None,
    bucket: str,
    key: str,
    attrs: ObjectAttributes,
    checksum_algorithm: str | None,
    checksum_type: str | None,
    requested: sse.Requested | None = None,
) -> Upload:
    bucket_record = svc.bucket(identity, bucket, "s3:PutObject", key, request_tags=attrs.tags)
    check_key(key)
    attrs.validate()
    owner = object_owner(bucket_record, identity, attrs.acl_headers)
    grants = access_settings.grants_from_headers(svc, bucket_record, owner, attrs.acl_headers)
    if checksum_type is not None:
        checksum_type = checksum_type.upper()
        if checksum_type not in ("COMPOSITE", "FULL_OBJECT"):
            raise S3Error("InvalidRequest", "The x-amz-checksum-type header must be COMPOSITE or FULL_OBJECT.")
        if checksum_algorithm is None:
            raise S3Error("InvalidRequest", "x-amz-checksum-type requires x-amz-checksum-algorithm.")
    if checksum_algorithm is not None:
        if checksum_type is None:
            checksum_type = "FULL_OBJECT" if checksum_algorithm == "CRC64NVME" else "COMPOSITE"
        if checksum_type == "FULL_OBJECT" and checksum_algorithm not in checksums.CRC_ALGORITHMS:
            raise S3Error("InvalidRequest", f"The FULL_OBJECT checksum type cannot be used with {checksum_algorithm}.")
        if checksum_type == "COMPOSITE" and checksum_algorithm == "CRC64NVME":
            raise S3Error("InvalidRequest", "The COMPOSITE checksum type cannot be used with CRC64NVME.")
    meta = attrs.to_meta(owner, grants)
    meta |= object_lock.write_settings(bucket_record, attrs.lock_mode, attrs.lock_until, attrs.legal_hold)
    if checksum_algorithm:
        meta["cka"] = checksum_algorithm
        meta["ckt"] = checksum_type
    # One data key for the whole upload: every part is sealed with it (each under its own blob's derived key),
    # and the completed object keeps it.
    meta |= sse.object_info(sse.choose(svc, bucket_record, requested or sse.Requested()), None)
    upload = Upload(cli_safe_token(48), bucket, key, time.time(), meta)
    await svc.storage.meta.create_upload(upload)
    return upload


def part_key(svc: S3Service, upload: Upload, customer: sse.CustomerKey | None) -> bytes | None:
    """The data key that seals the parts of ``upload``; SSE-C uploads need the same customer key on every part."""
    e = upload.meta.get("e")
    if e is not None and e["a"] == sse.SSE_C:
        if customer is None:
            raise S3Error("InvalidRequest", "The multipart upload initiate requested encryption. Subsequent part "
                          "requests must include the appropriate encryption parameters.")
        if not sse.customer_matches(e, customer):
            raise S3Error("InvalidRequest", "The provided encryption parameters did not match the ones used "
                          "originally.")
    elif customer is not None:
        raise S3Error("InvalidRequest", "The multipart upload initiate did not request encryption with a customer "
                      "provided key: the encryption parameters are not applicable to its parts.")
    return sse.open_key(svc, e, customer)


def _part_algorithms(upload: Upload, requested: ChecksumRequest) -> set[str]:
    algorithms = {DEFAULT_CHECKSUM}
    if upload.meta.get("cka"):
        algorithms.add(upload.meta["cka"])
    if requested.algorithm:
        algorithms.add(requested.algorithm)
    return algorithms


async def upload_part(
    svc: S3Service,
    identity: Identity | None,
    bucket: str,
    key: str,
    upload_id: str,
    part_number: int,
    body: Body,
    checksum: ChecksumRequest,
    content_md5: str | None,
    customer: sse.CustomerKey | None = None,
) -> Part:
    upload = _upload(svc, identity, bucket, key, upload_id, "s3:PutObject")
    dek = part_key(svc, upload, customer)
    algorithm = upload.meta.get("cka")
    if algorithm and checksum.algorithm and checksum.algorithm != algorithm:
        raise S3Error("InvalidRequest", f"Checksum Type mismatch occurred, expected checksum Type: "
                      f"{algorithm.lower()}, actual checksum Type: {checksum.algorithm.lower()}")
    ingested = await ingest(body, svc.storage.blobs, _part_algorithms(upload, checksum), inline_limit=-1,
                            max_size=MAX_PART_SIZE, dek=dek)
    try:
        check_content_md5(content_md5, ingested.md5)
        checksum.verify(ingested, body.trailers)
    except BaseException:
        ingested.discard(svc.storage.blobs)
        raise
    return await _commit_part(svc, upload_id, part_number, ingested)


async def _commit_part(svc: S3Service, upload_id: str, part_number: int, ingested: Ingested) -> Part:
    """Make a verified part's blob durable and record it (replacing an earlier upload of the same number)."""
    try:
        await ingested.finish()
        assert ingested.writer is not None
        part = Part(upload_id, part_number, ingested.size, ingested.etag, time.time(), ingested.writer.blob_id,
                    ingested.checksums, ingested.writer.check)
        await svc.storage.meta.put_part(part)
    except NoSuchUploadError:
        ingested.discard(svc.storage.blobs)
        raise S3Error("NoSuchUpload", UploadId=upload_id) from None
    except BaseException:
        ingested.discard(svc.storage.blobs)
        raise
    svc.storage.garbage_made()
    return part


async def upload_part_copy(
    svc: S3Service,
    identity: Identity | None,
    bucket: str,
    key: str,
    upload_id: str,
    part_number: int,
    source: CopySource,
    source_range: str | None,
    customer: sse.CustomerKey | None = None,
    source_customer: sse.CustomerKey | None = None,
) -> Part:
    upload = _upload(svc, identity, bucket, key, upload_id, "s3:PutObject")
    dek = part_key(svc, upload, customer)
    src = read_copy_source(svc, identity, source)
    src_dek = sse.open_key(svc, src.meta.get("e"), source_customer)
    start, length = 0, src.size
    if source_range is not None:
        parsed = _parse_copy_range(source_range, src.size)
        start, length = parsed
    ingested = await ingest_range(svc, src, start, length, src_dek, _part_algorithms(upload, ChecksumRequest()),
                                  inline_limit=-1, dek=dek)
    return await _commit_part(svc, upload_id, part_number, ingested)


def _parse_copy_range(value: str, size: int) -> tuple[int, int]:
    unit, _, spec = value.strip().partition("=")
    first, dash, last = spec.partition("-")
    if unit != "bytes" or not dash or not first.isdigit() or not last.isdigit():
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last "
                      "where first and last are the zero-based offsets of the first and last bytes to copy",
                      ArgumentName="x-amz-copy-source-range", ArgumentValue=value)
    start, end = int(first), int(last)
    if end < start or end >= size:
        raise S3Error("InvalidRange", f"Range specified is not valid for source object of size: {size}",
                      ActualObjectSize=str(size), RangeRequested=value)
    return start, end - start + 1


@dataclass(slots=True)
class CompletedPart:
    number: int
    etag: str
    checksums: dict[str, str]


async def complete_upload(
    svc: S3Service,
    identity: Identity | None,
    bucket: str,
    key: str,
    upload_id: str,
    requested: list[CompletedPart],
    full_object_checksum: tuple[str, str] | None = None,
    checksum_type: str | None = None,
    if_match: str | None = None,
    if_none_match: str | None = None,
    customer: sse.CustomerKey | None = None,
) -> ObjectRecord:
    bucket_record = svc.bucket(identity, bucket, "s3:PutObject", key)
    upload = svc.storage.meta.get_upload(bucket, key, upload_id)
    if upload is None:
        # Completing again what was already completed succeeds while that object is still current.
        etag = svc.storage.meta.completed_upload_etag(bucket, key, upload_id)
        current = svc.storage.meta.get_object(bucket, key)
        if etag is not None and current is not None and current.etag == etag:
            return current
        raise S3Error("NoSuchUpload", UploadId=upload_id)
    if customer is not None:
        part_key(svc, upload, customer)  # optional here (as in S3), but when given it must be the upload's key
    if not requested:
        raise S3Error("MalformedXML", "You must specify at least one part.")
    stored = {p.number: p for p in svc.storage.meta.list_parts(upload_id, 0, MAX_PART_NUMBER + 1)}
    # Checked in this order whatever the position of the offending part: the list's order, then that every
    # part exists as described, then the sizes.
    previous = 0
    for req in requested:
        if req.number <= previous:
            raise S3Error("InvalidPartOrder", UploadId=upload_id)
        previous = req.number
    chosen: list[Part] = []
    for req in requested:
        part = stored.get(req.number)
        if part is None or req.etag.strip().strip('"') != part.etag:
            raise S3Error("InvalidPart", UploadId=upload_id, PartNumber=str(req.number), ETag=req.etag)
        for name, value in req.checksums.items():  # not "algorithm": that is the upload's below, maybe None
            if part.checksums.get(name) not in (None, value):
                raise S3Error("InvalidPart", f"The {name} checksum of part {req.number} does not match.",
                              UploadId=upload_id, PartNumber=str(req.number))
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise S3Error("EntityTooSmall", ProposedSize=str(part.size), MinSizeAllowed=str(MIN_PART_SIZE),
                          PartNumber=str(part.number), ETag=part.etag)

    md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
    etag = f"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}"
    meta = {k: v for k, v in upload.meta.items() if k not in ("cka", "ckt")}
    algorithm = upload.meta.get("cka")
    kind = upload.meta.get("ckt")
    if algorithm is None:
        algorithm, kind = DEFAULT_CHECKSUM, "FULL_OBJECT"
    if checksum_type is not None and checksum_type.upper() != kind:
        raise S3Error("InvalidRequest", f"The upload was created using the {kind} checksum mode. The complete "
                      f"request must use the same checksum mode.")
    values = [p.checksums.get(algorithm) for p in chosen]
    if all(v is not None for v in values):
        if kind == "FULL_OBJECT":
            value = checksums.combine_full_object(algorithm, [(v, p.size) for v, p in zip(values, chosen, strict=True)])  # type: ignore[misc]
        else:
            value = checksums.composite(algorithm, values)  # type: ignore[arg-type]
        if full_object_checksum is not None:
            given_algorithm, given = full_object_checksum
            if given_algorithm == algorithm and given.split("-")[0] != value.split("-")[0]:
                raise S3Error("BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")
        meta["ck"] = {algorithm: value}
        meta["ckt"] = kind
    meta["p"] = [[p.size, p.etag, p.checksums.get(algorithm)] for p in chosen]
    record = ObjectRecord(
        bucket=bucket,
        key=key,
        version_id=new_version_id(bucket_record),
        size=sum(p.size for p in chosen),
        etag=etag,
        last_modified=time.time(),
        meta=meta,
        segments=[Segment(p.blob_id, p.size) for p in chosen],
    )
    try:
        await svc.storage.meta.complete_upload(upload, record, if_match=etag_condition(if_match),
                                               if_none_match=etag_condition(if_none_match))
    except NoSuchUploadError:
        raise S3Error("NoSuchUpload", UploadId=upload_id) from None
    except PreconditionError as exc:
        raise precondition_error(exc, key) from None
    svc.storage.garbage_made()
    return record


async def abort_upload(svc: S3Service, identity: Identity | None, bucket: str, key: str, upload_id: str) -> None:
    upload = _upload(svc, identity, bucket, key, upload_id, "s3:AbortMultipartUpload")
    try:
        await svc.storage.meta.abort_upload(upload)
    except NoSuchUploadError:
        raise S3Error("NoSuchUpload", UploadId=upload_id) from None
    svc.storage.garbage_made()


def list_parts(
    svc: S3Service, identity: Identity | None, bucket: str, key: str, upload_id: str, after: int, limit: int
) -> tuple[Upload, list[Part], bool]:
    upload = _upload(svc, identity, bucket, key, upload_id, "s3:ListMultipartUploadParts")
    parts = svc.storage.meta.list_parts(upload_id, after, limit + 1)
    return upload, parts[:limit], len(parts) > limit


@dataclass(slots=True)
class UploadsPage:
    uploads: list[Upload]
    prefixes: list[str]
    truncated: bool


def list_uploads(
    svc: S3Service,
    identity: Identity | None,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str,
    limit: int,
) -> UploadsPage:
    svc.bucket(identity, bucket, "s3:ListBucketMultipartUploads")
    page = UploadsPage([], [], False)
    if limit == 0:
        return page
    rows = svc.storage.meta.list_uploads(bucket, prefix, key_marker, upload_id_marker, 10 * limit + 1)
    seen: set[str] = set()
    for upload in rows:
        if len(page.uploads) + len(page.prefixes) >= limit:
            page.truncated = True
            break
        if delimiter:
            idx = upload.key.find(delimiter, len(prefix))
            if idx >= 0:
                common = upload.key[: idx + len(delimiter)]
                if common not in seen:
                    seen.add(common)
                    page.prefixes.append(common)
                continue
        page.uploads.append(upload)
    return page
