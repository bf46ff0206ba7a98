"""Moving data in and out: ``shoal mirror`` (S3 to S3), ``shoal import`` (directory to S3), ``shoal export``.

Both sides are spoken to through boto3, so the source may be MinIO, AWS S3 or another Shoal.

Copies are exact and verified:

- an object keeps its content type, user metadata, Cache-Control / Content-Disposition / Content-Encoding /
  Content-Language and tags;
- a multipart object is copied part by part with the source's own part boundaries (read with ``partNumber``),
  so the destination computes the very same ETag (the MD5 of the parts' MD5s);
- every byte read is hashed on the way: the MD5 (per part) must equal the source's ETag, and the destination's
  answer must equal it too (a single PUT also sends Content-MD5, so the destination checks the body itself);
- with a versioned source, every version is copied oldest first, delete markers included.

Runs are resumable: an object whose ETag and size already match at the destination is skipped; for versions,
the destination's versions of a key must be a prefix of the source's (same ETags and sizes, in order), and only
the missing newer ones are copied. A key whose destination history differs is reported as a conflict and left
alone.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from urllib.parse import unquote, urlencode, urlsplit

log = logging.getLogger("shoal.transfer")

SPOOL = 16 * 1024 * 1024  # objects and parts up to this size are held in memory, larger ones in a temp file
CHUNK = 1024 * 1024
PART_SIZE = 16 * 1024 * 1024  # for files uploaded by `shoal import`
MULTIPART_THRESHOLD = 64 * 1024 * 1024
COPIED_HEADERS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")


class TransferError(Exception):
    """Bad arguments or an unreachable side: one line for the user."""


@dataclass
class Location:
    endpoint: str
    bucket: str | None = None
    prefix: str = ""
    access_key: str | None = None
    secret_key: str | None = None

    def __str__(self) -> str:
        path = "/".join(p for p in (self.bucket, self.prefix) if p)
        return f"{self.endpoint}/{path}"


def parse_location(text: str) -> Location:
    """``s3://[ACCESS:SECRET@]HOST:PORT[/BUCKET[/PREFIX]]`` (plain HTTP), or the same with ``http://`` /
    ``https://``. Credentials in the URL are percent-decoded."""
    parts = urlsplit(text)
    if parts.scheme not in ("s3", "http", "https") or not parts.hostname:
        raise TransferError(f"expected s3://[ACCESS:SECRET@]HOST:PORT/BUCKET[/PREFIX] (or http:// or https://), "
                            f"got {_redact(text)!r}")
    scheme = "http" if parts.scheme == "s3" else parts.scheme
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    bucket, _, prefix = parts.path.lstrip("/").partition("/")
    return Location(f"{scheme}://{netloc}", bucket or None, prefix,
                    unquote(parts.username) if parts.username else None,
                    unquote(parts.password) if parts.password else None)


def parse_target(text: str, endpoint: str) -> Location:
    """``BUCKET[/PREFIX]`` on ``endpoint``, or a full location."""
    if "://" in text:
        return parse_location(text)
    bucket, _, prefix = text.strip("/").partition("/")
    if not bucket:
        raise TransferError(f"expected BUCKET[/PREFIX], got {text!r}")
    return Location(endpoint.rstrip("/"), bucket, prefix)


def _redact(text: str) -> str:
    parts = urlsplit(text)
    if parts.password:
        return text.replace(f":{parts.password}@", ":***@")
    return text


