"""Object operations: put, get/head (with ranges and conditions), delete, copy, attributes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import cast

from awscrt.checksums import crc64nvme

from shoal import read_budget
from shoal.auth.identities import Identity
from shoal.crypto import blocks
from shoal.errors import S3Error
from shoal.s3 import access, access_settings, checksums, integrity, object_lock, sse
from shoal.s3.conditions import Conditions, evaluate, failed_condition
from shoal.s3.ingest import MAX_PUT_SIZE, Body, Ingested, check_content_md5, ingest
from shoal.s3.names import check_key, check_version_id
from shoal.s3.service import S3Service
from shoal.storage.errors import CorruptBlobError, PreconditionError
from shoal.storage.local_blobs import crc_hex
from shoal.storage.records import NEW_VERSION, Bucket, ObjectRecord, Segment

log = logging.getLogger(__name__)

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
    tags: list[tuple[str, str]] = field(default_factory=list)
    acl_headers: dict[str, str] = field(default_factory=dict)  # x-amz-acl / x-amz-grant-* as sent
    lock_mode: str | None = None  # x-amz-object-lock-mode
    lock_until: str | None = None  # x-amz-object-lock-retain-until-date
    legal_hold: str | None = None  # x-amz-object-lock-legal-hold

    def validate(self) -> None:
        size = sum(len(k.encode()) + len(v.encode("utf-8", "surrogateescape")) for k, v in self.user.items())
        if size > MAX_USER_METADATA:
            raise S3Error("MetadataTooLarge", Size=str(size), MaxSizeAllowed=str(MAX_USER_METADATA))
        if self.storage_class not in STORAGE_CLASSES:
            raise S3Error("InvalidStorageClass", StorageClassRequested=self.storage_class)

    def to_meta(self, owner: str, grants: list | None = None) -> dict:
        meta: dict = {"o": owner}
        if grants is not None and grants != [("id", owner, "FULL_CONTROL")]:
            meta["acl"] = [list(g) for g in grants]
        if self.content_type is not None:
            meta["ct"] = self.content_type
        if self.headers:
            meta["h"] = self.headers
        if self.user:
            meta["u"] = self.user
        if self.storage_class != "STANDARD":
            meta["sc"] = self.storage_class
        if self.tags:
            meta["t"] = [list(t) for t in self.tags]
        return meta

    @classmethod
    def from_meta(cls, meta: dict) -> ObjectAttributes:
        return cls(meta.get("ct"), dict(meta.get("h", {})), dict(meta.get("u", {})), meta.get("sc", "STANDARD"),
                   [tuple(t) for t in meta.get("t", [])])


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


def object_owner(bucket: Bucket, identity: Identity | None, acl_headers: Mapping[str, str] | None = None) -> str:
    """Who owns a new object: the writer, unless the bucket enforces bucket-owner ownership, or prefers it and
    the writer hands the object over with the bucket-owner-full-control canned ACL. An anonymous writer (a
    public-write bucket, an unsigned form upload) owns nothing: its objects belong to the bucket's owner, as in
    Ceph RGW."""
    setting = access.ownership(bucket)
    if identity is None or setting == "BucketOwnerEnforced":
        return bucket.owner
    if setting == "BucketOwnerPreferred" and (acl_headers or {}).get("x-amz-acl", "").strip() \
            == "bucket-owner-full-control":
        return bucket.owner
    return identity.user_id


def versioning(bucket: Bucket) -> str | None:
    """"Enabled", "Suspended", or None for a bucket that never had versioning."""
    return bucket.config.get("versioning")


def new_version_id(bucket: Bucket) -> str:
    """A fresh id (the store assigns it) in a versioning-enabled bucket; "null" otherwise (replacing the
    key's null version)."""
    return NEW_VERSION if versioning(bucket) == "Enabled" else "null"


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
    requested: sse.Requested | None = None,
) -> ObjectRecord:
    bucket = svc.bucket(identity, bucket_name, "s3:PutObject", key, request_tags=attrs.tags)
    check_key(key)
    attrs.validate()
    owner = object_owner(bucket, identity, attrs.acl_headers)
    grants = access_settings.grants_from_headers(svc, bucket, owner, attrs.acl_headers)
    lock = object_lock.write_settings(bucket, attrs.lock_mode, attrs.lock_until, attrs.legal_hold)
    encryption = sse.choose(svc, bucket, requested or sse.Requested())
    ingested = await ingest(body, svc.storage.blobs, checksum.algorithms(), inline_limit=svc.inline_limit,
                            max_size=MAX_PUT_SIZE, dek=encryption.dek if encryption else None)
    try:
        check_content_md5(content_md5, ingested.md5)
        checksum.verify(ingested, body.trailers)
        await ingested.finish()
        record = ObjectRecord(
            bucket=bucket_name,
            key=key,
            version_id=new_version_id(bucket),
            size=ingested.size,
            etag=ingested.etag,
            last_modified=time.time(),
            meta=attrs.to_meta(owner, grants) | checksum_meta(ingested) | lock
            | sse.object_info(encryption, ingested.inline_salt),
            segments=[Segment(ingested.writer.blob_id, ingested.size, ingested.writer.check)]
            if ingested.writer else [],
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
            if_match=etag_condition(if_match),
            if_none_match=etag_condition(if_none_match),
        )
    except PreconditionError as exc:
        raise precondition_error(exc, record.key) from None
    except KeyError:
        raise S3Error("NoSuchBucket", BucketName=record.bucket) from None
    svc.storage.garbage_made()


