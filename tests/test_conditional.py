"""Conditional GET/HEAD (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since) with S3's precedence
rules, and 304 Not Modified responses without a body."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, status_of
from s3util import raw_request

BODY = b"conditional body"


@pytest.fixture
def obj(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=BODY)["ETag"]
    mtime = s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    return bucket, etag, mtime


def get_status(s3, bucket, method="get", **conditions) -> int:
    call = s3.get_object if method == "get" else s3.head_object
    try:
        resp = call(Bucket=bucket, Key="k", **conditions)
    except ClientError as exc:
        if status_of(exc) == 412 and method == "get":
            assert error_code(exc) == "PreconditionFailed"
        return status_of(exc)
    if method == "get":
        assert resp["Body"].read() == BODY
    return resp["ResponseMetadata"]["HTTPStatusCode"]


@pytest.mark.parametrize("method", ["get", "head"])
def test_if_match(s3, obj, method):
    bucket, etag, _ = obj
    assert get_status(s3, bucket, method, IfMatch=etag) == 200
    assert get_status(s3, bucket, method, IfMatch=etag.strip('"')) == 200
    assert get_status(s3, bucket, method, IfMatch="*") == 200
    assert get_status(s3, bucket, method, IfMatch=f'"00000000000000000000000000000000", {etag}') == 200
    assert get_status(s3, bucket, method, IfMatch='"00000000000000000000000000000000"') == 412


@pytest.mark.parametrize("method", ["get", "head"])
def test_if_none_match(s3, obj, method):
    bucket, etag, _ = obj
    assert get_status(s3, bucket, method, IfNoneMatch=etag) == 304
    assert get_status(s3, bucket, method, IfNoneMatch="*") == 304
    assert get_status(s3, bucket, method, IfNoneMatch='"00000000000000000000000000000000"') == 200


@pytest.mark.parametrize("method", ["get", "head"])
def test_if_modified_since(s3, obj, method):
    bucket, _, mtime = obj
    assert get_status(s3, bucket, method, IfModifiedSince=mtime - timedelta(seconds=1)) == 200
    assert get_status(s3, bucket, method, IfModifiedSince=mtime) == 304
    assert get_status(s3, bucket, method, IfModifiedSince=mtime + timedelta(days=1)) == 304


@pytest.mark.parametrize("method", ["get", "head"])
def test_if_unmodified_since(s3, obj, method):
    bucket, _, mtime = obj
    assert get_status(s3, bucket, method, IfUnmodifiedSince=mtime - timedelta(seconds=1)) == 412
    assert get_status(s3, bucket, method, IfUnmodifiedSince=mtime) == 200
    assert get_status(s3, bucket, method, IfUnmodifiedSince=mtime + timedelta(days=1)) == 200


def test_if_match_true_overrides_if_unmodified_since_false(s3, obj):
    bucket, etag, mtime = obj
    assert get_status(s3, bucket, IfMatch=etag, IfUnmodifiedSince=mtime - timedelta(days=1)) == 200


def test_if_match_false_with_if_unmodified_since_true(s3, obj):
    bucket, _, mtime = obj
    assert get_status(s3, bucket, IfMatch='"ffffffffffffffffffffffffffffffff"',
                      IfUnmodifiedSince=mtime + timedelta(days=1)) == 412


def test_if_none_match_false_overrides_if_modified_since_true(s3, obj):
    bucket, etag, mtime = obj
    assert get_status(s3, bucket, IfNoneMatch=etag, IfModifiedSince=mtime - timedelta(days=1)) == 304


def test_if_match_failure_wins_over_not_modified(s3, obj):
    bucket, etag, mtime = obj
    assert get_status(s3, bucket, IfMatch='"ffffffffffffffffffffffffffffffff"', IfNoneMatch=etag) == 412
    assert get_status(s3, bucket, IfUnmodifiedSince=mtime - timedelta(days=1),
                      IfModifiedSince=mtime + timedelta(days=1)) == 412


def test_all_four_true(s3, obj):
    bucket, etag, mtime = obj
    assert get_status(s3, bucket, IfMatch=etag, IfNoneMatch='"ffffffffffffffffffffffffffffffff"',
                      IfModifiedSince=mtime - timedelta(days=1), IfUnmodifiedSince=mtime + timedelta(days=1)) == 200


def test_not_modified_has_no_body_and_keeps_validators(s3, obj):
    bucket, etag, mtime = obj
    status, headers, body = raw_request(s3, "GET", bucket, "k", headers={"If-None-Match": etag})
    assert status == 304
    assert body == b""
    assert headers["etag"] == etag
    assert headers["last-modified"] == mtime.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert "content-type" not in headers or headers.get("content-length", "0") == "0"


def test_precondition_failed_document(s3, obj):
    bucket, _, _ = obj
    status, _, body = raw_request(s3, "GET", bucket, "k", headers={"If-Match": '"nope"'})
    assert status == 412
    assert b"<Code>PreconditionFailed</Code>" in body
    assert b"<Condition>If-Match</Condition>" in body


def test_invalid_date_is_ignored(s3, obj):
    bucket, _, _ = obj
    status, _, body = raw_request(s3, "GET", bucket, "k", headers={"If-Modified-Since": "not a date"})
    assert status == 200
    assert body == BODY
    status, _, body = raw_request(s3, "GET", bucket, "k", headers={"If-Unmodified-Since": "yesterday-ish"})
    assert status == 200


def test_conditions_with_range(s3, obj):
    bucket, etag, _ = obj
    got = s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-3", IfMatch=etag)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == BODY[:4]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", Range="bytes=0-3", IfNoneMatch=etag)
    assert status_of(e.value) == 304


def test_conditions_on_missing_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="missing", IfMatch='"abc"')
    assert error_code(e.value) == "NoSuchKey"
    assert status_of(e.value) == 404
