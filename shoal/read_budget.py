"""One budget of bytes in hand for the streaming reads under way (a GET of an encrypted object, a copy): alone a
read takes up to 1 MiB per call; with many at once each takes its share of BUDGET (at least one unit), so memory
stays flat with their number. 64 concurrent GETs of an encrypted object held ~3 MiB each with 1 MiB calls
(+194 MiB RSS, +54 MiB with the budget); 64 copies into encrypted objects +184 MiB."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator

BUDGET = 8 << 20
MOST = 1 << 20  # bytes a plain read takes per call when alone...
LEAST = 64 << 10  # ...and at least, however many share the budget
_active = 0  # readers inside a Share


class Share:
    """A reader's place in the budget, held for as long as it streams (``with Share() as share``)."""

    def __enter__(self) -> Share:
        global _active
        _active += 1
        return self

    def __exit__(self, *exc: object) -> None:
        global _active
        _active -= 1

    @staticmethod
    def size(most: int, unit: int = 1) -> int:
        """Bytes for the next call: at most ``most``, this reader's share of BUDGET, in whole ``unit``s (at least
        one)."""
        return max(unit, min(most, BUDGET // max(1, _active)) // unit * unit)


def active() -> int:
    return _active


async def pread_chunks(fd: int, offset: int, length: int) -> AsyncGenerator[bytes, None]:
    """Bytes ``[offset, offset + length)`` of an open file, read on a worker thread in this reader's shares of the
    budget. Stops early at the end of the file: the caller sees fewer bytes than it asked for."""
    loop = asyncio.get_running_loop()
    with Share() as share:
        while length > 0:
            chunk = await loop.run_in_executor(None, os.pread, fd, min(length, share.size(MOST, LEAST)), offset)
            if not chunk:
                return
            offset += len(chunk)
            length -= len(chunk)
            yield chunk