def etag_condition(header: str | None) -> str | None:
    """An If-Match / If-None-Match header value as the store compares it: "*" or an unquoted ETag."""
    if header is None:
        return None
    value = header.strip()
    return "*" if value == "*" else value.strip('"')


def precondition_error(exc: PreconditionError, key: str) -> S3Error:
    """A failed conditional write as S3 reports it: If-Match on a key with no object is NoSuchKey."""
    if exc.absent:
        return S3Error("NoSuchKey", Key=key)
    return S3Error("PreconditionFailed", Condition=exc.condition)


def head_object(
    svc: S3Service,
    identity: Identity | None,
    bucket_name: str,
    key: str,
    conditions: Conditions | None = None,
    version_id: str | None = None,
    action: str | None = None,
) -> ObjectRecord:
    """The version a GET or HEAD reads (or ``action`` is about), after access and precondition checks."""
    bucket = svc.existing_bucket(bucket_name)
    check_version_id(version_id)
    record = svc.storage.meta.get_object(bucket_name, key, version_id)
    action = action or ("s3:GetObjectVersion" if version_id else "s3:GetObject")
    if record is None:
        # As S3: a caller who may list the bucket learns that the key is missing (a listing would tell it
        # anyway); others get AccessDenied, even with a grant to read the key: no existence oracle.
        # As S3: listing the key's own name is what would reveal it, so s3:prefix is the key.
        access.authorize(identity, bucket, "s3:ListBucket", extra_keys={"s3:prefix": [key]})
        if version_id is not None:
            raise S3Error("NoSuchVersion", Key=key, VersionId=version_id)
        raise S3Error("NoSuchKey", Key=key)
    access.authorize(identity, bucket, action, key, obj=None if record.delete_marker else record)
    if record.delete_marker:
        headers = {"x-amz-delete-marker": "true", "x-amz-version-id": record.version_id}
        if version_id is not None:
            from email.utils import formatdate

            headers["Last-Modified"] = formatdate(record.last_modified, usegmt=True)
            raise S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.",
                          headers=headers, Method="GET", ResourceType="DeleteMarker")
        raise S3Error("NoSuchKey", headers=headers, Key=key)
    if conditions is not None and conditions.any:
        outcome = evaluate(conditions, record.etag, record.last_modified)
        if outcome == 412:
            raise S3Error("PreconditionFailed", Condition=failed_condition(conditions, outcome))
        if outcome == 304:
            raise S3Error("NotModified", headers=not_modified_headers(record))
    return record


def version_header(svc: S3Service, record: ObjectRecord, *, write: bool = False) -> dict[str, str]:
    """x-amz-version-id for responses about this version. A write that made a null version says nothing (as S3
    in unversioned and suspended buckets); a read of the null version says "null" once the bucket has had
    versioning."""
    if record.version_id != "null":
        return {"x-amz-version-id": record.version_id}
    if write:
        return {}
    bucket = svc.lookup_bucket(record.bucket)
    if bucket is not None and versioning(bucket) is not None:
        return {"x-amz-version-id": "null"}
    return {}


