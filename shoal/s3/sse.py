"""Server-side encryption, S3's semantics: which request asks for what (SSE-S3, SSE-KMS, SSE-C, bucket
default), what is stored about it in the metadata, and which data key opens an object.

The encryption of an object (or multipart upload) is kept in ``meta["e"]``:

- ``a``: "AES256" (SSE-S3), "aws:kms", "aws:kms:dsse" or "SSE-C"
- ``w``: the wrapped data key (see shoal.crypto.keys)
- ``kid``, ``cx``: KMS key id and encryption context (SSE-KMS)
- ``bk``: true when the client asked for an S3 bucket key (accepted and echoed; every object has its own key)
- ``cs``, ``ch``: salt and keyed hash recognising the customer key (SSE-C)
- ``s``: salt of the sealed inline data (objects kept in the metadata)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from shoal.crypto import blocks, keys
from shoal.errors import S3Error
from shoal.s3.context import header_names

SSE_S3 = "AES256"
KMS = "aws:kms"
DSSE = "aws:kms:dsse"
SSE_C = "SSE-C"
ALGORITHMS = (SSE_S3, KMS, DSSE)

H_SSE = "x-amz-server-side-encryption"
H_KMS_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"
H_CONTEXT = "x-amz-server-side-encryption-context"
H_BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
H_C_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
H_C_KEY = "x-amz-server-side-encryption-customer-key"
H_C_KEY_MD5 = "x-amz-server-side-encryption-customer-key-MD5"
COPY_SOURCE = "x-amz-copy-source-"

NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
NEEDS_KEY = ("The object was stored using a form of Server Side Encryption. The correct parameters must be "
             "provided to retrieve the object.")


@dataclass(frozen=True, slots=True)
class CustomerKey:
    key: bytes
    md5: str  # base64, as the client sent it (echoed in responses)


@dataclass(slots=True)
class Requested:
    """The encryption a write request (PUT, CreateMultipartUpload, CopyObject) asks for."""

    algorithm: str | None = None  # AES256 | aws:kms | aws:kms:dsse
    kms_key_id: str | None = None
    context: str | None = None
    bucket_key: bool | None = None
    customer: CustomerKey | None = None

    @property
    def any(self) -> bool:
        return self.algorithm is not None or self.customer is not None


@dataclass(slots=True)
class Encryption:
    """A data key ready to seal new bytes, and what to store about it."""

    info: dict  # meta["e"]
    dek: bytes


# -- request headers ----------------------------------------------------------------------------------------


def parse_customer_key(headers, prefix: str = "") -> CustomerKey | None:
    """The SSE-C key of a request (``prefix`` selects the copy-source headers); None if none is given."""
    if prefix:
        h_algorithm, h_key, h_md5 = (prefix + h.removeprefix("x-amz-") for h in (H_C_ALGORITHM, H_C_KEY, H_C_KEY_MD5))
    else:
        h_algorithm, h_key, h_md5 = H_C_ALGORITHM, H_C_KEY, H_C_KEY_MD5
    algorithm = headers.get(h_algorithm)
    key_b64 = headers.get(h_key)
    md5 = headers.get(h_md5)
    if algorithm is None and key_b64 is None and md5 is None:
        return None
    if algorithm is None:
        raise S3Error("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys "
                      "must provide a valid encryption algorithm.", ArgumentName=h_algorithm,
                      ArgumentValue="null")
    if algorithm != "AES256":
        raise S3Error("InvalidArgument", "The encryption algorithm specified is not supported.",
                      ArgumentName=h_algorithm, ArgumentValue=algorithm)
    if not key_b64:
        raise S3Error("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys "
                      "must provide an appropriate secret key.", ArgumentName=h_key,
                      ArgumentValue="null")
    try:
        key = base64.b64decode(key_b64.strip(), validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != keys.KEY_BYTES:
        raise S3Error("InvalidArgument", "The secret key was invalid for the specified algorithm.",
                      ArgumentName=h_key, ArgumentValue="null")
    if not md5:
        raise S3Error("InvalidArgument", "Requests specifying Server Side Encryption with Customer provided keys "
                      "must provide the client calculated MD5 of the secret key.",
                      ArgumentName=h_md5, ArgumentValue="null")
    try:
        given = base64.b64decode(md5.strip(), validate=True)
    except (ValueError, binascii.Error):
        given = b""
    if not hmac.compare_digest(given, hashlib.md5(key).digest()):
        raise S3Error("InvalidArgument", "The calculated MD5 hash of the key did not match the hash that was "
                      "provided.", ArgumentName=h_md5, ArgumentValue=md5)
    return CustomerKey(key, md5.strip())


def parse_write(headers, names: str | None = None) -> Requested:
    """The encryption a write request asks for, validated (400 InvalidArgument for anything inconsistent).
    ``names``: the header names in lower case, one per line, if the caller has them."""
    if H_SSE not in (names if names is not None else header_names(headers)):
        return Requested()  # every header here starts with H_SSE, and most writes send none of them
    customer = parse_customer_key(headers)
    algorithm = headers.get(H_SSE)
    key_id = headers.get(H_KMS_KEY_ID)
    context = headers.get(H_CONTEXT)
    bucket_key = headers.get(H_BUCKET_KEY)
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise S3Error("InvalidArgument", "The encryption method specified is not supported", ArgumentName=H_SSE,
                      ArgumentValue=algorithm)
    if customer is not None and algorithm is not None:
        raise S3Error("InvalidArgument", "Server Side Encryption with Customer provided key is incompatible with "
                      "the encryption method specified", ArgumentName=H_SSE, ArgumentValue=algorithm)
    if algorithm not in (KMS, DSSE):
        if key_id is not None:
            raise S3Error("InvalidArgument", "Server Side Encryption with AWS KMS managed key requires HTTP header "
                          "x-amz-server-side-encryption : aws:kms", ArgumentName=H_KMS_KEY_ID, ArgumentValue=key_id)
        if context is not None:
            raise S3Error("InvalidArgument", "Server Side Encryption with AWS KMS managed key requires HTTP header "
                          "x-amz-server-side-encryption : aws:kms", ArgumentName=H_CONTEXT, ArgumentValue=context)
    if key_id is not None and not key_id.strip():
        raise S3Error("InvalidArgument", "KMS key id must not be empty", ArgumentName=H_KMS_KEY_ID)
    if context is not None:
        try:
            parsed = json.loads(base64.b64decode(context, validate=True))
        except (ValueError, binascii.Error):
            parsed = None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise S3Error("InvalidArgument", "The encryption context must be base64-encoded JSON of string pairs.",
                          ArgumentName=H_CONTEXT)
    enabled: bool | None = None
    if bucket_key is not None:
        value = bucket_key.strip().lower()
        if value not in ("true", "false"):
            raise S3Error("InvalidArgument", "The value of x-amz-server-side-encryption-bucket-key-enabled must be "
                          "true or false", ArgumentName=H_BUCKET_KEY, ArgumentValue=bucket_key)
        enabled = value == "true"
    return Requested(algorithm, key_id.strip() if key_id else None, context, enabled, customer)


_READ_HEADERS = (H_SSE, H_KMS_KEY_ID, H_C_ALGORITHM, H_C_KEY, H_C_KEY_MD5)


def read_headers(headers, names: str | None = None) -> CustomerKey | None:
    """A GET's or HEAD's encryption headers (case-insensitive ``headers``): the SSE-C key, if any. ``names``: the
    request's header names (shoal.s3.context.header_names), to skip the lookups when none can be there."""
    if names is not None and H_SSE not in names:
        return None  # most reads: every one of them starts with x-amz-server-side-encryption
    for name in _READ_HEADERS:
        if name in headers:
            refuse_on_read(headers)
            return parse_customer_key(headers)
    return None  # most reads: none of them


