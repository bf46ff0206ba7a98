"""Object tags (on PUT, multipart, copy; Put/Get/DeleteObjectTagging), bucket tags, S3's limits, and who may see
or change them."""

from __future__ import annotations

import os
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, status_of

BIG = 100 * 1024


def tagset(**tags: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tags_of(s3, bucket, key, **kwargs) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key, **kwargs)["TagSet"]}


def tagging_count(response) -> str | None:
    return response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-tagging-count")


def raises(code: str, status: int, call, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    assert (status_of(exc.value), error_code(exc.value)) == (status, code)
    return exc.value


# -- object tags ---------------------------------------------------------------------------------------------


def test_untagged_object_has_an_empty_tag_set(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    response = s3.get_object_tagging(Bucket=bucket, Key="k")
    assert response["TagSet"] == []
    assert "VersionId" not in response
    assert tagging_count(s3.head_object(Bucket=bucket, Key="k")) is None
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key="k")


@pytest.mark.parametrize("size", [3, BIG])
def test_tags_on_put(s3, bucket, size):
    s3.put_object(Bucket=bucket, Key="k", Body=os.urandom(size), Tagging="project=shoal&stage=raw&empty=")
    assert tags_of(s3, bucket, "k") == {"project": "shoal", "stage": "raw", "empty": ""}
    assert s3.get_object(Bucket=bucket, Key="k")["TagCount"] == 3
    assert tagging_count(s3.head_object(Bucket=bucket, Key="k")) == "3"


def test_tag_header_is_url_decoded(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a%20b=c%2Fd&%C3%A9t%C3%A9=%2B%3D%40:_.-")
    assert tags_of(s3, bucket, "k") == {"a b": "c/d", "\u00e9t\u00e9": "+=@:_.-"}


def test_put_get_delete_object_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="old=1")
    put = s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tagset(a="1", b="two", c="")})
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    # The new set replaces the old one whole.
    assert tags_of(s3, bucket, "k") == {"a": "1", "b": "two", "c": ""}
    assert tagging_count(s3.head_object(Bucket=bucket, Key="k")) == "3"
    # Tagging changes neither the data nor the object's other metadata.
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ContentLength"] == 1 and head["ETag"] == '"9dd4e461268c8034f5c8564e155c67a6"'
    deleted = s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert tags_of(s3, bucket, "k") == {}
    assert tagging_count(s3.head_object(Bucket=bucket, Key="k")) is None
    # Deleting tags that are not there is fine; an empty set clears them too.
    s3.delete_object_tagging(Bucket=bucket, Key="k")
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tagset(x="y")})
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": []})
    assert tags_of(s3, bucket, "k") == {}


def test_ten_tags_of_maximum_length(s3, bucket):
    tags = {f"{i}".ljust(128, "k"): "v" * 256 for i in range(10)}
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tagset(**tags)})
    assert tags_of(s3, bucket, "k") == tags


def test_overwrite_drops_the_old_tags(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")
    assert tags_of(s3, bucket, "k") == {}
    s3.put_object(Bucket=bucket, Key="k", Body=b"z", Tagging="b=2")
    assert tags_of(s3, bucket, "k") == {"b": "2"}


def test_tagging_a_missing_object(s3, bucket):
    raises("NoSuchKey", 404, s3.get_object_tagging, Bucket=bucket, Key="missing")
    raises("NoSuchKey", 404, s3.put_object_tagging, Bucket=bucket, Key="missing", Tagging={"TagSet": tagset(a="1")})
    raises("NoSuchKey", 404, s3.delete_object_tagging, Bucket=bucket, Key="missing")
    name = f"test-missing-{uuid.uuid4().hex[:12]}"
    raises("NoSuchBucket", 404, s3.get_object_tagging, Bucket=name, Key="k")


def test_tags_on_multipart_upload(s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="kind=multipart&n=2")["UploadId"]
    part1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=os.urandom(5 * 1024 * 1024))
    part2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=2, Body=b"end")
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": part1["ETag"]}, {"PartNumber": 2, "ETag": part2["ETag"]}]})
    assert tags_of(s3, bucket, "mp") == {"kind": "multipart", "n": "2"}
    assert tagging_count(s3.head_object(Bucket=bucket, Key="mp")) == "2"


