"""GetObject through boto3: byte ranges, response-* overrides, partNumber."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, status_of
from s3util import raw_request

MiB = 1024 * 1024


@pytest.fixture(params=[1000, 300 * 1024], ids=["inline", "blob"])
def obj(request, s3, bucket):
    data = os.urandom(request.param)
    s3.put_object(Bucket=bucket, Key="obj", Body=data)
    return bucket, data


@pytest.mark.parametrize(
    "header, expect",
    [
        ("bytes=0-4", (0, 5)),
        ("bytes=10-19", (10, 20)),
        ("bytes=-7", (-7, None)),  # suffix
        ("bytes=100-", (100, None)),  # open-ended
        ("bytes=0-0", (0, 1)),
        ("bytes=0-99999999", (0, None)),  # end clipped to the object
        ("bytes=-99999999", (0, None)),  # suffix longer than the object
    ],
)
def test_range(s3, obj, header, expect):
    bucket, data = obj
    want = data[expect[0]:expect[1]]
    got = s3.get_object(Bucket=bucket, Key="obj", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == want
    assert got["ContentLength"] == len(want)
    first = data.index(want) if expect[0] >= 0 else len(data) - len(want)
    assert got["ContentRange"] == f"bytes {first}-{first + len(want) - 1}/{len(data)}"


def test_range_last_byte(s3, obj):
    bucket, data = obj
    n = len(data)
    got = s3.get_object(Bucket=bucket, Key="obj", Range=f"bytes={n - 1}-{n - 1}")
    assert got["Body"].read() == data[-1:]
    assert got["ContentRange"] == f"bytes {n - 1}-{n - 1}/{n}"


@pytest.mark.parametrize("header", ["bytes={n}-", "bytes={n}-{m}", "bytes=-0"])
def test_range_not_satisfiable(s3, obj, header):
    bucket, data = obj
    n = len(data)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="obj", Range=header.format(n=n, m=n + 10))
    assert error_code(e.value) == "InvalidRange"
    assert status_of(e.value) == 416
    assert e.value.response["Error"]["ActualObjectSize"] == str(n)


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=5-2", "items=0-5", "bytes=0-1,3-4", "bytes", "0-5"])
def test_invalid_range_syntax_ignored(s3, obj, header):
    bucket, data = obj
    got = s3.get_object(Bucket=bucket, Key="obj", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "ContentRange" not in got
    assert got["Body"].read() == data


def test_range_on_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-0")
    assert error_code(e.value) == "InvalidRange"
    assert status_of(e.value) == 416


def test_range_across_multipart_parts(s3, bucket):
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(100)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    done = [{"PartNumber": i, "ETag": s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=i,
                                                     Body=p)["ETag"]} for i, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": done})
    whole = b"".join(parts)
    for first, last in [(5 * MiB - 10, 5 * MiB + 9), (MiB, 10 * MiB + 50), (10 * MiB - 1, 10 * MiB + 99)]:
        got = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == whole[first:last + 1]


def test_head_range(s3, obj):
    bucket, data = obj
    head = s3.head_object(Bucket=bucket, Key="obj", Range="bytes=2-5")
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == 4
    assert head["ContentRange"] == f"bytes 2-5/{len(data)}"


# -- response-* overrides ---------------------------------------------------------------------------------------


def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ContentType="text/plain", CacheControl="no-cache")
    got = s3.get_object(
        Bucket=bucket, Key="k",
        ResponseContentType="application/json",
        ResponseContentDisposition='attachment; filename="data.json"',
        ResponseContentEncoding="identity",
        ResponseContentLanguage="fr",
        ResponseCacheControl="max-age=60",
        ResponseExpires=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),
    )
    assert got["Body"].read() == b"data"
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == 'attachment; filename="data.json"'
    assert got["ContentEncoding"] == "identity"
    assert got["ContentLanguage"] == "fr"
    assert got["CacheControl"] == "max-age=60"
    assert got["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Tue, 06 May 2031 07:08:09 GMT"
    # The stored object is unchanged.
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "no-cache"
    assert "ContentDisposition" not in head


def test_response_overrides_on_head(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    head = s3.head_object(Bucket=bucket, Key="k", ResponseContentType="image/png")
    assert head["ContentType"] == "image/png"


# -- partNumber -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multipart_object(s3, tmp_path_factory):
    import uuid

    bucket = f"test-pn-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 3), os.urandom(777)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    done = [{"PartNumber": i, "ETag": s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=i,
                                                     Body=p)["ETag"]} for i, p in enumerate(parts, 1)]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": done})
    return bucket, parts


@pytest.mark.parametrize("number", [1, 2, 3])
def test_get_part_number(s3, multipart_object, number):
    bucket, parts = multipart_object
    total = sum(len(p) for p in parts)
    start = sum(len(p) for p in parts[: number - 1])
    got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["PartsCount"] == 3
    assert got["ContentLength"] == len(parts[number - 1])
    assert got["ContentRange"] == f"bytes {start}-{start + len(parts[number - 1]) - 1}/{total}"
    assert got["Body"].read() == parts[number - 1]
    head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=number)
    assert head["PartsCount"] == 3
    assert head["ContentLength"] == len(parts[number - 1])


def test_head_reports_no_parts_count_without_part_number(s3, multipart_object):
    bucket, _ = multipart_object
    assert "PartsCount" not in s3.head_object(Bucket=bucket, Key="mp")


def test_get_part_number_out_of_range(s3, multipart_object):
    bucket, _ = multipart_object
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=4)
    # AWS answers a part number beyond the object's parts with 400 InvalidPart (ceph/s3-tests agree).
    assert error_code(e.value) == "InvalidPart"
    assert status_of(e.value) == 400


def test_get_part_number_invalid(s3, multipart_object):
    bucket, _ = multipart_object
    status, _, body = raw_request(s3, "GET", bucket, "mp", params={"PartNumber": 0})
    assert status == 400
    assert b"<Code>InvalidArgument</Code>" in body


def test_part_number_on_simple_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="simple", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="simple", PartNumber=1)
    assert got["Body"].read() == b"0123456789"
    assert "PartsCount" not in got
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="simple", PartNumber=2)
    assert error_code(e.value) == "InvalidPart"
    assert status_of(e.value) == 400


def test_part_number_and_range_together(s3, multipart_object):
    bucket, _ = multipart_object
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=1, Range="bytes=0-1")
    assert error_code(e.value) == "InvalidRequest"
    assert status_of(e.value) == 400