def credentials(loc: Location, side: str | None = None, env: dict | None = None) -> tuple[str, str]:
    """The URL's credentials, else SHOAL_{SOURCE,DEST}_ACCESS_KEY/SECRET_KEY, AWS_ACCESS_KEY_ID/...,
    SHOAL_ROOT_USER/PASSWORD, MINIO_ROOT_USER/PASSWORD, else MinIO's development defaults."""
    env = dict(os.environ) if env is None else env
    if loc.access_key and loc.secret_key:
        return loc.access_key, loc.secret_key
    pairs = []
    if side:
        pairs.append((f"SHOAL_{side}_ACCESS_KEY", f"SHOAL_{side}_SECRET_KEY"))
    pairs += [("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("SHOAL_ROOT_USER", "SHOAL_ROOT_PASSWORD"),
              ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")]
    for ak, sk in pairs:
        if env.get(ak) and env.get(sk):
            return env[ak], env[sk]
    return "minioadmin", "minioadmin"


def make_client(loc: Location, creds: tuple[str, str], region: str = "us-east-1", verify: bool | str = True,
                pool: int = 16):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=loc.endpoint, aws_access_key_id=creds[0], aws_secret_access_key=creds[1],
        region_name=region, verify=verify,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4", max_pool_connections=pool,
                      retries={"max_attempts": 5, "mode": "standard"}, request_checksum_calculation="when_required",
                      response_checksum_validation="when_required", connect_timeout=10, read_timeout=120),
    )


def _code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# -- summary and progress ----------------------------------------------------------------------------------


@dataclass
class Summary:
    buckets: int = 0
    copied: int = 0  # objects or versions
    markers: int = 0  # delete markers copied
    skipped: int = 0  # already at the destination
    conflicts: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def error(self, message: str) -> None:
        with self._lock:
            self.failed += 1
            self.errors.append(message)

    def line(self, verb: str) -> str:
        rate = self.bytes / self.seconds if self.seconds > 0 else 0
        text = (f"{self.copied} objects copied ({human(self.bytes)}), {self.markers} delete markers, "
                f"{self.skipped} up to date, {self.conflicts} conflicts, {self.failed} failed; "
                f"{self.seconds:.1f}s, {human(rate)}/s")
        return f"{verb}: " + (f"{self.buckets} buckets; " if self.buckets else "") + text

    @property
    def ok(self) -> bool:
        return not self.failed and not self.conflicts


class Progress:
    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr,
                            dynamic_ncols=True, leave=True)
        self._lock = threading.Lock()

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            with self._lock:
                self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- hashing -----------------------------------------------------------------------------------------------


def etag_of(part_md5s: list[bytes], multipart: bool) -> str:
    if not multipart:
        return part_md5s[0].hex() if part_md5s else hashlib.md5(b"").hexdigest()
    return hashlib.md5(b"".join(part_md5s)).hexdigest() + f"-{len(part_md5s)}"