def not_modified_headers(record: ObjectRecord) -> dict[str, str]:
    from email.utils import formatdate

    return {"ETag": f'"{record.etag}"', "Last-Modified": formatdate(record.last_modified, usegmt=True)}


# -- reading ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Piece:
    """A contiguous run of bytes to send: from a blob (blob_id set) or from the inline data.

    Offsets and sizes are plaintext ones; ``blob_size`` (the blob's whole plaintext size) lets an encrypted
    blob's last block be found (shoal.crypto.blocks maps them to stored offsets).
    """

    blob_id: str | None
    offset: int
    length: int
    blob_size: int = 0


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
        pieces.append(Piece(segment.blob_id, lo - seg_start, hi - lo, segment.size))
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
            raise S3Error("InvalidPart", "The requested partnumber is not satisfiable",
                          PartNumberRequested=str(part_number), ActualPartCount="1")
        return 0, record.size
    if part_number > len(parts):
        raise S3Error("InvalidPart", "The requested partnumber is not satisfiable",
                      PartNumberRequested=str(part_number), ActualPartCount=str(len(parts)))
    start = sum(p[0] for p in parts[: part_number - 1])
    return start, parts[part_number - 1][0]


def part_checksum_headers(record: ObjectRecord, part_number: int) -> dict[str, str]:
    """The stored checksum of one part of a multipart object (what S3 returns for a partNumber GET)."""
    parts = record.meta.get("p")
    algorithm = next(iter(record.meta.get("ck", {})), None)
    if not parts or algorithm is None or not parts[part_number - 1][2]:
        return {}
    return {checksums.HEADER_FOR[algorithm]: parts[part_number - 1][2],
            "x-amz-checksum-type": record.meta.get("ckt", "FULL_OBJECT")}


def parts_count(record: ObjectRecord) -> int | None:
    parts = record.meta.get("p")
    return len(parts) if parts else None


# -- delete -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class DeleteOutcome:
    key: str
    version_id: str | None  # the version removed, or the id of the delete marker created
    delete_marker: bool = False  # a delete marker was created, or the removed version was one
    error: S3Error | None = None


async def _delete(
    svc: S3Service, bucket: Bucket, key: str, version_id: str | None, bypass_governance: bool = False,
    owner: str | None = None,
) -> DeleteOutcome:
    check_key(key)
    check_version_id(version_id)
    meta = svc.storage.meta
    state = versioning(bucket)
    if version_id is not None:
        if object_lock.enabled(bucket):
            target = meta.get_object(bucket.name, key, version_id)
            if target is not None:
                object_lock.check_deletable(target, bypass_governance)
        removed = await meta.delete_version(bucket.name, key, version_id)
        svc.storage.garbage_made()
        return DeleteOutcome(key, version_id, bool(removed and removed.delete_marker))
    if state is None:
        await meta.delete_version(bucket.name, key, "null")
        svc.storage.garbage_made()
        return DeleteOutcome(key, None)
    # Versioned: a delete marker becomes the latest version (in a suspended bucket it is the null version). It
    # belongs to whoever deleted, as in S3's listings.
    marker = ObjectRecord(bucket.name, key, new_version_id(bucket), 0, "", time.time(), {"o": owner or bucket.owner},
                          delete_marker=True)
    await commit_object(svc, marker)
    return DeleteOutcome(key, marker.version_id, True)


async def delete_object(
    svc: S3Service, identity: Identity | None, bucket_name: str, key: str, version_id: str | None = None,
    bypass_governance: bool = False,
) -> DeleteOutcome:
    bucket = svc.bucket(identity, bucket_name, "s3:DeleteObjectVersion" if version_id else "s3:DeleteObject", key)
    bypass = object_lock.may_bypass(identity, bucket, key, bypass_governance)
    return await _delete(svc, bucket, key, version_id, bypass, object_owner(bucket, identity))


