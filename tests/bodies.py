"""Recognisable object bodies: a header naming the write and its size, then bytes derived from that header, so
a reader can tell exactly which write it saw and that it is whole (not a mix of two, not truncated)."""

from __future__ import annotations

import hashlib
import re

INLINE_LIMIT = 64 * 1024
# Both sides of the inline limit, and blobs that take more than one 1 MiB write buffer; small ones most often.
SIZES = [40, 1000, 60_000, INLINE_LIMIT, INLINE_LIMIT + 1, 300_000, 1_100_000]
WEIGHTS = [6, 6, 4, 3, 3, 2, 1]
_HEAD = re.compile(rb"^<([^<>]{1,80})>")


def body_for(tag: str, size: int) -> bytes:
    head = f"<{tag}:{size}>".encode()
    assert size >= len(head)
    seed = hashlib.sha256(head).digest()
    return (head + seed * ((size - len(head)) // 32 + 1))[:size]


def identify(data: bytes) -> str:
    """The tag of the write this body came from; fails unless the body is exactly that write's, whole."""
    match = _HEAD.match(data)
    assert match, f"unrecognisable body ({len(data)} bytes): {data[:60]!r}"
    tag, _, size = match.group(1).decode().rpartition(":")
    assert len(data) == int(size), f"{tag}: {len(data)} bytes read of {size} written"
    assert data == body_for(tag, int(size)), f"{tag}: a body of the right length but wrong bytes (a mix?)"
    return tag
