"""PutObject / HeadObject / DeleteObject(s) / GetObjectAttributes through boto3: metadata and content headers,
storage classes, checksums (trailers and explicit values), Content-MD5, conditional writes."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ROOT, client, error_code, status_of
from s3util import b64, checksum, md5_b64, multipart_etag, raw_request

ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]
MiB = 1024 * 1024


# -- metadata and content headers -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 100 * 1024])  # inline in metadata, and a blob file
def test_put_with_all_headers(s3, bucket, size):
    data = os.urandom(size)
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    put = s3.put_object(
        Bucket=bucket, Key="full", Body=data,
        Metadata={"Color": "blue", "empty": "", "with-dash": "a b  c"},
        ContentType="text/x-custom; charset=utf-8",
        ContentEncoding="gzip",
        ContentDisposition='attachment; filename="x.txt"',
        ContentLanguage="de-CH",
        CacheControl="max-age=3600, private",
        Expires=expires,
    )
    assert put["ETag"] == f'"{__import__("hashlib").md5(data).hexdigest()}"'
    for resp in (s3.head_object(Bucket=bucket, Key="full"), s3.get_object(Bucket=bucket, Key="full")):
        assert resp["ContentLength"] == size
        assert resp["ETag"] == put["ETag"]
        assert resp["Metadata"] == {"color": "blue", "empty": "", "with-dash": "a b  c"}
        assert resp["ContentType"] == "text/x-custom; charset=utf-8"
        assert resp["ContentEncoding"] == "gzip"
        assert resp["ContentDisposition"] == 'attachment; filename="x.txt"'
        assert resp["ContentLanguage"] == "de-CH"
        assert resp["CacheControl"] == "max-age=3600, private"
        assert resp["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Wed, 02 Jan 2030 03:04:05 GMT"
        assert resp["AcceptRanges"] == "bytes"
        assert "StorageClass" not in resp  # S3 does not announce STANDARD
        assert abs((resp["LastModified"] - datetime.now(UTC)).total_seconds()) < 60
    assert s3.get_object(Bucket=bucket, Key="full")["Body"].read() == data


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, identity"])
def test_content_encoding_body_stored_verbatim(s3, bucket, encoding):
    # The bytes of an object with Content-Encoding are stored and served exactly as sent, never decoded.
    compressed = gzip.compress(b"hello hello hello " * 100)
    for body in (compressed, b"not actually compressed"):
        s3.put_object(Bucket=bucket, Key="enc", Body=body, ContentEncoding=encoding)
        got = s3.get_object(Bucket=bucket, Key="enc")
        assert got["ContentEncoding"] == encoding
        assert got["Body"].read() == body


def test_default_content_type(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="plain")["ContentType"] == "binary/octet-stream"


def test_aws_chunked_is_not_stored_as_content_encoding(s3, bucket):
    # boto3 sends the body aws-chunked (Content-Encoding: aws-chunked): that describes the transfer only.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100)
    assert "ContentEncoding" not in s3.head_object(Bucket=bucket, Key="k")


def test_overwrite_replaces_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"one", Metadata={"a": "1"}, ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="k", Body=b"two", Metadata={"b": "2"})
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"two"
    assert got["Metadata"] == {"b": "2"}
    assert got["ContentType"] == "binary/octet-stream"


def test_metadata_too_large(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"big": "v" * 2100})
    assert error_code(e.value) == "MetadataTooLarge"
    assert status_of(e.value) == 400
    # Just under the limit (name + value bytes) is fine.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"big": "v" * (2048 - 3)})
    assert len(s3.head_object(Bucket=bucket, Key="k")["Metadata"]["big"]) == 2045


@pytest.mark.parametrize("storage_class", ["REDUCED_REDUNDANCY", "STANDARD_IA"])
def test_storage_class_echoed(s3, bucket, storage_class):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass=storage_class)
    assert s3.head_object(Bucket=bucket, Key="k")["StorageClass"] == storage_class
    assert s3.get_object(Bucket=bucket, Key="k")["StorageClass"] == storage_class
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    assert listed["StorageClass"] == storage_class


def test_storage_class_standard(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass="STANDARD")
    assert "StorageClass" not in s3.head_object(Bucket=bucket, Key="k")
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["StorageClass"] == "STANDARD"


def test_invalid_storage_class(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass="FANCY")
    assert error_code(e.value) == "InvalidStorageClass"
    assert status_of(e.value) == 400


def test_empty_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["ContentLength"] == 0
    assert got["Body"].read() == b""


def test_empty_put_then_more_requests_on_same_connection(server, bucket):
    # boto3 sends "Expect: 100-continue" even for an empty body; a server that answers such a request without
    # the interim 100 leaves botocore misreading the next response on that connection (it hung until timeout).
    c = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ROOT[0], aws_secret_access_key=ROOT[1],
                     region_name="us-east-1",
                     config=Config(retries={"total_max_attempts": 1}, max_pool_connections=1, read_timeout=5))
    for i in range(3):
        c.put_object(Bucket=bucket, Key=f"empty{i}", Body=b"")
        c.put_object(Bucket=bucket, Key=f"full{i}", Body=b"x" * 100)
        assert c.get_object(Bucket=bucket, Key=f"full{i}")["Body"].read() == b"x" * 100
    # The same after an early refusal of a request with a body (the connection must not be reused as is).
    with pytest.raises(ClientError) as e:
        c.put_object(Bucket="no-such-bucket-for-this", Key="k", Body=b"y" * 1000)
    assert error_code(e.value) == "NoSuchBucket"
    c.put_object(Bucket=bucket, Key="after", Body=b"z" * 100)
    assert c.get_object(Bucket=bucket, Key="after")["Body"].read() == b"z" * 100


# -- checksums --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
# Inline, one blob buffer, and several 1 MiB buffers (each hashed for the ETag, the payload hash boto3 signs over
# plain HTTP and the checksum, on worker threads at once: shoal.s3.ingest._Hashers.lanes).
@pytest.mark.parametrize("size", [1000, 200 * 1024, 3 * 1024 * 1024 + 4321])
def test_checksum_algorithm_trailer(s3, bucket, algorithm, size):
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key="ck", Body=data, ChecksumAlgorithm=algorithm)
    expected = checksum(algorithm, data)
    assert put[f"Checksum{algorithm}"] == expected
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected
    assert head["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == expected
    assert got["Body"].read() == data
    # Without ChecksumMode the checksum is not announced.
    plain = s3.head_object(Bucket=bucket, Key="ck")
    assert f"Checksum{algorithm}" not in plain
    attrs = s3.get_object_attributes(Bucket=bucket, Key="ck", ObjectAttributes=["Checksum"])
    assert attrs["Checksum"][f"Checksum{algorithm}"] == expected
    assert attrs["Checksum"]["ChecksumType"] == "FULL_OBJECT"


def test_default_client_sends_crc32(s3, bucket):
    data = b"default checksum"
    s3.put_object(Bucket=bucket, Key="k", Body=data)
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == checksum("CRC32", data)


def test_server_computes_crc64nvme_when_client_sends_none(server, bucket):
    c = client(server.endpoint, request_checksum_calculation="when_required",
               response_checksum_validation="when_required")
    data = os.urandom(3000)
    c.put_object(Bucket=bucket, Key="k", Body=data)
    head = c.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == checksum("CRC64NVME", data)
    assert head["ChecksumType"] == "FULL_OBJECT"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_explicit_checksum_value(s3, bucket, algorithm):
    data = os.urandom(5000)
    value = checksum(algorithm, data)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, **{f"Checksum{algorithm}": value})
    assert put[f"Checksum{algorithm}"] == value
    assert s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")[f"Checksum{algorithm}"] == value


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_checksum_value_is_bad_digest(s3, bucket, algorithm):
    data = os.urandom(5000)
    wrong = checksum(algorithm, data + b"!")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=data, **{f"Checksum{algorithm}": wrong})
    assert error_code(e.value) == "BadDigest"
    assert status_of(e.value) == 400
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert status_of(e.value) == 404  # nothing was stored


@pytest.mark.parametrize("value", ["not base64!", "AAAAAAAA", "="])
def test_malformed_checksum_value(s3, bucket, value):
    # Not base64, or not the size of a CRC32: it cannot match, so BadDigest (as ceph/s3-tests' checksum tests
    # expect), and nothing is stored.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumCRC32=value)
    assert error_code(e.value) == "BadDigest"
    assert status_of(e.value) == 400
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_two_checksum_headers(s3, bucket):
    data = b"two checksums"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumCRC32=checksum("CRC32", data),
                      ChecksumSHA256=checksum("SHA256", data))
    assert error_code(e.value) == "InvalidRequest"
    assert status_of(e.value) == 400


def test_wrong_checksum_keeps_previous_version(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"new" * 30000, ChecksumSHA256=checksum("SHA256", b"other"))
    assert error_code(e.value) == "BadDigest"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"old"


def test_checksum_not_returned_for_range(s3, bucket):
    data = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm="SHA256")
    got = s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-9", ChecksumMode="ENABLED")
    assert got["Body"].read() == data[:10]
    assert "ChecksumSHA256" not in got


# -- Content-MD5 ------------------------------------------------------------------------------------------------


def test_content_md5_good(s3, bucket):
    data = os.urandom(2000)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ContentMD5=md5_b64(data))
    assert put["ETag"].strip('"') == __import__("hashlib").md5(data).hexdigest()


def test_content_md5_wrong(s3, bucket):
    data = os.urandom(2000)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=data, ContentMD5=md5_b64(b"something else"))
    assert error_code(e.value) == "BadDigest"
    assert status_of(e.value) == 400


@pytest.mark.parametrize("value", ["not base64!!", b64(b"too short")])
def test_content_md5_malformed(s3, bucket, value):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=value)
    assert error_code(e.value) == "InvalidDigest"
    assert status_of(e.value) == 400


# -- conditional writes -----------------------------------------------------------------------------------------


def test_put_if_none_match_star(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.put_object(Bucket=bucket, Key="k", Body=b"third", IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"third"


def test_put_if_match(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    etag2 = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)["ETag"]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag)  # stale
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"
    s3.put_object(Bucket=bucket, Key="k", Body=b"v4", IfMatch=etag2.strip('"'))  # unquoted works too
    s3.put_object(Bucket=bucket, Key="k", Body=b"v5", IfMatch="*")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v5"


@pytest.mark.parametrize("if_match", ["*", '"d41d8cd98f00b204e9800998ecf8427e"'])
def test_put_if_match_on_missing_key(s3, bucket, if_match):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="never", Body=b"x", IfMatch=if_match)
    assert error_code(e.value) == "NoSuchKey"
    assert status_of(e.value) == 404


# -- HEAD -------------------------------------------------------------------------------------------------------


def test_head_missing(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="missing")
    assert status_of(e.value) == 404
    assert error_code(e.value) == "404"


def test_head_has_no_body(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    status, headers, body = raw_request(s3, "HEAD", bucket, "k")
    assert status == 200
    assert headers["content-length"] == "10"
    assert body == b""
    status, headers, body = raw_request(s3, "HEAD", bucket, "missing")
    assert status == 404
    assert body == b""


# -- delete -----------------------------------------------------------------------------------------------------


def test_delete_object_idempotent(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="never-existed")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(e.value) == "NoSuchKey"
    assert status_of(e.value) == 404


def test_delete_objects(s3, bucket):
    for k in ("a", "b", "c/d"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "c/d"}, {"Key": "zz"}]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["a", "c/d", "zz"]
    assert "Errors" not in resp
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["b"]


def test_delete_objects_quiet(s3, bucket):
    for k in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}], "Quiet": True})
    assert "Deleted" not in resp
    assert "Errors" not in resp
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_limit(s3, bucket):
    keys = [f"k{i:04d}" for i in range(1000)]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[:3]]})
    for k in keys[:5]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    assert len(resp["Deleted"]) == 1000
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert error_code(e.value) == "MalformedXML"
    assert status_of(e.value) == 400


def test_delete_objects_key_too_long_is_per_key_error(s3, bucket):
    s3.put_object(Bucket=bucket, Key="ok", Body=b"x")
    long_key = "x" * 1025
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "ok"}, {"Key": long_key}]})
    assert [d["Key"] for d in resp["Deleted"]] == ["ok"]
    assert [(err["Key"], err["Code"]) for err in resp["Errors"]] == [(long_key, "KeyTooLongError")]


# -- GetObjectAttributes ----------------------------------------------------------------------------------------


def test_get_object_attributes_simple(s3, bucket):
    data = os.urandom(3000)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm="SHA1", StorageClass="STANDARD_IA")
    attrs = s3.get_object_attributes(
        Bucket=bucket, Key="k", ObjectAttributes=["ETag", "ObjectSize", "StorageClass", "Checksum", "ObjectParts"]
    )
    assert attrs["ETag"] == put["ETag"].strip('"')
    assert attrs["ObjectSize"] == 3000
    assert attrs["StorageClass"] == "STANDARD_IA"
    assert attrs["Checksum"]["ChecksumSHA1"] == checksum("SHA1", data)
    assert "ObjectParts" not in attrs  # not a multipart object
    assert attrs["LastModified"] == s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    only = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert only["ObjectSize"] == 3000
    assert "ETag" not in only
    assert "StorageClass" not in only


def test_get_object_attributes_multipart(s3, bucket):
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1234)]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32C")
    done = []
    for n, p in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=n, Body=p,
                           ChecksumAlgorithm="CRC32C")
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32C": r["ChecksumCRC32C"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": done})
    attrs = s3.get_object_attributes(Bucket=bucket, Key="mp",
                                     ObjectAttributes=["ETag", "ObjectSize", "ObjectParts", "Checksum"])
    assert attrs["ETag"] == multipart_etag(parts).strip('"')
    assert attrs["ObjectSize"] == sum(len(p) for p in parts)
    op = attrs["ObjectParts"]
    assert op["TotalPartsCount"] == 3
    assert [(p["PartNumber"], p["Size"], p["ChecksumCRC32C"]) for p in op["Parts"]] == [
        (n, len(p), checksum("CRC32C", p)) for n, p in enumerate(parts, 1)
    ]
    assert attrs["Checksum"]["ChecksumType"] == "COMPOSITE"
    assert attrs["Checksum"]["ChecksumCRC32C"].endswith("-3")
    page = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2)
    assert [p["PartNumber"] for p in page["ObjectParts"]["Parts"]] == [1, 2]
    assert page["ObjectParts"]["IsTruncated"] is True
    assert page["ObjectParts"]["NextPartNumberMarker"] == 2
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2,
                                    PartNumberMarker=2)
    assert [p["PartNumber"] for p in rest["ObjectParts"]["Parts"]] == [3]
    assert rest["ObjectParts"]["IsTruncated"] is False


def test_get_object_attributes_errors(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=["ETag"])
    assert error_code(e.value) == "NoSuchKey"
    assert status_of(e.value) == 404
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Nonsense"])
    assert error_code(e.value) == "InvalidArgument"
    assert status_of(e.value) == 400