def refuse_on_read(headers) -> None:
    """GET and HEAD take no SSE-S3/KMS headers (the object says how it is encrypted)."""
    if headers.get(H_SSE) is not None or headers.get(H_KMS_KEY_ID) is not None:
        raise S3Error("InvalidArgument", "x-amz-server-side-encryption header is not supported for this operation.",
                      ArgumentName=H_SSE)


# -- choosing and opening data keys -------------------------------------------------------------------------


def _key_service(svc) -> keys.KeyService:
    if svc.keys is None:
        raise S3Error("NotImplemented", "Server-side encryption is not configured on this server.")
    return svc.keys


def choose(svc, bucket, requested: Requested) -> Encryption | None:
    """A fresh data key for a new object or upload, as the request asks or else as the bucket's default says."""
    algorithm, key_id, context, bucket_key = requested.algorithm, requested.kms_key_id, requested.context, \
        requested.bucket_key
    if requested.customer is not None:
        dek = keys.new_dek()
        salt = os.urandom(16)
        info: dict[str, object] = {"a": SSE_C, "w": keys.wrap_customer(dek, requested.customer.key),
                                   "cs": _b64(salt), "ch": _b64(keys.customer_check(requested.customer.key, salt))}
        return Encryption(info, dek)
    if algorithm is None:
        default = bucket.config.get("sse") if bucket is not None else None
        if not default:
            return None
        algorithm, key_id = default["a"], default.get("kid")
        if bucket_key is None and default.get("bk"):
            bucket_key = True
    service = _key_service(svc)
    dek = keys.new_dek()
    if algorithm == SSE_S3:
        info = {"a": SSE_S3, "w": service.wrap_sse_s3(dek)}
    else:
        key_id = key_id or service.default_kms_key_id
        info = {"a": algorithm, "kid": key_id, "w": service.wrap_kms(dek, key_id, context)}
        if context is not None:
            info["cx"] = context
    if bucket_key and algorithm != SSE_S3:
        info["bk"] = True  # an S3 Bucket Key only means something for KMS
    return Encryption(info, dek)


