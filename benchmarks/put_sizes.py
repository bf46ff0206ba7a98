"""``python -m benchmarks.put_sizes``: PUT of new keys by object size, at concurrency 1 and 16, in rounds.

Shoal stores a body in one of three ways by its size (``shoal.s3.ingest``): inline in the metadata (up to 64 KiB),
received whole and written in one worker call (under 256 KiB), or streamed through the hash and write lanes. This
measures each side of both limits, with every server once per size per round (ratios of the same minutes), and
reports medians over the rounds with the server's CPU per PUT (user+sys, its whole process tree). Every PUT
writes a new key, as uploads mostly do. Same client (aiohttp, presigned URLs) and durable settings as the main
run (``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics

from benchmarks import loadgen
from benchmarks.run import Bench, Config, log, median_ratio
from benchmarks.servers import PEERS, Shoal, fresh_workdir

KiB = 1024
SIZES = (4 * KiB, 64 * KiB, 100 * KiB, 255 * KiB, 1024 * KiB)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.put_sizes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per point")
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--peers", default="moto,s3rver")
    args = ap.parse_args(argv)
    workdir = fresh_workdir(".work-put-sizes")
    cfg = Config.points_only(args.duration)
    names = ["shoal w1", *(p for p in args.peers.split(",") if p)]
    levels = [int(c) for c in args.concurrency.split(",")]
    benches: dict[str, Bench] = {}
    rates: dict[tuple[str, int, int], list[float]] = {}
    cpu: dict[tuple[str, int, int], list[float]] = {}
    counter = itertools.count()
    try:
        for name in names:
            srv = Shoal(workdir, 1) if name.startswith("shoal") else PEERS[name](workdir)
            srv.start()
            benches[name] = Bench(srv, cfg)
            benches[name].create_bucket("sizes")
        for r in range(args.rounds):
            for size, c in itertools.product(SIZES, levels):
                for name, bench in benches.items():
                    body = bytes(bench.blob[:size])
                    reqs = (("PUT", bench.sign.url("PUT", "sizes", f"r{next(counter)}"), {}, body)
                            for _ in itertools.count())
                    mon = bench.server.monitor
                    assert mon is not None
                    before = mon.cpu()
                    res = loadgen.closed_loop(reqs, c, args.duration, expect=(200,))
                    used = mon.cpu() - before
                    if res.errors:
                        raise RuntimeError(f"{name} PUT {size} c={c}: {res.errors} errors")
                    rates.setdefault((name, size, c), []).append(res.ops_per_s)
                    cpu.setdefault((name, size, c), []).append(used / max(1, res.ops))
                    log(f"  round {r + 1} PUT {size // KiB:5d} KiB c={c:<2d} {name:9s} {res.ops_per_s:8.1f}/s "
                        f"cpu {used / max(1, res.ops) * 1e3:.2f} ms/PUT load {os.getloadavg()[0]:.2f}")
    finally:
        for bench in benches.values():
            bench.server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    peers = names[1:]
    print(f"\nPUT of new keys by size, {args.rounds} rounds of {args.duration:g} s per point "
          "(median over the rounds)\n")
    print("| size | c | server | PUT/s | MB/s | server CPU ms/PUT |" + "".join(f" vs {p} |" for p in peers))
    print("| --- | --- | --- | --- | --- | --- |" + " --- |" * len(peers))
    for size, c in itertools.product(SIZES, levels):
        for name in names:
            rate = statistics.median(rates[name, size, c])
            ratios = "".join(f" {median_ratio(list(zip(rates[name, size, c], rates[p, size, c], strict=True)))} |"
                             if name.startswith("shoal") else " |" for p in peers)
            print(f"| {size // KiB} KiB | {c} | {name} | {rate:.0f} | {rate * size / 1e6:.1f} | "
                  f"{statistics.median(cpu[name, size, c]) * 1e3:.2f} |{ratios}")


if __name__ == "__main__":
    main()