async def delete_objects(
    svc: S3Service, identity: Identity | None, bucket_name: str, keys: list[tuple[str, str | None]],
    bypass_governance: bool = False,
) -> list[DeleteOutcome]:
    bucket = svc.existing_bucket(bucket_name)

    async def one(key: str, version_id: str | None) -> DeleteOutcome:
        try:
            access.authorize(identity, bucket, "s3:DeleteObjectVersion" if version_id else "s3:DeleteObject", key)
            bypass = object_lock.may_bypass(identity, bucket, key, bypass_governance)
            return await _delete(svc, bucket, key, version_id, bypass, object_owner(bucket, identity))
        except S3Error as exc:
            return DeleteOutcome(key, version_id, error=exc)

    # Concurrent: the writer thread commits them together in one transaction group.
    return list(await asyncio.gather(*(one(k, v) for k, v in keys)))


# -- copy ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None
    conditions: Conditions
    # Set once the source is read: the id of the version copied, when its bucket has had versioning (S3 reports
    # it in x-amz-copy-source-version-id whether or not the request named a version).
    copied_version: str | None = None


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
    bucket = svc.existing_bucket(source.bucket)
    record = svc.storage.meta.get_object(source.bucket, source.key, source.version_id)
    access.authorize(identity, bucket, "s3:GetObjectVersion" if source.version_id else "s3:GetObject", source.key,
                     obj=record if record is not None and not record.delete_marker else None)
    if record is None:
        if source.version_id is not None:
            raise S3Error("NoSuchVersion", Key=source.key, VersionId=source.version_id)
        raise S3Error("NoSuchKey", Key=source.key)
    if record.delete_marker:
        if source.version_id is not None:
            raise S3Error("InvalidRequest", "The source of a copy request may not specifically refer to a delete "
                          "marker by version id.")
        raise S3Error("NoSuchKey", Key=source.key)
    outcome = evaluate(source.conditions, record.etag, record.last_modified) if source.conditions.any else None
    if outcome is not None:  # a copy is never "not modified": every failed condition is a 412
        raise S3Error("PreconditionFailed",
                      Condition="x-amz-copy-source-" + failed_condition(source.conditions, outcome))
    source.copied_version = record.version_id if source.version_id is not None else \
        version_header(svc, record).get("x-amz-version-id")
    return record


async def copy_bytes(
    svc: S3Service, record: ObjectRecord, start: int, length: int
) -> tuple[list[Segment], bytes | None]:
    """A private copy of a byte range of an unencrypted object: inline bytes, or one new blob filled in the
    kernel."""
    assert "e" not in record.meta, "encrypted bytes are copied by decrypting and sealing again"
    if record.inline is not None:
        return [], record.inline[start : start + length]
    blobs = svc.storage.blobs
    loop = asyncio.get_running_loop()
    pieces = plan_read(record, start, length)
    checks = integrity.whole_blob_checks(svc, pieces)

    def work() -> tuple[str, tuple[str, int]]:
        writer = blobs.new_writer()
        try:
            for i, piece in enumerate(pieces):
                assert piece.blob_id is not None
                with blobs.open(piece.blob_id) as f:
                    crc = writer.copy_from(f.fileno(), piece.offset, piece.length)
                check = checks.get(i)
                if check is not None and crc != check[0]:  # never copy damage under a fresh checksum
                    raise CorruptBlobError(piece.blob_id, check[0], crc, check[1])
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        return writer.blob_id, writer.check

    if length == 0:
        return [], b""
    try:
        blob_id, check = await loop.run_in_executor(None, work)
    except CorruptBlobError as exc:
        raise integrity.corrupt(svc, exc, "copy") from None
    return [Segment(blob_id, length, check)], None


def open_pieces(svc: S3Service, pieces: list[Piece]) -> list:
    """Open the blob of every piece now (None for inline pieces), so an overwrite that frees a blob after this
    cannot take it away mid-read; raises FileNotFoundError if one is already gone."""
    files = []
    try:
        for piece in pieces:
            files.append(None if piece.blob_id is None else svc.storage.blobs.open(piece.blob_id))
    except BaseException:
        for f in files:
            if f is not None:
                f.close()
        raise
    return files


