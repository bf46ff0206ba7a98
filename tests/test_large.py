"""Multi-GiB objects (slow: run with --runslow or SHOAL_SLOW=1): bodies stream through the server in bounded
memory, both ways. Neither the test nor the server ever holds an object in memory."""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time

import pytest
from boto3.s3.transfer import TransferConfig

from conftest import client

MiB = 1024 * 1024
GiB = 1024 * MiB
RSS_BUDGET = 100 * MiB

pytestmark = pytest.mark.slow


class PatternFile(io.RawIOBase):
    """A seekable, read-only file of ``size`` pseudo-random bytes generated on the fly: each MiB is a fixed
    random block stamped with its index, so every MiB differs and any misplaced byte range changes the MD5."""

    def __init__(self, size: int, seed: int = 7) -> None:
        self.size = size
        self.pos = 0
        self.block = random.Random(seed).randbytes(MiB)
        self._cached: tuple[int, bytes] = (-1, b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _mib(self, index: int) -> bytes:
        if self._cached[0] != index:
            self._cached = (index, index.to_bytes(8, "big") + self.block[8:])
        return self._cached[1]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos)
        pieces = []
        while n > 0:
            index, offset = divmod(self.pos, MiB)
            take = min(n, MiB - offset)
            mib = self._mib(index)
            pieces.append(mib if take == MiB else mib[offset : offset + take])
            self.pos += take
            n -= take
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def md5_of_ranges(size: int, chunk: int) -> list[bytes]:
    """MD5 digests of consecutive ``chunk``-sized ranges of a PatternFile of ``size`` bytes."""
    f = PatternFile(size)
    digests = []
    while f.tell() < size:
        h = hashlib.md5()
        left = min(chunk, size - f.tell())
        while left:
            data = f.read(min(left, 8 * MiB))
            h.update(data)
            left -= len(data)
        digests.append(h.digest())
    return digests


class RssWatcher:
    """Peak resident memory of a process while a block runs: VmHWM (the kernel's own high-water mark), checked
    against sampled VmRSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def status(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(field)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_sampled = max(self.peak_sampled, self.status("VmRSS"))
            except (OSError, KeyError):
                return
            time.sleep(0.02)

    def __enter__(self) -> RssWatcher:
        self.baseline = self.status("VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.status("VmHWM"), self.peak_sampled)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def stream_md5(body, expected_size: int) -> bytes:
    h = hashlib.md5()
    total = 0
    for chunk in body.iter_chunks(4 * MiB):
        h.update(chunk)
        total += len(chunk)
    assert total == expected_size
    return h.digest()


def test_2gib_put_and_get_in_bounded_memory(make_server):
    size = 2 * GiB
    srv = make_server()
    s3 = client(srv.endpoint, read_timeout=300)
    s3.create_bucket(Bucket="large")
    # Warm the server up (imports, first blob directories) so the baseline is its steady state.
    s3.put_object(Bucket="large", Key="warm", Body=b"x" * (2 * MiB))
    s3.get_object(Bucket="large", Key="warm")["Body"].read()
    expected = md5_of_ranges(size, size)[0]

    with RssWatcher(srv.proc.pid) as put_rss:
        put = s3.put_object(Bucket="large", Key="big", Body=PatternFile(size))
    assert put["ETag"] == f'"{expected.hex()}"'
    assert put_rss.growth < RSS_BUDGET, f"server RSS grew by {put_rss.growth / MiB:.0f} MiB during PUT"

    assert s3.head_object(Bucket="large", Key="big")["ContentLength"] == size
    with RssWatcher(srv.proc.pid) as get_rss:
        got = s3.get_object(Bucket="large", Key="big")
        assert stream_md5(got["Body"], size) == expected
    assert get_rss.growth < RSS_BUDGET, f"server RSS grew by {get_rss.growth / MiB:.0f} MiB during GET"
    print(f"2 GiB PUT: RSS +{put_rss.growth / MiB:.1f} MiB; GET: RSS +{get_rss.growth / MiB:.1f} MiB")

    # A range from the middle comes back exactly.
    start = GiB + 12345
    got = s3.get_object(Bucket="large", Key="big", Range=f"bytes={start}-{start + 3 * MiB - 1}")
    f = PatternFile(size)
    f.seek(start)
    assert got["Body"].read() == f.read(3 * MiB)


def test_3gib_multipart_upload(make_server):
    size = 3 * GiB + 5 * MiB + 123
    chunk = 128 * MiB
    srv = make_server()
    s3 = client(srv.endpoint, read_timeout=300)
    s3.create_bucket(Bucket="large")
    s3.put_object(Bucket="large", Key="warm", Body=b"x" * (2 * MiB))
    digests = md5_of_ranges(size, chunk)
    expected_etag = f'"{hashlib.md5(b"".join(digests)).hexdigest()}-{len(digests)}"'
    whole = hashlib.md5()
    f = PatternFile(size)
    while data := f.read(8 * MiB):
        whole.update(data)

    config = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=4)
    with RssWatcher(srv.proc.pid) as rss:
        s3.upload_fileobj(PatternFile(size), "large", "huge", Config=config)
    assert rss.growth < RSS_BUDGET, f"server RSS grew by {rss.growth / MiB:.0f} MiB during the upload"
    print(f"3 GiB multipart upload: RSS +{rss.growth / MiB:.1f} MiB")

    head = s3.head_object(Bucket="large", Key="huge", ChecksumMode="ENABLED")
    assert head["ContentLength"] == size
    assert head["ETag"] == expected_etag
    # boto3's transfer manager asks for CRC32 parts without a checksum type: a COMPOSITE checksum.
    assert head["ChecksumType"] == "COMPOSITE"
    assert head["ChecksumCRC32"].endswith(f"-{len(digests)}")
    last = s3.get_object(Bucket="large", Key="huge", PartNumber=len(digests))
    assert last["PartsCount"] == len(digests)
    assert hashlib.md5(last["Body"].read()).digest() == digests[-1]
    with RssWatcher(srv.proc.pid) as rss:
        got = s3.get_object(Bucket="large", Key="huge")
        assert stream_md5(got["Body"], size) == whole.digest()
    assert rss.growth < RSS_BUDGET, f"server RSS grew by {rss.growth / MiB:.0f} MiB during GET"
