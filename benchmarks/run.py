"""``python -m benchmarks``: run the workloads against Shoal and its peers, measure the machine's limits, and
write a table to benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import html
import http.client
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from benchmarks import limits, loadgen
from benchmarks.loadgen import Result
from benchmarks.servers import HERE, PEERS, Server, Shoal, fresh_workdir
from benchmarks.sigv4 import Presigner

WORKLOADS = ["small", "list", "mixed", "stream", "multipart", "ranged"]
MiB = 1 << 20


@dataclass
class Config:
    quick: bool
    duration: float  # seconds per closed-loop point
    list_keys: int
    list_pages: int
    stream_size: int
    part_size: int
    part_parallel: int
    delete_ops: int
    concurrency: tuple[int, ...]
    workdir: str = ""  # where the sendfile probe keeps its file; empty: no probe (--no-limits)
    repeats: int = 1  # times the c=1 4 KiB PUT and GET points are measured, interleaved (the table gives medians)

    @classmethod
    def points_only(cls, duration: float) -> Config:
        """For scripts that measure their own points through Bench (rounds, put_sizes): no workload sizes."""
        return cls(quick=True, duration=duration, list_keys=0, list_pages=0, stream_size=0, part_size=0,
                   part_parallel=0, delete_ops=0, concurrency=(1,))


@dataclass
class Row:
    workload: str
    server: str
    res: Result
    srv_cpu: float
    peak_rss: int
    load: float


def _repeated_digests(source: memoryview, size: int) -> tuple[str, str]:
    """(hex SHA-256, base64 CRC32) of ``size`` bytes of ``source`` repeated, as stream_put sends them."""
    sha = hashlib.sha256()
    crc = 0
    left = size
    while left:
        piece = source[:min(left, len(source))]
        sha.update(piece)
        crc = zlib.crc32(piece, crc)
        left -= len(piece)
    return sha.hexdigest(), base64.b64encode(crc.to_bytes(4, "big")).decode()


def log(msg: str) -> None:
    print(msg, flush=True)


class Bench:
    def __init__(self, server: Server, cfg: Config) -> None:
        self.server = server
        self.cfg = cfg
        self.sign = Presigner(server.endpoint, server.access_key, server.secret_key)
        self.host, self.port = "127.0.0.1", server.port
        self.rows: list[Row] = []
        self.blob = memoryview(os.urandom(4 * MiB))

    # ---- helpers ----
    @staticmethod
    def point(workload: str, fn) -> tuple[str, object]:
        """One measurement point of a workload: the workload methods yield these, and the run measures each
        point on every server in turn (see run_interleaved) before the next."""
        return workload, fn

    def measure(self, workload: str, fn) -> Row:
        mon = self.server.monitor
        assert mon is not None
        mon.reset_peak()
        c0 = mon.cpu()
        res = fn()
        cpu = mon.cpu() - c0
        row = Row(workload, self.server.name, res, cpu, max(mon.peak, mon.rss()), os.getloadavg()[0])
        self.rows.append(row)
        r = res
        lat = f"p50 {r.p50 * 1e3:.2f} ms p99 {r.p99 * 1e3:.2f} ms" if r.p50 is not None else ""
        log(f"  {workload:34s} {self.server.name:7s} {r.ops_per_s:9.1f} ops/s {r.mb_per_s:8.1f} MB/s {lat} "
            f"srv-cpu {cpu:.1f}s rss {row.peak_rss / MiB:.0f} MiB client-cpu {r.client_cpu:.1f}s "
            f"err {r.errors} load {row.load:.2f}")
        return row

    def create_bucket(self, bucket: str) -> None:
        status, _, body = loadgen.stream_put(self.host, self.port, self.sign.path("PUT", bucket), 0, self.blob)
        if status not in (200, 409):
            raise RuntimeError(f"create bucket: {status} {body[:300]!r}")

    def populate(self, bucket: str, keys: list[str], size: int, concurrency: int = 32) -> Result:
        body = bytes(self.blob[:size])
        reqs = (("PUT", self.sign.url("PUT", bucket, k), {}, body) for k in keys)
        res = loadgen.closed_loop(reqs, concurrency, expect=(200,))
        if res.errors:
            raise RuntimeError(f"populate {bucket}: {res.errors} errors")
        return res

    # ---- workloads ----
    def small(self) -> Iterator[tuple[str, object]]:
        b = "small"
        self.create_bucket(b)
        get_keys = [f"get/{i:05d}" for i in range(1000)]
        self.populate(b, get_keys, 4096)
        for c in self.cfg.concurrency:
            put_paths = [self.sign.path("PUT", b, f"put/{c}/{i:05d}") for i in range(1000)]
            get_paths = [self.sign.path("GET", b, k) for k in get_keys]
            # At c=1 a point follows the VM's speed of the moment (15% between minutes): measured several times,
            # every server in turn each time, and the table gives the medians (see render).
            for _ in range(self.cfg.repeats if c == 1 else 1):
                yield self.point(f"4 KiB PUT c={c}", lambda p=put_paths, c=c: loadgen.wrk(
                    self.server.endpoint, p, "PUT", 4096, c, self.cfg.duration))
                yield self.point(f"4 KiB GET c={c}", lambda p=get_paths, c=c: loadgen.wrk(
                    self.server.endpoint, p, "GET", 4096, c, self.cfg.duration))
            head_urls = [self.sign.url("HEAD", b, k) for k in get_keys]
            yield self.point(f"4 KiB HEAD c={c}", lambda u=head_urls, c=c: loadgen.closed_loop(
                (("HEAD", u[i % len(u)], {}, None) for i in range(10**9)), c, self.cfg.duration))
            del_keys = [f"del/{c}/{i:05d}" for i in range(self.cfg.delete_ops)]
            self.populate(b, del_keys, 4096)
            del_urls = [self.sign.url("DELETE", b, k) for k in del_keys]
            yield self.point(f"4 KiB DELETE c={c}", lambda u=del_urls, c=c: loadgen.closed_loop(
                (("DELETE", x, {}, None) for x in u), c, None))

    def list(self) -> Iterator[tuple[str, object]]:
        b = "list"
        n = self.cfg.list_keys
        self.create_bucket(b)
        keys = [f"d{i % 100:02d}/o{i:07d}" for i in range(n)]
        t = time.perf_counter()
        self.populate(b, keys, 16, concurrency=64)
        log(f"  populated {n} keys in {time.perf_counter() - t:.1f}s ({n / (time.perf_counter() - t):.0f}/s)")
        rnd = random.Random(1)
        ordered = sorted(keys)
        pages = self.cfg.list_pages

        def no_delim():
            for _ in range(pages):
                after = ordered[rnd.randrange(max(1, n - 1000))]
                yield ("GET", self.sign.url("GET", b, "", {"list-type": "2", "max-keys": "1000",
                                                           "start-after": after}), {}, None)

        def in_prefix():
            for _ in range(pages):
                d = rnd.randrange(100)
                within = [k for k in ordered[d * (n // 100):(d + 1) * (n // 100)]]
                after = within[rnd.randrange(max(1, len(within) - 1000))] if len(within) > 1000 else ""
                q = {"list-type": "2", "max-keys": "1000", "prefix": f"d{d:02d}/", "delimiter": "/"}
                if after:
                    q["start-after"] = after
                yield ("GET", self.sign.url("GET", b, "", q), {}, None)

        def root_delim():
            for _ in range(pages):
                yield ("GET", self.sign.url("GET", b, "", {"list-type": "2", "max-keys": "1000",
                                                           "delimiter": "/"}), {}, None)

        def walk():
            """Page through the whole bucket with continuation tokens (what clients do), from the start again
            when it ends."""
            res = Result()
            conn = http.client.HTTPConnection(self.host, self.port)
            token = None
            t0, c0 = time.perf_counter(), time.process_time()
            while res.ops < pages and time.perf_counter() - t0 < self.cfg.duration * 3:
                q = {"list-type": "2", "max-keys": "1000"}
                if token:
                    q["continuation-token"] = token
                t = time.perf_counter()
                conn.request("GET", self.sign.path("GET", b, "", q))
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    res.errors += 1
                    token = None
                    continue
                res.latencies.append(time.perf_counter() - t)
                res.ops += 1
                res.bytes += len(body)
                m = re.search(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
                token = html.unescape(m.group(1).decode()) if m else None
            res.seconds = time.perf_counter() - t0
            res.client_cpu = time.process_time() - c0
            conn.close()
            return res.finish()

        yield self.point(f"LIST 1000 of {n} (paging)", walk)
        yield self.point(f"LIST 1000 of {n}, start-after", lambda: loadgen.closed_loop(
            no_delim(), 1, self.cfg.duration * 3))
        yield self.point(f"LIST 1000 of {n}, prefix+delim", lambda: loadgen.closed_loop(
            in_prefix(), 1, self.cfg.duration * 3))
        yield self.point(f"LIST delim at root of {n} (100 CP)", lambda: loadgen.closed_loop(
            root_delim(), 1, self.cfg.duration * 3))

    def mixed(self) -> Iterator[tuple[str, object]]:
        b = "mixed"
        self.create_bucket(b)
        keys = [f"m/{i:03d}" for i in range(64)]
        self.populate(b, keys, MiB, concurrency=8)
        body = bytes(self.blob[:MiB])
        rnd = random.Random(2)

        def reqs():
            while True:
                k = keys[rnd.randrange(len(keys))]
                if rnd.random() < 0.5:
                    yield ("GET", self.sign.url("GET", b, k), {}, None)
                else:
                    yield ("PUT", self.sign.url("PUT", b, k), {}, body)

        yield self.point("1 MiB 50/50 GET/PUT c=16", lambda: loadgen.closed_loop(reqs(), 16, self.cfg.duration))

    def stream(self) -> Iterator[tuple[str, object]]:
        b = "stream"
        self.create_bucket(b)
        size = self.cfg.stream_size
        label = f"{size // MiB} MiB" if size < 1 << 30 else f"{size >> 30} GiB"

        def put(headers: dict[str, str] | None = None):
            best = Result()
            for i in range(2):
                if headers is None:
                    path, signed = self.sign.path("PUT", b, "big"), None
                else:  # signed in the header, over a payload hash the server checks (as boto3 over plain HTTP)
                    path, signed = self.sign.header_auth("PUT", b, "big", payload_sha256, headers)
                t = time.perf_counter()
                c0 = time.process_time()
                st, _, body = loadgen.stream_put(self.host, self.port, path, size, self.blob, headers=signed)
                dt = time.perf_counter() - t
                if st != 200:
                    raise RuntimeError(f"PUT {st} {body[:200]!r}")
                if i == 0 or dt < best.seconds:
                    best = Result(ops=1, seconds=dt, bytes=size, p50=dt, p99=dt,
                                  client_cpu=time.process_time() - c0, note="best of 2")
            return best

        def get():
            """Best of 3, each right after a GET of the same size from the sendfile probe (unless the machine
            limits are skipped): the ratio then compares two figures taken within seconds of each other."""
            best = Result()
            probe = limits.SendfileProbe(self.cfg.workdir, size) if self.cfg.workdir else None
            with probe or contextlib.nullcontext():
                limit = 0.0
                for i in range(3):
                    if probe is not None:
                        limit = max(limit, probe.rate())
                    t = time.perf_counter()
                    c0 = time.process_time()
                    st, n, _ = loadgen.stream_get(self.host, self.port, self.sign.path("GET", b, "big"))
                    dt = time.perf_counter() - t
                    if st != 200 or n != size:
                        raise RuntimeError(f"GET {st} {n}")
                    if i == 0 or dt < best.seconds:
                        best = Result(ops=1, seconds=dt, bytes=size, p50=dt, p99=dt,
                                      client_cpu=time.process_time() - c0, note="best of 3")
            best.limit = limit
            return best

        yield self.point(f"single-stream PUT {label}", put)
        # What boto3's put_object sends over plain HTTP: a signed SHA-256 of the payload and a CRC32 checksum,
        # both of which the server computes over every byte as it arrives (with the MD5 for the ETag).
        payload_sha256, crc32 = _repeated_digests(self.blob, size)
        yield self.point(f"single-stream PUT {label}, signed SHA-256 + CRC32",
                         lambda: put({"x-amz-checksum-crc32": crc32}))
        yield self.point(f"single-stream GET {label}", get)

    def ranged(self) -> Iterator[tuple[str, object]]:
        b = "stream"
        size = self.cfg.stream_size
        url = self.sign.url("GET", b, "big")
        blocks = size // (512 * 1024)
        rnd = random.Random(3)

        def reqs():
            while True:
                i = rnd.randrange(blocks)
                yield ("GET", url, {"Range": f"bytes={i * 524288}-{(i + 1) * 524288 - 1}"}, None)

        for c in (1, 16):
            yield self.point(f"ranged GET 512 KiB c={c}", lambda c=c: loadgen.closed_loop(
                reqs(), c, self.cfg.duration))

    def multipart(self) -> Iterator[tuple[str, object]]:
        b = "stream"
        self.create_bucket(b)
        size, part = self.cfg.stream_size, self.cfg.part_size
        nparts = (size + part - 1) // part
        label = f"{size // MiB} MiB" if size < 1 << 30 else f"{size >> 30} GiB"
        label += f", {nparts}x{part // MiB} MiB parts x{self.cfg.part_parallel} parallel"

        def run():
            t = time.perf_counter()
            c0 = time.process_time()
            st, _, body = loadgen.stream_put(self.host, self.port, self.sign.path("POST", b, "mp", {"uploads": ""}),
                                             0, self.blob, method="POST")
            m = re.search(rb"<UploadId>([^<]+)</UploadId>", body)
            if st != 200 or not m:
                raise RuntimeError(f"create upload {st} {body[:300]!r}")
            uid = m.group(1).decode()

            def one(n):
                length = min(part, size - (n - 1) * part)
                path = self.sign.path("PUT", b, "mp", {"partNumber": str(n), "uploadId": uid})
                st, h, body = loadgen.stream_put(self.host, self.port, path, length, self.blob)
                if st != 200:
                    raise RuntimeError(f"part {n}: {st} {body[:200]!r}")
                return h["etag"]

            with ThreadPoolExecutor(self.cfg.part_parallel) as ex:
                etags = list(ex.map(one, range(1, nparts + 1)))
            xml = "<CompleteMultipartUpload>" + "".join(
                f"<Part><PartNumber>{i}</PartNumber><ETag>{e}</ETag></Part>" for i, e in enumerate(etags, 1)
            ) + "</CompleteMultipartUpload>"
            data = memoryview(xml.encode())
            st, _, body = loadgen.stream_put(self.host, self.port, self.sign.path("POST", b, "mp", {"uploadId": uid}),
                                             len(data), data, method="POST")
            if st != 200 or b"Error" in body:
                raise RuntimeError(f"complete {st} {body[:300]!r}")
            dt = time.perf_counter() - t
            return Result(ops=1, seconds=dt, bytes=size, p50=dt, p99=dt, client_cpu=time.process_time() - c0)

        yield self.point(f"multipart PUT {label}", run)


def machine() -> dict[str, str]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / (1 << 20)
    import aiohttp
    import httptools

    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {"CPU": f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM",
            "kernel": platform.release(), "Python": sys.version.split()[0],
            "httptools (Shoal's HTTP parser)": httptools.__version__,
            "aiohttp (the benchmark's client)": aiohttp.__version__,
            "wrk": (wrk.stdout + wrk.stderr).split("\n")[0].strip()}


def fmt_ms(v):
    return f"{v * 1e3:.2f}" if v is not None else "-"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def median_ratio(pairs: list[tuple[float, float]]) -> str:
    """The median of the ratios of (ours, theirs) pairs measured at the same time, formatted."""
    ratios = sorted(a / b for a, b in pairs if b)
    return f"{statistics.median(ratios):.1f}x" if ratios else "-"


def render(rows: list[Row], lim: dict[str, float], versions: dict[str, str], durab: dict[str, str],
           cfg: Config, started: str) -> str:
    out = ["# Shoal benchmark results\n", f"Run {started} ({'quick' if cfg.quick else 'full'} mode: "
           f"`python -m benchmarks{' --quick' if cfg.quick else ''}`).\n"]
    out.append("## Machine\n")
    for k, v in machine().items():
        out.append(f"- {k}: {v}")
    out.append("\n## Servers\n")
    for name, v in versions.items():
        out.append(f"- **{name}** {v} — durability: {durab[name]}")
    out.append("\n## Machine limits (same run)\n")
    out.append("| limit | value |\n| --- | --- |")
    for k, v in lim.items():
        out.append(f"| {k} | {v:.0f}/s |" if "/s)" in k else f"| {k} | {v / 1e6:.0f} MB/s |")
    out.append("\n## Results\n")
    out.append("Client: wrk (presigned URLs) for 4 KiB PUT/GET; an aiohttp closed-loop client for HEAD, DELETE, LIST, "
               "mixed and ranged; blocking raw sockets for single streams and multipart parts. `srv CPU` = user+sys "
               "seconds of the server's process tree during the point; `RSS` = peak sum over the tree; `load` = "
               "1-minute load average at the end of the point (2 cores; other jobs may share the machine).\n")
    peers = [p for p in dict.fromkeys(r.server for r in rows) if not p.startswith("shoal")]
    head = ["workload", "server", "ops/s", "MB/s", "p50 ms", "p99 ms", "srv CPU s", "peak RSS MiB",
            "client CPU s", "err", "load"] + [f"vs {p}" for p in peers] + ["vs limit"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + " --- |" * len(head))
    measured: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        measured.setdefault((r.workload, r.server), []).append(r)
    for w in dict.fromkeys(r.workload for r in rows):
        for s in dict.fromkeys(r.server for r in rows):
            runs = measured.get((w, s))
            if not runs:
                continue
            # A point measured several times: the run with the median rate stands for it, and each ratio is the
            # median of the ratios of runs taken at the same time (the servers' i-th runs, seconds apart).
            r = sorted(runs, key=lambda x: x.res.ops_per_s)[len(runs) // 2]
            res = r.res
            big = res.bytes and res.mb_per_s > 50
            label = f"{w} (median of {len(runs)})" if len(runs) > 1 else w
            cells = [label, s, f"{res.ops_per_s:.1f}", f"{res.mb_per_s:.1f}", fmt_ms(res.p50), fmt_ms(res.p99),
                     f"{r.srv_cpu:.1f}", f"{r.peak_rss / MiB:.0f}", f"{res.client_cpu:.1f}", str(res.errors),
                     f"{r.load:.1f}"]
            for p in peers:
                theirs = measured.get((w, p))
                if s.startswith("shoal") and theirs:
                    pairs = list(zip(runs, theirs, strict=False))
                    cells.append(median_ratio([(a.res.mb_per_s, b.res.mb_per_s) if big else
                                                (a.res.ops_per_s, b.res.ops_per_s) for a, b in pairs]))
                else:
                    cells.append("")
            lim_cell = ""
            if not lim.get("MD5"):
                pass
            elif "GET" in w and "single-stream" in w:
                lim_cell = f"{res.bytes / res.seconds / lim['loopback sendfile GET']:.0%} of sendfile"
                if res.limit:
                    lim_cell = (f"{res.bytes / res.seconds / res.limit:.0%} of sendfile measured alongside "
                                f"({res.limit / 1e9:.1f} GB/s)")
            elif "PUT" in w and ("single-stream" in w or "multipart" in w):
                floor = min(lim["MD5"], lim["disk write + fdatasync"])
                lim_cell = f"{res.bytes / res.seconds / floor:.0%} of min(MD5, disk)"
            cells.append(lim_cell)
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def run_interleaved(workload: str, benches: dict[str, Bench], failures: list[str]) -> None:
    """Run one workload on every server, point by point: each point (4 KiB GET c=1, say) is measured on all the
    servers within seconds of each other, before the next point. This VM's speed drifts by the minute, and a
    server measured minutes after another would carry the drift into their ratio. Setup between points (buckets,
    keys) runs on each server just before its point. A server failing a point skips the rest of that workload."""
    points = {name: getattr(bench, workload)() for name, bench in benches.items()}
    while points:
        for name in list(points):
            bench = benches[name]
            try:
                label, fn = next(points[name])
                bench.measure(label, fn)
            except StopIteration:
                del points[name]
            except Exception as exc:  # a peer failing one workload does not end the run
                log(f"  ! {workload} failed on {name}: {type(exc).__name__}: {str(exc)[:300]}")
                failures.append(f"{workload} on {name}: {type(exc).__name__}: {str(exc)[:200]}")
                del points[name]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and shorter points (a few minutes)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {WORKLOADS}")
    ap.add_argument("--peers", default="moto,s3rver", help="comma-separated peers (moto, s3rver; '' for none)")
    ap.add_argument("--workers", default="1,2",
                    help="Shoal --workers, comma-separated: each count runs as its own server (shoal w1, shoal w2)")
    ap.add_argument("--duration", type=float, help="seconds per closed-loop point")
    ap.add_argument("--list-keys", type=int, help="keys in the LIST bucket (default 100000; quick 10000)")
    ap.add_argument("--no-limits", action="store_true", help="skip the machine-limit measurements")
    ap.add_argument("--repeats", type=int, default=3,
                    help="times the 4 KiB PUT and GET points at c=1 are measured, interleaved (medians reported)")
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args(argv)
    q = args.quick
    workdir = fresh_workdir(".work")
    cfg = Config(quick=q, duration=args.duration or (3.0 if q else 10.0),
                 list_keys=args.list_keys or (10_000 if q else 100_000), list_pages=50 if q else 200,
                 stream_size=(256 * MiB) if q else (1 << 30), part_size=(32 * MiB) if q else (64 * MiB),
                 part_parallel=4, delete_ops=500 if q else 2000, concurrency=(1, 16, 64),
                 workdir="" if args.no_limits else workdir, repeats=max(1, args.repeats))
    workloads = [w for w in args.workloads.split(",") if w]
    if "ranged" in workloads and "stream" not in workloads:
        workloads.insert(workloads.index("ranged"), "stream")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    lim: dict[str, float] = {}
    if not args.no_limits:
        log("machine limits…")
        lim = limits.measure(workdir, q)
        for k, v in lim.items():
            log(f"  {k:40s} {v / 1e6 if v > 1e5 else v:10.1f}")
    rows: list[Row] = []
    versions, durab = {}, {}
    failures: list[str] = []
    worker_counts = [int(n) for n in args.workers.split(",") if n]
    names = [f"shoal w{n}" for n in worker_counts] + [p for p in args.peers.split(",") if p]
    benches: dict[str, Bench] = {}
    try:
        for name in names:
            srv = Shoal(workdir, int(name[7:])) if name.startswith("shoal") else PEERS[name](workdir)
            log(f"{name} on {srv.endpoint} (load {os.getloadavg()[0]:.2f})")
            versions[name], durab[name] = srv.version(), srv.durability
            srv.start()
            benches[name] = Bench(srv, cfg)
        for w in WORKLOADS:
            if w in workloads:
                run_interleaved(w, benches, failures)
    finally:
        for bench in benches.values():
            rows.extend(bench.rows)
            bench.server.stop()
            shutil.rmtree(bench.server.data_dir, ignore_errors=True)
    text = render(rows, lim or {"loopback sendfile GET": 0, "MD5": 0, "disk write + fdatasync": 0}, versions,
                  durab, cfg, started)
    if failures:
        text += "\nFailed workloads (not in the table):\n\n" + "\n".join(f"- {f}" for f in failures) + "\n"
    with open(args.output, "w") as f:
        f.write(text)
    log(f"wrote {args.output}")
    shutil.rmtree(workdir, ignore_errors=True)
