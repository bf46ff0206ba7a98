"""The checksum algorithms S3 knows, computed incrementally and in C.

CRC32 comes from zlib; CRC32C and CRC64NVME from awscrt, which also combines CRCs of consecutive byte ranges
(how a multipart object gets a FULL_OBJECT checksum without reading its parts again).
"""

from __future__ import annotations

import base64
import hashlib
import zlib

from awscrt import checksums as crt

ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
CRC_ALGORITHMS = frozenset({"CRC32", "CRC32C", "CRC64NVME"})
HEADER_FOR = {a: f"x-amz-checksum-{a.lower()}" for a in ALGORITHMS}
DIGEST_SIZE = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}


class _Crc:
    __slots__ = ("_fn", "_size", "value")

    def __init__(self, fn, size: int) -> None:
        self._fn = fn
        self._size = size
        self.value = 0

    def update(self, data: bytes | memoryview) -> None:
        self.value = self._fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self._size, "big")


def _crc32(data, previous: int) -> int:
    return zlib.crc32(data, previous)


def new_hasher(algorithm: str):
    if algorithm == "CRC32":
        return _Crc(_crc32, 4)
    if algorithm == "CRC32C":
        return _Crc(crt.crc32c, 4)
    if algorithm == "CRC64NVME":
        return _Crc(crt.crc64nvme, 8)
    if algorithm == "SHA1":
        return hashlib.sha1()
    if algorithm == "SHA256":
        return hashlib.sha256()
    raise ValueError(algorithm)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def is_valid_value(algorithm: str, value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == DIGEST_SIZE[algorithm]
    except ValueError:
        return False


def composite(algorithm: str, part_values: list[str]) -> str:
    """COMPOSITE checksum of a multipart object: the checksum of the parts' raw checksums, then '-N'."""
    h = new_hasher(algorithm)
    for value in part_values:
        h.update(base64.b64decode(value))
    return f"{b64(h.digest())}-{len(part_values)}"


def combine_full_object(algorithm: str, parts: list[tuple[str, int]]) -> str:
    """FULL_OBJECT CRC of a multipart object from each part's CRC and length."""
    combine = {"CRC32": crt.combine_crc32, "CRC32C": crt.combine_crc32c, "CRC64NVME": crt.combine_crc64nvme}[
        algorithm
    ]
    size = DIGEST_SIZE[algorithm]
    total = None
    for value, length in parts:
        crc = int.from_bytes(base64.b64decode(value), "big")
        total = crc if total is None else combine(total, crc, length)
    return b64((total or 0).to_bytes(size, "big"))
