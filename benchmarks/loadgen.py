"""Load generators: wrk (C, presigned URLs, for GET/PUT of small objects), an aiohttp closed-loop client (HEAD,
DELETE, LIST, mixed), and blocking raw-socket streams for large bodies. Each reports its own CPU seconds."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import socket
import ssl
import subprocess
import tempfile
import time
import zlib
from dataclasses import dataclass, field

WRK_LUA = r"""
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  method = args[2]
  local n = tonumber(args[3])
  if n > 0 then body = string.rep("x", n) else body = nil end
  -- Every request is formatted once, here: wrk.format per request cost ~25 us of client CPU, which at c=1 is
  -- time on each round trip (the same for every server, so it shrank the ratios between them).
  requests = {}
  for i, path in ipairs(paths) do requests[i] = wrk.format(method, path, nil, body) end
  idx = (id * 7919) % #paths
end
function request()
  idx = idx % #requests + 1
  return requests[idx]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "status_errors": %d}\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class Result:
    ops: int = 0
    seconds: float = 0.0
    bytes: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds
    p50: float | None = None
    p99: float | None = None
    errors: int = 0
    client_cpu: float = 0.0
    note: str = ""
    limit: float = 0.0  # bytes/s of the machine's limit for this workload, measured alongside it (0: none)

    def finish(self) -> Result:
        if self.latencies and self.p50 is None:
            lat = sorted(self.latencies)
            self.p50 = lat[len(lat) // 2]
            self.p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        self.latencies = []
        return self

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wrk(endpoint: str, paths: list[str], method: str, body_size: int, connections: int,
        duration: float) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pf:
        pf.write("\n".join(paths) + "\n")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lf:
        lf.write(WRK_LUA)
    threads = min(connections, 2)
    before = _child_cpu()
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
                              "--timeout", "10s", "-s", lf.name, endpoint, "--", pf.name, method, str(body_size)],
                             capture_output=True, text=True, timeout=duration + 60)
    finally:
        os.unlink(pf.name)
        os.unlink(lf.name)
    cpu = _child_cpu() - before
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    d = json.loads(line[8:])
    res = Result(ops=d["requests"] - d["status_errors"], seconds=d["duration_us"] / 1e6,
                 p50=d["p50_us"] / 1e6, p99=d["p99_us"] / 1e6, errors=d["errors"] + d["status_errors"],
                 client_cpu=cpu)
    res.bytes = res.ops * body_size  # PUT: sent; GET: received
    return res


async def _closed_loop(requests, concurrency: int, duration: float | None, expect: tuple[int, ...],
                       body_bytes) -> Result:
    """``requests``: an iterator of (method, url, headers, body); stops when exhausted or after ``duration``."""
    import aiohttp

    res = Result()
    it = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    t0 = time.perf_counter()
    deadline = t0 + duration if duration else None

    async def worker(session):
        while True:
            if deadline and time.perf_counter() > deadline:
                return
            try:
                method, url, headers, body = next(it)
            except StopIteration:
                return
            t = time.perf_counter()
            try:
                async with session.request(method, url, headers=headers, data=body,
                                           skip_auto_headers=("Content-Type",)) as r:
                    n = 0
                    async for chunk in r.content.iter_chunked(1 << 20):
                        n += len(chunk)
                    if r.status not in expect:
                        res.errors += 1
                        if res.errors < 3:
                            print(f"    ! {method} {r.status}")
                        continue
            except aiohttp.ClientError as exc:  # e.g. a server answering before reading the body, then garbage
                res.errors += 1
                if res.errors < 3:
                    print(f"    ! {method} {type(exc).__name__}: {str(exc)[:120]}")
                continue
            res.latencies.append(time.perf_counter() - t)
            res.ops += 1
            res.bytes += n + (len(body) if body and body_bytes else 0)

    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    res.seconds = time.perf_counter() - t0
    return res


