"""Shoal's memory under many concurrent large streams: N parallel GETs of one large object, then N parallel PUTs
(each object deleted as soon as it is written, so disk use stays at most N objects), plain and aws-chunked
(unsigned, with a CRC32 trailer: what boto3 sends over HTTPS); then N parallel GETs of an SSE-S3 encrypted
object (decrypted on the way out: no sendfile). Prints the server tree's RSS before, its peak during each
phase, and after.

Usage: python -m benchmarks.rss_streams [--streams 64] [--get-size-mib 1024] [--put-size-mib 1024] [--tls]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import loadgen
from benchmarks.servers import Shoal, client_tls, fresh_workdir
from benchmarks.sigv4 import Presigner

MiB = 1 << 20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--get-size-mib", type=int, default=1024)
    ap.add_argument("--put-size-mib", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tls", action="store_true", help="serve and send everything over HTTPS (no sendfile)")
    args = ap.parse_args()
    workdir = fresh_workdir(".work-rss")
    srv = Shoal(workdir, args.workers, tls=args.tls).start()
    tls = client_tls() if args.tls else None
    mon = srv.monitor
    assert mon is not None
    sign = Presigner(srv.endpoint, srv.access_key, srv.secret_key)
    blob = memoryview(os.urandom(4 * MiB))
    host, port = "127.0.0.1", srv.port
    try:
        loadgen.stream_put(host, port, sign.path("PUT", "rss"), 0, blob, tls=tls)
        gsize = args.get_size_mib * MiB
        st, _, body = loadgen.stream_put(host, port, sign.path("PUT", "rss", "big"), gsize, blob, tls=tls)
        assert st == 200, body
        time.sleep(1)
        base = mon.rss()
        print(f"load {os.getloadavg()[0]:.2f}; baseline RSS {base / MiB:.0f} MiB")
        samples: list[int] = []
        stop = threading.Event()

        def sample():
            while not stop.wait(0.25):
                samples.append(mon.rss())

        def phase(name: str, fn, n: int, size: int) -> None:
            samples.clear()
            stop.clear()
            start = mon.rss()
            t = threading.Thread(target=sample, daemon=True)
            t.start()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(n) as ex:
                list(ex.map(fn, range(n)))
            dt = time.perf_counter() - t0
            stop.set()
            t.join()
            peak = max(samples) if samples else mon.rss()
            print(f"{name}: {n} streams x {size // MiB} MiB in {dt:.1f}s ({n * size / dt / 1e6:.0f} MB/s aggregate); "
                  f"RSS peak {peak / MiB:.0f} MiB (baseline {base / MiB:.0f}, +{(peak - base) / MiB:.0f} MiB; "
                  f"+{(peak - start) / MiB:.0f} MiB over the phase's start), "
                  f"after {mon.rss() / MiB:.0f} MiB; load {os.getloadavg()[0]:.2f}")

        def get(i: int) -> None:
            st, n, _ = loadgen.stream_get(host, port, sign.path("GET", "rss", "big"), tls=tls)
            assert st == 200 and n == gsize, (st, n)

        psize = args.put_size_mib * MiB

        def put(i: int) -> None:
            st, _, body = loadgen.stream_put(host, port, sign.path("PUT", "rss", f"p{i}"), psize, blob, tls=tls)
            assert st == 200, body
            st, _, _ = loadgen.stream_put(host, port, sign.path("DELETE", "rss", f"p{i}"), 0, blob, method="DELETE",
                                          tls=tls)
            assert st == 204, st

        def put_chunked(i: int) -> None:
            signer = Presigner(srv.endpoint, srv.access_key, srv.secret_key)  # a fresh date: phases take minutes
            path, headers = signer.header_auth("PUT", "rss", f"c{i}", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", {
                "content-encoding": "aws-chunked", "x-amz-decoded-content-length": str(psize),
                "x-amz-trailer": "x-amz-checksum-crc32"})
            st, _, body = loadgen.stream_put_aws_chunked(host, port, path, psize, blob, headers, tls=tls)
            assert st == 200, body
            st, _, _ = loadgen.stream_put(host, port, sign.path("DELETE", "rss", f"c{i}"), 0, blob, method="DELETE",
                                          tls=tls)
            assert st == 204, st

        def get_encrypted(i: int) -> None:
            st, n, _ = loadgen.stream_get(host, port, sign.path("GET", "rss", "sealed"), tls=tls)
            assert st == 200 and n == gsize, (st, n)

        phase("GET", get, args.streams, gsize)
        phase("PUT", put, args.streams, psize)
        phase("PUT aws-chunked", put_chunked, args.streams, psize)
        st, _, body = loadgen.stream_put(host, port, sign.path("PUT", "rss", "sealed"), gsize, blob,
                                         headers={"x-amz-server-side-encryption": "AES256"}, tls=tls)
        assert st == 200, body
        phase("GET SSE-S3", get_encrypted, args.streams, gsize)
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
