"""Presigned URLs that must be refused, and what the refusal says: expiry, the seven-day limit, the method and
the headers a URL was signed for, time in the future, unknown keys, missing parameters."""

from __future__ import annotations

import datetime
import re
import time
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ALT, ROOT, client
from rawhttp import error_field, presign_v4

SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your "
                      "key and signing method.")


@pytest.fixture
def obj(s3, bucket) -> str:
    s3.put_object(Bucket=bucket, Key="k", Body=b"payload")
    return f"/{bucket}/k"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def presign_with_headers(method: str, url: str, headers: dict[str, str], expires: int = 60) -> str:
    request = AWSRequest(method=method, url=url, headers=headers)
    S3SigV4QueryAuth(Credentials(*ROOT), "s3", "us-east-1", expires=expires).add_auth(request)
    return request.prepare().url


def refused(response, status: int, code: str, message: str | None = None):
    assert (response.status, response.code) == (status, code), response
    if message is not None:
        assert error_field(response.body, "Message") == message, response
    return response


def test_within_expiry_works(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 300, when=now() - datetime.timedelta(seconds=120))
    got = raw.send("GET", target(url))
    assert (got.status, got.body) == (200, b"payload")


def test_expired(raw, obj):
    signed_at = now() - datetime.timedelta(seconds=120)
    url = presign_v4("GET", raw.endpoint + obj, 60, when=signed_at)
    got = refused(raw.send("GET", target(url)), 403, "AccessDenied", "Request has expired")
    expires = error_field(got.body, "Expires")
    assert expires == (signed_at + datetime.timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert error_field(got.body, "ServerTime")


def test_expiry_limit_is_seven_days(raw, obj):
    ok = presign_v4("GET", raw.endpoint + obj, 604800)
    assert raw.send("GET", target(ok)).status == 200
    too_long = presign_v4("GET", raw.endpoint + obj, 604801)
    refused(raw.send("GET", target(too_long)), 403, "AccessDenied",
            "X-Amz-Expires must be less than a week (in seconds) that is; 604800")


def test_negative_expiry(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 60)
    tampered = re.sub(r"X-Amz-Expires=\d+", "X-Amz-Expires=-1", url)
    refused(raw.send("GET", target(tampered)), 403, "AccessDenied", "X-Amz-Expires must be non-negative")


def test_signed_in_the_future(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 60, when=now() + datetime.timedelta(hours=1))
    refused(raw.send("GET", target(url)), 403, "AccessDenied", "Request is not valid yet")


def test_method_is_bound(raw, obj, s3, bucket):
    get_url = presign_v4("GET", raw.endpoint + obj, 60)
    refused(raw.send("PUT", target(get_url), b"overwritten"), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    refused(raw.send("DELETE", target(get_url)), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    head = raw.send("HEAD", target(get_url))
    assert head.status == 403
    put_url = presign_v4("PUT", raw.endpoint + obj, 60)
    refused(raw.send("GET", target(put_url)), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"payload"


def test_path_and_query_are_bound(raw, obj, s3, bucket):
    url = presign_v4("GET", raw.endpoint + obj, 60)
    refused(raw.send("GET", target(url) + "&acl="), 403, "SignatureDoesNotMatch")
    refused(raw.send("GET", target(url).replace("/k?", "/other?")), 403, "SignatureDoesNotMatch")


def test_signed_headers_must_match(raw, obj, s3, bucket):
    url = presign_with_headers("PUT", raw.endpoint + f"/{bucket}/h", {"x-amz-meta-color": "blue"})
    assert "x-amz-meta-color" in url
    refused(raw.send("PUT", target(url), b"no header"), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    refused(raw.send("PUT", target(url), b"other value", {"x-amz-meta-color": "red"}), 403,
            "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    ok = raw.send("PUT", target(url), b"right header", {"x-amz-meta-color": "blue"})
    assert ok.status == 200, ok
    assert s3.head_object(Bucket=bucket, Key="h")["Metadata"] == {"color": "blue"}


def test_unsigned_extra_headers_are_fine(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 60)
    got = raw.send("GET", target(url), headers={"x-amz-meta-extra": "1", "Range": "bytes=0-2"})
    assert (got.status, got.body) == (206, b"pay")


def test_unknown_access_key(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 60, creds=("NOSUCHACCESSKEY00000", "secret"))
    refused(raw.send("GET", target(url)), 403, "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.")


def test_wrong_secret(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 60, creds=(ROOT[0], "not-the-secret"))
    refused(raw.send("GET", target(url)), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)


@pytest.mark.parametrize("drop", ["X-Amz-Signature", "X-Amz-Date", "X-Amz-Expires", "X-Amz-Credential",
                                  "X-Amz-SignedHeaders"])
def test_missing_parameter(raw, obj, drop):
    url = presign_v4("GET", raw.endpoint + obj, 60)
    parts = [p for p in target(url).split("?", 1)[1].split("&") if not p.startswith(drop + "=")]
    got = raw.send("GET", obj + "?" + "&".join(parts))
    refused(got, 400, "AuthorizationQueryParametersError")
    assert "X-Amz-Expires" in error_field(got.body, "Message")


def test_unsupported_algorithm(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 60).replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1")
    refused(raw.send("GET", target(url)), 400, "AuthorizationQueryParametersError",
            'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')


def test_v2_expired(raw, server, bucket, obj):
    v2 = client(server.endpoint, ROOT, signature_version="s3")
    with mock.patch("time.time", return_value=time.time() - 3600):
        url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    refused(raw.send("GET", target(url)), 403, "AccessDenied", "Request has expired")


def test_presigned_by_a_user_without_access(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 60, creds=ALT)
    refused(raw.send("GET", target(url)), 403, "AccessDenied", "Access Denied")


# -- a URL used again (verified URLs are remembered: shoal.http.authenticate._v4_query) ----------------------


def test_a_url_used_again_is_checked_again_for_expiry(raw, obj):
    url = presign_v4("GET", raw.endpoint + obj, 60, when=now() - datetime.timedelta(seconds=58))
    for _ in range(2):
        got = raw.send("GET", target(url))
        assert (got.status, got.body) == (200, b"payload")
    time.sleep(3)
    refused(raw.send("GET", target(url)), 403, "AccessDenied", "Request has expired")


def test_a_url_used_again_with_other_signed_header_values_is_refused(raw, obj, bucket):
    url = presign_with_headers("PUT", raw.endpoint + f"/{bucket}/h", {"x-amz-meta-color": "blue"})
    assert raw.send("PUT", target(url), b"right header", {"x-amz-meta-color": "blue"}).status == 200
    refused(raw.send("PUT", target(url), b"other value", {"x-amz-meta-color": "red"}), 403,
            "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    refused(raw.send("PUT", target(url), b"no header"), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    refused(raw.send("DELETE", target(url), None, {"x-amz-meta-color": "blue"}), 403, "SignatureDoesNotMatch")


def test_a_url_stops_working_when_its_key_goes_or_its_secret_changes(raw, server, obj):
    import uuid

    from shoal.admin_client import AdminClient

    admin = AdminClient(server.endpoint, *ROOT)
    name = f"u{uuid.uuid4().hex[:12]}"
    admin.create_user(name, policies=["readwrite"])
    access_key = f"PRESIGN{uuid.uuid4().hex[:12].upper()}"
    admin.create_key(name, access_key=access_key, secret_key="first-secret")
    url = presign_v4("GET", raw.endpoint + obj, 300, creds=(access_key, "first-secret"))
    for _ in range(2):
        assert raw.send("GET", target(url)).status == 200
    admin.delete_key(access_key)
    refused(raw.send("GET", target(url)), 403, "InvalidAccessKeyId")
    admin.create_key(name, access_key=access_key, secret_key="second-secret")  # the same id, another secret
    refused(raw.send("GET", target(url)), 403, "SignatureDoesNotMatch", SIGNATURE_MISMATCH)
    renewed = presign_v4("GET", raw.endpoint + obj, 300, creds=(access_key, "second-secret"))
    assert raw.send("GET", target(renewed)).status == 200
