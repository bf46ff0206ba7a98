"""HTTP side of browser-based uploads (S3 "POST Object"): an HTML form posted as ``multipart/form-data``.

The form's fields (bounded in number and size) are read first; the ``file`` part is then streamed straight into
the ordinary PUT path, 1 MiB at a time, with the policy's ``content-length-range`` checked as the bytes arrive.
Fields after the file are ignored, as in S3. Who signed the form and what its policy allows is decided in
:mod:`shoal.s3.post_policy`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.multipart import BodyPartReader, MultipartReader
from multidict import CIMultiDict

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import S3Request
from shoal.http.body import PlainBody
from shoal.http.handlers.objects import attributes_from_headers, checksum_from_headers, checksum_headers
from shoal.http.handlers.tagging import parse_tagging
from shoal.http.response import Response, StreamResponse
from shoal.s3 import context, objects, post_policy, sse, tagging
from shoal.s3.lifecycle import expiration_header
from shoal.s3.service import S3Service

MAX_FIELD_BYTES = 64 * 1024  # names and values of all the fields before the file
MAX_FIELDS = 1000
MAX_TRAILING_BYTES = 64 * 1024  # what may follow the file and is read (and ignored) to keep the connection
READ_SIZE = 1 << 20
FIELD_READ = 8192

# Form fields that set what a PUT sets with headers of the same name; "acl" is x-amz-acl.
CONTENT_FIELDS = ("content-type", "cache-control", "content-disposition", "content-encoding", "content-language",
                  "expires", "content-md5", "x-amz-storage-class", "x-amz-object-lock-mode",
                  "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold")
CONTENT_PREFIXES = ("x-amz-meta-", "x-amz-server-side-encryption", "x-amz-checksum-")

_MALFORMED = (ValueError, AssertionError, RuntimeError, LookupError, HttpProcessingError)
_CUT_SHORT = (ConnectionError, OSError, asyncio.IncompleteReadError, EOFError)


def _translate(exc: Exception) -> S3Error:
    if isinstance(exc, _CUT_SHORT):
        return S3Error("IncompleteBody", "The POST body ended before the form was complete.")
    return S3Error("MalformedPOSTRequest")


@dataclass(slots=True)
class Form:
    fields: dict[str, str]  # lower-case name -> value, the fields before the file
    file: BodyPartReader | None
    filename: str | None


async def _read_field(part: BodyPartReader, budget: int) -> tuple[bytes, int]:
    value = bytearray()
    while True:
        chunk = await part.read_chunk(FIELD_READ)
        if not chunk:
            return bytes(value), budget
        budget -= len(chunk)
        if budget < 0:
            raise S3Error("MaxPostPreDataLengthExceededError")
        value += chunk


async def read_form(reader: MultipartReader) -> Form:
    """The fields up to the file part, which is left unread for streaming."""
    fields: dict[str, str] = {}
    budget = MAX_FIELD_BYTES
    try:
        for _ in range(MAX_FIELDS):
            part = await reader.next()
            if part is None:
                return Form(fields, None, None)
            if not isinstance(part, BodyPartReader) or not part.name:
                raise S3Error("MalformedPOSTRequest")
            name = part.name.lower()
            if name == "file":
                filename = part.filename
                if filename is not None:  # some browsers send a full path: S3 uses the name only
                    filename = filename.replace("\\", "/").rsplit("/", 1)[-1]
                return Form(fields, part, filename)
            budget -= len(name)
            raw, budget = await _read_field(part, budget)
            if budget < 0:
                raise S3Error("MaxPostPreDataLengthExceededError")
            if name in fields:
                raise S3Error("InvalidArgument", f"Bucket POST has more than one field named '{part.name}'.",
                              ArgumentName=part.name, ArgumentValue=raw.decode("utf-8", "replace"))
            try:
                fields[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise S3Error("InvalidArgument", f"The value of form field '{part.name}' is not UTF-8.",
                              ArgumentName=part.name) from None
    except S3Error:
        raise
    except (*_MALFORMED, *_CUT_SHORT) as exc:
        raise _translate(exc) from exc
    raise S3Error("MaxPostPreDataLengthExceededError", f"A POST form may have at most {MAX_FIELDS} fields.")


class FileBody:
    """The ``file`` part as a request body for the ingest path, sized against the policy as it streams."""

    length: int | None = None
    wants_sha256 = False

    def __init__(self, part: BodyPartReader, policy: post_policy.PostPolicy | None) -> None:
        self.trailers: dict[str, str] = {}
        self.size = 0
        self._part = part
        self._policy = policy

    async def read(self) -> bytes:
        try:
            while True:
                data = await self._part.read_chunk(READ_SIZE)
                if data or self._part.at_eof():
                    break
        except (*_MALFORMED, *_CUT_SHORT) as exc:
            raise _translate(exc) from exc
        self.size += len(data)
        if self._policy is not None:
            self._policy.check_size(self.size, final=not data)
        return data

    def check_sha256(self, hexdigest: str) -> None:
        pass


async def _drain(reader: MultipartReader) -> bool:
    """Read (and ignore) the fields after the file; False when there is too much to keep the connection."""
    budget = MAX_TRAILING_BYTES
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                return False
            while chunk := await part.read_chunk(FIELD_READ):
                budget -= len(chunk)
                if budget < 0:
                    return False
    except (*_MALFORMED, *_CUT_SHORT):
        return False
    return True


def _object_headers(fields: dict[str, str]) -> CIMultiDict[str]:
    """The fields that describe the object, named as the PUT headers that set the same things."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in fields.items():
        if name in CONTENT_FIELDS or name.startswith(CONTENT_PREFIXES):
            headers[name] = value
    if "acl" in fields:
        headers["x-amz-acl"] = fields["acl"]
    return headers