def clean_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def is_md5_etag(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def spool_stream(body, on_bytes: Callable[[int], None]):
    """A streaming body into a spooled temp file: (file rewound, md5 digest, size)."""
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 (the caller closes it)
    md5, size = copy_body(body, out, on_bytes)
    out.seek(0)
    return out, md5, size


def copy_body(body, out, on_bytes: Callable[[int], None]) -> tuple[bytes, int]:
    """Copy a streaming body into ``out`` (and close it), hashing as it goes: (md5 digest, size)."""
    md5 = hashlib.md5()
    size = 0
    try:
        while chunk := body.read(CHUNK):
            md5.update(chunk)
            out.write(chunk)
            size += len(chunk)
            on_bytes(len(chunk))
    finally:
        body.close()
    return md5.digest(), size


def file_etag(path: str, part_size: int | None) -> str:
    """The ETag S3 computes for this file uploaded whole (part_size None) or in parts of part_size."""
    digests = []
    with open(path, "rb") as f:
        if part_size is None:
            md5 = hashlib.md5()
            while chunk := f.read(CHUNK):
                md5.update(chunk)
            return md5.hexdigest()
        while True:
            md5 = hashlib.md5()
            remaining = part_size
            got = 0
            while remaining and (chunk := f.read(min(CHUNK, remaining))):
                md5.update(chunk)
                remaining -= len(chunk)
                got += len(chunk)
            if not got:
                break
            digests.append(md5.digest())
    return etag_of(digests or [hashlib.md5(b"").digest()], True)


# -- copying one object ---------------------------------------------------------------------------------------


def object_attributes(head: dict, tags: list[dict] | None) -> dict:
    attrs = {name: head[name] for name in COPIED_HEADERS if head.get(name)}
    if head.get("Metadata"):
        attrs["Metadata"] = head["Metadata"]
    if tags:
        attrs["Tagging"] = urlencode([(t["Key"], t["Value"]) for t in tags])
    return attrs


class Copier:
    """Copies single objects (or versions) from one S3 client to another, verifying every byte."""

    def __init__(self, src, dst, on_bytes: Callable[[int], None], copy_tags: bool = True) -> None:
        self.src = src
        self.dst = dst
        self.on_bytes = on_bytes
        self.copy_tags = copy_tags
        self._warned_tags = False

    def _version(self, version_id: str | None) -> dict:
        return {"VersionId": version_id} if version_id else {}

    def tags(self, bucket: str, key: str, version_id: str | None) -> list[dict] | None:
        if not self.copy_tags:
            return None
        try:
            return self.src.get_object_tagging(Bucket=bucket, Key=key, **self._version(version_id))["TagSet"]
        except Exception as exc:
            if not self._warned_tags:
                self._warned_tags = True
                log.warning("cannot read tags from the source (%s): copying objects without tags", _code(exc))
            return None

    def copy(self, bucket: str, key: str, version_id: str | None, etag: str, dst_bucket: str, dst_key: str) -> int:
        """Copy one object (version); returns the bytes copied. Raises on any mismatch."""
        etag = clean_etag(etag)
        multipart = "-" in etag
        ver = self._version(version_id)
        head = self.src.head_object(Bucket=bucket, Key=key, **ver, **({"PartNumber": 1} if multipart else {}))
        if clean_etag(head.get("ETag")) != etag:
            raise RuntimeError(f"changed at the source while copying (ETag {clean_etag(head.get('ETag'))})")
        attrs = object_attributes(head, self.tags(bucket, key, version_id))
        parts = head.get("PartsCount") if multipart else None
        if multipart and parts:
            return self._copy_parts(bucket, key, ver, etag, int(parts), attrs, dst_bucket, dst_key)
        got = self.src.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"', **ver)
        data, md5, size = spool_stream(got["Body"], self.on_bytes)
        with data:
            computed = md5.hex()
            if multipart:  # a multipart ETag without PartsCount: verify the destination's answer only
                computed = None
            elif is_md5_etag(etag) and computed != etag:
                raise RuntimeError(f"checksum mismatch reading the source: MD5 {computed}, ETag {etag}")
            put = self.dst.put_object(Bucket=dst_bucket, Key=dst_key, Body=data, ContentLength=size,
                                      ContentMD5=base64.b64encode(md5).decode(), **attrs)
        if clean_etag(put.get("ETag")) != md5.hex():
            raise RuntimeError(f"destination stored ETag {clean_etag(put.get('ETag'))}, expected {md5.hex()}")
        return size

    def _copy_parts(self, bucket: str, key: str, ver: dict, etag: str, parts: int, attrs: dict, dst_bucket: str,
                    dst_key: str) -> int:
        upload = self.dst.create_multipart_upload(Bucket=dst_bucket, Key=dst_key, **attrs)["UploadId"]
        try:
            digests, done, total = [], [], 0
            for number in range(1, parts + 1):
                got = self.src.get_object(Bucket=bucket, Key=key, PartNumber=number, IfMatch=f'"{etag}"', **ver)
                data, md5, size = spool_stream(got["Body"], self.on_bytes)
                with data:
                    answer = self.dst.upload_part(Bucket=dst_bucket, Key=dst_key, UploadId=upload, PartNumber=number,
                                                  Body=data, ContentLength=size,
                                                  ContentMD5=base64.b64encode(md5).decode())
                if clean_etag(answer["ETag"]) != md5.hex():
                    raise RuntimeError(f"part {number}: destination stored ETag {answer['ETag']}")
                digests.append(md5)
                done.append({"PartNumber": number, "ETag": answer["ETag"]})
                total += size
            computed = etag_of(digests, True)
            if computed != etag:
                raise RuntimeError(f"checksum mismatch reading the source: computed {computed}, ETag {etag}")
            result = self.dst.complete_multipart_upload(Bucket=dst_bucket, Key=dst_key, UploadId=upload,
                                                        MultipartUpload={"Parts": done})
        except BaseException:
            try:
                self.dst.abort_multipart_upload(Bucket=dst_bucket, Key=dst_key, UploadId=upload)
            except Exception:
                pass
            raise
        if clean_etag(result.get("ETag")) != etag:
            raise RuntimeError(f"destination stored ETag {clean_etag(result.get('ETag'))}, expected {etag}")
        return total


# -- listing ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Version:
    key: str
    version_id: str | None
    etag: str
    size: int
    marker: bool = False

    @property
    def token(self) -> tuple:
        return ("marker",) if self.marker else (self.etag, self.size)


def list_latest(client, bucket: str, prefix: str) -> Iterable[Version]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield Version(o["Key"], None, clean_etag(o.get("ETag")), int(o.get("Size", 0)))


def list_histories(client, bucket: str, prefix: str) -> dict[str, list[Version]]:
    """Every key's versions and delete markers, oldest first."""
    rows: dict[str, list[tuple]] = {}
    position = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        entries = [(v, False) for v in page.get("Versions", [])] + [(m, True) for m in page.get("DeleteMarkers", [])]
        for entry, marker in entries:
            position += 1
            v = Version(entry["Key"], entry.get("VersionId"), clean_etag(entry.get("ETag")),
                        int(entry.get("Size", 0)), marker)
            # Newest first within a key in the listing: order by time, the latest last, then listing order.
            rows.setdefault(v.key, []).append((entry["LastModified"], bool(entry.get("IsLatest")), -position, v))
    return {key: [r[3] for r in sorted(items, key=lambda r: (r[0], r[1], r[2]))] for key, items in rows.items()}


# -- mirror --------------------------------------------------------------------------------------------------


class Mirror:
    def __init__(self, src_loc: Location, dst_loc: Location, src, dst, *, parallel: int = 8, versions: bool = True,
                 bucket_settings: bool = True, progress: bool = False, dry_run: bool = False) -> None:
        self.src_loc, self.dst_loc = src_loc, dst_loc
        self.src, self.dst = src, dst
        self.parallel = parallel
        self.versions = versions
        self.bucket_settings = bucket_settings
        self.progress = progress
        self.dry_run = dry_run
        self.summary = Summary()

    def pairs(self) -> list[tuple[str, str]]:
        if self.src_loc.bucket:
            return [(self.src_loc.bucket, self.dst_loc.bucket or self.src_loc.bucket)]
        if self.dst_loc.bucket:
            raise TransferError("the destination names a bucket: name the source bucket too")
        try:
            names = [b["Name"] for b in self.src.list_buckets().get("Buckets", [])]
        except Exception as exc:
            raise TransferError(f"cannot list the source's buckets: {_code(exc)}: {exc}") from None
        return [(n, n) for n in names]

    def run(self) -> Summary:
        started = time.monotonic()
        for src_bucket, dst_bucket in self.pairs():
            self.summary.buckets += 1
            self.mirror_bucket(src_bucket, dst_bucket)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _versioning(self, bucket: str) -> str | None:
        try:
            return self.src.get_bucket_versioning(Bucket=bucket).get("Status")
        except Exception as exc:
            log.warning("cannot read versioning of %s (%s): copying current objects only", bucket, _code(exc))
            return None

    def _ensure_bucket(self, name: str) -> None:
        try:
            self.dst.head_bucket(Bucket=name)
            return
        except Exception as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise TransferError(f"destination bucket {name}: {_code(exc)}: {exc}") from None
        if not self.dry_run:
            self.dst.create_bucket(Bucket=name)

    def _copy_settings(self, src_bucket: str, dst_bucket: str) -> None:
        """Bucket policy (when the name is kept), CORS, lifecycle and tags, where the source has them."""
        copies = [("get_bucket_cors", "put_bucket_cors",
                   lambda r: {"CORSConfiguration": {"CORSRules": r["CORSRules"]}}),
                  ("get_bucket_lifecycle_configuration", "put_bucket_lifecycle_configuration",
                   lambda r: {"LifecycleConfiguration": {"Rules": r["Rules"]}}),
                  ("get_bucket_tagging", "put_bucket_tagging", lambda r: {"Tagging": {"TagSet": r["TagSet"]}})]
        if src_bucket == dst_bucket:
            copies.append(("get_bucket_policy", "put_bucket_policy", lambda r: {"Policy": r["Policy"]}))
        for get, put, body in copies:
            try:
                answer = getattr(self.src, get)(Bucket=src_bucket)
            except Exception:
                continue  # not set (NoSuch...Configuration), or not supported by the source
            try:
                getattr(self.dst, put)(Bucket=dst_bucket, **body(answer))
            except Exception as exc:
                log.warning("bucket %s: could not copy %s (%s)", dst_bucket, get[4:], _code(exc))

    def mirror_bucket(self, src_bucket: str, dst_bucket: str) -> None:
        src_prefix, dst_prefix = self.src_loc.prefix, self.dst_loc.prefix
        status = self._versioning(src_bucket) if self.versions else None
        versioned = status in ("Enabled", "Suspended")
        self._ensure_bucket(dst_bucket)
        if not self.dry_run:
            if versioned:
                self.dst.put_bucket_versioning(Bucket=dst_bucket, VersioningConfiguration={"Status": "Enabled"})
            if self.bucket_settings:
                self._copy_settings(src_bucket, dst_bucket)

        def dst_key(key: str) -> str:
            return dst_prefix + key[len(src_prefix):]

        # What each key needs: a list of source versions to copy (in order).
        jobs: list[tuple[str, list[Version]]] = []
        if versioned:
            source = list_histories(self.src, src_bucket, src_prefix)
            dest = list_histories(self.dst, dst_bucket, dst_prefix) if not self.dry_run or self._exists(dst_bucket) \
                else {}
            for key, history in source.items():
                have = [v.token for v in dest.get(dst_key(key), [])]
                want = [v.token for v in history]
                if want[: len(have)] == have:
                    self.summary.add(skipped=len(have))
                    if len(want) > len(have):
                        jobs.append((key, history[len(have):]))
                else:
                    self.summary.add(conflicts=1)
                    log.warning("%s/%s: the destination's versions differ from the source's; left alone",
                                dst_bucket, dst_key(key))
        else:
            dest_index = {v.key: v.token for v in list_latest(self.dst, dst_bucket, dst_prefix)} \
                if not self.dry_run or self._exists(dst_bucket) else {}
            for v in list_latest(self.src, src_bucket, src_prefix):
                if dest_index.get(dst_key(v.key)) == v.token:
                    self.summary.add(skipped=1)
                else:
                    jobs.append((v.key, [v]))
        total = sum(v.size for _, vs in jobs for v in vs if not v.marker)
        if self.dry_run:
            for key, vs in jobs:
                for v in vs:
                    print(f"would copy {src_bucket}/{key}" + (f" (version {v.version_id})" if versioned else "")
                          + (" delete marker" if v.marker else f" {human(v.size)}"))
            self.summary.add(copied=sum(len(vs) for _, vs in jobs))
            return
        progress = Progress(total, self.progress, f"{src_bucket}")
        copier = Copier(self.src, self.dst, progress)

        def run_key(key: str, versions: list[Version]) -> None:
            for v in versions:
                try:
                    if v.marker:
                        self.dst.delete_object(Bucket=dst_bucket, Key=dst_key(key))
                        self.summary.add(markers=1)
                    else:
                        n = copier.copy(src_bucket, key, v.version_id if versioned else None, v.etag, dst_bucket,
                                        dst_key(key))
                        self.summary.add(copied=1, bytes=n)
                except Exception as exc:
                    self.summary.error(f"{src_bucket}/{key}: {_code(exc)}: {exc}")
                    log.error("%s/%s: %s", src_bucket, key, exc)
                    return  # later versions of this key would land in the wrong order

        try:
            with ThreadPoolExecutor(max_workers=self.parallel) as pool:
                for f in as_completed([pool.submit(run_key, key, vs) for key, vs in jobs]):
                    f.result()
        finally:
            progress.close()
        if status == "Suspended":
            self.dst.put_bucket_versioning(Bucket=dst_bucket, VersioningConfiguration={"Status": "Suspended"})

    def _exists(self, bucket: str) -> bool:
        try:
            self.dst.head_bucket(Bucket=bucket)
            return True
        except Exception:
            return False


# -- import and export -----------------------------------------------------------------------------------------


def safe_relative(key: str) -> str | None:
    """The local relative path for a key, or None if it cannot be one (.., empty segments, a folder marker)."""
    parts = key.split("/")
    if not key or key.endswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key or "\0" in key:
        return None
    return os.path.join(*parts)


def upload_file(client, path: str, bucket: str, key: str, on_bytes: Callable[[int], None]) -> str:
    """Upload a file (multipart in PART_SIZE parts above MULTIPART_THRESHOLD), verified; returns its ETag."""
    import mimetypes

    size = os.path.getsize(path)
    attrs = {"ContentType": mimetypes.guess_type(path)[0] or "application/octet-stream"}
    if size <= MULTIPART_THRESHOLD:
        with open(path, "rb") as f:
            data = f.read()
        md5 = hashlib.md5(data)
        answer = client.put_object(Bucket=bucket, Key=key, Body=data,
                                   ContentMD5=base64.b64encode(md5.digest()).decode(), **attrs)
        on_bytes(size)
        if clean_etag(answer["ETag"]) != md5.hexdigest():
            raise RuntimeError(f"destination stored ETag {answer['ETag']}, expected {md5.hexdigest()}")
        return md5.hexdigest()
    upload = client.create_multipart_upload(Bucket=bucket, Key=key, **attrs)["UploadId"]
    try:
        digests, done = [], []
        with open(path, "rb") as f:
            number = 0
            while data := f.read(PART_SIZE):
                number += 1
                md5 = hashlib.md5(data)
                answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=data,
                                            ContentMD5=base64.b64encode(md5.digest()).decode())
                digests.append(md5.digest())
                done.append({"PartNumber": number, "ETag": answer["ETag"]})
                on_bytes(len(data))
        result = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                                  MultipartUpload={"Parts": done})
    except BaseException:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        except Exception:
            pass
        raise
    expected = etag_of(digests, True)
    if clean_etag(result["ETag"]) != expected:
        raise RuntimeError(f"destination stored ETag {result['ETag']}, expected {expected}")
    return expected