def open_key(svc, e: dict | None, customer: CustomerKey | None) -> bytes | None:
    """The data key of a stored object (None if it is not encrypted), given the request's SSE-C key if any.

    SSE-C objects need their key: missing -> 400 InvalidRequest, wrong -> 403 AccessDenied.
    """
    if e is None or e.get("a") != SSE_C:
        if customer is not None:
            raise S3Error("InvalidRequest", NOT_APPLICABLE)
        if e is None:
            return None
        service = _key_service(svc)
        try:
            if e["a"] == SSE_S3:
                return service.unwrap_sse_s3(e["w"])
            return service.unwrap_kms(e["w"], e["kid"], e.get("cx"))
        except keys.UnwrapError:
            raise S3Error("InternalError", "The object's data key cannot be unwrapped with this server's master "
                          "key.") from None
    if customer is None:
        raise S3Error("InvalidRequest", NEEDS_KEY)
    if not customer_matches(e, customer):
        raise S3Error("AccessDenied", "The provided customer key does not match the key the object was encrypted "
                      "with.")
    try:
        return keys.unwrap_customer(e["w"], customer.key)
    except keys.UnwrapError:
        raise S3Error("AccessDenied") from None


def customer_matches(e: dict, customer: CustomerKey) -> bool:
    salt = base64.b64decode(e["cs"])
    return hmac.compare_digest(keys.customer_check(customer.key, salt), base64.b64decode(e["ch"]))


def same_setting(e: dict | None, requested: Requested, chosen: Encryption | None) -> bool:
    """Whether a new write with ``chosen`` (for ``requested``) would be encrypted just like ``e`` is: then a
    metadata-only copy of an object onto itself may keep its bytes and data key."""
    if e is None or chosen is None:
        return e is None and chosen is None
    if e["a"] != chosen.info["a"]:
        return False
    if e["a"] == SSE_C:
        return requested.customer is not None and customer_matches(e, requested.customer)
    return e.get("kid") == chosen.info.get("kid") and e.get("cx") == chosen.info.get("cx")


# -- stored encryption of a new object ---------------------------------------------------------------------


def object_info(encryption: Encryption | None, inline_salt: bytes | None) -> dict:
    """The meta["e"] entry of a new object (empty dict when it is not encrypted)."""
    if encryption is None:
        return {}
    info = dict(encryption.info)
    if inline_salt is not None:
        info["s"] = _b64(inline_salt)
    return {"e": info}


def upload_info(e: dict | None) -> dict:
    """What an object completed from an upload keeps of the upload's encryption."""
    return {k: v for k, v in (e or {}).items() if k != "s"}


def open_inline(dek: bytes, e: dict, sealed: bytes) -> bytes:
    return blocks.open_inline(dek, base64.b64decode(e["s"]), sealed)


# -- response headers ---------------------------------------------------------------------------------------


def response_headers(e: dict | None, customer: CustomerKey | None = None, *, write: bool = True) -> dict[str, str]:
    """The encryption headers of a response (GET and HEAD, ``write=False``, do not repeat the KMS context)."""
    if not e:
        return {}
    if e["a"] == SSE_C:
        headers = {H_C_ALGORITHM: "AES256"}
        if customer is not None:
            headers[H_C_KEY_MD5] = customer.md5
        return headers
    headers = {H_SSE: e["a"]}
    if "kid" in e:
        headers[H_KMS_KEY_ID] = e["kid"]
    if "cx" in e and write:
        headers[H_CONTEXT] = e["cx"]
    if e.get("bk"):
        headers[H_BUCKET_KEY] = "true"
    return headers


# -- bucket default encryption ------------------------------------------------------------------------------


def check_default(algorithm: str | None, key_id: str | None) -> None:
    if algorithm not in ALGORITHMS:
        raise S3Error("MalformedXML")
    if key_id is not None and algorithm == SSE_S3:
        raise S3Error("InvalidArgument", "a KMSMasterKeyID is not applicable if the default sse algorithm is not "
                      "aws:kms or aws:kms:dsse", ArgumentName="ApplyServerSideEncryptionByDefault")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def get_default(svc, identity, bucket_name: str) -> dict:
    bucket = svc.bucket(identity, bucket_name, "s3:GetEncryptionConfiguration")
    default = bucket.config.get("sse")
    if not default:
        raise S3Error("ServerSideEncryptionConfigurationNotFoundError",
                      "The server side encryption configuration was not found", status=404, BucketName=bucket_name)
    return default


async def set_default(svc, identity, bucket_name: str, algorithm: str | None, key_id: str | None,
                      bucket_key: bool) -> None:
    """Set (or with ``algorithm`` None, remove) the encryption applied to writes that ask for none."""
    svc.bucket(identity, bucket_name, "s3:PutEncryptionConfiguration")
    value: dict[str, object] | None = None
    if algorithm is not None:
        check_default(algorithm, key_id)
        value = {"a": algorithm}
        if key_id:
            value["kid"] = key_id
        if bucket_key:
            value["bk"] = True
    await svc.storage.meta.set_bucket_config(bucket_name, "sse", value)
