"""This machine's limits, measured in the same run: loopback sendfile throughput, disk write with fdatasync,
and single-core checksum speeds."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import zlib

from benchmarks import loadgen
from benchmarks.servers import free_port

SENDFILE_SERVER = r"""
import asyncio, os, sys
path, port = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)

class Proto(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, b""
    def data_received(self, data):
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            self.buf = b""
            asyncio.ensure_future(self.send())
    async def send(self):
        self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        with open(path, "rb") as f:
            await asyncio.get_running_loop().sendfile(self.t, f)

async def main():
    srv = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", port)
    print("ready", flush=True)
    await srv.serve_forever()
asyncio.run(main())
"""


class SendfileProbe:
    """A tiny asyncio ``loop.sendfile`` server of one file: the loopback limit for a single GET stream, read with
    the same client as the GET benchmark. Used as a context manager; ``rate()`` is one GET's bytes/s. The
    stream benchmark alternates probe and server GETs, because this 2-core VM's loopback moves 2x between
    minutes: a limit measured once at the start compares badly with a GET measured ten minutes later."""

    def __init__(self, workdir: str, size: int) -> None:
        self.path = os.path.join(workdir, "sendfile.bin")
        self.size = size

    def __enter__(self) -> SendfileProbe:
        _write_file(self.path, self.size, sync=False)
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", SENDFILE_SERVER, self.path, str(self.port)],
                                     stdout=subprocess.PIPE)
        self.proc.stdout.readline()  # type: ignore[union-attr]
        loadgen.stream_get("127.0.0.1", self.port, "/")  # warm the page cache
        return self

    def rate(self) -> float:
        t = time.perf_counter()
        _, n, _ = loadgen.stream_get("127.0.0.1", self.port, "/")
        return n / (time.perf_counter() - t)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()
        os.unlink(self.path)


def loopback_sendfile(workdir: str, size: int, rounds: int = 3) -> float:
    """Bytes/s of one GET stream from the sendfile probe, best of ``rounds``."""
    with SendfileProbe(workdir, size) as probe:
        return max(probe.rate() for _ in range(rounds))


def _write_file(path: str, size: int, sync: bool) -> float:
    block = os.urandom(1 << 20)
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = size
        while left:
            n = os.write(fd, block[:min(left, len(block))])
            left -= n
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    return size / (time.perf_counter() - t)


def disk_write(workdir: str, size: int) -> float:
    """Sequential write of ``size`` bytes in 1 MiB writes, then fdatasync; bytes/s including the sync."""
    path = os.path.join(workdir, "disk.bin")
    try:
        return _write_file(path, size, sync=True)
    finally:
        os.unlink(path)


def small_fsync(workdir: str, n: int = 200) -> float:
    """4 KiB write + fdatasync to a fresh file, per second (the cost floor of an unbatched durable small PUT)."""
    block = os.urandom(4096)
    t = time.perf_counter()
    for i in range(n):
        p = os.path.join(workdir, f"f{i}")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, block)
        os.fdatasync(fd)
        os.close(fd)
    rate = n / (time.perf_counter() - t)
    for i in range(n):
        os.unlink(os.path.join(workdir, f"f{i}"))
    return rate


def hash_speeds(size: int = 256 << 20) -> dict[str, float]:
    from awscrt import checksums

    data = os.urandom(1 << 20) * (size >> 20)
    out = {}

    def crc(fn):
        def run(buf):
            v = 0
            mv = memoryview(buf)
            for i in range(0, len(mv), 1 << 20):
                v = fn(mv[i:i + (1 << 20)], v)
            return v
        return run

    algos = {
        "MD5": lambda b: hashlib.md5(b).digest(),
        "SHA-256": lambda b: hashlib.sha256(b).digest(),
        "CRC32": crc(zlib.crc32),
        "CRC32C": crc(checksums.crc32c),
        "CRC64NVME": crc(checksums.crc64nvme),
    }
    for name, fn in algos.items():
        best = 0.0
        for _ in range(2):
            t = time.perf_counter()
            fn(data)
            best = max(best, size / (time.perf_counter() - t))
        out[name] = best
    return out


def measure(workdir: str, quick: bool) -> dict[str, float]:
    size = (256 << 20) if quick else (1 << 30)
    res = {"loopback sendfile GET": loopback_sendfile(workdir, size),
           "disk write + fdatasync": disk_write(workdir, size),
           "4 KiB file write + fdatasync (/s)": small_fsync(workdir)}
    for k, v in hash_speeds(128 << 20 if quick else 512 << 20).items():
        res[k] = v
    return res


if __name__ == "__main__":
    import tempfile

    d = tempfile.mkdtemp()
    for k, v in measure(d, quick=True).items():
        print(f"{k:40s} {v / 1e6 if v > 1e5 else v:10.1f}")
