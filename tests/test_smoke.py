"""The basic round trip every client depends on."""

import io
import os

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import error_code


def test_put_get_round_trip(s3, bucket):
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello", Metadata={"color": "blue"})
    got = s3.get_object(Bucket=bucket, Key="hello.txt")
    assert got["Body"].read() == b"hello"
    assert got["Metadata"] == {"color": "blue"}
    assert got["ETag"] == '"5d41402abc4b2a76b9719d911017c592"'


@pytest.mark.parametrize("size", [0, 1, 64 * 1024, 64 * 1024 + 1, 5 * 1024 * 1024 - 1])
def test_sizes_round_trip_byte_exact(s3, bucket, size):
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=data)
    assert s3.get_object(Bucket=bucket, Key=f"obj-{size}")["Body"].read() == data
    assert s3.head_object(Bucket=bucket, Key=f"obj-{size}")["ContentLength"] == size


def test_multipart_upload_via_transfer_manager(s3, bucket):
    data = os.urandom(12 * 1024 * 1024 + 17)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(data), bucket, "mp", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="mp")
    assert head["ETag"].endswith('-3"')
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == data


def test_missing_key_and_bucket(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(e.value) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="no-such-bucket-here", Key="nope")
    assert error_code(e.value) == "NoSuchBucket"
