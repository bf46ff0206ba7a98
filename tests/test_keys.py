"""Object keys that are easy to get wrong: every one must round-trip exactly through PUT, GET, HEAD, listing,
copy and delete."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, status_of

AWKWARD_KEYS = [
    "with space",
    "  leading and trailing spaces  ",
    "plus+sign",
    "percent%20encoded-looking",
    "percent%",
    "%2F",
    "caf\u00e9",
    "\u65e5\u672c\u8a9e/\u30d5\u30a1\u30a4\u30eb",
    "emoji \U0001f600\U0001f680",
    "combining e\u0301 vs \u00e9",
    "..",
    ".",
    "../escape",
    "a/../b",
    "a/./b",
    "/leading-slash",
    "//double-leading",
    "inner//double",
    "trailing/",
    "back\\slash",
    "tilde~and*star",
    "quote\"and'apostrophe",
    "angle<brackets>&amp;",
    "hash#and?question=1&x=y",
    "semi;colon,comma:colon@at!bang$dollar",
    "brackets[]{}()|^`",
    "tab\tand\nnewline",
    "x" * 200,
]


@pytest.mark.parametrize("key", AWKWARD_KEYS, ids=range(len(AWKWARD_KEYS)))
def test_key_round_trip(s3, bucket, key):
    body = f"body of {key!r}".encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"k": "v"})
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == [key]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket, Prefix=key)["Contents"]] == [key]
    s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key=key + ".copy")["Body"].read() == body
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}, {"Key": key + ".copy"}]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == sorted([key, key + ".copy"])
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_similar_keys_stay_distinct(s3, bucket):
    keys = ["a b", "a+b", "a%20b", "a%2Bb", "a/b", "a%2Fb", "a//b", "/a/b", "a/b/", "caf\u00e9", "cafe\u0301"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    for k in keys:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode()
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == sorted(
        keys, key=lambda k: k.encode()
    )


def test_multipart_with_awkward_key(s3, bucket):
    key = "mp dir/\u00e9+%/..//x"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"part")["ETag"]
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [key]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"part"


@pytest.mark.parametrize("unit, count", [("a", 1024), ("\u00e9", 512), ("\u65e5", 341), ("\U0001f600", 256)])
def test_longest_key(s3, bucket, unit, count):
    key = unit * count
    key += "z" * (1024 - len(key.encode()))
    assert len(key.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=key, Body=b"long")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"long"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.parametrize("key", ["a" * 1025, "\u00e9" * 513, "a" * 1023 + "\u00e9"])
def test_key_too_long(s3, bucket, key):
    assert len(key.encode()) > 1024
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"x"),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key=key),
        lambda: s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": "src"}),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == "KeyTooLongError"
        assert status_of(e.value) == 400
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
