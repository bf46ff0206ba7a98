"""A bounded soak: a mixed workload (PUT/GET/range GET/LIST/HEAD/COPY/DELETE/multipart, inline and blob sizes)
against one server, in rounds that each end by deleting everything. After every round the server's RSS
(/proc/PID/status), open descriptors (/proc/PID/fd) and data-directory disk use are sampled; the test fails on
any unexpected error response, on RSS growth beyond a bound after the first (warm-up) round, on descriptor
growth, and on disk use that does not come back to its level after the warm-up round once everything is
deleted and the garbage collector has run.

About 30 s in CI; SHOAL_SOAK_SECONDS=600 (or --runslow: 300 s) for a longer run.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import ClientError

from bodies import body_for, identify
from conftest import client
from s3util import rss

SLOW = os.environ.get("SHOAL_SLOW") == "1"
SOAK_SECONDS = float(os.environ.get("SHOAL_SOAK_SECONDS", "300" if SLOW else "30"))
ROUNDS = max(3, int(SOAK_SECONDS // 8))
WORKERS = 6
MiB = 1024 * 1024
RSS_GROWTH_LIMIT = 48 * MiB  # after the warm-up round; Python's allocator keeps some freed memory
DISK_SLACK = 4 * MiB  # SQLite pages and WAL reused, not returned: the level after round 1 must hold


def descriptors(pid: int) -> Counter:
    kinds = Counter()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kinds["socket" if target.startswith("socket:") else "pipe" if target.startswith("pipe:") else "file"] += 1
    return kinds


def disk_use(path: str) -> tuple[int, int]:
    """(bytes allocated to blob and temp files, bytes allocated to everything else: SQLite, keys)."""
    blobs = other = 0
    for dirpath, _, filenames in os.walk(path):
        inside = os.path.relpath(dirpath, path).split(os.sep)
        for name in filenames:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            size = st.st_blocks * 512
            if any(p in ("blobs", "tmp") for p in inside):  # .shoal/blobs/ab/cd/<id>, .shoal/tmp/<id>
                blobs += size
            else:
                other += size
    return blobs, other


class Workload:
    def __init__(self, endpoint: str, bucket: str) -> None:
        self.bucket = bucket
        self.clients = [client(endpoint) for _ in range(WORKERS)]
        self.counts: Counter = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def round(self, seconds: float, number: int) -> None:
        deadline = time.monotonic() + seconds
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda i: self._worker(i, number, deadline), range(WORKERS)))
        self._delete_everything()

    def _count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def _worker(self, i: int, number: int, deadline: float) -> None:
        s3 = self.clients[i]
        rng = random.Random(number * 1000 + i)
        mine: dict[str, str] = {}  # key -> tag; each worker owns its keys, so every answer is predictable
        n = 0
        while time.monotonic() < deadline:
            n += 1
            op = rng.choices(["put", "put-blob", "get", "range", "head", "list", "copy", "delete", "multipart"],
                             [30, 8, 22, 5, 5, 8, 5, 12, 3])[0]
            try:
                self._operation(s3, rng, op, f"w{i}/k{rng.randrange(40)}", mine, f"r{number}w{i}n{n}")
            except ClientError as exc:
                with self.lock:
                    self.errors.append(f"{op}: {exc.response['Error']} {exc.response['ResponseMetadata']}")
            except AssertionError as exc:
                with self.lock:
                    self.errors.append(f"{op}: {exc}")

    def _operation(self, s3, rng: random.Random, op: str, key: str, mine: dict[str, str], tag: str) -> None:
        bucket = self.bucket
        if op in ("put", "put-blob"):
            size = rng.choice([40, 900, 20_000, 65_536]) if op == "put" else rng.choice([65_537, 400_000, 2 * MiB])
            s3.put_object(Bucket=bucket, Key=key, Body=body_for(tag, size))
            mine[key] = tag
        elif op == "multipart":
            whole = body_for(tag, rng.choice([5 * MiB + 10, 300_000]))
            upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            pieces = [whole[:5 * MiB], whole[5 * MiB:]] if len(whole) > 5 * MiB else [whole]
            parts = [{"PartNumber": k, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=k,
                                                              Body=p)["ETag"]} for k, p in enumerate(pieces, 1)]
            if rng.random() < 0.2:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
                op = "multipart-abort"
            else:
                s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
                mine[key] = tag
        elif op in ("get", "range", "head", "copy"):
            if key not in mine:
                op = "miss"
                try:
                    s3.head_object(Bucket=bucket, Key=key)
                    raise AssertionError(f"{key} exists, but its writer deleted it")
                except ClientError as exc:
                    assert exc.response["Error"]["Code"] in ("404", "NoSuchKey"), exc.response
            elif op == "get":
                assert identify(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == mine[key]
            elif op == "range":
                data = s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-99")["Body"].read()
                assert data.startswith(f"<{mine[key]}:".encode()), data[:40]
            elif op == "head":
                s3.head_object(Bucket=bucket, Key=key)
            else:
                target = key + "-copy"
                s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})
                assert identify(s3.get_object(Bucket=bucket, Key=target)["Body"].read()) == mine[key]
                s3.delete_object(Bucket=bucket, Key=target)
        elif op == "list":
            s3.list_objects_v2(Bucket=bucket, Prefix=key.split("/")[0] + "/", MaxKeys=50)
        elif op == "delete":
            s3.delete_object(Bucket=bucket, Key=key)
            mine.pop(key, None)
        self._count(op)

    def _delete_everything(self) -> None:
        s3 = self.clients[0]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                result = s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
                assert not result.get("Errors"), result["Errors"]
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket):
            for upload in page.get("Uploads", []):
                s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def wait_for_blobs_freed(data_dir: str, level: int, timeout: float = 20.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        use = disk_use(data_dir)
        if use[0] <= level or time.monotonic() > deadline:
            return use
        time.sleep(0.2)


def test_soak(make_server):
    srv = make_server()
    pid = srv.proc.pid
    workload = Workload(srv.endpoint, "soak")
    workload.clients[0].create_bucket(Bucket="soak")
    baseline_blobs, _ = disk_use(srv.data_dir)
    per_round = SOAK_SECONDS / ROUNDS
    samples = []
    peak = Counter()
    done = threading.Event()

    def sampler():  # peaks while the workload runs, to show what the rounds' end figures come back from
        while not done.wait(1.0):
            blobs, other = disk_use(srv.data_dir)
            fds = sum(descriptors(pid).values())
            for name, value in (("rss", rss(pid)), ("fds", fds), ("blobs", blobs), ("other", other)):
                peak[name] = max(peak[name], value)

    watcher = threading.Thread(target=sampler, daemon=True)
    watcher.start()
    started = time.monotonic()
    for number in range(ROUNDS):
        workload.round(per_round, number)
        assert not workload.errors, workload.errors[:10]
        blobs, other = wait_for_blobs_freed(srv.data_dir, baseline_blobs)
        sample = {"round": number + 1, "t": round(time.monotonic() - started, 1), "rss_mib": rss(pid) / MiB,
                  "fds": descriptors(pid), "blob_bytes": blobs, "other_mib": other / MiB}
        samples.append(sample)
        sqlite = {name: os.stat(os.path.join(srv.data_dir, ".shoal", name)).st_size // 1024
                  for name in os.listdir(os.path.join(srv.data_dir, ".shoal")) if "sqlite" in name}
        print(f"round {sample['round']} SQLite files (KiB): {sqlite}")
        print(f"round {sample['round']} at {sample['t']:5.1f}s: RSS {sample['rss_mib']:6.1f} MiB, "
              f"fds {dict(sample['fds'])}, blob bytes {blobs}, SQLite and keys {sample['other_mib']:.1f} MiB")
    elapsed = time.monotonic() - started
    done.set()
    watcher.join()
    print(f"peaks during the workload: RSS {peak['rss'] / MiB:.1f} MiB, {peak['fds']} fds, blob files "
          f"{peak['blobs'] / MiB:.1f} MiB, SQLite and keys {peak['other'] / MiB:.1f} MiB")
    ops = sum(workload.counts.values())
    print(f"soak: {elapsed:.0f} s, {ops} operations ({ops / elapsed:.0f}/s): {dict(workload.counts)}")
    assert srv.proc.poll() is None, srv.log()
    warm = samples[0]
    last = samples[-1]
    # Memory: steady after warm-up.
    assert last["rss_mib"] * MiB <= warm["rss_mib"] * MiB + RSS_GROWTH_LIMIT, samples
    # Descriptors: files and pipes do not accumulate; sockets are the clients' pooled connections at most.
    assert last["fds"]["file"] <= warm["fds"]["file"] + 2, samples
    assert last["fds"]["pipe"] <= warm["fds"]["pipe"], samples
    assert last["fds"]["socket"] <= WORKERS * 10 + 4, samples
    # Disk: with everything deleted, no blob bytes remain, and the database's size stays at its warm-up level.
    assert all(s["blob_bytes"] <= baseline_blobs for s in samples), samples
    assert last["other_mib"] * MiB <= warm["other_mib"] * MiB + DISK_SLACK, samples
    assert workload.counts["get"] > 0 and workload.counts["multipart"] > 0 and peak["blobs"] > 0
