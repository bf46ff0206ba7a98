"""The worker lanes an upload's buffers go through (shoal.lanes.Lane): each lane applies its function (a
hash, the blob write) to the buffers strictly in the order they were fed, however many are queued, and after a
failure fails the rest without touching them. Uploads through the server, whose ETags and checksums depend on
this order, are in test_objects, test_http_raw and test_large."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import hashlib
import itertools
import os
import random
import threading
import time

import pytest

from shoal.http.body import EmptyBody
from shoal.lanes import Lane, Work, finished
from shoal.s3 import ingest


def test_a_lane_keeps_the_order_of_its_buffers():
    seen: list[int] = []
    threads: set[int] = set()
    active = threading.Semaphore(1)
    rnd = random.Random(5)

    def record(data: memoryview) -> None:
        assert active.acquire(blocking=False), "two calls of one lane ran at once"
        try:
            threads.add(threading.get_ident())
            time.sleep(rnd.random() / 2000)
            seen.append(int.from_bytes(data, "big"))
        finally:
            active.release()

    work = Work()
    lane = Lane(record, work)
    calls = []
    for i in range(300):
        calls.append(lane.feed(memoryview(i.to_bytes(2, "big"))))
        if i % 37 == 0:
            time.sleep(0.002)  # now and then the lane catches up and a new drain starts
    work.wait()
    assert all(c.done() and c.exception() is None for c in calls)
    assert seen == list(range(300))


def test_a_hash_fed_through_a_lane_matches_one_made_at_once():
    data = os.urandom(3 * 1024 * 1024 + 17)
    md5 = hashlib.md5()
    work = Work()
    lane = Lane(md5.update, work)
    view = memoryview(data)
    for start in range(0, len(data), 65536):
        lane.feed(view[start:start + 65536])
    work.wait()
    assert md5.digest() == hashlib.md5(data).digest()


def test_after_a_failure_a_lane_fails_the_rest_without_touching_them():
    touched: list[int] = []
    gate = threading.Event()

    def write(data: memoryview) -> None:
        gate.wait(5)
        n = int.from_bytes(data, "big")
        touched.append(n)
        if n == 3:
            raise OSError(errno.ENOSPC, "No space left on device")

    work = Work()
    lane = Lane(write, work)
    calls = [lane.feed(memoryview(i.to_bytes(1, "big"))) for i in range(8)]
    gate.set()
    work.wait()
    assert touched == [0, 1, 2, 3]
    assert [c.exception() is None for c in calls] == [True] * 3 + [False] * 5
    assert all(isinstance(c.exception(), OSError) and c.exception().errno == errno.ENOSPC for c in calls[3:])


def test_waiting_for_a_buffer_raises_its_first_error_once_all_its_calls_are_done():
    release = threading.Event()
    completed: list[str] = []

    def slow(data: memoryview) -> None:
        release.wait(5)
        completed.append("slow")

    def failing(data: memoryview) -> None:
        raise ValueError("bad")

    async def main() -> None:
        work = Work()
        calls = (Lane(failing, work).feed(memoryview(b"x")), Lane(slow, work).feed(memoryview(b"x")))
        threading.Timer(0.1, release.set).start()
        with pytest.raises(ValueError):
            await finished(calls)
        assert completed == ["slow"]  # the buffer was free again before the error surfaced

    asyncio.run(main())


def test_a_cancelled_wait_stops_the_lane_from_touching_later_buffers():
    release = threading.Event()
    touched: list[int] = []

    def write(data: memoryview) -> None:
        release.wait(5)
        touched.append(int.from_bytes(data, "big"))

    work = Work()
    lane = Lane(write, work)
    first = lane.feed(memoryview(b"\x00"))
    second = lane.feed(memoryview(b"\x01"))
    third = lane.feed(memoryview(b"\x02"))
    assert second.cancel()  # what cancelling the upload's task does to a call not yet started
    release.set()
    work.wait()
    assert touched == [0]
    assert first.exception() is None and second.cancelled()
    assert isinstance(third.exception(), concurrent.futures.CancelledError)


class _Body:
    """A body that fills the caller's buffers from ``data``, in pieces, yielding to the loop between them."""

    def __init__(self, data: bytes, piece: int = 300_000) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.piece = piece

    async def readinto(self, view: memoryview) -> int:
        await asyncio.sleep(0)
        n = min(len(view), self.piece, len(self.data) - self.pos)
        view[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class _SlowWriter:
    """Copies what it is given only after a pause: a buffer refilled before its write lane finished shows up as
    the wrong bytes."""

    def __init__(self, pause: float = 0.003) -> None:
        self.got = bytearray()
        self.pause = pause
        self.calls: list[tuple[float, float]] = []

    def write(self, data: memoryview) -> None:
        started = time.monotonic()
        time.sleep(self.pause)
        self.got += data
        self.calls.append((started, time.monotonic()))


def test_buffers_are_refilled_only_after_every_lane_is_done_with_them():
    data = os.urandom(7 * 1024 * 1024 + 123)  # several rounds of the three buffers
    md5 = hashlib.md5()
    writer = _SlowWriter()

    async def main() -> int:
        return await ingest._ingest_direct(_Body(data), (md5.update,), writer, len(data), Work())

    assert asyncio.run(main()) == len(data)
    assert bytes(writer.got) == data
    assert md5.digest() == hashlib.md5(data).digest()


def test_a_cancelled_upload_returns_only_when_no_lane_touches_its_buffers():
    data = os.urandom(12 * 1024 * 1024)
    writer = _SlowWriter(pause=0.02)

    async def main() -> float:
        task = asyncio.create_task(ingest._ingest_direct(_Body(data), (hashlib.md5().update,), writer, len(data),
                                                         Work()))
        await asyncio.sleep(0.05)  # buffers in flight, the write lane behind
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic()

    returned = asyncio.run(main())
    time.sleep(0.1)  # a write still running at the return would have ended by now
    assert writer.calls, "nothing was written before the cancel"
    assert all(end <= returned for _, end in writer.calls)
    assert len(writer.got) < len(data)


def test_a_failed_upload_waits_for_its_lanes_without_holding_up_the_loop():
    """On the way out of a failed upload the lanes still working on its buffers are waited for (they must be done
    before the buffers are reused), while the event loop goes on serving everything else."""
    data = os.urandom(12 * 1024 * 1024)
    writer = _SlowWriter(pause=0.05)

    class _Failing(_Body):
        async def readinto(self, view: memoryview) -> int:
            if self.pos >= 3 * self.piece:  # three buffers in flight, then the client goes away
                raise ConnectionResetError
            return await super().readinto(view)

    async def main() -> tuple[list[float], float]:
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.002)

        ticking = asyncio.create_task(ticker())
        with pytest.raises(ConnectionResetError):
            await ingest._ingest_direct(_Failing(data), (hashlib.md5().update,), writer, len(data), Work())
        returned = time.monotonic()
        ticking.cancel()
        return ticks, returned

    ticks, returned = asyncio.run(main())
    assert writer.calls and all(end <= returned for _, end in writer.calls)  # every write ended before the return
    gaps = [b - a for a, b in itertools.pairwise([*ticks, returned])]
    assert max(gaps) < 0.04, max(gaps)  # each write takes 50 ms: a blocked loop would miss its ticks that long


