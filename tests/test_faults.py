"""Faults: a full disk, I/O errors, clients that disconnect mid-upload and clients that trickle or stall.

Injected faults go through the storage layer's test seam (``SHOAL_FAULTS_FILE``, see shoal.storage.faults);
a real full file system is a small tmpfs (needs root; skipped otherwise).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT
from rawhttp import read_until_closed, sign_v4

MiB = 1024 * 1024


def one_shot_client(endpoint: str):
    """No retries at all: each call is one request, so a 503 is seen as such."""
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ROOT[0], aws_secret_access_key=ROOT[1],
        region_name="us-east-1", config=Config(retries={"total_max_attempts": 1}, read_timeout=30))


def shoal_dir(srv, *parts: str) -> str:
    return os.path.join(srv.data_dir, ".shoal", *parts)


def blob_files(srv) -> list[str]:
    return sorted(f for _, _, files in os.walk(shoal_dir(srv, "blobs")) for f in files)


def tmp_files(srv) -> list[str]:
    return os.listdir(shoal_dir(srv, "tmp"))


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Faults:
    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="shoal-faults-", suffix=".json")
        os.close(fd)
        self.set()

    def set(self, **points: str) -> None:
        tmp = self.path + ".new"
        with open(tmp, "w") as f:
            json.dump(points, f)
        os.replace(tmp, self.path)
        time.sleep(0.01)  # a distinct mtime for the reloading check

    def close(self) -> None:
        os.unlink(self.path)


@pytest.fixture
def faulty(make_server):
    faults = Faults()
    srv = make_server(env={"SHOAL_FAULTS_FILE": faults.path})
    s3 = one_shot_client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    yield srv, s3, faults
    faults.close()


def code_and_status(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("point", ["write", "fsync", "rename", "meta"])
def test_enospc_is_a_clean_503_and_leaves_nothing(faulty, point):
    srv, s3, faults = faulty
    old = os.urandom(200 * 1024)
    s3.put_object(Bucket="bkt", Key="old", Body=old)
    s3.put_object(Bucket="bkt", Key="k", Body=b"previous")
    faults.set(**{point: "ENOSPC"})
    # 20 MiB: past the blob store's write-behind step, so a background flush meets the fault first.
    # 100 KiB: received whole, then hashed, written and made durable in one call (shoal.s3.ingest._ingest_whole).
    for body in (os.urandom(100 * 1024), os.urandom(300 * 1024), os.urandom(3 * MiB), os.urandom(20 * MiB)):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="bkt", Key="k", Body=body)
        assert code_and_status(e.value) == ("ServiceUnavailable", 503)
        assert "storage is full" in e.value.response["Error"]["Message"]
    # Nothing partial: no temp file, no new blob, the key keeps its previous content; reads keep working.
    assert tmp_files(srv) == []
    assert wait_until(lambda: len(blob_files(srv)) == 1)
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == b"previous"
    assert s3.get_object(Bucket="bkt", Key="old")["Body"].read() == old
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]] == ["k", "old"]
    # Multipart parts fail the same way.
    upload = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"] if point != "meta" else None
    if upload:
        with pytest.raises(ClientError) as e:
            s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, Body=os.urandom(100 * 1024))
        assert code_and_status(e.value) == ("ServiceUnavailable", 503)
    # Space again: writes succeed.
    faults.set()
    new = os.urandom(300 * 1024)
    s3.put_object(Bucket="bkt", Key="k", Body=new)
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == new
    if upload:
        etag = s3.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
        s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
        assert s3.get_object(Bucket="bkt", Key="mp")["Body"].read() == b"part"
    assert tmp_files(srv) == []
    assert wait_until(lambda: len(blob_files(srv)) == (3 if upload else 2))


def test_small_objects_still_written_when_blob_writes_fail(faulty):
    _, s3, faults = faulty
    faults.set(write="ENOSPC")
    s3.put_object(Bucket="bkt", Key="small", Body=b"inline objects live in the metadata")
    assert s3.get_object(Bucket="bkt", Key="small")["Body"].read() == b"inline objects live in the metadata"


@pytest.mark.parametrize("point", ["write", "fsync"])
def test_eio_on_write_is_a_500(faulty, point):
    srv, s3, faults = faulty
    faults.set(**{point: "EIO"})
    for size in (300 * 1024, 20 * MiB):  # 20 MiB: a write-behind flush fails first (see shoal.storage.local_blobs)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="bkt", Key="k", Body=os.urandom(size))
        assert code_and_status(e.value) == ("InternalError", 500)
    assert tmp_files(srv) == [] and blob_files(srv) == []
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="bkt", Key="k")
    assert code_and_status(e.value)[1] == 404
    faults.set()
    s3.put_object(Bucket="bkt", Key="k", Body=b"x" * 100_000)


def test_eio_on_read(faulty):
    srv, s3, faults = faulty
    data = os.urandom(300 * 1024)
    s3.put_object(Bucket="bkt", Key="k", Body=data)
    faults.set(read="EIO")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="bkt", Key="k")
    assert code_and_status(e.value) == ("InternalError", 500)
    with pytest.raises(ClientError):
        s3.copy_object(Bucket="bkt", Key="copy", CopySource={"Bucket": "bkt", "Key": "k"})
    faults.set()
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == data
    # An I/O error is not damage: nothing was quarantined.
    assert not os.path.exists(shoal_dir(srv, "quarantine"))
    assert tmp_files(srv) == []


# -- a real full file system ------------------------------------------------------------------------------


@pytest.fixture
def small_fs():
    mount = tempfile.mkdtemp(prefix="shoal-tmpfs-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], capture_output=True)
    if done.returncode != 0:
        os.rmdir(mount)
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", mount], capture_output=True)
    os.rmdir(mount)


def test_real_disk_full(make_server, small_fs):
    srv = make_server(data_dir=os.path.join(small_fs, "data"))
    try:
        s3 = one_shot_client(srv.endpoint)
        s3.create_bucket(Bucket="bkt")
        stored = {}
        refused = 0
        for i in range(40):
            data = os.urandom(700 * 1024)
            try:
                s3.put_object(Bucket="bkt", Key=f"k{i:02d}", Body=data)
                stored[f"k{i:02d}"] = data
            except ClientError as exc:
                assert code_and_status(exc) == ("ServiceUnavailable", 503), exc
                refused += 1
                if refused >= 3:
                    break
        assert refused >= 3 and stored, "the file system never filled up"
        assert tmp_files(srv) == []
        # What was acknowledged is intact and listed; nothing else is.
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket="bkt").get("Contents", [])]
        assert listed == sorted(stored)
        for key, data in stored.items():
            assert s3.get_object(Bucket="bkt", Key=key)["Body"].read() == data
        # Free space: writes work again.
        for key in sorted(stored)[:4]:
            s3.delete_object(Bucket="bkt", Key=key)
            del stored[key]
        data = os.urandom(700 * 1024)
        deadline = time.time() + 10
        while True:  # the freed files are deleted in the background
            try:
                s3.put_object(Bucket="bkt", Key="after", Body=data)
                break
            except ClientError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        assert s3.get_object(Bucket="bkt", Key="after")["Body"].read() == data
    finally:
        srv.stop(sig="KILL")
    srv.start()  # recovery on a full-ish disk works, and the data is there
    s3 = one_shot_client(srv.endpoint)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]] == sorted([*stored, "after"])
    srv.stop()


# -- clients that go away or go slow ----------------------------------------------------------------------


def signed_put_head(port: int, key: str, length: int) -> bytes:
    url = f"http://127.0.0.1:{port}/bkt/{key}"
    headers = sign_v4("PUT", url, headers={"Content-Length": str(length)}, payload="UNSIGNED-PAYLOAD")
    headers["Content-Length"] = str(length)
    lines = [f"PUT /bkt/{key} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_client_disconnect_mid_upload_leaves_nothing(make_server):
    srv = make_server()
    s3 = one_shot_client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    for declared, sent in ((4 * MiB, 0), (4 * MiB, 100 * 1024), (4 * MiB, 2 * MiB), (150 * 1024, 100 * 1024)):
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(signed_put_head(srv.port, "gone", declared) + os.urandom(sent))
        time.sleep(0.2)
        sock.close()
        assert wait_until(lambda: tmp_files(srv) == []), "temp file left behind"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="bkt", Key="gone")
    assert code_and_status(e.value)[1] == 404
    assert blob_files(srv) == []
    s3.put_object(Bucket="bkt", Key="ok", Body=b"server fine")


def test_slow_clients_time_out_without_starving_others(make_server):
    srv = make_server(args=["--idle-timeout", "1", "--body-timeout", "1"])
    s3 = one_shot_client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    closed: dict[str, float] = {}

    def trickle_headers(name: str) -> None:
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.settimeout(0.25)
        started = time.time()
        head = b"GET /bkt/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
        try:
            for byte in head:
                sock.sendall(bytes([byte]))
                try:
                    if sock.recv(1024) == b"":
                        break
                except TimeoutError:
                    pass
                if time.time() - started > 10:
                    break
        except OSError:
            pass
        closed[name] = time.time() - started
        sock.close()

    def stall_body(name: str) -> None:
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.settimeout(10)
        started = time.time()
        sock.sendall(signed_put_head(srv.port, "stalled", 1 * MiB) + os.urandom(100 * 1024))
        answer = read_until_closed(sock)
        closed[name] = time.time() - started
        closed[name + "-answer"] = answer  # type: ignore[assignment]
        sock.close()

    threads = [threading.Thread(target=trickle_headers, args=(f"headers{i}",)) for i in range(3)]
    threads += [threading.Thread(target=stall_body, args=(f"body{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    # Meanwhile everyone else is served promptly.
    for i in range(20):
        t0 = time.time()
        s3.put_object(Bucket="bkt", Key=f"k{i}", Body=os.urandom(100 * 1024))
        s3.get_object(Bucket="bkt", Key=f"k{i}")["Body"].read()
        assert time.time() - t0 < 1.0
    for t in threads:
        t.join(timeout=20)
    for i in range(3):
        assert closed[f"headers{i}"] < 5, closed
        assert closed[f"body{i}"] < 5, closed
        answer = closed[f"body{i}-answer"]
        assert answer.startswith(b"HTTP/1.1 400") and b"<Code>RequestTimeout</Code>" in answer, answer[:300]
    assert tmp_files(srv) == []
    with pytest.raises(ClientError):
        s3.head_object(Bucket="bkt", Key="stalled")


def test_slow_but_steady_body_is_not_a_stall(make_server):
    """--body-timeout is how long a body may stall, not how long a buffer takes to fill: a large upload that keeps
    arriving (here ~400 KiB/s with a 1 s timeout) completes, also when the server receives it past the parser
    (the direct receive)."""
    srv = make_server(args=["--body-timeout", "1"])
    s3 = one_shot_client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    body = os.urandom(2 * MiB)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(signed_put_head(srv.port, "steady", len(body)))
        for i in range(0, len(body), 16 * 1024):
            sock.sendall(body[i : i + 16 * 1024])
            time.sleep(0.04)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert s3.get_object(Bucket="bkt", Key="steady")["Body"].read() == body


def test_failure_midway_through_a_large_body_is_answered_not_reset(faulty):
    """The disk fills while a large body is still arriving: a client that sends the whole body before reading
    (as botocore does) reads a clean 503 with Retry-After, not a connection reset for its unread bytes."""
    srv, _, faults = faulty
    size, piece = 24 * MiB, os.urandom(MiB)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(signed_put_head(srv.port, "midway", size))
        sock.sendall(piece)
        time.sleep(0.3)  # the first MiB is written before the disk "fills"
        faults.set(write="ENOSPC")
        for _ in range(size // MiB - 1):
            sock.sendall(piece)  # a reset would raise ConnectionResetError here
        answer = b""
        while b"</Error>" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    faults.set()
    assert answer.startswith(b"HTTP/1.1 503"), answer[:300]
    assert b"Retry-After" in answer and b"<Code>ServiceUnavailable</Code>" in answer
    assert tmp_files(srv) == []


def test_reader_that_stops_reading_is_cut_off(make_server):
    """A GET whose client stops reading mid-body is aborted after --body-timeout, freeing the blob file and the
    socket, rather than holding them for as long as the client keeps the connection open."""
    srv = make_server(args=["--body-timeout", "1"])
    s3 = one_shot_client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    data = os.urandom(32 * MiB)
    s3.put_object(Bucket="bkt", Key="big", Body=data)
    fds = lambda: len(os.listdir(f"/proc/{srv.proc.pid}/fd"))  # noqa: E731
    s3.get_object(Bucket="bkt", Key="big")["Body"].read()
    before = fds()
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "bkt", "Key": "big"})
    path = url.split(str(srv.port), 1)[1]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        sock.recv(65536)  # the headers and a little of the body; then nothing more is read
        started = time.monotonic()
        assert fds() > before  # the GET holds its blob file (and a socket duplicate) while it waits
        while fds() > before and time.monotonic() - started < 8:
            time.sleep(0.2)
        assert fds() <= before, "still holding the blob file after the body timeout"
        assert time.monotonic() - started < 5
    assert s3.get_object(Bucket="bkt", Key="big")["Body"].read() == data
