"""``shoal scrub``, the background scrubber and ``shoal fsck [--repair]``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest
from botocore.exceptions import ClientError

from conftest import client

MiB = 1024 * 1024


def shoal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shoal", *args], capture_output=True, text=True, timeout=120)


def db(srv) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(srv.data_dir, ".shoal", "meta.sqlite3"), isolation_level=None)


def blob_of(srv, key: str) -> str:
    with db(srv) as conn:
        return json.loads(conn.execute("SELECT segments FROM versions WHERE key=? AND is_latest=1",
                                       (key,)).fetchone()[0])[0][0]


def blob_path(srv, blob_id: str) -> str:
    return os.path.join(srv.data_dir, ".shoal", "blobs", blob_id[:2], blob_id[2:4], blob_id)


def flip(path: str, offset: int = 7) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture
def damaged(make_server):
    """A stopped store with one corrupt blob, one missing blob, one orphaned file and one damaged inline object."""
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    data = {k: os.urandom(n) for k, n in (("good", 200_000), ("corrupt", 300_000), ("missing", 150_000),
                                          ("small", 1000), ("inline-bad", 2000))}
    for key, body in data.items():
        s3.put_object(Bucket="bkt", Key=key, Body=body)
    up = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    s3.upload_part(Bucket="bkt", Key="mp", UploadId=up, PartNumber=1, Body=os.urandom(1000))
    srv.stop()
    flip(blob_path(srv, blob_of(srv, "corrupt")))
    os.unlink(blob_path(srv, blob_of(srv, "missing")))
    orphan = "ab" * 16
    os.makedirs(os.path.dirname(blob_path(srv, orphan)), exist_ok=True)
    with open(blob_path(srv, orphan), "wb") as f:
        f.write(b"nobody knows me")
    os.utime(blob_path(srv, orphan), (time.time() - 7200, time.time() - 7200))
    with db(srv) as conn:
        conn.execute("UPDATE versions SET inline=? WHERE key='inline-bad'", (b"X" + data["inline-bad"][1:],))
    return srv, data, {"corrupt": blob_of(srv, "corrupt"), "missing": blob_of(srv, "missing"), "orphan": orphan}


def test_scrub_finds_and_quarantines(damaged):
    srv, _, blobs = damaged
    done = shoal("scrub", srv.data_dir, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [c["blob"] for c in report["corrupt"]] == [blobs["corrupt"]]
    assert report["corrupt"][0]["quarantined"] and report["corrupt"][0]["referrers"] == [["bkt", "corrupt", "null"]]
    assert report["missing"] == [{"blob": blobs["missing"], "quarantined": False}]
    assert report["orphans"] == [blobs["orphan"]]
    assert report["inline_corrupt"] == [["bkt", "inline-bad", "null"]]
    assert report["blobs_checked"] == 3 and report["inline_checked"] == 2  # good, corrupt, the part; 2 inline
    assert os.path.exists(os.path.join(srv.data_dir, ".shoal", "quarantine", blobs["corrupt"]))
    # A second pass sees the quarantined blob as missing (and says why).
    again = json.loads(shoal("scrub", srv.data_dir, "--json").stdout)
    assert {m["blob"]: m["quarantined"] for m in again["missing"]} == {blobs["corrupt"]: True,
                                                                        blobs["missing"]: False}
    text = shoal("scrub", srv.data_dir)
    assert "2 missing" in text.stdout and text.returncode == 1


def test_scrub_without_quarantine_and_rate(damaged):
    srv, _, blobs = damaged
    report = json.loads(shoal("scrub", srv.data_dir, "--json", "--no-quarantine", "--rate", "50").stdout)
    assert report["corrupt"][0]["quarantined"] is False
    assert os.path.exists(blob_path(srv, blobs["corrupt"]))


def test_fsck_reports_then_repairs(damaged):
    srv, data, _ = damaged
    done = shoal("fsck", srv.data_dir)
    assert done.returncode == 1
    assert "blobs missing (data lost): 1" in done.stdout and "orphaned blob files: 1" in done.stdout
    assert shoal("scrub", srv.data_dir).returncode == 1  # quarantines the corrupt blob: now missing too
    done = shoal("fsck", srv.data_dir, "--repair")
    assert done.returncode == 0, done.stdout
    assert "deleted version bkt/corrupt null (data gone)" in done.stdout
    assert "deleted version bkt/missing null (data gone)" in done.stdout
    assert "1 orphaned blob files deleted" in done.stdout
    found = os.listdir(os.path.join(srv.data_dir, ".shoal", "lost+found"))
    with open(os.path.join(srv.data_dir, ".shoal", "lost+found", found[0])) as f:
        assert sorted(r["key"] for r in json.load(f)) == ["corrupt", "missing"]
    assert shoal("fsck", srv.data_dir).returncode == 0
    srv.start()
    s3 = client(srv.endpoint)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]) == ["good", "inline-bad", "small"]
    for key in ("good", "small"):
        assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == data[key]
    for key in ("corrupt", "missing"):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket="bkt", Key=key)
        assert e.value.response["Error"]["Code"] == "NoSuchKey"
    assert len(s3.list_multipart_uploads(Bucket="bkt")["Uploads"]) == 1  # its part was healthy


def test_fsck_repairs_metadata_inconsistencies(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    body = os.urandom(200_000)
    s3.put_object(Bucket="bkt", Key="a", Body=body)
    s3.put_object(Bucket="bkt", Key="b", Body=b"small")
    srv.stop()
    a = blob_of(srv, "a")
    with db(srv) as conn:
        conn.execute("INSERT INTO garbage(id) VALUES (?)", (a,))  # would delete live data
        conn.execute("INSERT INTO blobs(id) VALUES (?)", ("cd" * 16,))  # leak
        conn.execute("UPDATE versions SET is_latest=0 WHERE key='b'")  # no latest version
    done = shoal("fsck", srv.data_dir)
    assert done.returncode == 1
    for line in ("referenced blobs marked as garbage: 1", "registered blobs nothing refers to: 1",
                 "keys without exactly one latest version: 1"):
        assert line in done.stdout
    done = shoal("fsck", srv.data_dir, "--repair")
    assert done.returncode == 0, done.stdout
    assert f"blob {a} taken out of garbage" in done.stdout
    srv.start()
    s3 = client(srv.endpoint)
    assert s3.get_object(Bucket="bkt", Key="a")["Body"].read() == body
    assert s3.get_object(Bucket="bkt", Key="b")["Body"].read() == b"small"


def test_fsck_repair_refuses_while_server_runs(make_server):
    srv = make_server()
    done = shoal("fsck", srv.data_dir, "--repair")
    assert done.returncode == 2 and "server is running" in done.stderr
    assert shoal("fsck", srv.data_dir).returncode == 0  # a read-only check may run alongside
    assert shoal("scrub", srv.data_dir).returncode == 0


def test_background_scrubber_quarantines(make_server):
    srv = make_server(args=["--scrub-interval", "0.3", "--scrub-rate", "100"])
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=os.urandom(400_000))
    s3.put_object(Bucket="bkt", Key="ok", Body=os.urandom(400_000))
    blob = blob_of(srv, "k")
    flip(blob_path(srv, blob), 399_999)
    quarantined = os.path.join(srv.data_dir, ".shoal", "quarantine", blob)
    # The blob is moved first, then its record written, then the line logged: wait for all three.
    deadline = time.time() + 10
    while time.time() < deadline and not (os.path.exists(quarantined + ".json") and "CORRUPT blob" in srv.log()):
        time.sleep(0.1)
    assert os.path.exists(quarantined)
    with open(quarantined + ".json") as f:
        assert json.load(f)["detected_by"] == "scrub"
    assert "CORRUPT blob" in srv.log()
    assert len(s3.get_object(Bucket="bkt", Key="ok")["Body"].read()) == 400_000
