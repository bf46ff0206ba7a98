"""Object operations: put, get/head (with ranges and conditions), delete, copy, attributes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.s3 import checksums
from shoal.s3.conditions import Conditions, evaluate, failed_condition
from shoal.s3.ingest import Body, Ingested, check_content_md5, ingest
from shoal.s3.names import check_key
from shoal.s3.service import S3Service
from shoal.storage.errors import PreconditionError
from shoal.storage.records import ObjectRecord, Segment

MAX_USER_METADATA = 2048  # bytes of x-amz-meta-* names and values, as S3
STORAGE_CLASSES = {
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER",
    "DEEP_ARCHIVE", "GLACIER_IR", "OUTPOSTS", "SNOW", "EXPRESS_ONEZONE",
}
DEFAULT_CHECKSUM = "CRC64NVME"  # what S3 computes when the client sends none


@dataclass(slots=True)
class ObjectAttributes:
    """What a client sets on an object at write time (PUT, CreateMultipartUpload, CopyObject REPLACE)."""

    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # Content-Encoding, Cache-Control, ...
    user: dict[str, str] = field(default_factory=dict)  # x-amz-meta-* without the prefix
    storage_class: str = "STANDARD"

    def validate(self) -> None:
        size = sum(len(k.encode()) + len(v.encode("utf-8", "surrogateescape")) for k, v in self.user.items())
        if size > MAX_USER_METADATA:
            raise S3Error("MetadataTooLarge", Size=str(size), MaxSizeAllowed=str(MAX_USER_METADATA))
        if self.storage_class not in STORAGE_CLASSES:
            raise S3Error("InvalidStorageClass", StorageClassRequested=self.storage_class)

    def to_meta(self, owner: str) -> dict:
        meta: dict = {"o": owner}
        if self.content_type is not None:
            meta["ct"] = self.content_type
        if self.headers:
            meta["h"] = self.headers
        if self.user:
            meta["u"] = self.user
        if self.storage_class != "STANDARD":
            meta["sc"] = self.storage_class
        return meta

    @classmethod
    def from_meta(cls, meta: dict) -> ObjectAttributes:
        return cls(meta.get("ct"), dict(meta.get("h", {})), dict(meta.get("u", {})), meta.get("sc", "STANDARD"))


@dataclass(slots=True)
class ChecksumRequest:
    """Which checksum the client asked for and the value it claims, if any (header now or trailer later)."""

    algorithm: str | None = None
    value: str | None = None
    in_trailer: bool = False

    def algorithms(self) -> set[str]:
        return {self.algorithm or DEFAULT_CHECKSUM}

    def verify(self, ingested: Ingested, trailers: dict[str, str]) -> None:
        if self.algorithm is None:
            return
        value = self.value
        if self.in_trailer:
            value = trailers.get(checksums.HEADER_FOR[self.algorithm])
            if value is None:
                raise S3Error("InvalidRequest", f"The trailer for {checksums.HEADER_FOR[self.algorithm]} is missing.")
        if value is not None and value != ingested.checksums[self.algorithm]:
            raise S3Error("BadDigest", f"The {self.algorithm} you specified did not match the calculated checksum.")


@dataclass(slots=True)
class PutResult:
    record: ObjectRecord


def new_version_id() -> str:
    return "null"


def checksum_meta(ingested: Ingested) -> dict:
    return {"ck": dict(ingested.checksums), "ckt": "FULL_OBJECT"}


async def put_object(
    svc: S3Service,
    identity: Identity | None,
    bucket_name: str,
    key: str,
    body: Body,
    attrs: ObjectAttributes,
    checksum: ChecksumRequest,
    content_md5: str | None,
    if_match: str | None = None,
    if_none_match: str | None = None,
) -> ObjectRecord:
    svc.bucket(identity, bucket_name, "s3:PutObject")
    assert identity is not None
    check_key(key)
    attrs.validate()
    if if_none_match is not None and if_none_match.strip() != "*":
        raise S3Error("NotImplemented", "If-None-Match on PUT supports only '*'.")
    ingested = await ingest(body, svc.storage.blobs, checksum.algorithms(), inline_limit=svc.inline_limit)
    try:
        check_content_md5(content_md5, ingested.md5)
        checksum.verify(ingested, body.trailers)
        await ingested.finish()
        record = ObjectRecord(
            bucket=bucket_name,
            key=key,
            version_id=new_version_id(),
            size=ingested.size,
            etag=ingested.etag,
            last_modified=time.time(),
            meta=attrs.to_meta(identity.user_id) | checksum_meta(ingested),
            segments=[Segment(ingested.writer.blob_id, ingested.size)] if ingested.writer else [],
            inline=ingested.inline,
        )
        await commit_object(svc, record, if_match, if_none_match)
    except BaseException:
        ingested.discard(svc.storage.blobs)
        raise
    return record


async def commit_object(
    svc: S3Service, record: ObjectRecord, if_match: str | None = None, if_none_match: str | None = None
) -> None:
    try:
        await svc.storage.meta.put_object(
            record,
            expect_etag=_etag_condition(if_match),
            expect_absent=if_none_match is not None,
        )
    except PreconditionError as exc:
        raise precondition_error(exc, record.key) from None
    except KeyError:
        raise S3Error("NoSuchBucket", BucketName=record.bucket) from None
    svc.storage.garbage_made()


def precondition_error(exc: PreconditionError, key: str) -> S3Error:
    """A failed conditional write as S3 reports it: If-Match on a key with no object is NoSuchKey."""
    if exc.absent:
        return S3Error("NoSuchKey", Key=key)
    return S3Error("PreconditionFailed", Condition=exc.condition)


def _etag_condition(if_match: str | None) -> str | None:
    if if_match is None:
        return None
    value = if_match.strip()
    return "*" if value == "*" else value.strip('"')


def head_object(
    svc: S3Service, identity: Identity | None, bucket_name: str, key: str, conditions: Conditions | None = None
) -> ObjectRecord:
    svc.bucket(identity, bucket_name, "s3:GetObject")
    record = svc.storage.meta.get_object(bucket_name, key)
    if record is None or record.delete_marker:
        raise S3Error("NoSuchKey", Key=key)
    if conditions is not None and conditions.any:
        outcome = evaluate(conditions, record.etag, record.last_modified)
        if outcome == 412:
            raise S3Error("PreconditionFailed", Condition=failed_condition(conditions, outcome))
        if outcome == 304:
            raise S3Error("NotModified", headers=not_modified_headers(record))
    return record


def not_modified_headers(record: ObjectRecord) -> dict[str, str]:
    from email.utils import formatdate

    return {"ETag": f'"{record.etag}"', "Last-Modified": formatdate(record.last_modified, usegmt=True)}


# -- reading ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Piece:
    """A contiguous run of bytes to send: from a blob (blob_id set) or from the inline data."""

    blob_id: str | None
    offset: int
    length: int


def plan_read(record: ObjectRecord, start: int, length: int) -> list[Piece]:
    if record.inline is not None or not record.segments:
        return [Piece(None, start, length)] if length else []
    pieces: list[Piece] = []
    position = 0
    end = start + length
    for segment in record.segments:
        seg_start, seg_end = position, position + segment.size
        position = seg_end
        if seg_end <= start or seg_start >= end:
            continue
        lo = max(start, seg_start)
        hi = min(end, seg_end)
        pieces.append(Piece(segment.blob_id, lo - seg_start, hi - lo))
    return pieces


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of a single byte range; None to send the whole object; InvalidRange if unsatisfiable.

    Like S3, a syntactically invalid or multi-range header is ignored and the whole object is sent.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    try:
        if first == "":
            if not last.isdigit():
                return None
            suffix = int(last)
            if suffix == 0:
                raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=header)
            if size == 0:
                raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=header)
            suffix = min(suffix, size)
            return size - suffix, suffix
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if last and end < start:
        return None
    if start >= size:
        raise S3Error("InvalidRange", ActualObjectSize=str(size), RangeRequested=header)
    end = min(end, size - 1)
    return start, end - start + 1


def part_range(record: ObjectRecord, part_number: int) -> tuple[int, int]:
    """(start, length) of part ``part_number`` of the object."""
    parts = record.meta.get("p")
    if not parts:
        if part_number != 1:
            raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable", status=416,
                          PartNumberRequested=str(part_number), ActualPartCount="1")
        return 0, record.size
    if part_number > len(parts):
        raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable", status=416,
                      PartNumberRequested=str(part_number), ActualPartCount=str(len(parts)))
    start = sum(p[0] for p in parts[: part_number - 1])
    return start, parts[part_number - 1][0]


def parts_count(record: ObjectRecord) -> int | None:
    parts = record.meta.get("p")
    return len(parts) if parts else None


# -- delete -------------------------------------------------------------------------------------------------


async def delete_object(svc: S3Service, identity: Identity | None, bucket_name: str, key: str) -> None:
    svc.bucket(identity, bucket_name, "s3:DeleteObject")
    check_key(key)
    if await svc.storage.meta.delete_object(bucket_name, key) is not None:
        svc.storage.garbage_made()


@dataclass(slots=True)
class DeleteOutcome:
    key: str
    version_id: str | None
    error: S3Error | None = None


async def delete_objects(
    svc: S3Service, identity: Identity | None, bucket_name: str, keys: list[tuple[str, str | None]]
) -> list[DeleteOutcome]:
    svc.bucket(identity, bucket_name, "s3:DeleteObject")

    async def one(key: str, version_id: str | None) -> DeleteOutcome:
        try:
            check_key(key)
            if version_id not in (None, "null"):
                current = svc.storage.meta.get_object(bucket_name, key)
                if current is None or current.version_id != version_id:
                    return DeleteOutcome(key, version_id)
            await svc.storage.meta.delete_object(bucket_name, key)
            return DeleteOutcome(key, version_id)
        except S3Error as exc:
            return DeleteOutcome(key, version_id, exc)

    # Concurrent: the writer thread commits them together in one transaction group.
    outcomes = await asyncio.gather(*(one(k, v) for k, v in keys))
    svc.storage.garbage_made()
    return list(outcomes)


# -- copy ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None
    conditions: Conditions


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    from urllib.parse import unquote

    path, _, query = value.partition("?")
    path = unquote(path).lstrip("/")
    bucket, slash, key = path.partition("/")
    if not slash or not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
    version_id = None
    if query:
        name, _, value = query.partition("=")
        if name == "versionId":
            version_id = unquote(value)
    return bucket, key, version_id


def read_copy_source(svc: S3Service, identity: Identity | None, source: CopySource) -> ObjectRecord:
    svc.bucket(identity, source.bucket, "s3:GetObject")
    record = svc.storage.meta.get_object(source.bucket, source.key)
    if record is None or record.delete_marker:
        raise S3Error("NoSuchKey", Key=source.key)
    if source.version_id not in (None, "null", record.version_id):
        raise S3Error("NoSuchVersion", Key=source.key, VersionId=source.version_id or "")
    outcome = evaluate(source.conditions, record.etag, record.last_modified) if source.conditions.any else None
    if outcome is not None:  # a copy is never "not modified": every failed condition is a 412
        raise S3Error("PreconditionFailed",
                      Condition="x-amz-copy-source-" + failed_condition(source.conditions, outcome))
    return record


async def copy_bytes(
    svc: S3Service, record: ObjectRecord, start: int, length: int
) -> tuple[list[Segment], bytes | None]:
    """A private copy of a byte range of an object: inline bytes, or one new blob filled in the kernel."""
    if record.inline is not None:
        return [], record.inline[start : start + length]
    blobs = svc.storage.blobs
    loop = asyncio.get_running_loop()

    def work() -> str:
        writer = blobs.new_writer()
        try:
            for piece in plan_read(record, start, length):
                assert piece.blob_id is not None
                with blobs.open(piece.blob_id) as f:
                    writer.copy_from(f.fileno(), piece.offset, piece.length)
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        return writer.blob_id

    if length == 0:
        return [], b""
    blob_id = await loop.run_in_executor(None, work)
    return [Segment(blob_id, length)], None


async def read_range_bytes(svc: S3Service, record: ObjectRecord, start: int, length: int):
    """Yield the bytes of a range (used where the bytes must pass through Python, e.g. to hash them)."""
    for piece in plan_read(record, start, length):
        if piece.blob_id is None:
            assert record.inline is not None
            yield record.inline[piece.offset : piece.offset + piece.length]
        else:
            async for chunk in svc.storage.blobs.stream(piece.blob_id, piece.offset, piece.length):
                yield chunk


async def copy_object(
    svc: S3Service,
    identity: Identity | None,
    bucket_name: str,
    key: str,
    source: CopySource,
    replace_metadata: bool,
    attrs: ObjectAttributes,
    checksum_algorithm: str | None = None,
    if_match: str | None = None,
    if_none_match: str | None = None,
) -> ObjectRecord:
    svc.bucket(identity, bucket_name, "s3:PutObject")
    assert identity is not None
    check_key(key)
    src = read_copy_source(svc, identity, source)
    same = source.bucket == bucket_name and source.key == key
    if same and not replace_metadata and attrs.storage_class == src.meta.get("sc", "STANDARD"):
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself without changing "
            "the object's metadata, storage class, website redirect location or encryption attributes.",
        )
    if replace_metadata:
        new_attrs = attrs
    else:
        new_attrs = ObjectAttributes.from_meta(src.meta)
        new_attrs.storage_class = attrs.storage_class
    new_attrs.validate()
    meta = new_attrs.to_meta(identity.user_id)
    for name in ("ck", "ckt", "p"):
        if name in src.meta:
            meta[name] = src.meta[name]
    if checksum_algorithm and checksum_algorithm not in src.meta.get("ck", {}):
        meta["ck"] = {checksum_algorithm: await _checksum_of(svc, src, checksum_algorithm)}
        meta["ckt"] = "FULL_OBJECT"
    if same:
        segments, inline = list(src.segments), src.inline  # the same bytes: only metadata changes
    else:
        segments, inline = await copy_bytes(svc, src, 0, src.size)
    record = ObjectRecord(bucket_name, key, new_version_id(), src.size, src.etag, time.time(), meta, segments, inline)
    try:
        await commit_object(svc, record, if_match, if_none_match)
    except BaseException:
        if not same:
            for segment in segments:
                svc.storage.blobs.delete(segment.blob_id)
        raise
    return record


async def _checksum_of(svc: S3Service, record: ObjectRecord, algorithm: str) -> str:
    hasher = checksums.new_hasher(algorithm)
    async for chunk in read_range_bytes(svc, record, 0, record.size):
        hasher.update(chunk)
    return checksums.b64(hasher.digest())