def closed_loop(requests, concurrency: int, duration: float | None = None, expect=(200, 204, 206),
                body_bytes: bool = True) -> Result:
    c0 = time.process_time()
    res = asyncio.run(_closed_loop(requests, concurrency, duration, expect, body_bytes))
    res.client_cpu = time.process_time() - c0
    return res.finish()


# ---- raw blocking streams (one socket, big buffers; used for both Shoal and the loopback limit) ----

def _read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before the response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


def _drain(sock: socket.socket, length: int, rest: bytes, buf: memoryview) -> int:
    got = len(rest)
    while got < length:
        n = sock.recv_into(buf, min(len(buf), length - got))
        if not n:
            raise ConnectionError("short body")
        got += n
    return got


def connect(host: str, port: int, tls: ssl.SSLContext | None = None) -> socket.socket:
    sock = socket.create_connection((host, port))
    return tls.wrap_socket(sock, server_hostname=host) if tls else sock


def stream_get(host: str, port: int, path: str, headers: dict[str, str] | None = None,
               sock: socket.socket | None = None,
               tls: ssl.SSLContext | None = None) -> tuple[int, int, dict[str, str]]:
    own = sock is None
    if own:
        sock = connect(host, port, tls)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode())
    status, h, rest = _read_head(sock)
    buf = memoryview(bytearray(4 << 20))
    n = _drain(sock, int(h.get("content-length", 0)), rest, buf)
    if own:
        sock.close()
    return status, n, h


def stream_put(host: str, port: int, path: str, size: int, source: memoryview, method: str = "PUT",
               sock: socket.socket | None = None,
               headers: dict[str, str] | None = None,
               tls: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send ``size`` bytes (``source`` repeated) as the body."""
    own = sock is None
    if own:
        sock = connect(host, port, tls)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {size}\r\n{extra}\r\n"
                 .encode())
    left = size
    while left:
        piece = source[:min(left, len(source))]
        sock.sendall(piece)
        left -= len(piece)
    status, h, rest = _read_head(sock)
    length = int(h.get("content-length", 0))
    while len(rest) < length:
        rest += sock.recv(65536)
    if own:
        sock.close()
    return status, h, rest


AWS_CHUNK = 64 << 10  # boto3's aws-chunked chunk size


def aws_chunked_length(size: int, chunk: int = AWS_CHUNK) -> int:
    """The encoded length of an unsigned aws-chunked body of ``size`` bytes with a CRC32 trailer."""
    full, last = divmod(size, chunk)
    length = full * (len(f"{chunk:x}") + 4 + chunk)
    if last:
        length += len(f"{last:x}") + 4 + last
    return length + len("0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n")


def stream_put_aws_chunked(host: str, port: int, path: str, size: int, source: memoryview,
                           headers: dict[str, str], chunk: int = AWS_CHUNK,
                           tls: ssl.SSLContext | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send ``size`` bytes (``source`` repeated; its length a multiple of ``chunk``) as an unsigned aws-chunked body
    with a CRC32 trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER), as boto3 sends uploads over HTTPS; ``headers``
    sign it (``Presigner.header_auth``)."""
    assert len(source) % chunk == 0
    with connect(host, port, tls) as sock:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     f"Content-Length: {aws_chunked_length(size, chunk)}\r\n{extra}\r\n".encode())
        crc, sent = 0, 0
        while sent < size:
            data = source[sent % len(source):][:min(chunk, size - sent)]
            crc = zlib.crc32(data, crc)
            sock.sendall(f"{len(data):x}\r\n".encode())
            sock.sendall(data)
            sock.sendall(b"\r\n")
            sent += len(data)
        value = base64.b64encode(crc.to_bytes(4, "big")).decode()
        sock.sendall(f"0\r\nx-amz-checksum-crc32:{value}\r\n\r\n".encode())
        status, h, rest = _read_head(sock)
        length = int(h.get("content-length", 0))
        while len(rest) < length:
            rest += sock.recv(65536)
    return status, h, rest