async def read_pieces(record: ObjectRecord, pieces: list[Piece], files: list, dek: bytes | None,
                      checks: dict[int, tuple[str, int]] | None = None):
    """Yield the plaintext of planned pieces from their opened files, decrypting when ``dek`` is given (one
    worker-thread call per 1 MiB, less when many read at once: shoal.read_budget). Unencrypted pieces listed in
    ``checks`` (whole blobs) are checked as they are read: CorruptBlobError comes before their last chunk is
    yielded."""
    e = record.meta.get("e")
    if e is not None and dek is None:
        raise S3Error("InternalError", "reading an encrypted object without its data key")
    inline = None
    for index, (piece, f) in enumerate(zip(pieces, files, strict=True)):
        if f is None:
            assert record.inline is not None
            if inline is None:
                try:
                    # A dek comes from sse.open_key(e), which gives None when e is: here e is a dict.
                    inline = record.inline if dek is None else sse.open_inline(dek, cast(dict, e), record.inline)
                except blocks.CorruptData:
                    raise S3Error("InternalError", "The stored object failed its integrity check.") from None
            yield inline[piece.offset : piece.offset + piece.length]
        elif dek is not None:
            cipher = blocks.blob_cipher(dek, piece.blob_id)  # type: ignore[arg-type]
            try:
                # Closed with this generator (aclosing), not two loop turns later: its read share goes at once.
                async with aclosing(blocks.stream_plain(f.fileno(), cipher, piece.offset, piece.length,
                                                        piece.blob_size)) as plain:
                    async for chunk in plain:
                        yield chunk
            except blocks.CorruptData as exc:
                log.error("object %s/%s: blob %s: %s", record.bucket, record.key, piece.blob_id, exc)
                raise S3Error("InternalError", "The stored object failed its integrity check.") from None
        else:
            check = checks.get(index) if checks else None
            crc = 0
            left = piece.length
            async with aclosing(read_budget.pread_chunks(f.fileno(), piece.offset, piece.length)) as chunks:
                async for chunk in chunks:
                    left -= len(chunk)
                    if check is not None:
                        crc = crc64nvme(chunk, crc)
                        if left == 0 and crc_hex(crc) != check[0]:
                            raise CorruptBlobError(piece.blob_id, check[0], crc_hex(crc),  # type: ignore[arg-type]
                                                   check[1])
                    yield chunk
            if left > 0:
                if check is not None:
                    raise CorruptBlobError(piece.blob_id, check[0], "short", check[1])  # type: ignore[arg-type]
                raise OSError("blob shorter than its metadata says")


async def read_range_bytes(svc: S3Service, record: ObjectRecord, start: int, length: int, dek: bytes | None = None):
    """Yield the plaintext of a range (where the bytes must pass through Python: hashing, re-encrypting)."""
    pieces = plan_read(record, start, length)
    checks = integrity.whole_blob_checks(svc, pieces) if dek is None else None
    files = open_pieces(svc, pieces)
    try:
        async with aclosing(read_pieces(record, pieces, files, dek, checks)) as chunks:
            async for chunk in chunks:
                yield chunk
    except CorruptBlobError as exc:
        raise integrity.corrupt(svc, exc, "read") from None
    finally:
        for f in files:
            if f is not None:
                f.close()


async def ingest_range(svc: S3Service, record: ObjectRecord, start: int, length: int, src_dek: bytes | None,
                       algorithms: set[str], *, inline_limit: int, dek: bytes | None) -> Ingested:
    """Ingest a stored object's range as a new body (CopyObject, UploadPartCopy): decrypted if it was encrypted,
    hashed, and sealed again for an encrypted destination. Its reader is closed on the way out, so a failed copy
    gives back its files and read share at once, not at the next garbage collection."""
    chunks = read_range_bytes(svc, record, start, length, src_dek)
    try:
        return await ingest(RangeBody(chunks, length), svc.storage.blobs, algorithms, inline_limit=inline_limit,
                            dek=dek)
    finally:
        await chunks.aclose()


class RangeBody:
    """A Body over bytes already in hand (a stored object's range being copied: it is hashed and, for encrypted
    destinations, sealed again like any upload)."""

    trailers: dict[str, str] = {}
    wants_sha256 = False

    def __init__(self, chunks: AsyncIterator, length: int) -> None:
        self._chunks = chunks
        self.length = length

    async def read(self) -> bytes:
        return await anext(self._chunks, b"")

    def check_sha256(self, hexdigest: str) -> None:
        pass