def _missing_key() -> S3Error:
    return S3Error("InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, please "
                   "check the order of the fields.", ArgumentName="key", ArgumentValue="")


def _redirect_target(fields: dict[str, str]) -> str | None:
    target = fields.get("success_action_redirect") or fields.get("redirect")
    if not target:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        raise S3Error("InvalidArgument", "success_action_redirect is not a valid URL.",
                      ArgumentName="success_action_redirect")
    return target


def _object_url(req: S3Request, key: str) -> str:
    assert req.bucket
    raw_path = req.http.raw_path.split("?", 1)[0]
    bucket_path = f"/{quote(req.bucket)}" if raw_path.startswith(f"/{req.bucket}") else ""
    return f"{req.http.scheme}://{req.headers.get('Host', '')}{bucket_path}/{quote(key, safe='/~')}"


def _note_context(signer: post_policy.Signer, headers: CIMultiDict[str]) -> None:
    """Policy condition keys see the form's fields as the headers of a PUT would be seen."""
    ctx = context.current.get()
    if ctx is None:
        return
    if signer.identity is not None:
        ctx.auth_type = "POST"
        ctx.signature_version = signer.signature_version
    merged = CIMultiDict(ctx.headers)  # the request's own headers, read-only
    merged.update(headers)
    ctx.headers = merged


async def post_object(svc: S3Service, req: S3Request) -> StreamResponse:
    assert req.bucket
    mimetype = parse_mimetype(req.headers.get("Content-Type", ""))
    if (mimetype.type, mimetype.subtype) != ("multipart", "form-data"):
        raise S3Error("PreconditionFailed", Condition="Bucket POST must be of the enclosure-type "
                      "multipart/form-data")
    svc.existing_bucket(req.bucket)
    if not isinstance(req.body, PlainBody):
        raise S3Error("MalformedPOSTRequest")
    stream = await req.body.begin_raw()
    try:
        # BodyStream offers the StreamReader methods the reader uses: duck-typed on purpose (see shoal.http.stream).
        reader = MultipartReader(req.http.headers, stream)  # type: ignore[arg-type]
    except _MALFORMED as exc:
        raise S3Error("MalformedPOSTRequest") from exc
    form = await read_form(reader)
    fields = form.fields
    signer = post_policy.authenticate(svc.identities, fields)
    policy = post_policy.parse(fields["policy"]) if "policy" in fields else None
    if policy is not None:
        policy.check_expiration(time.time())
    key = fields.get("key")
    if key is None:
        raise _missing_key()
    if form.file is None:
        raise S3Error("IncorrectNumberOfFilesInPostRequest", ArgumentName="file", ArgumentValue="0")
    key = key.replace("${filename}", form.filename or "")
    if policy is not None:
        policy.check_fields({**fields, "key": key, "bucket": req.bucket})
    redirect = _redirect_target(fields)
    headers = _object_headers(fields)
    _note_context(signer, headers)
    attrs = attributes_from_headers(headers)
    if "tagging" in fields:
        attrs.tags = tagging.validate(parse_tagging(fields["tagging"].encode()), tagging.MAX_OBJECT_TAGS)
    checksum = checksum_from_headers(headers)
    requested = sse.parse_write(headers)
    record = await objects.put_object(svc, signer.identity, req.bucket, key, FileBody(form.file, policy), attrs,
                                      checksum, headers.get("Content-MD5"), requested=requested)
    reusable = await _drain(reader)

    etag = f'"{record.etag}"'
    location = _object_url(req, key)
    response_headers = {"ETag": etag, "Location": location, **objects.version_header(svc, record),
                        **expiration_header(svc, record), **sse.response_headers(record.meta.get("e"),
                                                                                   requested.customer)}
    if checksum.algorithm:
        response_headers.update(checksum_headers({checksum.algorithm: record.meta["ck"][checksum.algorithm]},
                                                 "FULL_OBJECT"))
    if redirect is not None:
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in
                         (("bucket", req.bucket), ("key", key), ("etag", etag)))
        response_headers["Location"] = f"{redirect}{'&' if '?' in redirect else '?'}{query}"
        response: StreamResponse = Response(status=303, headers=response_headers)
    else:
        status = fields.get("success_action_status", "").strip()
        if status == "201":
            inner = (xml.el("Location", location) + xml.el("Bucket", req.bucket) + xml.el("Key", key)
                     + xml.el("ETag", etag))
            # No namespace, as S3 sends it (and as clients look it up: ``find("Key")``).
            response = Response(body=xml.document("PostResponse", inner, namespace=False), status=201,
                                    headers=response_headers, content_type="application/xml")
        else:
            response = Response(status=200 if status == "200" else 204, headers=response_headers)
    if not reusable:
        response.force_close()
    return response


HANDLERS = {"PostObject": post_object}
