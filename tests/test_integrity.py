"""Stored bytes are checked against the CRC64NVME recorded at write time: damaged blobs are never served whole,
and are quarantined."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from botocore.exceptions import ClientError

from conftest import client, error_code, status_of

MiB = 1024 * 1024


def blob_path(srv, bucket: str, key: str, index: int = 0) -> str:
    with sqlite3.connect(os.path.join(srv.data_dir, ".shoal", "meta.sqlite3")) as db:
        segments = json.loads(db.execute("SELECT segments FROM versions WHERE bucket=? AND key=? AND is_latest=1",
                                         (bucket, key)).fetchone()[0])
    blob_id = segments[index][0]
    return os.path.join(srv.data_dir, ".shoal", "blobs", blob_id[:2], blob_id[2:4], blob_id)


def damage(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def quarantine(srv) -> list[str]:
    root = os.path.join(srv.data_dir, ".shoal", "quarantine")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


@pytest.fixture
def srv(make_server):
    return make_server()


def test_blob_checksums_recorded(srv):
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="k", Body=os.urandom(300 * 1024))
    up = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket="bkt", Key="mp", UploadId=up, PartNumber=1, Body=os.urandom(1000))["ETag"]
    s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    s3.copy_object(Bucket="bkt", Key="copy", CopySource={"Bucket": "bkt", "Key": "k"})
    s3.put_object(Bucket="bkt", Key="enc", Body=os.urandom(200 * 1024), ServerSideEncryption="AES256")
    with sqlite3.connect(os.path.join(srv.data_dir, ".shoal", "meta.sqlite3")) as db:
        rows = db.execute("SELECT id, crc64, size FROM blobs").fetchall()
    assert len(rows) == 4
    for blob_id, crc, size in rows:
        assert crc is not None and len(crc) == 16
        assert os.path.getsize(os.path.join(srv.data_dir, ".shoal", "blobs", blob_id[:2], blob_id[2:4], blob_id)) \
            == size


def test_small_damaged_blob_is_a_clean_500_and_quarantined(srv):
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    data = os.urandom(300 * 1024)
    s3.put_object(Bucket="bkt", Key="k", Body=data)
    s3.put_object(Bucket="bkt", Key="fine", Body=data)
    path = blob_path(srv, "bkt", "k")
    damage(path, 1234)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="bkt", Key="k")["Body"].read()
    assert status_of(e.value) == 500 and error_code(e.value) == "InternalError"
    assert "integrity" in e.value.response["Error"]["Message"]
    assert not os.path.exists(path)
    blob_id = os.path.basename(path)
    assert quarantine(srv) == [blob_id, blob_id + ".json"]
    with open(os.path.join(srv.data_dir, ".shoal", "quarantine", blob_id + ".json")) as f:
        report = json.load(f)
    assert report["referrers"] == [["bkt", "k", "null"]] and report["detected_by"] == "GET"
    # Still an error afterwards (never the damaged bytes), and other objects are unaffected.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="bkt", Key="k")
    assert status_of(e.value) == 500
    assert s3.get_object(Bucket="bkt", Key="fine")["Body"].read() == data
    # Rewriting the key heals it.
    s3.put_object(Bucket="bkt", Key="k", Body=data)
    assert s3.get_object(Bucket="bkt", Key="k")["Body"].read() == data


@pytest.mark.parametrize("where", ["start", "end"])
def test_large_damaged_blob_is_cut_short(srv, where):
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    data = os.urandom(12 * MiB)
    s3.put_object(Bucket="bkt", Key="big", Body=data)
    path = blob_path(srv, "bkt", "big")
    damage(path, 10 if where == "start" else len(data) - 10)
    with pytest.raises(Exception) as e:
        body = s3.get_object(Bucket="bkt", Key="big")["Body"].read()
        assert body != data  # never reached: the body is short
    assert not isinstance(e.value, AssertionError)
    assert quarantine(srv) == [os.path.basename(path), os.path.basename(path) + ".json"]


def test_range_reads_of_healthy_large_blob_and_full_read(srv):
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    data = os.urandom(12 * MiB)
    s3.put_object(Bucket="bkt", Key="big", Body=data)
    assert s3.get_object(Bucket="bkt", Key="big")["Body"].read() == data
    assert s3.get_object(Bucket="bkt", Key="big", Range="bytes=100-199")["Body"].read() == data[100:200]
    assert quarantine(srv) == []


def test_copy_of_damaged_blob_fails_and_copies_nothing(srv):
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="src", Body=os.urandom(200 * 1024))
    damage(blob_path(srv, "bkt", "src"), 5)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket="bkt", Key="dst", CopySource={"Bucket": "bkt", "Key": "src"})
    assert status_of(e.value) == 500
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket="bkt", Key="dst")
    assert status_of(e.value) == 404
    assert len(quarantine(srv)) == 2
    assert os.listdir(os.path.join(srv.data_dir, ".shoal", "tmp")) == []


def test_damaged_multipart_part(srv):
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    up = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    done = [{"PartNumber": i, "ETag": s3.upload_part(Bucket="bkt", Key="mp", UploadId=up, PartNumber=i,
                                                     Body=p)["ETag"]} for i, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=up, MultipartUpload={"Parts": done})
    damage(blob_path(srv, "bkt", "mp", 1), 3)
    # Part 1 is fine and still readable on its own; the whole object is refused.
    assert s3.get_object(Bucket="bkt", Key="mp", PartNumber=1)["Body"].read() == parts[0]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="bkt", Key="mp")
    assert status_of(e.value) == 500


def test_damaged_encrypted_blob_is_refused(srv):
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    s3.put_object(Bucket="bkt", Key="e", Body=os.urandom(300 * 1024), ServerSideEncryption="AES256")
    damage(blob_path(srv, "bkt", "e"), 100)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="bkt", Key="e")
    assert status_of(e.value) == 500
