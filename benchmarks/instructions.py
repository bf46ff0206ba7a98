"""``python -m benchmarks.instructions``: CPU instructions per 4 KiB request, counted by callgrind.

Throughput on a shared or virtual machine moves 10-25% from run to run; the number of instructions a request
costs does not (the same code, client and data give the same count within ~1%, whatever else the machine does).
Use it to tell whether a change to the request path made it cheaper. The server runs under
``valgrind --tool=callgrind`` (about 50x slower, so the counts, not the rates, are the result); its counters are
zeroed after a warm-up, wrk sends presigned requests for a few seconds, and the counters are dumped. All threads
of the server process are counted (the SQLite writer and hashing threads too); the kernel is not.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks import loadgen
from benchmarks.servers import Shoal
from benchmarks.sigv4 import Presigner


class ShoalUnderCallgrind(Shoal):
    start_timeout = 300.0  # imports under valgrind take a while

    def __init__(self, workdir: str, out: str, extra: list[str]) -> None:
        self.out = out
        self.extra = extra
        super().__init__(workdir, 1)

    def command(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={self.out}", *super().command(), *self.extra]


def _total(out_prefix: str) -> int:
    total = 0
    for path in glob.glob(out_prefix + "*"):
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
    return total


def measure(op: str, seconds: float, extra: list[str]) -> tuple[int, int]:
    """(requests, instructions) for ``seconds`` of 4 KiB ``op`` requests at concurrency 1."""
    workdir = tempfile.mkdtemp(prefix="shoal-callgrind-")
    out = os.path.join(workdir, "callgrind.out")
    srv = ShoalUnderCallgrind(workdir, out, extra)
    srv.start()
    try:
        signer = Presigner(srv.endpoint, srv.access_key, srv.secret_key)
        blob = memoryview(os.urandom(4096))
        loadgen.stream_put("127.0.0.1", srv.port, signer.path("PUT", "instructions"), 0, blob)
        keys = [f"k{i}" for i in range(100)]
        for key in keys:
            loadgen.stream_put("127.0.0.1", srv.port, signer.path("PUT", "instructions", key), 4096, blob)
        paths = [signer.path(op, "instructions", key) for key in keys]
        loadgen.wrk(srv.endpoint, paths, op, 4096, 1, 2)  # warm-up: caches, first-use imports
        pid = str(srv.proc.pid)
        subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=True)
        result = loadgen.wrk(srv.endpoint, paths, op, 4096, 1, seconds)
        subprocess.run(["callgrind_control", "-d", pid], capture_output=True, check=True)
        if result.errors:
            raise RuntimeError(f"{result.errors} requests failed")
        return result.ops, _total(out)
    finally:
        srv.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", default="GET,PUT", help="comma-separated: GET, PUT, HEAD, DELETE")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per operation")
    parser.add_argument("server_args", nargs="*", help="extra `shoal server` arguments (after --)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("needs valgrind (apt-get install valgrind)")
    for op in args.ops.split(","):
        requests, instructions = measure(op.strip().upper(), args.seconds, args.server_args)
        print(f"4 KiB {op.strip().upper()} c=1: {requests} requests, {instructions / requests / 1e3:.0f}k "
              f"instructions per request")


if __name__ == "__main__":
    main()