async def copy_object(
    svc: S3Service,
    identity: Identity | None,
    bucket_name: str,
    key: str,
    source: CopySource,
    replace_metadata: bool,
    attrs: ObjectAttributes,
    replace_tags: bool = False,
    checksum_algorithm: str | None = None,
    if_match: str | None = None,
    if_none_match: str | None = None,
    requested: sse.Requested | None = None,
    source_customer: sse.CustomerKey | None = None,
) -> ObjectRecord:
    bucket = svc.bucket(identity, bucket_name, "s3:PutObject", key,
                        request_tags=attrs.tags if replace_tags else None)
    check_key(key)
    requested = requested or sse.Requested()
    src = read_copy_source(svc, identity, source)
    src_dek = sse.open_key(svc, src.meta.get("e"), source_customer)
    same = source.bucket == bucket_name and source.key == key and src.is_latest
    if same and not replace_metadata and attrs.storage_class == src.meta.get("sc", "STANDARD") \
            and not requested.any:
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
    new_attrs.tags = attrs.tags if replace_tags else [tuple(t) for t in src.meta.get("t", [])]
    new_attrs.validate()
    owner = object_owner(bucket, identity, attrs.acl_headers)
    meta = new_attrs.to_meta(owner, access_settings.grants_from_headers(svc, bucket, owner, attrs.acl_headers))
    meta |= object_lock.write_settings(bucket, attrs.lock_mode, attrs.lock_until, attrs.legal_hold)
    for name in ("ck", "ckt", "p"):
        if name in src.meta:
            meta[name] = src.meta[name]
    new_checksum = checksum_algorithm if checksum_algorithm and checksum_algorithm not in src.meta.get("ck", {}) \
        else None
    # The destination is encrypted as the request asks, else as its bucket's default says (never "like the
    # source": S3 does not carry a source's encryption over).
    encryption = sse.choose(svc, bucket, requested)
    # Copying an unversioned object onto itself, encrypted as before, changes only metadata: the new record
    # shares the bytes (and the data key).
    shared = same and versioning(bucket) is None and sse.same_setting(src.meta.get("e"), requested, encryption)
    if shared:
        segments, inline = list(src.segments), src.inline
        if encryption is not None:
            meta["e"] = {k: v for k, v in src.meta["e"].items() if k != "bk"}
            if encryption.info.get("bk"):
                meta["e"]["bk"] = True
    elif src_dek is None and encryption is None:
        segments, inline = await copy_bytes(svc, src, 0, src.size)
    else:
        # Decrypt the source and seal under the destination's key (or store plain), hashing in the same pass.
        ingested = await ingest_range(svc, src, 0, src.size, src_dek, {new_checksum} if new_checksum else set(),
                                      inline_limit=svc.inline_limit, dek=encryption.dek if encryption else None)
        try:
            await ingested.finish()
        except BaseException:
            ingested.discard(svc.storage.blobs)
            raise
        segments = [Segment(ingested.writer.blob_id, ingested.size, ingested.writer.check)] if ingested.writer else []
        inline = ingested.inline
        meta |= sse.object_info(encryption, ingested.inline_salt)
        if new_checksum:
            meta["ck"] = {new_checksum: ingested.checksums[new_checksum]}
            meta["ckt"] = "FULL_OBJECT"
            new_checksum = None
    if new_checksum:
        meta["ck"] = {new_checksum: await _checksum_of(svc, src, new_checksum, src_dek)}
        meta["ckt"] = "FULL_OBJECT"
    record = ObjectRecord(bucket_name, key, new_version_id(bucket), src.size, src.etag, time.time(), meta, segments,
                          inline)
    try:
        await commit_object(svc, record, if_match, if_none_match)
    except BaseException:
        if not shared:
            for segment in segments:
                svc.storage.blobs.delete(segment.blob_id)
        raise
    return record


async def _checksum_of(svc: S3Service, record: ObjectRecord, algorithm: str, dek: bytes | None) -> str:
    hasher = checksums.new_hasher(algorithm)
    async for chunk in read_range_bytes(svc, record, 0, record.size, dek):
        hasher.update(chunk)
    return checksums.b64(hasher.digest())

