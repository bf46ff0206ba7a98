"""Plain records passed between the S3 layer and the storage layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Version id placeholder: the store assigns a fresh id when it commits the version.
NEW_VERSION = ""


def version_sequence(version_id: str) -> int | None:
    """The position encoded in an id the store assigned (None for "null" and foreign ids)."""
    head = version_id[:8]
    if len(version_id) > 8 and all(c in "0123456789abcdef" for c in head):
        return int(head, 16)
    return None


@dataclass(slots=True)
class Segment:
    """A run of object bytes held in one blob (a whole PUT body, or one multipart part)."""

    blob_id: str
    size: int
    # (CRC64NVME hex, stored size) of a blob written for this record: recorded in the blobs table when the
    # record is committed. None for segments read back from metadata (the blobs table has them).
    check: tuple[str, int] | None = None


@dataclass(slots=True)
class PartInfo:
    """What a completed multipart object remembers of each part (for partNumber reads and attributes)."""

    number: int
    size: int
    etag: str
    checksum: str | None = None


@dataclass(slots=True)
class Bucket:
    name: str
    owner: str
    created: float
    region: str = "us-east-1"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ObjectRecord:
    """One version of an object.

    ``meta`` holds everything that is only read back, never searched: content headers, user metadata
    (``user``), checksums, storage class, owner, part list of multipart objects.
    Exactly one of ``inline`` (small objects, stored in the metadata) and ``segments`` carries the bytes.
    (sqlite_meta builds these positionally, for speed: keep its two constructors in step with the fields.)
    """

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    last_modified: float
    meta: dict[str, Any] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    inline: bytes | None = None
    delete_marker: bool = False
    seq: int = 0  # order among the versions of the key (set by the store)
    is_latest: bool = True

    def blob_ids(self) -> list[str]:
        return [s.blob_id for s in self.segments]


@dataclass(slots=True)
class Upload:
    """An in-progress multipart upload."""

    upload_id: str
    bucket: str
    key: str
    initiated: float
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Part:
    upload_id: str
    number: int
    size: int
    etag: str
    last_modified: float
    blob_id: str
    checksums: dict[str, str] = field(default_factory=dict)
    blob_check: tuple[str, int] | None = None  # as Segment.check
