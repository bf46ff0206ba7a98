"""Crash harness: concurrent writers against a server that is SIGKILLed at random moments, many times over.

Every key belongs to one writer thread, which keeps a model of what the key may hold: the set of states
(content hashes, or ABSENT) the server may legitimately show. An acknowledged write collapses the set to its
value; a write that failed (the server died under it) adds its value to the set, since it may or may not have
happened. After every restart on the same data directory:

- every key reads back byte-exact as one of its possible states (an acknowledged write: exactly that state;
  an unacknowledged one: the old or the new content, whole, never a mix or a truncation), and the observation
  becomes the key's only state;
- the listing shows exactly the keys that GET finds, with the same sizes;
- no temp file is left, the blob files are exactly the blobs the metadata refers to (so disk use cannot grow
  from cycle to cycle), no garbage is pending, and every blob file matches the size and CRC64NVME recorded
  for it (no partial blob ever got committed);
- at the end, ``shoal fsck`` and ``shoal scrub`` find nothing wrong.

Fast by default (a dozen cycles); ``--runslow`` / ``SHOAL_SLOW=1`` runs many more with more writers.
Note: SIGKILL stops the process, not the machine: it proves the crash consistency of the write path (rename
and commit ordering, recovery), not that fsync reached the platter.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import boto3
import pytest
from awscrt.checksums import crc64nvme
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT, client

MiB = 1024 * 1024
ABSENT = "absent"
BUCKET = "crash"


def raw_client(endpoint: str):
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ROOT[0], aws_secret_access_key=ROOT[1],
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=20,
                      max_pool_connections=4),
    )


def content(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_size(rng: random.Random) -> int:
    kind = rng.random()
    if kind < 0.1:
        return 0
    if kind < 0.4:
        return rng.randint(1, 64 * 1024)  # inline (in SQLite)
    if kind < 0.5:
        return rng.choice([64 * 1024, 64 * 1024 + 1])  # either side of the inline limit
    if kind < 0.85:
        return rng.randint(64 * 1024 + 1, 512 * 1024)
    return rng.randint(512 * 1024, 3 * MiB)


@dataclass
class KeyModel:
    possible: set[str] = field(default_factory=lambda: {ABSENT})
    sizes: dict[str, int] = field(default_factory=lambda: {ABSENT: -1})
    acked: bool = True  # possible holds exactly one state, set by an acknowledged operation
    last: str = ABSENT  # the value of the latest operation begun

    def begin(self, value: str, size: int) -> None:
        self.sizes[value] = size
        self.last = value

    def succeeded(self, value: str) -> None:
        self.possible = {value}
        self.acked = True

    def failed(self, value: str) -> None:
        self.possible = self.possible | {value}
        self.acked = False

    def certain(self) -> str | None:
        return next(iter(self.possible)) if len(self.possible) == 1 else None


class Writer(threading.Thread):
    """Runs random operations on its own keys until told to stop or until the server dies under it."""

    def __init__(self, index: int, keys: dict[str, KeyModel], seed: int, s3) -> None:
        super().__init__(daemon=True)
        self.index = index
        self.s3 = s3  # made once: a client takes longer to build than many a cycle lasts
        self.keys = keys
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.stats: Counter = Counter()
        self.unexpected: list[str] = []

    def run(self) -> None:
        s3 = self.s3
        while not self.stop.is_set():
            key = self.rng.choice(sorted(self.keys))
            model = self.keys[key]
            op = self.rng.choices(["put", "delete", "multipart", "copy"], weights=[6, 2, 1.5, 1])[0]
            try:
                value = self.operate(s3, op, key, model)
            except _Died as died:
                model.failed(died.value)
                self.stats[f"{op}-unacknowledged"] += 1
                return
            if value is not None:
                model.succeeded(value)
                self.stats[f"{op}-acknowledged"] += 1

    def operate(self, s3, op: str, key: str, model: KeyModel) -> str | None:
        rng = self.rng
        if op == "delete":
            model.begin(ABSENT, -1)
            self._call(ABSENT, s3.delete_object, Bucket=BUCKET, Key=key)
            return ABSENT
        if op == "copy":
            sources = [k for k, m in self.keys.items() if k != key and m.certain() not in (None, ABSENT)]
            if not sources:
                return None
            source = rng.choice(sources)
            value = self.keys[source].certain()
            assert value is not None
            model.begin(value, self.keys[source].sizes[value])
            self._call(value, s3.copy_object, Bucket=BUCKET, Key=key, CopySource={"Bucket": BUCKET, "Key": source})
            return value
        if op == "put":
            data = content(rng, random_size(rng))
            value = digest(data)
            model.begin(value, len(data))
            self._call(value, s3.put_object, Bucket=BUCKET, Key=key, Body=data)
            return value
        # multipart: mostly one part of any size; sometimes a 5 MiB part and a small last one
        if rng.random() < 0.15:
            parts = [content(rng, 5 * MiB), content(rng, rng.randint(1, 300 * 1024))]
        else:
            parts = [content(rng, rng.randint(1, 2 * MiB))]
        whole = b"".join(parts)
        value = digest(whole)
        model.begin(value, len(whole))
        upload = self._call(value, s3.create_multipart_upload, Bucket=BUCKET, Key=key)["UploadId"]
        done = []
        for number, part in enumerate(parts, 1):
            etag = self._call(value, s3.upload_part, Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number,
                              Body=part)["ETag"]
            done.append({"PartNumber": number, "ETag": etag})
        self._call(value, s3.complete_multipart_upload, Bucket=BUCKET, Key=key, UploadId=upload,
                   MultipartUpload={"Parts": done})
        return value

    def _call(self, value: str, fn, **kwargs):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            if self.stop.is_set():
                raise _Died(value) from None
            # The server answered with an error while alive: never expected here.
            self.unexpected.append(f"{fn.__name__} {kwargs.get('Key')}: {exc}")
            raise _Died(value) from None
        except Exception:
            raise _Died(value) from None


class _Died(Exception):
    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


# -- checks after a restart ---------------------------------------------------------------------------------


def store_paths(data_dir: str) -> tuple[str, str, str]:
    meta = os.path.join(data_dir, ".shoal")
    return os.path.join(meta, "meta.sqlite3"), os.path.join(meta, "blobs"), os.path.join(meta, "tmp")


def check_disk(data_dir: str) -> tuple[int, int]:
    """No temp files; blob files == referenced blobs, each matching its recorded size and CRC64NVME. Returns
    (blob files, bytes)."""
    db_path, blob_dir, tmp_dir = store_paths(data_dir)
    assert os.listdir(tmp_dir) == [], "temp files left after recovery"
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        referenced = {b for (segments,) in db.execute("SELECT segments FROM versions")
                      for b, _ in json.loads(segments)}
        referenced |= {b for (b,) in db.execute("SELECT blob_id FROM parts")}
        registered = {row[0]: (row[1], row[2]) for row in db.execute("SELECT id, crc64, size FROM blobs")}
        garbage = [b for (b,) in db.execute("SELECT id FROM garbage")]
    finally:
        db.close()
    files = {}
    for directory, _, names in os.walk(blob_dir):
        for name in names:
            files[name] = os.path.join(directory, name)
    assert garbage == [], "garbage not collected by recovery"
    assert set(registered) == referenced, "blobs table disagrees with the versions and parts referring to blobs"
    assert set(files) == referenced, (f"orphaned files: {sorted(set(files) - referenced)[:5]}; "
                                      f"missing files: {sorted(referenced - set(files))[:5]}")
    total = 0
    for blob_id, path in files.items():
        crc, size = registered[blob_id]
        with open(path, "rb") as f:
            data = f.read()
        assert len(data) == size, f"blob {blob_id}: {len(data)} bytes, recorded {size}"
        assert f"{crc64nvme(data):016x}" == crc, f"blob {blob_id}: checksum mismatch"
        total += size
    return len(files), total


def verify(endpoint: str, models: dict[str, KeyModel], totals: Counter) -> None:
    s3 = raw_client(endpoint)

    def read(key: str) -> tuple[str, str, int]:
        try:
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "NoSuchKey", f"{key}: {exc}"
            return key, ABSENT, -1
        return key, digest(body), len(body)

    with ThreadPoolExecutor(4) as pool:
        observed = list(pool.map(read, sorted(models)))
    present = {}
    for key, value, size in observed:
        model = models[key]
        assert value in model.possible, (
            f"{key}: read {value[:12]} ({size} bytes); possible: "
            f"{[(v[:12], model.sizes.get(v)) for v in model.possible]} (acknowledged: {model.acked})")
        if model.acked:
            totals["acknowledged states verified"] += 1
        else:
            totals["unacknowledged: new state seen" if value == model.last
                   else "unacknowledged: old state seen"] += 1
        model.possible = {value}
        model.acked = True
        if value != ABSENT:
            present[key] = size
    listed = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            listed[obj["Key"]] = obj["Size"]
    assert listed == present, "listing disagrees with GET"
    # Uploads a crash left unfinished: abort them (their parts are freed like any garbage).
    for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
        totals["leftover uploads aborted"] += 1


def run_shoal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=120)


# -- the harness --------------------------------------------------------------------------------------------


def crash_cycles(make_server, cycles: int, writers: int, keys_per_writer: int, seed: int) -> Counter:
    rng = random.Random(seed)
    srv = make_server()
    s3 = raw_client(srv.endpoint)
    s3.create_bucket(Bucket=BUCKET)
    models = [{f"w{w}/k{i}": KeyModel() for i in range(keys_per_writer)} for w in range(writers)]
    totals: Counter = Counter()
    ops: Counter = Counter()
    usage = []
    clients = [raw_client(srv.endpoint) for _ in range(writers)]
    started = time.time()
    for _ in range(cycles):
        threads = [Writer(w, models[w], rng.getrandbits(32), clients[w]) for w in range(writers)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.1, 1.0))
        srv.stop(sig="KILL")
        for t in threads:
            t.stop.set()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive(), "writer stuck"
            assert t.unexpected == [], t.unexpected
            ops.update(t.stats)
        srv.start()
        _, size = check_disk(srv.data_dir)
        usage.append(size)
        verify(srv.endpoint, {k: m for group in models for k, m in group.items()}, totals)
        totals["cycles"] += 1
    srv.stop()
    fsck = run_shoal("fsck", srv.data_dir)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    scrub = run_shoal("scrub", srv.data_dir)
    assert scrub.returncode == 0, scrub.stdout + scrub.stderr
    acked = sum(v for k, v in ops.items() if k.endswith("-acknowledged"))
    print(f"\ncrash harness: {totals['cycles']} SIGKILL cycles in {time.time() - started:.1f}s, "
          f"{writers} writers x {keys_per_writer} keys; {acked} acknowledged operations "
          f"({', '.join(f'{k}={v}' for k, v in sorted(ops.items()))}); after restarts: "
          f"{', '.join(f'{k}={v}' for k, v in sorted(totals.items()) if k != 'cycles')}; "
          f"blob bytes per cycle: {usage}")
    totals["acknowledged operations"] = acked
    return totals


def test_crash_harness(make_server):
    """The CI run: a fixed seed, 20 cycles (about 30 s)."""
    totals = crash_cycles(make_server, cycles=20, writers=4, keys_per_writer=8, seed=20240601)
    assert totals["cycles"] == 20
    assert totals["acknowledged operations"] > 300
    assert totals["acknowledged states verified"] > 300


@pytest.mark.slow
def test_crash_harness_long(make_server):
    """A longer run with a fresh seed each time (printed, to replay a failure): 100 cycles, 8 writers."""
    seed = int(os.environ.get("SHOAL_CRASH_SEED", time.time()))
    print(f"\ncrash harness seed {seed}")
    crash_cycles(make_server, cycles=100, writers=8, keys_per_writer=6, seed=seed)


def _spawned_children(parent: int) -> list[int]:
    """Worker processes (multiprocessing spawn) whose parent is ``parent`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited (nobody reaped it yet)
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_stop_when_their_parent_is_killed(make_server):
    """The parent forwards SIGTERM to its workers; killed outright (kill -9, the OOM killer) it cannot. The
    workers notice it is gone and shut down on their own, instead of serving the port and holding the data
    directory with nobody to stop them; a new server then starts on the same directory."""
    srv = make_server(args=["--workers", "2"])
    workers = _spawned_children(srv.proc.pid)
    assert len(workers) == 2, workers
    srv.proc.kill()
    srv.proc.wait()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers), "workers outlived their parent"
    again = make_server(args=["--workers", "2"], data_dir=srv.data_dir)
    s3 = client(again.endpoint)
    s3.create_bucket(Bucket="after-parent-kill")
    assert s3.list_buckets()["Buckets"]
