"""``python -m benchmarks.rounds``: 4 KiB GET and PUT at concurrency 1, in rounds, for ratios that hold still.

One point of the main run (``python -m benchmarks``) measures each server once, a few seconds apart; at c=1 this
VM's speed drifts enough between points (the same server: 4.9k-7.4k GETs/s within an hour) to move a ratio by
15%. Here every round measures every server once per operation, in turn, and the ratios of each round are
reported with their median over the rounds. Same servers, data, client (wrk on presigned URLs) and durable
settings as the main run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics

from benchmarks import loadgen
from benchmarks.run import Bench, Config, log
from benchmarks.servers import PEERS, Shoal, fresh_workdir

OPS = ("GET", "PUT")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rounds", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per point")
    ap.add_argument("--workers", default="1,2", help="Shoal --workers, comma-separated (shoal w1, shoal w2)")
    ap.add_argument("--peers", default="moto,s3rver")
    args = ap.parse_args(argv)
    workdir = fresh_workdir(".work-rounds")
    cfg = Config.points_only(args.duration)
    shoals = [f"shoal w{n}" for n in args.workers.split(",") if n]
    peers = [p for p in args.peers.split(",") if p]
    benches: dict[str, Bench] = {}
    paths: dict[tuple[str, str], list[str]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for name in shoals + peers:
            srv = Shoal(workdir, int(name[7:])) if name.startswith("shoal") else PEERS[name](workdir)
            srv.start()
            bench = benches[name] = Bench(srv, cfg)
            bench.create_bucket("rounds")
            keys = [f"k{i:05d}" for i in range(200)]
            bench.populate("rounds", keys, 4096)
            for op in OPS:
                paths[name, op] = [bench.sign.path(op, "rounds", k) for k in keys]
        for r in range(args.rounds):
            for op in OPS:
                for name, bench in benches.items():
                    res = loadgen.wrk(bench.server.endpoint, paths[name, op], op, 4096, 1, args.duration)
                    if res.errors:
                        raise RuntimeError(f"{name} {op}: {res.errors} errors")
                    rates.setdefault((name, op), []).append(res.ops_per_s)
                    log(f"  round {r + 1} {op} c=1 {name:9s} {res.ops_per_s:8.1f}/s load {os.getloadavg()[0]:.2f}")
    finally:
        for bench in benches.values():
            bench.server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n4 KiB c=1, {args.rounds} rounds of {args.duration:g} s per point (median, then each round)\n")
    print("| op | server | ops/s | " + " | ".join(f"vs {p}" for p in peers) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in peers) + " |")
    for op in OPS:
        for name in shoals + peers:
            own = rates[name, op]
            cells = [f"{statistics.median(own):.0f} ({', '.join(f'{x:.0f}' for x in own)})"]
            for peer in peers:
                if name in shoals:
                    each = [a / b for a, b in zip(own, rates[peer, op], strict=True)]
                    cells.append(f"{statistics.median(each):.1f}x ({', '.join(f'{x:.1f}' for x in each)})")
                else:
                    cells.append("")
            print(f"| {op} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
