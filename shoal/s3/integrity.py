"""Checking stored bytes against the CRC64NVME recorded when their blob was written.

Why CRC64NVME: awscrt (already a dependency for S3's own checksums) computes it at ~20 GB/s per core with
carry-less multiplication, faster than reading the page cache, so checking costs one extra memory pass and no
new dependency (xxh3 would be similar speed but another package). It detects every burst error up to 64 bits
and any random damage with probability 1 - 2^-64; it is not a defence against deliberate tampering (encrypted
objects have AES-GCM tags for that).

What is checked, and when:

- A GET of whole blobs (a plain GET of an object, or of a multipart part): when the blobs together are at most
  ``VERIFY_BEFORE_SEND`` bytes, they are read and checked *before* the response headers go out, so damage is a
  clean ``500 InternalError``; the bytes then still go out with ``sendfile`` (zero-copy, from the page cache the
  check just filled). Larger blobs are checked by a worker thread *while* ``sendfile`` sends them, and the last
  ``HELD_BACK`` bytes of each are only sent once its check passed: a damaged blob ends in a cut connection, and
  the client, missing bytes of the announced Content-Length, never takes a damaged object for a whole one.
- Reads that pass through Python anyway (copies, UploadPartCopy, checksums computed later) check whole blobs as
  they read them and fail before their last chunk is used.
- Range GETs of part of a blob are not checked (that would mean reading the whole blob); the scrubber covers
  them, and encrypted objects are always authenticated block by block.

A blob that fails is moved to ``.shoal/quarantine/`` (with a JSON report) and never served again.
"""

from __future__ import annotations

import asyncio
import os
import threading

from shoal.errors import S3Error
from shoal.storage.errors import CorruptBlobError
from shoal.storage.local_blobs import checksum_fd

VERIFY_BEFORE_SEND = 8 * 1024 * 1024
HELD_BACK = 64 * 1024
CORRUPT_MESSAGE = "The stored object failed its integrity check; it has been quarantined."


def whole_blob_checks(svc, pieces) -> dict[int, tuple[str, int]]:
    """Index -> (crc, size) for the pieces that are whole, unencrypted-size-matching blobs with a known checksum."""
    if not svc.verify_reads:
        return {}
    wanted = [p.blob_id for p in pieces if p.blob_id is not None and p.offset == 0 and p.length == p.blob_size]
    if not wanted:
        return {}
    known = svc.storage.meta.blob_checks(wanted)
    return {i: known[p.blob_id] for i, p in enumerate(pieces)
            if p.blob_id in known and p.offset == 0 and p.length == p.blob_size and known[p.blob_id][1] == p.length}


def verify_fd(blob_id: str, fd: int, check: tuple[str, int], stop: threading.Event | None = None) -> None:
    """Raise CorruptBlobError unless the file holds exactly the recorded bytes. Runs on a worker thread, on its
    own duplicate of ``fd`` so that the caller may close its file at any time."""
    own = os.dup(fd)
    try:
        crc, read = checksum_fd(own, check[1], stop=stop.is_set if stop is not None else None)
    finally:
        os.close(own)
    if stop is not None and stop.is_set():
        return
    if read != check[1]:
        raise CorruptBlobError(blob_id, check[0], "short", check[1])
    if crc != check[0]:
        raise CorruptBlobError(blob_id, check[0], crc, check[1])


async def verify(blob_id: str, fd: int, check: tuple[str, int], stop: threading.Event | None = None) -> None:
    await asyncio.get_running_loop().run_in_executor(None, verify_fd, blob_id, fd, check, stop)


def missing(svc, error: FileNotFoundError) -> S3Error:
    """The error for an object whose blob file is gone: quarantined earlier, or lost."""
    blob_id = os.path.basename(str(error.filename or ""))
    if blob_id and blob_id in svc.storage.blobs.quarantined():
        return S3Error("InternalError", CORRUPT_MESSAGE)
    return S3Error("InternalError", "The stored object's data is missing (see shoal fsck).")


def corrupt(svc, error: CorruptBlobError, where: str) -> S3Error:
    """Quarantine the blob and return the error to report."""
    svc.storage.quarantine(error, where)
    return S3Error("InternalError", CORRUPT_MESSAGE)