def test_a_settle_cancelled_again_still_waits_for_the_threads():
    work = Work()
    release = threading.Event()
    ended: list[float] = []

    def slow() -> None:
        release.wait(5)
        ended.append(time.monotonic())

    work.submit(slow)

    async def main() -> float:
        task = asyncio.create_task(work.settle())
        await asyncio.sleep(0.05)
        task.cancel()
        threading.Timer(0.1, release.set).start()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic()

    returned = asyncio.run(main())
    assert ended and ended[0] <= returned


@pytest.mark.parametrize("declared", [True, False])  # received into the upload's buffers, or read piece by piece
def test_an_upload_cancelled_twice_still_cleans_up(declared):
    """Shutdown cancels a running upload (the front end), then again (the loop's last cancel_all_tasks) while it
    waits for its lanes on the way out: it still returns its buffers to the budget and aborts its blob."""

    class Writer:
        blob_id, check, aborted = "x", None, False

        def write(self, data: memoryview) -> None:
            time.sleep(0.3)

        def abort(self) -> None:
            self.aborted = True

    writer = Writer()

    class Blobs:
        def new_writer(self) -> Writer:
            return writer

    class Stalling:
        length = (10 << 20) if declared else None
        trailers: dict[str, str] = {}
        wants_sha256 = False
        calls = 0

        async def readinto(self, view: memoryview) -> int:
            self.calls += 1
            if self.calls == 1:
                return len(view)
            await asyncio.Event().wait()  # the client stalls
            return 0

        async def read(self) -> bytes:
            self.calls += 1
            if self.calls <= 2:
                return b"x" * (1 << 20)
            await asyncio.Event().wait()
            return b""

        def check_sha256(self, hexdigest: str) -> None:
            pass

    if not declared:
        del Stalling.readinto

    async def main() -> None:
        task = asyncio.create_task(ingest.ingest(Stalling(), Blobs(), set(), inline_limit=0))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        task.cancel()
        await asyncio.sleep(0.05)  # now waiting for the write lane
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = ingest._direct_in_use
    asyncio.run(main())
    assert writer.aborted
    assert ingest._direct_in_use == before