def test_invalid_tags_on_create_multipart_upload(s3, bucket):
    raises("InvalidTag", 400, s3.create_multipart_upload, Bucket=bucket, Key="mp", Tagging="aws:x=1")
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_copy_tagging_directive(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", Tagging="origin=src&n=1")
    s3.copy_object(Bucket=bucket, Key="copied", CopySource={"Bucket": bucket, "Key": "src"})
    assert tags_of(s3, bucket, "copied") == {"origin": "src", "n": "1"}
    # COPY is the default, and a Tagging header without REPLACE is ignored.
    s3.copy_object(Bucket=bucket, Key="copied2", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="COPY", Tagging="ignored=yes")
    assert tags_of(s3, bucket, "copied2") == {"origin": "src", "n": "1"}
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE", Tagging="new=tag")
    assert tags_of(s3, bucket, "replaced") == {"new": "tag"}
    s3.copy_object(Bucket=bucket, Key="none", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE")
    assert tags_of(s3, bucket, "none") == {}
    # The metadata directive does not decide the tags.
    s3.copy_object(Bucket=bucket, Key="meta", CopySource={"Bucket": bucket, "Key": "src"},
                   MetadataDirective="REPLACE", Metadata={"m": "1"})
    assert tags_of(s3, bucket, "meta") == {"origin": "src", "n": "1"}
    # Replacing only the tags of an object in place is a valid copy onto itself.
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   TaggingDirective="REPLACE", Tagging="self=1", MetadataDirective="REPLACE")
    assert tags_of(s3, bucket, "src") == {"self": "1"}
    assert tags_of(s3, bucket, "copied") == {"origin": "src", "n": "1"}  # the copies are independent


def test_copy_invalid_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    raises("InvalidArgument", 400, s3.copy_object, Bucket=bucket, Key="dst",
           CopySource={"Bucket": bucket, "Key": "src"}, TaggingDirective="MERGE")
    raises("InvalidTag", 400, s3.copy_object, Bucket=bucket, Key="dst",
           CopySource={"Bucket": bucket, "Key": "src"}, TaggingDirective="REPLACE", Tagging="aws:a=1")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["src"]


# -- limits --------------------------------------------------------------------------------------------------


INVALID_TAG_SETS = {
    "eleven tags": tagset(**{f"k{i}": "v" for i in range(11)}),
    "key too long": tagset(**{"k" * 129: "v"}),
    "value too long": tagset(k="v" * 257),
    "key with a star": tagset(**{"a*b": "v"}),
    "value with a comma": tagset(k="a,b"),
    "value with parentheses": tagset(k="(v)"),
    "value with an ampersand": tagset(k="a&b"),
    "duplicate keys": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}],
    "aws prefix": tagset(**{"aws:createdBy": "me"}),
}


@pytest.mark.parametrize("tags", INVALID_TAG_SETS.values(), ids=INVALID_TAG_SETS.keys())
def test_invalid_object_tag_sets(s3, bucket, tags):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=me")
    raises("InvalidTag", 400, s3.put_object_tagging, Bucket=bucket, Key="k", Tagging={"TagSet": tags})
    assert tags_of(s3, bucket, "k") == {"keep": "me"}


INVALID_TAG_HEADERS = {
    # A header that does not decode to distinct tags of allowed characters is an invalid argument...
    "duplicate keys": ("k=1&k=2", "InvalidArgument"),
    "comma in a value": ("k=a%2Cb", "InvalidArgument"),
    "star in a key": ("a*b=1", "InvalidArgument"),
    "not UTF-8": ("k=%FF", "InvalidArgument"),
    # ...while well-formed tags beyond S3's limits are invalid tags.
    "eleven tags": ("&".join(f"k{i}=v" for i in range(11)), "InvalidTag"),
    "key too long": ("k" * 129 + "=v", "InvalidTag"),
    "value too long": ("k=" + "v" * 257, "InvalidTag"),
    "aws prefix": ("aws%3Aowner=me", "InvalidTag"),
}


