"""CopyObject through boto3: metadata directives, copy-source conditions, awkward source keys, self-copies,
copies across buckets, checksums."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, status_of
from s3util import checksum

MiB = 1024 * 1024


@pytest.fixture(params=[1000, 200 * 1024], ids=["inline", "blob"])
def source(request, s3, bucket):
    data = os.urandom(request.param)
    put = s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"origin": "source"},
                        ContentType="text/x-source", CacheControl="no-store", ContentDisposition="inline")
    return bucket, data, put["ETag"]


def test_copy_directive_copy(s3, source):
    bucket, data, etag = source
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                          Metadata={"ignored": "yes"}, ContentType="text/ignored")
    assert resp["CopyObjectResult"]["ETag"] == etag
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ETag"] == etag
    assert head["Metadata"] == {"origin": "source"}
    assert head["ContentType"] == "text/x-source"
    assert head["CacheControl"] == "no-store"
    assert head["ContentDisposition"] == "inline"
    assert head["LastModified"] == resp["CopyObjectResult"]["LastModified"].replace(microsecond=0)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == data


def test_copy_directive_replace(s3, source):
    bucket, data, etag = source
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"new": "meta"}, ContentType="application/x-new")
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["ETag"] == etag
    assert head["Metadata"] == {"new": "meta"}
    assert head["ContentType"] == "application/x-new"
    assert "CacheControl" not in head  # REPLACE drops what the request does not restate
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == data
    # The source is untouched.
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"origin": "source"}


def test_copy_invalid_directive(s3, source):
    bucket, _, _ = source
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       MetadataDirective="MERGE")
    assert error_code(e.value) == "InvalidArgument"
    assert status_of(e.value) == 400


def test_copy_across_buckets_is_independent(s3, source):
    bucket, data, etag = source
    other = f"test-copy-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=other)
    s3.copy_object(Bucket=other, Key="copied", CopySource={"Bucket": bucket, "Key": "src"})
    s3.put_object(Bucket=bucket, Key="src", Body=b"overwritten")
    s3.delete_object(Bucket=bucket, Key="src")
    got = s3.get_object(Bucket=other, Key="copied")
    assert got["Body"].read() == data
    assert got["ETag"] == etag


def test_copy_overwrites_destination(s3, source):
    bucket, data, _ = source
    s3.put_object(Bucket=bucket, Key="dst", Body=b"old destination", Metadata={"old": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"origin": "source"}


# -- copy-source conditions -------------------------------------------------------------------------------------


def test_copy_source_if_match(s3, source):
    bucket, data, etag = source
    s3.copy_object(Bucket=bucket, Key="ok", CopySource={"Bucket": bucket, "Key": "src"}, CopySourceIfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="ok")["Body"].read() == data
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="no", CopySource={"Bucket": bucket, "Key": "src"},
                       CopySourceIfMatch='"0123456789abcdef0123456789abcdef"')
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412


def test_copy_source_if_none_match(s3, source):
    bucket, _, etag = source
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="no", CopySource={"Bucket": bucket, "Key": "src"},
                       CopySourceIfNoneMatch=etag)
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412
    s3.copy_object(Bucket=bucket, Key="ok", CopySource={"Bucket": bucket, "Key": "src"},
                   CopySourceIfNoneMatch='"0123456789abcdef0123456789abcdef"')
    s3.head_object(Bucket=bucket, Key="ok")


def test_copy_source_if_modified_since(s3, source):
    bucket, _, _ = source
    mtime = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="no", CopySource={"Bucket": bucket, "Key": "src"},
                       CopySourceIfModifiedSince=mtime + timedelta(hours=1))
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412
    s3.copy_object(Bucket=bucket, Key="ok", CopySource={"Bucket": bucket, "Key": "src"},
                   CopySourceIfModifiedSince=mtime - timedelta(hours=1))
    s3.head_object(Bucket=bucket, Key="ok")


def test_copy_source_if_unmodified_since(s3, source):
    bucket, _, _ = source
    mtime = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="no", CopySource={"Bucket": bucket, "Key": "src"},
                       CopySourceIfUnmodifiedSince=mtime - timedelta(hours=1))
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412
    s3.copy_object(Bucket=bucket, Key="ok", CopySource={"Bucket": bucket, "Key": "src"},
                   CopySourceIfUnmodifiedSince=mtime + timedelta(hours=1))
    s3.head_object(Bucket=bucket, Key="ok")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="no")
    assert status_of(e.value) == 404


def test_copy_source_if_match_true_overrides_unmodified_since(s3, source):
    bucket, _, etag = source
    mtime = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    s3.copy_object(Bucket=bucket, Key="ok", CopySource={"Bucket": bucket, "Key": "src"}, CopySourceIfMatch=etag,
                   CopySourceIfUnmodifiedSince=mtime - timedelta(hours=1))
    s3.head_object(Bucket=bucket, Key="ok")


def test_copy_destination_conditions(s3, source):
    bucket, _, etag = source
    s3.put_object(Bucket=bucket, Key="dst", Body=b"existing")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*")
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"existing"
    s3.copy_object(Bucket=bucket, Key="fresh", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*")
    assert s3.head_object(Bucket=bucket, Key="fresh")["ETag"] == etag


# -- source keys and missing sources ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["with space", "caf\u00e9/\u65e5\u672c", "plus+and%percent", "q?mark&amp=1",
                                 "/leading", "trailing/", "a//b"])
def test_copy_awkward_source_key(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.copy_object(Bucket=bucket, Key=f"copy-of-{key}", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key=f"copy-of-{key}")["Body"].read() == key.encode()
    # The string form of CopySource (boto3 URL-encodes it).
    s3.copy_object(Bucket=bucket, Key="copy2", CopySource=f"{bucket}/{key}")
    assert s3.get_object(Bucket=bucket, Key="copy2")["Body"].read() == key.encode()


def test_copy_missing_source(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "missing"})
    assert error_code(e.value) == "NoSuchKey"
    assert status_of(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst",
                       CopySource={"Bucket": f"missing-{uuid.uuid4().hex[:10]}", "Key": "k"})
    assert error_code(e.value) == "NoSuchBucket"
    assert status_of(e.value) == 404


def test_copy_source_version_null(s3, source):
    bucket, data, _ = source
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": "null"})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == data


# -- copy onto itself -------------------------------------------------------------------------------------------


def test_copy_onto_itself_without_change_is_invalid(s3, source):
    bucket, data, _ = source
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert error_code(e.value) == "InvalidRequest"
    assert status_of(e.value) == 400
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == data


def test_copy_onto_itself_with_replace(s3, source):
    bucket, data, etag = source
    before = s3.head_object(Bucket=bucket, Key="src")
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"changed": "yes"}, ContentType="text/changed")
    got = s3.get_object(Bucket=bucket, Key="src")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"changed": "yes"}
    assert got["ContentType"] == "text/changed"
    assert got["ETag"] == etag
    assert got["LastModified"] >= before["LastModified"]


def test_copy_onto_itself_changing_storage_class(s3, source):
    bucket, data, _ = source
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   StorageClass="REDUCED_REDUNDANCY")
    head = s3.head_object(Bucket=bucket, Key="src")
    assert head["StorageClass"] == "REDUCED_REDUNDANCY"
    assert head["Metadata"] == {"origin": "source"}
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == data


# -- checksums and multipart sources ----------------------------------------------------------------------------


def test_copy_keeps_source_checksum(s3, bucket):
    data = os.urandom(100 * 1024)
    s3.put_object(Bucket=bucket, Key="src", Body=data, ChecksumAlgorithm="CRC32C")
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert resp["CopyObjectResult"]["ChecksumCRC32C"] == checksum("CRC32C", data)
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == checksum("CRC32C", data)


@pytest.mark.parametrize("algorithm", ["SHA256", "CRC64NVME", "SHA1"])
def test_copy_with_new_checksum_algorithm(s3, bucket, algorithm):
    data = os.urandom(100 * 1024)
    s3.put_object(Bucket=bucket, Key="src", Body=data, ChecksumAlgorithm="CRC32")
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                          ChecksumAlgorithm=algorithm)
    assert resp["CopyObjectResult"][f"Checksum{algorithm}"] == checksum(algorithm, data)
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == checksum(algorithm, data)


def test_copy_multipart_source(s3, bucket):
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    done = [{"PartNumber": i, "ETag": s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=i,
                                                     Body=p)["ETag"]} for i, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": done})
    s3.copy_object(Bucket=bucket, Key="mp-copy", CopySource={"Bucket": bucket, "Key": "mp"})
    got = s3.get_object(Bucket=bucket, Key="mp-copy")
    body = got["Body"].read()
    assert hashlib.md5(body).digest() == hashlib.md5(b"".join(parts)).digest()
    s3.delete_object(Bucket=bucket, Key="mp")
    assert s3.get_object(Bucket=bucket, Key="mp-copy", Range="bytes=0-9")["Body"].read() == parts[0][:10]