@pytest.mark.parametrize("cancels", [1, 2])
def test_a_small_upload_cancelled_while_made_durable_leaves_no_blob(tmp_path, cancels):
    """A body under 256 KiB is received whole and its blob hashed, written and made durable in one worker call
    (ingest._ingest_whole). Cancelled meanwhile (shutdown; twice: then also while waiting for that call), the
    upload waits for the call, deletes the blob it made, and returns its buffer to the budget."""
    from shoal.storage.local_blobs import LocalBlobStore

    store = LocalBlobStore(str(tmp_path))
    entered = threading.Event()

    class Blobs:
        def new_writer(self):
            writer = store.new_writer()
            real_finish = writer.finish

            def finish() -> None:
                entered.set()
                time.sleep(0.3)
                real_finish()

            writer.finish = finish  # type: ignore[method-assign]
            return writer

        def delete(self, blob_id: str) -> None:
            store.delete(blob_id)

    data = os.urandom(100 * 1024)

    class Whole(_Body, EmptyBody):  # its bytes from _Body.readinto; no trailers, no payload hash
        length = len(data)

    async def main() -> None:
        task = asyncio.create_task(ingest.ingest(Whole(data), Blobs(), set(),  # type: ignore[arg-type]
                                                 inline_limit=64 * 1024))
        while not entered.is_set():
            await asyncio.sleep(0.01)
        for _ in range(cancels):
            task.cancel()
            await asyncio.sleep(0.05)
        with pytest.raises(asyncio.CancelledError):
            await task

    before = ingest._direct_in_use
    asyncio.run(main())
    assert ingest._direct_in_use == before
    assert [f for _, _, files in os.walk(store.blob_dir) for f in files] == []
    assert os.listdir(store.tmp_dir) == []


def test_a_small_upload_is_stored_whole_with_its_hashes(tmp_path):
    from shoal.storage.local_blobs import LocalBlobStore

    store = LocalBlobStore(str(tmp_path))
    data = os.urandom(100 * 1024)

    class Whole(_Body):
        length = len(data)
        trailers: dict[str, str] = {}
        wants_sha256 = True
        checked: str | None = None

        async def read(self) -> bytes:
            return b""

        def check_sha256(self, hexdigest: str) -> None:
            self.checked = hexdigest

    body = Whole(data, piece=30_000)
    got = asyncio.run(ingest.ingest(body, store, {"CRC32"}, inline_limit=64 * 1024))  # type: ignore[arg-type]
    assert got.size == len(data) and got.inline is None and got.writer is not None
    assert got.md5 == hashlib.md5(data).digest() and body.checked == hashlib.sha256(data).hexdigest()
    assert got.checksums["CRC32"] == ingest.checksums.b64(zlib_crc32(data))
    with store.open(got.writer.blob_id) as f:
        assert f.read() == data
    assert os.listdir(store.tmp_dir) == []  # already durable: renamed into place


def zlib_crc32(data: bytes) -> bytes:
    import zlib

    return zlib.crc32(data).to_bytes(4, "big")