def local_matches(path: str, etag: str, size: int, part_size: int | None) -> bool:
    if not os.path.isfile(path) or os.path.getsize(path) != size:
        return False
    if "-" in etag:
        return part_size is not None and file_etag(path, part_size) == etag
    return file_etag(path, None) == etag


def import_dir(client, directory: str, bucket: str, prefix: str, *, parallel: int = 8, progress: bool = False,
               create_bucket: bool = True) -> Summary:
    summary = Summary()
    started = time.monotonic()
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    if not os.path.isdir(directory):
        raise TransferError(f"no such directory: {directory}")
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound") or not create_bucket:
            raise TransferError(f"bucket {bucket}: {_code(exc)}") from None
        client.create_bucket(Bucket=bucket)
    existing = {v.key: v for v in list_latest(client, bucket, prefix)}
    files = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if os.path.isfile(path):
                files.append((path, prefix + os.path.relpath(path, directory).replace(os.sep, "/")))
    todo = []
    for path, key in files:
        have = existing.get(key)
        part = PART_SIZE if os.path.getsize(path) > MULTIPART_THRESHOLD else None
        if have is not None and local_matches(path, have.etag, have.size, part):
            summary.add(skipped=1)
        else:
            todo.append((path, key))
    bar = Progress(sum(os.path.getsize(p) for p, _ in todo), progress, f"import {bucket}")

    def one(path: str, key: str) -> None:
        upload_file(client, path, bucket, key, bar)
        summary.add(copied=1, bytes=os.path.getsize(path))

    return _run_parallel(todo, one, lambda path, key: path, parallel, bar, summary, started)


