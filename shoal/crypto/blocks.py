"""The encrypted data format: AES-256-GCM over fixed-size plaintext blocks.

A blob holding P plaintext bytes is stored as ceil(P / BLOCK) sealed blocks, one after the other: each is the
block's ciphertext followed by its 16-byte GCM tag, and every block but the last holds exactly BLOCK plaintext
bytes. A range read therefore reads and opens only the blocks it touches.

Keys and nonces never repeat: every object (or multipart upload) has its own random data key (DEK); the blocks
of one blob are sealed under ``HMAC-SHA256(DEK, "blob:" + blob_id)`` with the block number as nonce, and blob
ids are fresh random names written exactly once. Inline data (small objects kept in the metadata) uses
``HMAC-SHA256(DEK, "inline:" + salt)`` with a random salt stored next to it.

Metadata keeps plaintext sizes everywhere (object sizes, segment sizes, part sizes). This module is the only
place that knows how plaintext offsets map to offsets in the stored bytes (:func:`sealed_size`,
:func:`sealed_span`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import AsyncGenerator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shoal import read_budget

BLOCK = 64 * 1024  # plaintext bytes per block
TAG = 16
SEALED = BLOCK + TAG  # stored bytes per full block
READ_BLOCKS = 16  # blocks read and opened per worker-thread call (1 MiB of plaintext), fewer when many stream
_INTO = hasattr(AESGCM, "encrypt_into")  # cryptography >= 47 seals and opens straight into our buffers


class CorruptData(Exception):
    """A block failed authentication or is missing: the stored bytes were damaged or the key is wrong."""


def sealed_size(plain: int) -> int:
    """Stored size of ``plain`` plaintext bytes."""
    return plain + -(-plain // BLOCK) * TAG


def sealed_span(first_block: int, end_plain: int) -> tuple[int, int]:
    """(offset, length) of the stored bytes of blocks ``first_block``.. up to plaintext offset ``end_plain``
    (which is either a block boundary or the end of the blob)."""
    offset = first_block * SEALED
    return offset, sealed_size(end_plain) - offset


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


class BlockCipher:
    """Seals and opens the blocks of one blob (or of one piece of inline data)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal_into(self, first_index: int, plain: bytes | bytearray | memoryview, out: memoryview) -> None:
        """Seal ``plain`` (whole blocks, except possibly a short last one) into ``out`` (exactly its size)."""
        view = memoryview(plain)
        pos = 0
        index = first_index
        for start in range(0, len(view), BLOCK):
            block = view[start : start + BLOCK]
            n = len(block) + TAG
            if _INTO:
                self._aead.encrypt_into(_nonce(index), block, None, out[pos : pos + n])
            else:
                out[pos : pos + n] = self._aead.encrypt(_nonce(index), block, None)
            pos += n
            index += 1

    def seal(self, first_index: int, plain: bytes | bytearray | memoryview) -> bytes:
        out = bytearray(sealed_size(len(plain)))
        self.seal_into(first_index, plain, memoryview(out))
        return bytes(out)

    def open(self, first_index: int, sealed: bytes | memoryview) -> bytearray:
        """Open consecutive sealed blocks starting at block ``first_index`` (the last one may be short)."""
        view = memoryview(sealed)
        count = -(-len(view) // SEALED)
        out = bytearray(len(view) - count * TAG)
        if count and len(view) - (count - 1) * SEALED <= TAG:
            raise CorruptData("truncated block")
        target = memoryview(out)
        pos = 0
        try:
            for i in range(count):
                block = view[i * SEALED : (i + 1) * SEALED]
                n = len(block) - TAG
                if _INTO:
                    self._aead.decrypt_into(_nonce(first_index + i), block, None, target[pos : pos + n])
                else:
                    target[pos : pos + n] = self._aead.decrypt(_nonce(first_index + i), block, None)
                pos += n
        except InvalidTag:
            raise CorruptData(f"block {first_index + i} failed authentication") from None
        return out


def derive(dek: bytes, label: bytes) -> bytes:
    return hmac.new(dek, label, hashlib.sha256).digest()


def blob_cipher(dek: bytes, blob_id: str) -> BlockCipher:
    return BlockCipher(derive(dek, b"blob:" + blob_id.encode()))


def inline_cipher(dek: bytes, salt: bytes) -> BlockCipher:
    return BlockCipher(derive(dek, b"inline:" + salt))


def seal_inline(dek: bytes, plain: bytes) -> tuple[bytes, bytes]:
    """(salt, sealed bytes) of a small object kept in the metadata."""
    salt = os.urandom(16)
    return salt, inline_cipher(dek, salt).seal(0, plain)


def open_inline(dek: bytes, salt: bytes, sealed: bytes) -> bytes:
    return bytes(inline_cipher(dek, salt).open(0, sealed))


class EncryptingWriter:
    """A BlobWriter that takes plaintext and writes sealed blocks to the blob writer it wraps.

    ``write`` is called from a worker thread (AES-GCM releases the GIL), like the plain writer's.
    """

    def __init__(self, inner, dek: bytes) -> None:
        self._inner = inner
        self.blob_id: str = inner.blob_id
        self._cipher = blob_cipher(dek, inner.blob_id)
        self._pending = bytearray()  # plaintext of the current, incomplete block
        self._index = 0
        self.size = 0  # plaintext bytes taken

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self.size += len(view)
        if self._pending:
            take = min(BLOCK - len(self._pending), len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) < BLOCK:
                return
            self._inner.write(self._cipher.seal(self._index, self._pending))
            self._index += 1
            self._pending.clear()
        whole = len(view) - len(view) % BLOCK
        if whole:
            out = bytearray(sealed_size(whole))
            self._cipher.seal_into(self._index, view[:whole], memoryview(out))
            self._index += whole // BLOCK
            self._inner.write(out)
        if whole < len(view):
            self._pending += view[whole:]

    @property
    def check(self) -> tuple[str, int]:
        """(checksum, size) of the sealed bytes as stored (see LocalBlobWriter.check)."""
        return self._inner.check

    def finish(self) -> None:
        if self._pending:
            self._inner.write(self._cipher.seal(self._index, self._pending))
            self._index += 1
            self._pending.clear()
        self._inner.finish()

    def abort(self) -> None:
        self._inner.abort()


def read_blocks(fd: int, cipher: BlockCipher, first: int, count: int, plain_size: int) -> bytearray:
    """Read and open ``count`` blocks from block ``first`` of a blob holding ``plain_size`` plaintext bytes."""
    end = min((first + count) * BLOCK, plain_size)
    offset, length = sealed_span(first, end)
    chunks = []
    while length > 0:
        chunk = os.pread(fd, length, offset)
        if not chunk:
            raise CorruptData("blob shorter than its metadata says")
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return cipher.open(first, chunks[0] if len(chunks) == 1 else b"".join(chunks))


async def stream_plain(fd: int, cipher: BlockCipher, offset: int, length: int,
                       plain_size: int) -> AsyncGenerator[bytes | bytearray | memoryview, None]:
    """Yield plaintext ``[offset, offset + length)`` of a sealed blob, opening at most READ_BLOCKS at a time on a
    worker thread, fewer when many stream at once (shoal.read_budget)."""
    if length <= 0:
        return
    loop = asyncio.get_running_loop()
    first = offset // BLOCK
    last = (offset + length - 1) // BLOCK
    skip = offset - first * BLOCK
    with read_budget.Share() as share:
        while first <= last:
            count = min(share.size(READ_BLOCKS * BLOCK, BLOCK) // BLOCK, last - first + 1)
            plain = await loop.run_in_executor(None, read_blocks, fd, cipher, first, count, plain_size)
            take = min(length, len(plain) - skip)
            yield plain if skip == 0 and take == len(plain) else memoryview(plain)[skip : skip + take]
            length -= take
            skip = 0
            first += count
