"""What survives a restart (clean or kill -9), and that deleting, overwriting or aborting frees disk space."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from botocore.exceptions import ClientError

from conftest import client, error_code
from s3util import checksum, multipart_etag

MiB = 1024 * 1024


def blob_files(srv) -> list[str]:
    root = os.path.join(srv.data_dir, ".shoal", "blobs")
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def tmp_files(srv) -> list[str]:
    root = os.path.join(srv.data_dir, ".shoal", "tmp")
    return os.listdir(root) if os.path.isdir(root) else []


def wait_for_blob_count(srv, expected: int, timeout: float = 3.0) -> list[str]:
    deadline = time.time() + timeout
    while True:
        files = blob_files(srv)
        if len(files) == expected or time.time() > deadline:
            return files
        time.sleep(0.05)


def populate(s3):
    s3.create_bucket(Bucket="keep")
    s3.create_bucket(Bucket="eu-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    small = os.urandom(100)
    big = os.urandom(300 * 1024)
    s3.put_object(Bucket="keep", Key="small", Body=small, Metadata={"a": "1"}, ContentType="text/x-small")
    s3.put_object(Bucket="keep", Key="dir/big \u00e9", Body=big, ChecksumAlgorithm="SHA256")
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    up = s3.create_multipart_upload(Bucket="keep", Key="mp", ChecksumAlgorithm="CRC32C",
                                    ChecksumType="FULL_OBJECT")["UploadId"]
    done = [{"PartNumber": i, "ETag": s3.upload_part(Bucket="keep", Key="mp", UploadId=up, PartNumber=i, Body=p,
                                                     ChecksumAlgorithm="CRC32C")["ETag"]}
            for i, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket="keep", Key="mp", UploadId=up, MultipartUpload={"Parts": done},
                                 ChecksumType="FULL_OBJECT")
    pending = s3.create_multipart_upload(Bucket="keep", Key="pending")["UploadId"]
    p1 = s3.upload_part(Bucket="keep", Key="pending", UploadId=pending, PartNumber=1, Body=parts[0])["ETag"]
    s3.put_object(Bucket="keep", Key="gone", Body=b"deleted before restart")
    s3.delete_object(Bucket="keep", Key="gone")
    return {"small": small, "big": big, "parts": parts, "pending": (pending, p1)}


def verify(s3, data):
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= {"keep", "eu-bucket"}
    assert s3.get_bucket_location(Bucket="eu-bucket")["LocationConstraint"] == "eu-west-1"
    got = s3.get_object(Bucket="keep", Key="small")
    assert got["Body"].read() == data["small"]
    assert got["Metadata"] == {"a": "1"}
    assert got["ContentType"] == "text/x-small"
    big = s3.get_object(Bucket="keep", Key="dir/big \u00e9", ChecksumMode="ENABLED")
    assert big["Body"].read() == data["big"]
    assert big["ChecksumSHA256"] == checksum("SHA256", data["big"])
    head = s3.head_object(Bucket="keep", Key="mp", ChecksumMode="ENABLED")
    assert head["ETag"] == multipart_etag(data["parts"])
    assert head["ChecksumCRC32C"] == checksum("CRC32C", b"".join(data["parts"]))
    assert s3.get_object(Bucket="keep", Key="mp")["Body"].read() == b"".join(data["parts"])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="keep")["Contents"]]
    assert keys == ["dir/big \u00e9", "mp", "small"]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="keep", Key="gone")
    assert error_code(e.value) == "NoSuchKey"
    # The pending upload carries on where it was.
    upload_id, etag1 = data["pending"]
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="keep")["Uploads"]] == [upload_id]
    etag2 = s3.upload_part(Bucket="keep", Key="pending", UploadId=upload_id, PartNumber=2, Body=b"end")["ETag"]
    s3.complete_multipart_upload(Bucket="keep", Key="pending", UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]})
    assert s3.get_object(Bucket="keep", Key="pending")["Body"].read() == data["parts"][0] + b"end"


@pytest.mark.parametrize("sig", ["TERM", "KILL"])
def test_data_survives_restart(make_server, sig):
    srv = make_server()
    data = populate(client(srv.endpoint))
    srv.stop(sig=sig)
    srv.start()
    verify(client(srv.endpoint), data)
    assert tmp_files(srv) == []


def test_restart_twice_and_keep_writing(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    for round_ in range(3):
        s3.put_object(Bucket="bkt", Key=f"round-{round_}", Body=os.urandom(70 * 1024))
        srv.stop()
        srv.start()
        s3 = client(srv.endpoint)
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="bkt")["Contents"]] == [
            f"round-{i}" for i in range(round_ + 1)]
    assert len(blob_files(srv)) == 3


def test_delete_frees_disk_space(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    assert blob_files(srv) == []
    for i in range(3):
        s3.put_object(Bucket="bkt", Key=f"k{i}", Body=os.urandom(200 * 1024))
    s3.put_object(Bucket="bkt", Key="inline", Body=b"small objects live in the metadata")
    files = blob_files(srv)
    assert len(files) == 3
    assert all(os.path.getsize(f) == 200 * 1024 for f in files)

    s3.delete_object(Bucket="bkt", Key="k0")
    assert len(wait_for_blob_count(srv, 2)) == 2
    # Overwriting frees the old bytes too.
    s3.put_object(Bucket="bkt", Key="k1", Body=os.urandom(100 * 1024))
    files = wait_for_blob_count(srv, 2)
    assert sorted(os.path.getsize(f) for f in files) == [100 * 1024, 200 * 1024]
    # Overwriting with a small (inline) object drops the file.
    s3.put_object(Bucket="bkt", Key="k1", Body=b"tiny now")
    assert len(wait_for_blob_count(srv, 1)) == 1
    s3.delete_objects(Bucket="bkt", Delete={"Objects": [{"Key": "k2"}, {"Key": "inline"}, {"Key": "k1"}]})
    assert wait_for_blob_count(srv, 0) == []
    s3.delete_bucket(Bucket="bkt")
    assert tmp_files(srv) == []


def test_multipart_frees_unused_and_aborted_parts(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    up = s3.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    etags = [s3.upload_part(Bucket="bkt", Key="mp", UploadId=up, PartNumber=i, Body=os.urandom(5 * MiB))["ETag"]
             for i in (1, 2, 3)]
    s3.upload_part(Bucket="bkt", Key="mp", UploadId=up, PartNumber=2, Body=os.urandom(5 * MiB))  # replaces part 2
    assert len(wait_for_blob_count(srv, 3)) == 3
    s3.complete_multipart_upload(Bucket="bkt", Key="mp", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 3, "ETag": etags[2]}]})
    assert len(wait_for_blob_count(srv, 2)) == 2  # part 2 was left out
    up2 = s3.create_multipart_upload(Bucket="bkt", Key="other")["UploadId"]
    s3.upload_part(Bucket="bkt", Key="other", UploadId=up2, PartNumber=1, Body=b"x" * 1000)
    assert len(wait_for_blob_count(srv, 3)) == 3
    s3.abort_multipart_upload(Bucket="bkt", Key="other", UploadId=up2)
    assert len(wait_for_blob_count(srv, 2)) == 2
    s3.delete_object(Bucket="bkt", Key="mp")
    assert wait_for_blob_count(srv, 0) == []


# 100 KiB: received whole, its blob made durable before the checks (shoal.s3.ingest._ingest_whole); 300 KiB: streamed.
@pytest.mark.parametrize("size", [100 * 1024, 300 * 1024])
def test_failed_upload_leaves_nothing(make_server, size):
    from rawhttp import Raw

    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="bkt", Key="bad", Body=os.urandom(size), ChecksumSHA256=checksum("SHA256", b""))
    assert error_code(e.value) == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="bkt", Key="bad", Body=os.urandom(size), ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
    assert error_code(e.value) == "BadDigest"
    resp = Raw(srv.port).signed("PUT", "/bkt/bad", os.urandom(size), payload=hashlib.sha256(b"other").hexdigest())
    assert resp.status == 400 and resp.code == "XAmzContentSHA256Mismatch", resp
    assert blob_files(srv) == []
    assert tmp_files(srv) == []
    assert s3.list_objects_v2(Bucket="bkt")["KeyCount"] == 0


def test_copy_frees_independently(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="bkt")
    data = os.urandom(300 * 1024)
    s3.put_object(Bucket="bkt", Key="src", Body=data)
    s3.copy_object(Bucket="bkt", Key="dst", CopySource={"Bucket": "bkt", "Key": "src"})
    assert len(blob_files(srv)) == 2
    s3.delete_object(Bucket="bkt", Key="src")
    assert len(wait_for_blob_count(srv, 1)) == 1
    assert s3.get_object(Bucket="bkt", Key="dst")["Body"].read() == data
    # A metadata-only self-copy shares the bytes: replacing metadata must not free them.
    s3.copy_object(Bucket="bkt", Key="dst", CopySource={"Bucket": "bkt", "Key": "dst"}, MetadataDirective="REPLACE",
                   Metadata={"x": "y"})
    time.sleep(0.3)
    assert len(blob_files(srv)) == 1
    assert s3.get_object(Bucket="bkt", Key="dst")["Body"].read() == data
    srv.stop()
    srv.start()
    s3 = client(srv.endpoint)
    assert s3.get_object(Bucket="bkt", Key="dst")["Body"].read() == data
    assert len(blob_files(srv)) == 1


def test_replacing_a_null_version_frees_exactly_its_blobs(tmp_path):
    """Both ways of replacing a null version: rewritten in place when it is the latest (unversioned overwrite),
    deleted when newer versions sit above it (versioning suspended after they were written). The new blob is
    kept, the replaced ones go to garbage collection, and the other versions' blobs stay."""
    import asyncio

    import shoal.storage.sqlite_meta as sqlite_meta
    from shoal.storage.records import NEW_VERSION, Bucket, ObjectRecord, Segment

    meta = sqlite_meta.SqliteMetadataStore(str(tmp_path / "meta.sqlite3"))

    def record(version_id: str, blob: str) -> ObjectRecord:
        return ObjectRecord(bucket="bkt", key="k", version_id=version_id, size=1, etag="e",
                            last_modified=time.time(), meta={}, segments=[Segment(blob, 1)])

    try:
        meta.create_bucket_sync(Bucket("bkt", "owner", time.time()))

        async def writes() -> None:
            for i in range(3):
                await meta.put_object(record("null", f"blob{i}"))
            assert [s.blob_id for s in meta.get_object("bkt", "k").segments] == ["blob2"]
            assert sorted(meta.garbage(10)) == ["blob0", "blob1"]
            await meta.put_object(record(NEW_VERSION, "versioned"))
            await meta.put_object(record("null", "blob3"))

        asyncio.run(writes())
        latest = meta.get_object("bkt", "k")
        assert (latest.version_id, [s.blob_id for s in latest.segments]) == ("null", ["blob3"])
        versions = meta.list_versions("bkt", "", "", None, 10)
        assert [v.version_id == "null" for v in versions] == [True, False]  # newest first
        assert [s.blob_id for s in meta.get_object("bkt", "k", versions[1].version_id).segments] == ["versioned"]
        assert sorted(meta.garbage(10)) == ["blob0", "blob1", "blob2"]
    finally:
        meta.close()