def _run_parallel(todo: list[tuple], one: Callable, name: Callable, parallel: int, bar, summary, started: float):
    """Run ``one(*item)`` for every item on ``parallel`` threads; a failure is counted in the summary under the
    item's ``name(*item)`` and the run goes on. Closes the progress bar and returns the summary."""

    def guarded(*item) -> None:
        try:
            one(*item)
        except Exception as exc:
            summary.error(f"{name(*item)}: {_code(exc)}: {exc}")
            log.error("%s: %s", name(*item), exc)

    try:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            for f in as_completed([pool.submit(guarded, *item) for item in todo]):
                f.result()
    finally:
        bar.close()
    summary.seconds = time.monotonic() - started
    return summary


def download_object(client, bucket: str, key: str, etag: str, path: str, on_bytes: Callable[[int], None]) -> int:
    """Download to ``path`` (through a temporary file beside it), verified against the ETag part by part."""
    multipart = "-" in etag
    parts = 1
    if multipart:
        parts = int(client.head_object(Bucket=bucket, Key=key, PartNumber=1).get("PartsCount") or 0)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.shoal-download"
    digests, total = [], 0
    try:
        with open(tmp, "wb") as out:
            for number in range(1, max(parts, 1) + 1):
                extra = {"PartNumber": number} if multipart and parts else {}
                body = client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"', **extra)["Body"]
                digest, size = copy_body(body, out, on_bytes)
                digests.append(digest)
                total += size
        computed = etag_of(digests, multipart and parts > 0)
        if (multipart and parts and computed != etag) or (not multipart and is_md5_etag(etag) and computed != etag):
            raise RuntimeError(f"checksum mismatch: computed {computed}, ETag {etag}")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return total