@pytest.mark.parametrize(("header", "code"), INVALID_TAG_HEADERS.values(), ids=INVALID_TAG_HEADERS.keys())
def test_invalid_tag_headers_on_put(s3, bucket, header, code):
    raises(code, 400, s3.put_object, Bucket=bucket, Key="k", Body=b"x", Tagging=header)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    raises(code, 400, s3.create_multipart_upload, Bucket=bucket, Key="k", Tagging=header)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_limits_count_characters_not_bytes(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    tags = {"\u00e9" * 128: "\u0436" * 256}
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tagset(**tags)})
    assert tags_of(s3, bucket, "k") == tags


# -- who may see or change tags ------------------------------------------------------------------------------


def test_other_users_cannot_read_or_write_tags_of_a_private_object(s3, alt_s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="secret=1")
    raises("AccessDenied", 403, alt_s3.get_object_tagging, Bucket=bucket, Key="k")
    raises("AccessDenied", 403, alt_s3.put_object_tagging, Bucket=bucket, Key="k",
           Tagging={"TagSet": tagset(evil="1")})
    raises("AccessDenied", 403, alt_s3.delete_object_tagging, Bucket=bucket, Key="k")
    raises("AccessDenied", 403, alt_s3.get_bucket_tagging, Bucket=bucket)
    raises("AccessDenied", 403, alt_s3.put_bucket_tagging, Bucket=bucket, Tagging={"TagSet": tagset(evil="1")})
    raises("AccessDenied", 403, alt_s3.delete_bucket_tagging, Bucket=bucket)
    assert tags_of(s3, bucket, "k") == {"secret": "1"}


def test_bucket_policy_can_grant_tag_reading(s3, alt_s3, bucket):
    import json

    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="shared=1")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObjectTagging",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert tags_of(alt_s3, bucket, "k") == {"shared": "1"}
    raises("AccessDenied", 403, alt_s3.put_object_tagging, Bucket=bucket, Key="k",
           Tagging={"TagSet": tagset(evil="1")})
    raises("AccessDenied", 403, alt_s3.get_object, Bucket=bucket, Key="k")


# -- bucket tags ---------------------------------------------------------------------------------------------


def test_bucket_tagging_put_get_delete(s3, bucket):
    raises("NoSuchTagSet", 404, s3.get_bucket_tagging, Bucket=bucket)
    put = s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tagset(team="storage", cost="")})
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 204
    got = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    assert sorted(got, key=lambda t: t["Key"]) == tagset(cost="", team="storage")
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tagset(only="this")})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tagset(only="this")
    deleted = s3.delete_bucket_tagging(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    raises("NoSuchTagSet", 404, s3.get_bucket_tagging, Bucket=bucket)
    s3.delete_bucket_tagging(Bucket=bucket)  # nothing to delete: still fine


def test_bucket_tags_do_not_tag_objects(s3, bucket):
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tagset(team="storage")})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert tags_of(s3, bucket, "k") == {}


def test_fifty_bucket_tags(s3, bucket):
    tags = {f"k{i:02d}": f"v{i}" for i in range(50)}
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tagset(**tags)})
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]} == tags


INVALID_BUCKET_TAG_SETS = {
    "fifty-one tags": tagset(**{f"k{i}": "v" for i in range(51)}),
    "key too long": tagset(**{"k" * 129: "v"}),
    "value too long": tagset(k="v" * 257),
    "duplicate keys": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}],
    "aws prefix": tagset(**{"aws:cloudformation:stack": "x"}),
    "value with parentheses": tagset(name="support (csv)"),
}


@pytest.mark.parametrize("tags", INVALID_BUCKET_TAG_SETS.values(), ids=INVALID_BUCKET_TAG_SETS.keys())
def test_invalid_bucket_tag_sets(s3, bucket, tags):
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tagset(keep="me")})
    raises("InvalidTag", 400, s3.put_bucket_tagging, Bucket=bucket, Tagging={"TagSet": tags})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tagset(keep="me")


def test_bucket_tagging_of_a_missing_bucket(s3):
    name = f"test-missing-{uuid.uuid4().hex[:12]}"
    raises("NoSuchBucket", 404, s3.get_bucket_tagging, Bucket=name)
    raises("NoSuchBucket", 404, s3.put_bucket_tagging, Bucket=name, Tagging={"TagSet": tagset(a="1")})