def test_shutdown_ends_the_collector_even_when_garbage_arrives_with_the_stop(tmp_path):
    """The collector waits for garbage with asyncio.wait_for, which on Python 3.11 swallows a cancellation that
    lands just after its wait was satisfied (a write made garbage in the same moment). Shutdown then waited for the
    collector forever (seen after a burst of overwrites: SIGTERM logged "shutting down" and the server never
    exited). Here the garbage signal and the stop arrive in exactly that order."""
    import asyncio

    from shoal.storage.engine import Storage

    storage = Storage.open_local(str(tmp_path))

    async def stop_right_after_garbage(steps: int) -> bool:
        storage.start_background()
        for _ in range(3):
            await asyncio.sleep(0)  # the collector is waiting
        storage.garbage_made()
        for _ in range(steps):
            await asyncio.sleep(0)  # 0-1 steps: the wait is satisfied, the collector is due to run
        stopping = asyncio.ensure_future(storage.stop_background())
        done, _ = await asyncio.wait([stopping], timeout=5)  # (asyncio.wait, unlike wait_for, cancels nothing)
        return stopping in done

    try:
        for steps in range(4):
            assert asyncio.run(stop_right_after_garbage(steps)), f"stop hung ({steps} steps after the garbage)"
    finally:
        storage.close()