def export_bucket(client, bucket: str, prefix: str, directory: str, *, parallel: int = 8,
                  progress: bool = False) -> Summary:
    summary = Summary()
    started = time.monotonic()
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # a prefix names a folder: "pre" must not take in "prefix-other/..."
    os.makedirs(directory, exist_ok=True)
    todo = []
    for v in list_latest(client, bucket, prefix):
        rel = safe_relative(v.key[len(prefix):])
        if rel is None:
            if not v.key.endswith("/"):
                summary.error(f"{v.key}: not a safe local path; skipped")
            continue
        path = os.path.join(directory, rel)
        part_size = None
        if "-" in v.etag and os.path.isfile(path) and os.path.getsize(path) == v.size:
            part_size = int(client.head_object(Bucket=bucket, Key=v.key, PartNumber=1)["ContentLength"])
        if local_matches(path, v.etag, v.size, part_size):
            summary.add(skipped=1)
        else:
            todo.append((v, path))
    bar = Progress(sum(v.size for v, _ in todo), progress, f"export {bucket}")

    def one(v: Version, path: str) -> None:
        summary.add(copied=1, bytes=download_object(client, bucket, v.key, v.etag, path, bar))

    return _run_parallel(todo, one, lambda v, path: v.key, parallel, bar, summary, started)
