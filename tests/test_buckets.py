"""Bucket operations through boto3: create (naming, location, re-create), list, head, delete, location, and
what another user may not do to someone else's bucket."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, status_of


def unique(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def test_create_list_and_delete(s3):
    name = unique()
    before = datetime.now().astimezone()
    resp = s3.create_bucket(Bucket=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["Location"] == f"/{name}"
    listed = {b["Name"]: b for b in s3.list_buckets()["Buckets"]}
    assert name in listed
    assert abs((listed[name]["CreationDate"] - before).total_seconds()) < 60
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert name not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_list_buckets_sorted_with_owner(s3):
    names = [unique("zz-sort") for _ in range(3)]
    for n in names:
        s3.create_bucket(Bucket=n)
    resp = s3.list_buckets()
    listed = [b["Name"] for b in resp["Buckets"]]
    assert listed == sorted(listed)
    assert set(names) <= set(listed)
    assert resp["Owner"]["ID"]
    assert resp["Owner"]["DisplayName"]


def test_list_buckets_prefix_and_pages(s3):
    tag = uuid.uuid4().hex[:10]
    names = sorted(f"lb-{tag}-{i}" for i in range(5))
    for n in names:
        s3.create_bucket(Bucket=n)
    s3.create_bucket(Bucket=f"lb-{tag}x-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    resp = s3.list_buckets(Prefix=f"lb-{tag}-")
    assert [b["Name"] for b in resp["Buckets"]] == names
    assert resp["Prefix"] == f"lb-{tag}-"
    assert "ContinuationToken" not in resp
    got, token = [], None
    for _ in range(10):
        args = {"Prefix": f"lb-{tag}", "MaxBuckets": 2}
        if token:
            args["ContinuationToken"] = token
        resp = s3.list_buckets(**args)
        assert len(resp["Buckets"]) <= 2
        got += [b["Name"] for b in resp["Buckets"]]
        token = resp.get("ContinuationToken")
        if not token:
            break
    assert got == [*names, f"lb-{tag}x-eu"]
    paginated = s3.get_paginator("list_buckets").paginate(Prefix=f"lb-{tag}", PaginationConfig={"PageSize": 4})
    assert [b["Name"] for page in paginated for b in page["Buckets"]] == got
    resp = s3.list_buckets(Prefix=f"lb-{tag}", BucketRegion="eu-west-1")
    assert [b["Name"] for b in resp["Buckets"]] == [f"lb-{tag}x-eu"]


def test_list_buckets_invalid_max(s3):
    with pytest.raises(ClientError) as e:
        s3.list_buckets(MaxBuckets=10001)  # boto3 itself refuses values below 1
    assert error_code(e.value) == "InvalidArgument"
    assert status_of(e.value) == 400


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "UpperCase",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        ".leading-dot",
        "trailing-dot.",
        "double..dot",
        "dash-.dot",
        "dot.-dash",
        "192.168.5.4",  # formatted as an IP address
        "xn--punycode",
        "sthree-reserved",
        "name-s3alias",
        "name--ol-s3",
    ],
)
def test_invalid_bucket_names(s3, name):
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert error_code(e.value) == "InvalidBucketName"
    assert status_of(e.value) == 400


@pytest.mark.parametrize("name", ["a1c", "9" * 63, "with.dots.in.it", "1starts-with-digit", "has-dashes--twice",
                                  "xn-almost-punycode", "s3alias-not-at-end"])
def test_valid_bucket_names(s3, name):
    # Exact names (the shortest and longest allowed among them): the session's server starts empty.
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    assert name in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    s3.delete_bucket(Bucket=name)


def test_create_again_by_owner_us_east_1_is_ok(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    resp = s3.create_bucket(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    # ... and it did not wipe the bucket
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_create_again_by_owner_other_region_conflicts(s3):
    name = unique()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error_code(e.value) == "BucketAlreadyOwnedByYou"
    assert status_of(e.value) == 409


def test_create_existing_by_other_user(s3, alt_s3, bucket):
    with pytest.raises(ClientError) as e:
        alt_s3.create_bucket(Bucket=bucket)
    assert error_code(e.value) == "BucketAlreadyExists"
    assert status_of(e.value) == 409


def test_location_constraint(s3):
    name = unique()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"
    listed = {b["Name"]: b for b in s3.list_buckets()["Buckets"]}
    assert listed[name]["BucketRegion"] == "eu-west-1"


def test_location_of_default_region_is_empty(s3, bucket):
    # us-east-1 is reported as an empty LocationConstraint (boto3 turns it into None).
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None
    head = s3.head_bucket(Bucket=bucket)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"


def test_invalid_location_constraint(s3):
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=unique(), CreateBucketConfiguration={"LocationConstraint": "moon-base-1"})
    assert error_code(e.value) == "InvalidLocationConstraint"
    assert status_of(e.value) == 400


def test_head_bucket(s3, bucket):
    assert s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=unique("missing"))
    assert status_of(e.value) == 404
    assert error_code(e.value) == "404"


def test_delete_non_empty_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"1")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert error_code(e.value) == "BucketNotEmpty"
    assert status_of(e.value) == 409
    s3.delete_object(Bucket=bucket, Key="a/b")
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=bucket)
    assert status_of(e.value) == 404


def test_delete_bucket_with_pending_upload(s3, bucket):
    # An in-progress multipart upload does not keep a bucket from being deleted in S3: it goes with it.
    s3.create_multipart_upload(Bucket=bucket, Key="pending")
    s3.delete_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=bucket)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_delete_missing_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=unique("missing"))
    assert error_code(e.value) == "NoSuchBucket"
    assert status_of(e.value) == 404


def test_operations_on_missing_bucket(s3):
    name = unique("missing")
    for call in (
        lambda: s3.list_objects(Bucket=name),
        lambda: s3.list_objects_v2(Bucket=name),
        lambda: s3.put_object(Bucket=name, Key="k", Body=b"x"),
        lambda: s3.get_bucket_location(Bucket=name),
        lambda: s3.create_multipart_upload(Bucket=name, Key="k"),
        lambda: s3.delete_object(Bucket=name, Key="k"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == "NoSuchBucket"
        assert status_of(e.value) == 404


def test_recreate_after_delete(s3):
    name = unique()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0


# -- another user -----------------------------------------------------------------------------------------------


def _denied(call) -> None:
    with pytest.raises(ClientError) as e:
        call()
    assert status_of(e.value) == 403
    assert error_code(e.value) in ("AccessDenied", "403")  # HEAD has no body: boto3 reports the status


def test_alt_user_delete_objects_is_refused_per_key(s3, alt_s3, bucket):
    # S3 authorizes each key of a multi-object delete: the request succeeds, every key reports AccessDenied.
    s3.put_object(Bucket=bucket, Key="secret", Body=b"root data")
    result = alt_s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "secret"}]})
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("secret", "AccessDenied")]
    assert not result.get("Deleted")
    assert s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"root data"


def test_alt_user_is_denied_on_root_bucket(s3, alt_s3, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"root data")
    for call in (
        lambda: alt_s3.list_objects(Bucket=bucket),
        lambda: alt_s3.list_objects_v2(Bucket=bucket),
        lambda: alt_s3.get_object(Bucket=bucket, Key="secret"),
        lambda: alt_s3.get_object(Bucket=bucket, Key="not-there"),  # no existence leak
        lambda: alt_s3.put_object(Bucket=bucket, Key="secret", Body=b"overwrite"),
        lambda: alt_s3.delete_object(Bucket=bucket, Key="secret"),
        lambda: alt_s3.delete_bucket(Bucket=bucket),
        lambda: alt_s3.get_bucket_location(Bucket=bucket),
        lambda: alt_s3.create_multipart_upload(Bucket=bucket, Key="mp"),
        lambda: alt_s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "secret"}),
    ):
        _denied(call)
    for call in (
        lambda: alt_s3.head_bucket(Bucket=bucket),
        lambda: alt_s3.head_object(Bucket=bucket, Key="secret"),
    ):
        _denied(call)
    # Nothing changed.
    assert s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == b"root data"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["secret"]


def test_alt_user_cannot_copy_out_of_root_bucket(s3, alt_s3, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"root data")
    mine = unique("alt")
    alt_s3.create_bucket(Bucket=mine)
    _denied(lambda: alt_s3.copy_object(Bucket=mine, Key="stolen", CopySource={"Bucket": bucket, "Key": "secret"}))
    with pytest.raises(ClientError) as e:
        alt_s3.head_object(Bucket=mine, Key="stolen")
    assert status_of(e.value) == 404


def test_alt_user_sees_only_own_buckets(s3, alt_s3, bucket):
    mine = unique("alt")
    alt_s3.create_bucket(Bucket=mine)
    names = {b["Name"] for b in alt_s3.list_buckets()["Buckets"]}
    assert mine in names
    assert bucket not in names
    alt_s3.put_object(Bucket=mine, Key="k", Body=b"alt")
    assert alt_s3.get_object(Bucket=mine, Key="k")["Body"].read() == b"alt"
    alt_s3.delete_object(Bucket=mine, Key="k")
    alt_s3.delete_bucket(Bucket=mine)


def test_anonymous_requests_are_denied(server, s3, bucket):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    anon = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))
    for call in (
        lambda: anon.list_buckets(),
        lambda: anon.list_objects_v2(Bucket=bucket),
        lambda: anon.get_object(Bucket=bucket, Key="k"),
        lambda: anon.put_object(Bucket=bucket, Key="anon", Body=b"x"),
        lambda: anon.delete_object(Bucket=bucket, Key="k"),
        lambda: anon.create_bucket(Bucket=unique("anon")),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == "AccessDenied"
        assert status_of(e.value) == 403
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"private"


def test_bucket_changes_reach_every_worker_at_once(make_server):
    """Bucket records are cached per worker process; a change made through one worker is seen by the next
    request to any worker (new connections land on either), with no delay."""
    from conftest import client

    srv = make_server(args=["--workers", "2"])
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="cached-bucket")

    def everywhere(check) -> None:
        for _ in range(12):
            check(client(srv.endpoint))

    everywhere(lambda c: c.put_object(Bucket="cached-bucket", Key="k", Body=b"x"))  # warms every worker's cache
    everywhere(lambda c: assert_none(c.get_bucket_versioning(Bucket="cached-bucket").get("Status")))
    s3.put_bucket_versioning(Bucket="cached-bucket", VersioningConfiguration={"Status": "Enabled"})
    everywhere(lambda c: assert_equal(c.get_bucket_versioning(Bucket="cached-bucket")["Status"], "Enabled"))
    everywhere(lambda c: assert_equal(len(c.put_object(Bucket="cached-bucket", Key="v", Body=b"x")["VersionId"]),
                                      32))
    for version in s3.list_object_versions(Bucket="cached-bucket")["Versions"]:
        s3.delete_object(Bucket="cached-bucket", Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket="cached-bucket")
    everywhere(lambda c: assert_equal(head_status(c, "cached-bucket"), 404))
    s3.create_bucket(Bucket="cached-bucket")
    everywhere(lambda c: assert_none(c.get_bucket_versioning(Bucket="cached-bucket").get("Status")))


def head_status(s3, bucket: str) -> int:
    try:
        return s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"]
    except ClientError as exc:
        return status_of(exc)


def assert_none(value) -> None:
    assert value is None


def assert_equal(value, expected) -> None:
    assert value == expected, (value, expected)
