"""Key management: the server master key, wrapping of data keys, the local key service behind SSE-KMS, and
SSE-C customer keys.

Every object (or multipart upload) gets a random 256-bit data key (DEK); only the DEK *wrapped* (AES-256-GCM)
under a key-encryption key is stored:

- SSE-S3: KEK = HKDF-SHA256(master key, "shoal/sse-s3").
- SSE-KMS: a local key service in the manner of Ceph RGW's testing KMS: every key id names the key
  HKDF-SHA256(master key, "shoal/kms/" + key id); the key id (and any encryption context) is bound to the
  wrapped DEK as associated data.
- SSE-C: KEK = HKDF-SHA256(customer key, "shoal/sse-c"). The customer key is never stored; a salted keyed hash
  HMAC-SHA256(customer key, salt) recognises it, so a wrong key is refused before any byte is read.

The master key comes from ``--master-key`` / ``SHOAL_MASTER_KEY`` (base64 of 32 bytes), or is generated once and
kept in ``DATA_DIR/.shoal/master.key`` (mode 0600). Losing it loses every SSE-S3 and SSE-KMS object.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

KEY_BYTES = 32
MASTER_KEY_FILE = "master.key"
DEFAULT_KMS_KEY_ID = "shoal-default-key"


class UnwrapError(Exception):
    """A wrapped key could not be unwrapped (wrong key, or damaged metadata)."""


def hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def wrap(kek: bytes, dek: bytes, aad: bytes) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(kek).encrypt(nonce, dek, aad)).decode()


def unwrap(kek: bytes, wrapped: str, aad: bytes) -> bytes:
    try:
        raw = base64.b64decode(wrapped)
        return AESGCM(kek).decrypt(raw[:12], raw[12:], aad)
    except (InvalidTag, ValueError, binascii.Error):
        raise UnwrapError("cannot unwrap data key") from None


def new_dek() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def parse_master_key(value: str) -> bytes:
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("the master key must be base64 of 32 bytes") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"the master key must be base64 of 32 bytes, got {len(key)} bytes")
    return key


def load_or_create_master_key(meta_dir: str) -> bytes:
    """The master key stored in ``meta_dir/master.key``, created (mode 0600, atomically) if missing."""
    path = os.path.join(meta_dir, MASTER_KEY_FILE)
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        pass
    else:
        try:
            return parse_master_key(text)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    os.makedirs(meta_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, base64.b64encode(new_dek()) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created it first: then both use that one
        log.warning("generated a new master key in %s: back it up, encrypted objects cannot be read without it",
                    path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    fd = os.open(meta_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(path) as f:
        return parse_master_key(f.read())


class KeyService:
    """Wraps and unwraps data keys for SSE-S3 and SSE-KMS under keys derived from the master key."""

    def __init__(self, master_key: bytes, default_kms_key_id: str = DEFAULT_KMS_KEY_ID) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError("master key must be 32 bytes")
        self._sse_s3 = hkdf(master_key, b"shoal/sse-s3")
        self._master = master_key
        self._secrets = hkdf(master_key, b"shoal/iam-secrets")
        self._kms_cache: dict[str, bytes] = {}
        self.default_kms_key_id = default_kms_key_id

    def _kms_key(self, key_id: str) -> bytes:
        key = self._kms_cache.get(key_id)
        if key is None:
            key = hkdf(self._master, b"shoal/kms/" + key_id.encode())
            if len(self._kms_cache) < 10000:
                self._kms_cache[key_id] = key
        return key

    def wrap_sse_s3(self, dek: bytes) -> str:
        return wrap(self._sse_s3, dek, b"sse-s3")

    def unwrap_sse_s3(self, wrapped: str) -> bytes:
        return unwrap(self._sse_s3, wrapped, b"sse-s3")

    def wrap_kms(self, dek: bytes, key_id: str, context: str | None) -> str:
        return wrap(self._kms_key(key_id), dek, _kms_aad(key_id, context))

    def unwrap_kms(self, wrapped: str, key_id: str, context: str | None) -> bytes:
        return unwrap(self._kms_key(key_id), wrapped, _kms_aad(key_id, context))


    def seal_secret(self, access_key: str, secret: str) -> str:
        """An access key's secret, encrypted at rest (AES-256-GCM; the access key is bound as associated data)."""
        return wrap(self._secrets, secret.encode(), b"iam-secret\0" + access_key.encode())

    def open_secret(self, access_key: str, sealed: str) -> str:
        return unwrap(self._secrets, sealed, b"iam-secret\0" + access_key.encode()).decode()


def _kms_aad(key_id: str, context: str | None) -> bytes:
    return b"kms\0" + key_id.encode() + b"\0" + (context or "").encode()


# -- SSE-C --------------------------------------------------------------------------------------------------


def customer_check(customer_key: bytes, salt: bytes) -> bytes:
    return hmac.new(customer_key, b"shoal/sse-c/check\0" + salt, hashlib.sha256).digest()


def wrap_customer(dek: bytes, customer_key: bytes) -> str:
    return wrap(hkdf(customer_key, b"shoal/sse-c"), dek, b"sse-c")


def unwrap_customer(wrapped: str, customer_key: bytes) -> bytes:
    return unwrap(hkdf(customer_key, b"shoal/sse-c"), wrapped, b"sse-c")
