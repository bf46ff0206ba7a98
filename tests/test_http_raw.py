"""Raw HTTP: malformed and edge-case requests, hand-built signatures and bodies, the bytes on the wire."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.client
import io
import os
import signal
import socket
import struct
import threading
import time
import uuid
import weakref
import xml.etree.ElementTree as ET
import zlib
from urllib.parse import quote, unquote, unquote_plus

import pytest

from conftest import ALT, ROOT, client
from rawhttp import (
    EMPTY_SHA256,
    Raw,
    aws_chunked,
    error_field,
    http_date,
    presign_v4,
    raw_exchange,
    read_response,
    request_bytes,
    sign_v2,
    sign_v4,
)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def get(raw: Raw, bucket: str, key: str):
    return raw.signed("GET", f"/{bucket}/{quote(key)}")


def assert_absent(raw: Raw, bucket: str, key: str) -> None:
    got = get(raw, bucket, key)
    assert got.status == 404 and got.code == "NoSuchKey", got


# -- error documents and common headers ---------------------------------------------------------------------


def test_unauthenticated_requests_get_an_access_denied_document(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"data").status == 200
    for method, path in (("GET", f"/{rb}/k"), ("GET", "/"), ("GET", f"/{rb}"), ("PUT", f"/{rb}/k2"),
                         ("DELETE", f"/{rb}/k")):
        resp = raw.send(method, path, b"x" if method == "PUT" else b"")
        assert resp.status == 403, (method, path, resp)
        assert resp.code == "AccessDenied"
        assert error_field(resp.body, "Message")
        assert error_field(resp.body, "Resource") == path
        assert error_field(resp.body, "RequestId") == resp.headers["x-amz-request-id"]
        assert error_field(resp.body, "HostId") == resp.headers["x-amz-id-2"]
    # HEAD: the same refusal without a body.
    head = raw.send("HEAD", f"/{rb}/k")
    assert head.status == 403 and head.body == b""
    # Nothing was changed by the anonymous requests.
    assert get(raw, rb, "k").body == b"data"
    assert_absent(raw, rb, "k2")


def test_request_ids_are_unique_and_dates_are_http_dates(raw, rb):
    ids = {raw.signed("GET", f"/{rb}").headers["x-amz-request-id"] for _ in range(5)}
    assert len(ids) == 5
    resp = raw.signed("GET", f"/{rb}")
    parsed = datetime.datetime.strptime(resp.headers["date"], "%a, %d %b %Y %H:%M:%S GMT")
    assert abs((parsed - datetime.datetime.utcnow()).total_seconds()) < 60


# -- signature failures -------------------------------------------------------------------------------------


def test_wrong_secret_is_signature_does_not_match(raw, rb):
    resp = raw.signed("PUT", f"/{rb}/k", b"data", creds=(ROOT[0], "wrong-secret"))
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
    assert error_field(resp.body, "AWSAccessKeyId") == ROOT[0]
    assert_absent(raw, rb, "k")


def test_unknown_access_key_is_invalid_access_key_id(raw, rb):
    resp = raw.signed("GET", f"/{rb}", creds=("AKIANOSUCHKEY0000000", "whatever"))
    assert resp.status == 403 and resp.code == "InvalidAccessKeyId"


def test_other_users_signature_does_not_reach_roots_bucket(raw, rb):
    resp = raw.signed("GET", f"/{rb}", creds=ALT)
    assert resp.status == 403 and resp.code == "AccessDenied"


@pytest.mark.parametrize("minutes", [-20, 20])
def test_skewed_request_time_is_refused(raw, rb, minutes):
    when = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(minutes=minutes)
    resp = raw.signed("PUT", f"/{rb}/k", b"data", when=when)
    assert resp.status == 403 and resp.code == "RequestTimeTooSkewed", resp
    assert_absent(raw, rb, "k")
    # Within the 15-minute window it is fine.
    ok = when - datetime.timedelta(minutes=minutes - (10 if minutes > 0 else -10))
    assert raw.signed("PUT", f"/{rb}/k", b"data", when=ok).status == 200


@pytest.mark.parametrize("authorization", [
    "AWS4-HMAC-SHA256 Credential=garbage",
    "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request, SignedHeaders=host",
    "AWS4-HMAC-SHA256 Credential=AKID/2025/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/s3/aws4_request SignedHeaders=host Signature=00",
    "AWS4-HMAC-SHA256",
])
def test_malformed_v4_authorization_header(raw, rb, authorization):
    resp = raw.send("GET", f"/{rb}", headers={"Authorization": authorization, "x-amz-date": "20250101T000000Z",
                                               "x-amz-content-sha256": EMPTY_SHA256})
    assert resp.status == 400 and resp.code == "AuthorizationHeaderMalformed", resp


def test_unsupported_authorization_scheme(raw, rb):
    resp = raw.send("GET", f"/{rb}", headers={"Authorization": "Bearer abc"})
    assert resp.status == 400 and resp.code == "InvalidArgument"


def test_credential_date_must_match_x_amz_date(raw, rb):
    headers = sign_v4("GET", f"{raw.endpoint}/{rb}")
    date = headers["X-Amz-Date"][:8]
    auth = headers["Authorization"].replace(f"{ROOT[0]}/{date}/", f"{ROOT[0]}/20000101/")
    assert auth != headers["Authorization"]
    resp = raw.send("GET", f"/{rb}", headers={**headers, "Authorization": auth})
    assert resp.status == 400 and resp.code == "AuthorizationHeaderMalformed", resp


def test_unsigned_host_header_is_refused(raw, rb):
    headers = sign_v4("GET", f"{raw.endpoint}/{rb}")
    auth = headers["Authorization"].replace("SignedHeaders=host;", "SignedHeaders=")
    resp = raw.send("GET", f"/{rb}", headers={**headers, "Authorization": auth})
    assert resp.status in (400, 403), resp


def test_changing_a_signed_header_breaks_the_signature(raw, rb):
    headers = sign_v4("PUT", f"{raw.endpoint}/{rb}/k", b"data", {"x-amz-meta-color": "blue"})
    headers["x-amz-meta-color"] = "red"
    resp = raw.send("PUT", f"/{rb}/k", b"data", headers)
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
    assert_absent(raw, rb, "k")


# -- payload hash ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 200 * 1024, 3 * 1024 * 1024 + 5])  # inline, one buffer, several buffers
def test_payload_hash_mismatch_commits_nothing(raw, rb, size):
    original = os.urandom(size)
    assert raw.signed("PUT", f"/{rb}/k", original).status == 200
    body = os.urandom(size)
    other = hashlib.sha256(b"something else").hexdigest()
    resp = raw.signed("PUT", f"/{rb}/k", body, payload=other)
    assert resp.status == 400 and resp.code == "XAmzContentSHA256Mismatch", resp
    assert get(raw, rb, "k").body == original  # not overwritten
    resp = raw.signed("PUT", f"/{rb}/new", body, payload=other)
    assert resp.status == 400 and resp.code == "XAmzContentSHA256Mismatch"
    assert_absent(raw, rb, "new")


def test_payload_hash_of_empty_body_is_checked(raw, rb):
    resp = raw.signed("PUT", f"/{rb}/k", b"", payload=hashlib.sha256(b"x").hexdigest())
    assert resp.status == 400 and resp.code == "XAmzContentSHA256Mismatch"
    assert_absent(raw, rb, "k")


def test_payload_hash_that_is_not_a_hash(raw, rb):
    resp = raw.signed("PUT", f"/{rb}/k", b"data", payload="not-a-hash")
    assert resp.status == 400 and resp.code in ("InvalidArgument", "XAmzContentSHA256Mismatch"), resp
    assert_absent(raw, rb, "k")


def test_payload_hash_mismatch_on_an_xml_body(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"data").status == 200
    doc = b"<Delete><Object><Key>k</Key></Object></Delete>"
    resp = raw.signed("POST", f"/{rb}?delete", doc, {"Content-MD5": md5_b64(doc)},
                      payload=hashlib.sha256(b"other").hexdigest())
    assert resp.status == 400 and resp.code == "XAmzContentSHA256Mismatch"
    assert get(raw, rb, "k").status == 200


def test_unsigned_payload_is_accepted(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"data", payload="UNSIGNED-PAYLOAD").status == 200
    assert get(raw, rb, "k").body == b"data"


# -- aws-chunked ------------------------------------------------------------------------------------------------


def streaming_headers(raw: Raw, path: str, size: int, mode: str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                      extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(size), **(extra or {})}
    if mode == "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
        return sign_v4("PUT", raw.endpoint + path, b"", {**headers, "x-amz-content-sha256": mode}, payload=mode)
    return sign_v4("PUT", raw.endpoint + path, b"", headers, payload=mode)


@pytest.mark.parametrize("size,chunk", [(0, 8192), (1, 8192), (100_000, 8192), (300_000, 65536)])
def test_signed_aws_chunked_upload(raw, rb, size, chunk):
    data = os.urandom(size)
    path = f"/{rb}/chunked"
    headers = streaming_headers(raw, path, size)
    resp = raw.send("PUT", path, aws_chunked(data, chunk, headers), headers)
    assert resp.status == 200, resp
    assert resp.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = raw.signed("GET", path)
    assert got.body == data
    assert "content-encoding" not in got.headers  # aws-chunked describes the transfer, not the object


@pytest.mark.parametrize("tamper", [0, 2, 3])  # first, middle, final (empty) chunk
def test_tampered_chunk_signature_commits_nothing(raw, rb, tamper):
    original = b"original bytes"
    path = f"/{rb}/k"
    assert raw.signed("PUT", path, original).status == 200
    data = os.urandom(3 * 70_000)
    headers = streaming_headers(raw, path, len(data))
    resp = raw.send("PUT", path, aws_chunked(data, 70_000, headers, tamper_chunk=tamper), headers)
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch", resp
    assert raw.signed("GET", path).body == original


def test_chunks_signed_with_the_wrong_secret(raw, rb):
    data = os.urandom(50_000)
    path = f"/{rb}/k"
    headers = streaming_headers(raw, path, len(data))
    resp = raw.send("PUT", path, aws_chunked(data, 20_000, headers, secret="not-the-secret"), headers)
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
    assert_absent(raw, rb, "k")


def test_chunk_without_signature_in_signed_stream(raw, rb):
    data = b"x" * 1000
    path = f"/{rb}/k"
    headers = streaming_headers(raw, path, len(data))
    resp = raw.send("PUT", path, aws_chunked(data, 500, headers, signed=False), headers)
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
    assert_absent(raw, rb, "k")


# Short and long, inline and received whole (more than its buffer holds, and less).
@pytest.mark.parametrize("size,declared", [(5000, 5001), (5000, 4999), (100_000, 100_001), (200_000, 100_000),
                                           (100_000, 99_000)])
def test_decoded_length_mismatch_commits_nothing(raw, rb, size, declared):
    data = os.urandom(size)
    path = f"/{rb}/k"
    headers = streaming_headers(raw, path, declared)
    resp = raw.send("PUT", path, aws_chunked(data, 10_000, headers), headers)
    assert resp.status == 400 and resp.code == "IncompleteBody", resp
    assert_absent(raw, rb, "k")


@pytest.mark.parametrize("good", [True, False])
@pytest.mark.parametrize("size", [100_000, 2 * 1024 * 1024 + 77])  # one buffer, several
def test_unsigned_trailer_with_crc32(raw, rb, good, size):
    data = os.urandom(size)
    path = f"/{rb}/trailer"
    headers = streaming_headers(raw, path, len(data), "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                {"x-amz-trailer": "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm": "CRC32"})
    value = crc32_b64(data) if good else crc32_b64(data + b"!")
    resp = raw.send("PUT", path, aws_chunked(data, 32768, headers, signed=False,
                                             trailer=("x-amz-checksum-crc32", value)), headers)
    if good:
        assert resp.status == 200, resp
        assert resp.headers["x-amz-checksum-crc32"] == value
        head = raw.signed("HEAD", path, headers={"x-amz-checksum-mode": "ENABLED"})
        assert head.headers["x-amz-checksum-crc32"] == value
        assert raw.signed("GET", path).body == data
    else:
        assert resp.status == 400 and resp.code == "BadDigest", resp
        assert_absent(raw, rb, "trailer")


@pytest.mark.parametrize("case", ["good", "bad-checksum", "bad-signature"])
def test_signed_trailer_with_crc32(raw, rb, case):
    data = os.urandom(40_000)
    path = f"/{rb}/trailer"
    headers = streaming_headers(raw, path, len(data), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                                {"x-amz-trailer": "x-amz-checksum-crc32"})
    value = crc32_b64(data) if case != "bad-checksum" else crc32_b64(b"other")
    body = aws_chunked(data, 16384, headers, trailer=("x-amz-checksum-crc32", value))
    if case == "bad-signature":
        marker = b"x-amz-trailer-signature:"
        at = body.index(marker) + len(marker)
        body = body[:at] + (b"0" if body[at : at + 1] != b"0" else b"1") + body[at + 1 :]
    resp = raw.send("PUT", path, body, headers)
    if case == "good":
        assert resp.status == 200, resp
        assert raw.signed("GET", path).body == data
    else:
        expected = ("BadDigest", 400) if case == "bad-checksum" else ("SignatureDoesNotMatch", 403)
        assert (resp.code, resp.status) == expected, resp
        assert_absent(raw, rb, "trailer")


@pytest.mark.parametrize("cut", ["mid-chunk", "before-final-chunk", "mid-header"])
def test_truncated_chunked_body_commits_nothing(raw, rb, cut):
    data = os.urandom(30_000)
    path = f"/{rb}/k"
    headers = streaming_headers(raw, path, len(data))
    body = aws_chunked(data, 10_000, headers)
    if cut == "mid-chunk":
        body = body[:15_000]
    elif cut == "before-final-chunk":
        body = body[: body.rindex(b"0;chunk-signature=")]
    else:
        body = body[: body.rindex(b"0;chunk-signature=") + 10]
    # Content-Length promises the whole encoding; the client then stops sending (half-close).
    headers["Content-Length"] = str(len(aws_chunked(data, 10_000, headers)))
    reply = raw_exchange(raw.port, request_bytes("PUT", path, headers) + body)
    if reply:
        assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
        assert b"<Code>IncompleteBody</Code>" in reply
    assert_absent(raw, rb, "k")

    # Content-Length tells the truth about a body that is itself cut short: answered, not hung.
    headers["Content-Length"] = str(len(body))
    resp = raw.send("PUT", path, body, headers)
    assert resp.status == 400 and resp.code == "IncompleteBody", resp
    assert_absent(raw, rb, "k")


def test_truncated_plain_body_commits_nothing(raw, rb):
    path = f"/{rb}/k"
    data = os.urandom(100_000)
    headers = sign_v4("PUT", raw.endpoint + path, data, {"Content-Length": str(len(data))})
    reply = raw_exchange(raw.port, request_bytes("PUT", path, headers) + data[:50_000])
    if reply:
        assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert_absent(raw, rb, "k")


def test_malformed_chunk_framing(raw, rb):
    path = f"/{rb}/k"
    headers = streaming_headers(raw, path, 10)
    for body in (b"zz;chunk-signature=00\r\n", b"a;chunk-signature=" + b"0" * 64 + b"\r\n0123456789XX",
                 b"a" * 5000 + b"\r\n"):
        headers["Content-Length"] = str(len(body))
        resp = raw.send("PUT", path, body, headers)
        assert resp.status in (400, 403), resp
        assert resp.code in ("IncompleteBody", "SignatureDoesNotMatch", "InvalidRequest"), resp
    assert_absent(raw, rb, "k")


# -- presigned URLs ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def boto(server):
    return client(server.endpoint, signature_version="s3v4")


@pytest.fixture(scope="module")
def boto_v2(server):
    return client(server.endpoint, signature_version="s3")


def _path_of(url: str) -> str:
    return url.split("/", 3)[3].join(["/", ""])


def test_presigned_get_and_put(raw, rb, boto):
    put_url = boto.generate_presigned_url("put_object", Params={"Bucket": rb, "Key": "pre sign/é"}, ExpiresIn=60)
    resp = raw.send("PUT", _path_of(put_url), b"presigned body")
    assert resp.status == 200, resp
    get_url = boto.generate_presigned_url("get_object", Params={"Bucket": rb, "Key": "pre sign/é"}, ExpiresIn=60)
    resp = raw.send("GET", _path_of(get_url))
    assert resp.status == 200 and resp.body == b"presigned body"
    # response-* overrides are part of the signed query.
    url = boto.generate_presigned_url("get_object", Params={"Bucket": rb, "Key": "pre sign/é",
                                                            "ResponseContentType": "text/x-test"}, ExpiresIn=60)
    resp = raw.send("GET", _path_of(url))
    assert resp.status == 200 and resp.headers["content-type"] == "text/x-test"


def test_presigned_url_expired(raw, rb, boto):
    assert raw.signed("PUT", f"/{rb}/k", b"data").status == 200
    past = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(seconds=30)
    url = presign_v4("GET", f"{raw.endpoint}/{rb}/k", 10, when=past)
    resp = raw.send("GET", _path_of(url))
    assert resp.status == 403 and resp.code == "AccessDenied", resp
    assert presign_v4("GET", f"{raw.endpoint}/{rb}/k", 60, when=past) != url
    assert raw.send("GET", _path_of(presign_v4("GET", f"{raw.endpoint}/{rb}/k", 60, when=past))).status == 200
    # The same, really waited for, with a URL from the SDK's presigner. (X-Amz-Date has whole seconds, so a
    # one-second URL may already be over when it is first used: only the refusal after the wait is certain.)
    url = boto.generate_presigned_url("get_object", Params={"Bucket": rb, "Key": "k"}, ExpiresIn=1)
    time.sleep(2)
    resp = raw.send("GET", _path_of(url))
    assert resp.status == 403 and resp.code == "AccessDenied", resp
    assert "expired" in (error_field(resp.body, "Message") or "")
    # Signed for a time too far ahead: not valid yet.
    future = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(minutes=20)
    resp = raw.send("GET", _path_of(presign_v4("GET", f"{raw.endpoint}/{rb}/k", 60, when=future)))
    assert resp.status == 403 and resp.code == "AccessDenied", resp


def test_presigned_url_expiry_over_a_week(raw, rb, boto):
    assert raw.signed("PUT", f"/{rb}/k", b"data").status == 200
    url = boto.generate_presigned_url("get_object", Params={"Bucket": rb, "Key": "k"}, ExpiresIn=604801)
    resp = raw.send("GET", _path_of(url))
    # ceph/s3-tests (test_object_raw_get_x_amz_expires_out_max_range, valid on AWS) expect 403 here.
    assert resp.status == 403 and resp.code == "AccessDenied", resp
    url = boto.generate_presigned_url("get_object", Params={"Bucket": rb, "Key": "k"}, ExpiresIn=604800)
    assert raw.send("GET", _path_of(url)).status == 200


def test_presigned_url_tampered(raw, rb, boto):
    assert raw.signed("PUT", f"/{rb}/k", b"data").status == 200
    assert raw.signed("PUT", f"/{rb}/other", b"other").status == 200
    url = _path_of(boto.generate_presigned_url("get_object", Params={"Bucket": rb, "Key": "k"}, ExpiresIn=60))
    at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    bad = url[:at] + ("0" if url[at] != "0" else "1") + url[at + 1 :]
    for path in (bad, url.replace(f"/{rb}/k?", f"/{rb}/other?"), url + "&extra=1",
                 url.replace("X-Amz-Expires=60", "X-Amz-Expires=600")):
        resp = raw.send("GET", path)
        assert resp.status == 403 and resp.code == "SignatureDoesNotMatch", (path, resp)


def test_presigned_url_used_with_another_method(raw, rb, boto):
    assert raw.signed("PUT", f"/{rb}/k", b"data").status == 200
    get_url = _path_of(boto.generate_presigned_url("get_object", Params={"Bucket": rb, "Key": "k"}, ExpiresIn=60))
    resp = raw.send("PUT", get_url, b"overwritten")
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
    resp = raw.send("DELETE", get_url)
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
    put_url = _path_of(boto.generate_presigned_url("put_object", Params={"Bucket": rb, "Key": "k"}, ExpiresIn=60))
    resp = raw.send("GET", put_url)
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
    assert get(raw, rb, "k").body == b"data"


def test_presigned_v2_urls(raw, rb, boto_v2):
    put_url = _path_of(boto_v2.generate_presigned_url("put_object", Params={"Bucket": rb, "Key": "v2 ü"},
                                                      ExpiresIn=60))
    assert "AWSAccessKeyId=" in put_url and "X-Amz-" not in put_url
    assert raw.send("PUT", put_url, b"v2 presigned").status == 200
    get_url = _path_of(boto_v2.generate_presigned_url("get_object", Params={"Bucket": rb, "Key": "v2 ü"},
                                                      ExpiresIn=60))
    assert raw.send("GET", get_url).body == b"v2 presigned"
    assert raw.send("GET", put_url).code == "SignatureDoesNotMatch"


def test_presigned_query_missing_parameters(raw, rb):
    resp = raw.send("GET", f"/{rb}/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00")
    assert resp.status == 400 and resp.code == "AuthorizationQueryParametersError"


@pytest.mark.parametrize("value", ["a%0Db", "text%2Fplain%0D%0AX-Injected%3A%201", "%00", "a%7Fb"])
def test_response_override_with_control_characters(raw, rb, value):
    assert raw.signed("PUT", f"/{rb}/k", b"data").status == 200
    for method in ("GET", "HEAD"):
        resp = raw.signed(method, f"/{rb}/k?response-content-type={value}")
        assert resp.status == 400, resp
        assert "x-injected" not in resp.headers
        if method == "GET":
            assert resp.code == "InvalidArgument"
    resp = raw.signed("GET", f"/{rb}/k?response-content-disposition=attachment%3B%20filename%3D%22%C3%BC.txt%22")
    assert resp.status == 200 and resp.headers["content-disposition"] == 'attachment; filename="ü.txt"'.encode(
        ).decode("latin-1")


# -- Signature V2 -------------------------------------------------------------------------------------------------


def test_v2_header_auth_put_and_get(raw, rb):
    path = f"/{rb}/v2%20key"
    headers = {"Date": http_date(), "Content-Type": "text/plain", "x-amz-meta-Color": "blue",
               "Content-MD5": md5_b64(b"v2 body")}
    headers["Authorization"] = f"AWS {ROOT[0]}:{sign_v2('PUT', path, headers)}"
    resp = raw.send("PUT", path, b"v2 body", headers)
    assert resp.status == 200, resp
    headers = {"x-amz-date": http_date()}
    headers["Authorization"] = f"AWS {ROOT[0]}:{sign_v2('GET', path, headers)}"
    resp = raw.send("GET", path, headers=headers)
    assert resp.status == 200 and resp.body == b"v2 body"
    assert resp.headers["x-amz-meta-color"] == "blue"
    # Subresources are part of the signed resource.
    headers = {"Date": http_date()}
    headers["Authorization"] = f"AWS {ROOT[0]}:{sign_v2('GET', f'/{rb}?location', headers)}"
    assert raw.send("GET", f"/{rb}?location", headers=headers).status == 200


def test_v2_header_auth_agrees_with_botocore(raw, rb):
    from botocore.auth import HmacV1Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    path = f"/{rb}/botocore-v2"
    request = AWSRequest("PUT", raw.endpoint + path, data=b"body", headers={"Content-Type": "a/b"})
    HmacV1Auth(Credentials(*ROOT)).add_auth(request)
    headers = dict(request.headers.items())
    resp = raw.send("PUT", path, b"body", headers)
    assert resp.status == 200, resp


def test_v2_header_auth_failures(raw, rb):
    path = f"/{rb}/k"
    headers = {"Date": http_date()}
    headers["Authorization"] = f"AWS {ROOT[0]}:{sign_v2('PUT', path, headers, secret='wrong')}"
    resp = raw.send("PUT", path, b"data", headers)
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
    headers["Authorization"] = f"AWS NOSUCHKEY:{sign_v2('PUT', path, headers)}"
    assert raw.send("PUT", path, b"data", headers).code == "InvalidAccessKeyId"
    headers = {"Date": "Sat, 01 Jan 2000 00:00:00 GMT"}
    headers["Authorization"] = f"AWS {ROOT[0]}:{sign_v2('PUT', path, headers)}"
    resp = raw.send("PUT", path, b"data", headers)
    assert resp.status == 403 and resp.code == "RequestTimeTooSkewed"
    headers = {}
    headers["Authorization"] = f"AWS {ROOT[0]}:{sign_v2('PUT', path, headers)}"
    resp = raw.send("PUT", path, b"data", headers)
    assert resp.status == 403 and resp.code == "AccessDenied"
    resp = raw.send("PUT", path, b"data", {"Date": http_date(), "Authorization": "AWS nocolon"})
    assert resp.status == 400 and resp.code == "InvalidArgument"
    assert_absent(raw, rb, "k")


def test_v2_query_auth_get_and_put(raw, rb):
    path = f"/{rb}/q%C3%A9"
    expires = str(int(time.time()) + 60)
    sig = sign_v2("PUT", path, {"Content-Type": "text/plain"}, expires=expires)
    query = f"AWSAccessKeyId={ROOT[0]}&Expires={expires}&Signature={quote(sig, safe='')}"
    resp = raw.send("PUT", f"{path}?{query}", b"query put", {"Content-Type": "text/plain"})
    assert resp.status == 200, resp
    sig = sign_v2("GET", path, {}, expires=expires)
    query = f"AWSAccessKeyId={ROOT[0]}&Expires={expires}&Signature={quote(sig, safe='')}"
    resp = raw.send("GET", f"{path}?{query}")
    assert resp.status == 200 and resp.body == b"query put"
    # Used for another method, or expired, or tampered: refused.
    assert raw.send("DELETE", f"{path}?{query}").code == "SignatureDoesNotMatch"
    past = str(int(time.time()) - 10)
    sig = sign_v2("GET", path, {}, expires=past)
    resp = raw.send("GET", f"{path}?AWSAccessKeyId={ROOT[0]}&Expires={past}&Signature={quote(sig, safe='')}")
    assert resp.status == 403 and resp.code == "AccessDenied"
    later = str(int(expires) + 1)
    resp = raw.send("GET", f"{path}?AWSAccessKeyId={ROOT[0]}&Expires={later}&Signature={quote(sig, safe='')}")
    assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"


# -- Expect: 100-continue ---------------------------------------------------------------------------------------


def _read_head(sock: socket.socket) -> bytes:
    """An interim response's status line and headers."""
    data = b""
    reader = _reader(sock)
    while not data.endswith(b"\r\n\r\n"):
        line = reader.readline()
        if not line:
            break
        data += line
    return data


def test_expect_continue_then_body(raw, rb):
    path = f"/{rb}/expect"
    body = os.urandom(200_000)
    headers = sign_v4("PUT", raw.endpoint + path, body, {"Expect": "100-continue",
                                                           "Content-Length": str(len(body))})
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        s.sendall(request_bytes("PUT", path, headers))
        assert _read_head(s) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        resp = _read_response(s)
        assert resp.status == 200, resp
    assert get(raw, rb, "expect").body == body


# -- large plain bodies are received straight into the server's buffers (shoal.http.body._Receiver) --------------


def _signed_put(raw, path: str, body: bytes, extra: dict[str, str] | None = None) -> bytes:
    headers = sign_v4("PUT", raw.endpoint + path, body, {"Content-Length": str(len(body)), **(extra or {})})
    return request_bytes("PUT", path, headers) + body


def _signed_get(raw, path: str) -> bytes:
    return request_bytes("GET", path, sign_v4("GET", raw.endpoint + path))


def test_large_bodies_leave_the_connection_usable(raw, rb):
    """Keep-alive after bodies received past the parser (the direct receive), also when the next request follows
    the body at once."""
    _two_puts_on_one_connection(raw, rb, lambda path, data: _signed_put(raw, path, data))


def _two_puts_on_one_connection(raw, rb, put) -> bytes:
    """Two large PUTs (``put(path, data)``: the request's bytes) on one connection, the second pipelined with a
    GET of the first in one send, then a GET of the second: all answered in order. Returns the first's data."""
    one, two = os.urandom(3 * 1024 * 1024 + 5), os.urandom(2 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", raw.port), timeout=10) as s:
        s.sendall(put(f"/{rb}/one", one))
        assert _read_response(s).status == 200
        s.sendall(put(f"/{rb}/two", two) + _signed_get(raw, f"/{rb}/one"))
        assert _read_response(s).status == 200
        resp = _read_response(s, "GET")
        assert resp.status == 200 and resp.body == one
        s.sendall(_signed_get(raw, f"/{rb}/two"))
        resp = _read_response(s, "GET")
        assert resp.status == 200 and resp.body == two
    return one


def _chunked_put(raw, path: str, data: bytes, mode: str, tamper: int | None = None) -> bytes:
    extra = {"x-amz-trailer": "x-amz-checksum-crc32"} if mode == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" else {}
    headers = streaming_headers(raw, path, len(data), mode, extra)
    signed = mode == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    body = aws_chunked(data, 65536, headers, signed=signed, tamper_chunk=tamper,
                       trailer=None if signed else ("x-amz-checksum-crc32", crc32_b64(data)))
    return request_bytes("PUT", path, {**headers, "Content-Length": str(len(body))}) + body


@pytest.mark.parametrize("mode", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"])
def test_large_aws_chunked_bodies_leave_the_connection_usable(raw, rb, mode):
    """aws-chunked bodies are received in fills of their own, straight from the socket when large: the connection
    then carries the next request, also one sent right behind the body; a body refused midway (a chunk's
    signature) commits nothing and leaves the server answering."""
    one = _two_puts_on_one_connection(raw, rb, lambda path, data: _chunked_put(raw, path, data, mode))
    if mode == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD":
        with socket.create_connection(("127.0.0.1", raw.port), timeout=10) as s:
            s.sendall(_chunked_put(raw, f"/{rb}/bad", one, mode, tamper=20))
            resp = _read_response(s)
            assert resp.status == 403 and resp.code == "SignatureDoesNotMatch", resp
        assert_absent(raw, rb, "bad")
    assert get(raw, rb, "one").body == one


def test_large_body_refused_at_its_end_keeps_the_connection(raw, rb):
    body = os.urandom(2 * 1024 * 1024)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with socket.create_connection(("127.0.0.1", raw.port), timeout=10) as s:
        s.sendall(_signed_put(raw, f"/{rb}/bad", body, {"Content-MD5": wrong}))
        resp = _read_response(s)
        assert resp.status == 400 and resp.code == "BadDigest", resp
        s.sendall(_signed_put(raw, f"/{rb}/good", body))
        assert _read_response(s).status == 200
    assert_absent(raw, rb, "bad")
    assert get(raw, rb, "good").body == body


def test_truncated_large_plain_body_commits_nothing(raw, rb):
    path = f"/{rb}/k"
    data = os.urandom(4 * 1024 * 1024)
    headers = sign_v4("PUT", raw.endpoint + path, data, {"Content-Length": str(len(data))})
    reply = raw_exchange(raw.port, request_bytes("PUT", path, headers) + data[:3 * 1024 * 1024])
    if reply:
        assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert_absent(raw, rb, "k")
    assert raw.signed("PUT", path, b"after").status == 200  # the server is fine


_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _reader(sock: socket.socket):
    """One buffered reader per socket, shared by everything that reads from it."""
    if sock not in _READERS:
        _READERS[sock] = sock.makefile("rb")
    return _READERS[sock]


class _Kept:
    """The shared reader, as handed to http.client: its close() (after each response) leaves the reader open."""

    def __init__(self, reader) -> None:
        self._reader = reader

    def __getattr__(self, name):
        return getattr(self._reader, name)

    def close(self) -> None:
        pass


class _SocketFile:
    """Lets http.client parse responses from a socket we drive ourselves."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = _Kept(_reader(sock))

    def makefile(self, *args, **kwargs):
        return self._file


def _read_response(sock: socket.socket, method: str = "PUT"):
    resp = http.client.HTTPResponse(_SocketFile(sock), method=method)  # type: ignore[arg-type]
    resp.begin()
    return read_response(resp, method)


def test_expect_continue_refused_without_reading_the_body(raw, rb):
    path = f"/{rb}/expect"
    body = os.urandom(10 * 1024 * 1024)
    headers = sign_v4("PUT", raw.endpoint + path, body, {"Expect": "100-continue",
                                                           "Content-Length": str(len(body))},
                      creds=(ROOT[0], "wrong"))
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        s.sendall(request_bytes("PUT", path, headers))
        started = time.monotonic()
        resp = _read_response(s)  # the body is never sent
        assert time.monotonic() - started < 2
        assert resp.status == 403 and resp.code == "SignatureDoesNotMatch"
        assert resp.headers.get("connection", "").lower() == "close"
        assert s.recv(1) == b""  # and the connection ends: it cannot carry another request
    assert_absent(raw, rb, "expect")


def test_expect_continue_refused_by_the_handler_closes(raw, rb):
    path = f"/no-such-bucket-{uuid.uuid4().hex[:8]}/k"
    body = b"x" * 1000
    headers = sign_v4("PUT", raw.endpoint + path, body, {"Expect": "100-continue", "Content-Length": "1000"})
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        s.sendall(request_bytes("PUT", path, headers))
        resp = _read_response(s)
        assert resp.status == 404 and resp.code == "NoSuchBucket"
        assert s.recv(1) == b""


def test_expect_continue_with_empty_body_keeps_the_connection(raw, rb):
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        for key in ("e1", "e2"):
            path = f"/{rb}/{key}"
            headers = sign_v4("PUT", raw.endpoint + path, b"", {"Expect": "100-continue", "Content-Length": "0"})
            s.sendall(request_bytes("PUT", path, headers))
            assert _read_head(s) == b"HTTP/1.1 100 Continue\r\n\r\n"
            assert _read_response(s).status == 200
        path = f"/{rb}/e3"
        headers = sign_v4("PUT", raw.endpoint + path, b"abc", {"Content-Length": "3"})
        s.sendall(request_bytes("PUT", path, headers) + b"abc")
        assert _read_response(s).status == 200
    assert get(raw, rb, "e3").body == b"abc"


def test_botocore_empty_put_then_put_on_one_connection(server, rb):
    """botocore sends Expect: 100-continue for file-like bodies; an empty one must not spoil the connection."""
    import io

    s3 = client(server.endpoint, read_timeout=3, max_pool_connections=1)
    for body in (b"", b"data", b"", b"more"):
        started = time.monotonic()
        s3.put_object(Bucket=rb, Key="k", Body=io.BytesIO(body))
        assert time.monotonic() - started < 1.5
        assert s3.get_object(Bucket=rb, Key="k")["Body"].read() == body


# -- HEAD, keep-alive ---------------------------------------------------------------------------------------


def test_head_has_length_but_no_body_and_keep_alive_works(raw, rb):
    conn = raw.connection()
    try:
        data = os.urandom(100_000)
        assert raw.signed("PUT", f"/{rb}/k", data, conn=conn).status == 200
        sock = conn.sock
        for _ in range(3):
            head = raw.signed("HEAD", f"/{rb}/k", conn=conn)
            assert head.status == 200 and head.body == b""
            assert head.headers["content-length"] == str(len(data))
            assert head.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
            got = raw.signed("GET", f"/{rb}/k", conn=conn, headers={"Range": "bytes=10-19"})
            assert got.status == 206 and got.body == data[10:20]
        missing = raw.signed("HEAD", f"/{rb}/missing", conn=conn)
        assert missing.status == 404 and missing.body == b""
        assert raw.signed("GET", f"/{rb}", conn=conn).status == 200
        assert raw.signed("GET", f"/{rb}/missing", conn=conn).code == "NoSuchKey"
        assert raw.signed("DELETE", f"/{rb}/k", conn=conn).status == 204
        assert conn.sock is sock  # one connection carried all of them
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(raw, rb):
    assert raw.signed("PUT", f"/{rb}/a", b"AAA").status == 200
    assert raw.signed("PUT", f"/{rb}/b", b"BBBB").status == 200
    wire = b""
    for key in ("a", "b", "a"):
        wire += request_bytes("GET", f"/{rb}/{key}", sign_v4("GET", f"{raw.endpoint}/{rb}/{key}"))
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        s.sendall(wire)
        bodies = [_read_response(s, "GET").body for _ in range(3)]
    assert bodies == [b"AAA", b"BBBB", b"AAA"]


def _http10(method: str, path: str, headers: dict[str, str]) -> bytes:
    return request_bytes(method, path, headers).replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)


def test_http_1_0_clients_get_the_connection_rules_of_1_0(raw, rb):
    """Responses follow HTTP/1.0's connection rules: the connection ends after the response unless the client
    asked to keep it, and then says so."""
    assert raw.signed("PUT", f"/{rb}/k", b"hello 1.0").status == 200
    url = f"{raw.endpoint}/{rb}/k"
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        s.sendall(_http10("GET", f"/{rb}/k", sign_v4("GET", url)))
        resp = _read_response(s, "GET")
        assert (resp.status, resp.body) == (200, b"hello 1.0")
        assert resp.headers["content-length"] == "9" and "date" in resp.headers
        assert s.recv(1) == b""  # closed: an HTTP/1.0 client did not ask to keep it
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        for method, body in (("GET", b"hello 1.0"), ("HEAD", b""), ("GET", b"hello 1.0")):
            s.sendall(_http10(method, f"/{rb}/k", sign_v4(method, url, headers={"Connection": "keep-alive"})))
            resp = _read_response(s, method)
            assert (resp.status, resp.body) == (200, body)
            assert resp.headers["connection"].lower() == "keep-alive"
            assert resp.headers["content-length"] == "9"


def test_not_modified_has_neither_body_nor_length_and_the_connection_goes_on(raw, rb):
    put = raw.signed("PUT", f"/{rb}/k", b"cached")
    url = f"{raw.endpoint}/{rb}/k"
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        conditional = sign_v4("GET", url, headers={"If-None-Match": put.headers["etag"]})
        s.sendall(request_bytes("GET", f"/{rb}/k", conditional))
        resp = _read_response(s, "GET")
        assert resp.status == 304 and resp.body == b""
        assert "content-length" not in resp.headers and resp.headers["etag"] == put.headers["etag"]
        s.sendall(request_bytes("GET", f"/{rb}/k", sign_v4("GET", url)))
        assert _read_response(s, "GET").body == b"cached"  # nothing stray was left on the connection


def test_range_and_part_number_together_are_refused(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"0123456789").status == 200
    for method in ("GET", "HEAD"):
        resp = raw.signed(method, f"/{rb}/k?partNumber=1", headers={"Range": "bytes=0-1"})
        assert resp.status == 400, resp
        if method == "GET":
            assert resp.code == "InvalidRequest"
    assert raw.signed("GET", f"/{rb}/k?partNumber=1").body == b"0123456789"
    assert raw.signed("GET", f"/{rb}/k", headers={"Range": "bytes=0-1"}).body == b"01"


# -- Content-MD5 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value,code", [
    ("not base64!!", "InvalidDigest"),
    ("", "InvalidDigest"),
    ("YWJyYWNhZGFicmE=", "InvalidDigest"),  # valid base64, not 16 bytes
    ("rL0Y20xC+Fzt72VPzMSk2A==", "BadDigest"),  # 16 bytes, wrong
])
def test_content_md5(raw, rb, value, code):
    resp = raw.signed("PUT", f"/{rb}/k", b"some data", {"Content-MD5": value})
    assert resp.status == 400 and resp.code == code, resp
    assert_absent(raw, rb, "k")
    assert raw.signed("PUT", f"/{rb}/k", b"some data", {"Content-MD5": md5_b64(b"some data")}).status == 200


def test_content_md5_wrong_on_large_body_and_on_parts(raw, rb):
    data = os.urandom(300_000)
    resp = raw.signed("PUT", f"/{rb}/big", data, {"Content-MD5": md5_b64(data[:-1])})
    assert resp.status == 400 and resp.code == "BadDigest"
    assert_absent(raw, rb, "big")
    created = raw.signed("POST", f"/{rb}/mp?uploads")
    upload_id = error_field(created.body, "{http://s3.amazonaws.com/doc/2006-03-01/}UploadId")
    assert upload_id
    resp = raw.signed("PUT", f"/{rb}/mp?partNumber=1&uploadId={upload_id}", data, {"Content-MD5": md5_b64(b"")})
    assert resp.status == 400 and resp.code == "BadDigest"
    parts = raw.signed("GET", f"/{rb}/mp?uploadId={upload_id}")
    assert b"<Part>" not in parts.body


# -- unknown operations, wrong methods, malformed XML -------------------------------------------------------


@pytest.mark.parametrize("method,path", [
    ("PUT", "/{b}?replication"), ("PUT", "/{b}?website"), ("GET", "/{b}/k?torrent"), ("POST", "/{b}/k?restore"),
    ("POST", "/{b}/k?select&select-type=2"),
])
def test_unimplemented_operations_answer_501(raw, rb, method, path):
    resp = raw.signed(method, path.format(b=rb), b"<x/>" if method != "GET" else b"")
    assert resp.status == 501 and resp.code == "NotImplemented", resp


@pytest.mark.parametrize("method,path,resource", [
    ("PUT", "/", "SERVICE"), ("DELETE", "/", "SERVICE"), ("POST", "/", "SERVICE"),
    ("PATCH", "/{b}", "BUCKET"), ("POST", "/{b}/k", "OBJECT"), ("PATCH", "/{b}/k", "OBJECT"),
])
def test_wrong_method_is_405(raw, rb, method, path, resource):
    resp = raw.signed(method, path.format(b=rb))
    assert resp.status == 405 and resp.code == "MethodNotAllowed", resp
    assert error_field(resp.body, "Method") == method
    assert error_field(resp.body, "ResourceType") == resource


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Delete><Object><Key>&lol9;</Key></Object></Delete>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Delete><Object><Key>&xxe;</Key></Object></Delete>"""


@pytest.mark.parametrize("doc", [
    b"<Delete><Object><Key>k</Key></Object>", b"not xml at all", b"", b"<Other/>", b"<Delete></Delete>",
    b"<Delete><Object></Object></Delete>", BILLION_LAUGHS, EXTERNAL_ENTITY,
    b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>",
], ids=["unclosed", "text", "empty", "wrong-root", "no-objects", "no-key", "billion-laughs", "xxe", "1001-keys"])
def test_delete_objects_malformed_xml(raw, rb, doc):
    assert raw.signed("PUT", f"/{rb}/k", b"data").status == 200
    started = time.monotonic()
    resp = raw.signed("POST", f"/{rb}?delete", doc, {"Content-MD5": md5_b64(doc)})
    assert resp.status == 400 and resp.code == "MalformedXML", resp
    assert time.monotonic() - started < 2
    assert get(raw, rb, "k").status == 200  # nothing deleted
    assert raw.signed("GET", f"/{rb}").status == 200  # and the server is still responsive


@pytest.mark.parametrize("doc", [
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>", b"garbage", BILLION_LAUGHS,
    b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
    b"<CompleteMultipartUpload></CompleteMultipartUpload>",
], ids=["unclosed", "garbage", "billion-laughs", "bad-number", "no-parts"])
def test_complete_multipart_malformed_xml(raw, rb, doc):
    created = raw.signed("POST", f"/{rb}/mp?uploads")
    upload_id = error_field(created.body, "{http://s3.amazonaws.com/doc/2006-03-01/}UploadId")
    assert raw.signed("PUT", f"/{rb}/mp?partNumber=1&uploadId={upload_id}", b"part").status == 200
    resp = raw.signed("POST", f"/{rb}/mp?uploadId={upload_id}", doc)
    assert resp.status == 400 and resp.code in ("MalformedXML", "InvalidPart"), resp
    if doc != b"<CompleteMultipartUpload></CompleteMultipartUpload>":
        assert resp.code == "MalformedXML"
    assert_absent(raw, rb, "mp")
    # The upload is still there and can be completed properly.
    etag = f'"{hashlib.md5(b"part").hexdigest()}"'
    good = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>"
            "</CompleteMultipartUpload>").encode()
    assert raw.signed("POST", f"/{rb}/mp?uploadId={upload_id}", good).status == 200
    assert get(raw, rb, "mp").body == b"part"


@pytest.mark.parametrize("doc", [b"<CreateBucketConfiguration>", b"junk", BILLION_LAUGHS, b"<Wrong/>"])
def test_create_bucket_malformed_xml(raw, doc):
    name = f"raw-{uuid.uuid4().hex[:20]}"
    resp = raw.signed("PUT", f"/{name}", doc)
    assert resp.status == 400 and resp.code == "MalformedXML", resp
    assert raw.signed("HEAD", f"/{name}").status == 404


# -- hostile keys ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw_key", [
    "../../../../../../tmp/escape-{t}", "..%2F..%2F..%2Fescape-{t}", "%2e%2e/%2e%2e/escape-{t}",
    "./a/./b/../escape-{t}", "a//b///escape-{t}", "%5C..%5C..%5Cescape-{t}", "~/.ssh/escape-{t}",
])
def test_dot_segments_round_trip_exactly_and_stay_inside(server, raw, rb, raw_key):
    token = uuid.uuid4().hex
    path = f"/{rb}/" + raw_key.format(t=token)
    data = token.encode()
    assert raw.signed("PUT", path, data).status == 200
    assert raw.signed("GET", path).body == data
    listed = raw.signed("GET", f"/{rb}?list-type=2")
    expected_key = unquote(path.split("/", 2)[2])
    assert f"<Key>{expected_key}</Key>".encode() in listed.body
    # Nothing named after the key exists on disk: blobs are named by ids, keys are never paths. Look where
    # the key would land if it were used as a path, and everywhere under the server's own directory.
    key = unquote(path.split("/", 2)[2])
    for base in (server.data_dir, os.path.join(server.data_dir, ".shoal", "blobs"), "/tmp", os.getcwd()):
        assert not os.path.exists(os.path.normpath(os.path.join(base, key))), key
    for _, dirnames, filenames in os.walk(os.path.dirname(server.data_dir)):
        assert not any(token in name for name in filenames + dirnames)
    assert raw.signed("DELETE", path).status == 204
    assert raw.signed("GET", path).status == 404


@pytest.mark.parametrize("raw_key", ["a%00b", "%00", "bad%FFutf8", "bad%C3", "over%E2%82", "%ED%A0%80"])
def test_invalid_key_escapes_are_clean_400s(server, raw, rb, raw_key):
    for method in ("PUT", "GET", "HEAD", "DELETE"):
        resp = raw.signed(method, f"/{rb}/{raw_key}", b"x" if method == "PUT" else b"")
        assert resp.status == 400, (method, resp)
        if method != "HEAD":
            assert resp.code == "InvalidURI", resp
    assert b"<KeyCount>0</KeyCount>" in raw.signed("GET", f"/{rb}?list-type=2").body
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("query", ["prefix=%FF", "%FF=1", "delimiter=%C3", "prefix=%E2%82"])
def test_invalid_query_escapes_are_clean_400s(raw, rb, query):
    resp = raw.send("GET", f"/{rb}?list-type=2&{query}", headers={"Authorization": "AWS x:y", "Date": http_date()})
    assert resp.status == 400, resp


def test_key_length_limit(raw, rb):
    assert raw.signed("PUT", f"/{rb}/" + "k" * 1024, b"x").status == 200
    resp = raw.signed("PUT", f"/{rb}/" + "k" * 1025, b"x")
    assert resp.status == 400 and resp.code == "KeyTooLongError"
    assert raw.signed("PUT", f"/{rb}/" + quote("é" * 512), b"x").status == 200  # 1024 bytes
    assert raw.signed("PUT", f"/{rb}/" + quote("é" * 512 + "k"), b"x").code == "KeyTooLongError"


def test_unicode_and_reserved_characters_round_trip(raw, rb):
    keys = ["ünï cødé/☃", "a+b=c&d", "per%cent", "semi;colon", "q?mark", "hash#tag", "tab\tand\nnewline",
            " leading space", "trailing space ", "emoji 😀"]
    for key in keys:
        path = f"/{rb}/" + quote(key, safe="")
        assert raw.signed("PUT", path, key.encode()).status == 200, key
        assert raw.signed("GET", path).body == key.encode(), key
    listed = raw.signed("GET", f"/{rb}?list-type=2&encoding-type=url")
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    got = [unquote_plus(k.text or "") for k in ET.fromstring(listed.body).iter(f"{ns}Key")]
    assert sorted(got) == sorted(keys)


def test_keys_with_control_characters(raw, rb):
    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    key = "line\rbreak\r\nand\ttab"
    path = f"/{rb}/" + quote(key, safe="")
    assert raw.signed("PUT", path, b"cr").status == 200
    assert raw.signed("GET", path).body == b"cr"
    # Listed without encoding-type: the CR must survive XML end-of-line normalisation.
    listed = ET.fromstring(raw.signed("GET", f"/{rb}?list-type=2").body)
    assert [k.text for k in listed.iter(f"{ns}Key")] == [key]
    listed = ET.fromstring(raw.signed("GET", f"/{rb}").body)
    assert [k.text for k in listed.iter(f"{ns}Key")] == [key]
    # Error documents must parse whatever the key held (the response check parses every error document).
    for odd in ("a\x01b", "nul\x1f", "\x7f"):
        resp = raw.signed("GET", f"/{rb}/" + quote(odd, safe=""))
        assert resp.status == 404 and resp.code == "NoSuchKey", resp


# -- virtual-hosted style ---------------------------------------------------------------------------------------


def test_virtual_hosted_style(make_server):
    srv = make_server(args=["--domain", "s3.local.test"])
    raw = Raw(srv.port)
    bucket = f"vh-{uuid.uuid4().hex[:12]}"
    vhost = f"{bucket}.s3.local.test:{srv.port}"

    def vh(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, **kw):
        signed = sign_v4(method, f"http://{vhost}{path}", body, headers, **kw)
        return raw.send(method, path, body, signed)

    assert vh("PUT", "/").status == 200  # CreateBucket through the host name
    assert raw.signed("HEAD", f"/{bucket}").status == 200  # visible path-style too
    assert vh("PUT", "/dir/key%20one", b"vhost data").status == 200
    assert vh("GET", "/dir/key%20one").body == b"vhost data"
    assert raw.signed("GET", f"/{bucket}/dir/key%20one").body == b"vhost data"
    listed = vh("GET", "/?list-type=2")
    assert listed.status == 200 and b"<Key>dir/key one</Key>" in listed.body
    assert f"<Name>{bucket}</Name>".encode() in listed.body

    # Signature V2 signs /bucket/key even when the bucket is in the host name.
    headers = {"Date": http_date(), "Host": vhost}
    headers["Authorization"] = f"AWS {ROOT[0]}:{sign_v2('GET', f'/{bucket}/dir/key%20one', headers)}"
    resp = raw.send("GET", "/dir/key%20one", headers=headers)
    assert resp.status == 200 and resp.body == b"vhost data"

    # The bare domain (and an unrelated host) are path-style.
    resp = raw.send("GET", f"/{bucket}/dir/key%20one",
                    headers=sign_v4("GET", f"http://s3.local.test:{srv.port}/{bucket}/dir/key%20one"))
    assert resp.status == 200 and resp.body == b"vhost data"
    assert vh("DELETE", "/dir/key%20one").status == 204
    assert vh("DELETE", "/").status == 204
    assert raw.signed("HEAD", f"/{bucket}").status == 404


# -- shutdown -----------------------------------------------------------------------------------------------------


def _slow_upload(port: int, path: str, data: bytes, first: int, before_rest):
    """PUT whose body is sent in two halves with ``before_rest()`` in between; the response, or None."""
    headers = sign_v4("PUT", f"http://127.0.0.1:{port}{path}", data, {"Content-Length": str(len(data))})
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request_bytes("PUT", path, headers) + data[:first])
        before_rest()
        try:
            s.sendall(data[first:])
            return _read_response(s)
        except (OSError, ValueError, http.client.HTTPException):
            return None


@pytest.mark.parametrize("size", [30_000, 3_000_000])
def test_sigterm_during_upload_lets_it_finish(make_server, size):
    srv = make_server()
    raw = Raw(srv.port)
    bucket = f"sd-{uuid.uuid4().hex[:12]}"
    assert raw.signed("PUT", f"/{bucket}").status == 200
    data = os.urandom(size)

    def terminate():
        time.sleep(0.2)
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert srv.proc.poll() is None  # still finishing the upload

    started = time.monotonic()
    reply = _slow_upload(srv.port, f"/{bucket}/obj", data, size // 2, terminate)
    assert srv.stop(timeout=20) == 0
    # Not held up until the 30 s shutdown timeout (generous bound: CI machines may be loaded).
    assert time.monotonic() - started < 15
    # Graceful: the upload in flight completes, is acknowledged, and its connection is closed after it.
    assert reply is not None and reply.status == 200, reply
    assert reply.headers.get("connection", "").lower() == "close"
    srv.start()
    got = raw.signed("GET", f"/{bucket}/obj")
    assert got.status == 200 and got.body == data


def test_sigkill_during_upload_leaves_nothing_partial(make_server):
    srv = make_server()
    raw = Raw(srv.port)
    bucket = f"sk-{uuid.uuid4().hex[:12]}"
    assert raw.signed("PUT", f"/{bucket}").status == 200
    assert raw.signed("PUT", f"/{bucket}/obj", b"old").status == 200
    data = os.urandom(2_000_000)

    def kill():
        time.sleep(0.2)
        assert srv.proc is not None
        srv.proc.kill()
        srv.proc.wait()

    assert _slow_upload(srv.port, f"/{bucket}/obj", data, len(data) // 2, kill) is None
    srv.proc = None
    srv.start()
    assert raw.signed("GET", f"/{bucket}/obj").body == b"old"
    blobs = os.path.join(srv.data_dir, ".shoal", "blobs")
    leftover = [f for _, _, files in os.walk(blobs) for f in files if "tmp" in f]
    assert leftover == [], leftover


def test_sigterm_closes_idle_keep_alive_connections_promptly(make_server):
    srv = make_server()
    raw = Raw(srv.port)
    conn = raw.connection()
    assert raw.signed("GET", "/", conn=conn).status == 200  # now idle, kept alive
    started = time.monotonic()
    assert srv.stop(timeout=20) == 0
    assert time.monotonic() - started < 3
    conn.close()


def test_server_stays_responsive_during_a_stalled_upload(raw, rb):
    """One client that stops sending mid-body must not hold up anyone else."""
    path = f"/{rb}/stalled"
    data = os.urandom(100_000)
    headers = sign_v4("PUT", raw.endpoint + path, data, {"Content-Length": str(len(data))})
    stalled = socket.create_connection(("127.0.0.1", raw.port), timeout=5)
    try:
        stalled.sendall(request_bytes("PUT", path, headers) + data[:1000])
        done = threading.Event()

        def others():
            for i in range(5):
                assert raw.signed("PUT", f"/{rb}/other{i}", b"x").status == 200
            done.set()

        worker = threading.Thread(target=others)
        worker.start()
        worker.join(5)
        assert done.is_set()
    finally:
        stalled.close()
    assert_absent(raw, rb, "stalled")


# -- zero-copy GETs (shoal.http.zerocopy) ---------------------------------------------------------------------


def _open_fds(server) -> int:
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def test_slow_reader_gets_every_byte_of_a_blob(raw, rb):
    """A client reading slowly fills the socket buffer: the sender waits for it to drain, again and again."""
    data = os.urandom(12 * 1024 * 1024)
    assert raw.signed("PUT", f"/{rb}/slow", data).status == 200
    with socket.create_connection(("127.0.0.1", raw.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        s.sendall(_signed_get(raw, f"/{rb}/slow"))
        received = bytearray()
        while b"\r\n\r\n" not in received or len(received) - received.index(b"\r\n\r\n") - 4 < len(data):
            chunk = s.recv(64 * 1024)
            assert chunk, "the server closed the connection early"
            received += chunk
            if len(received) < 2 * 1024 * 1024:
                time.sleep(0.002)  # slow at first: the server meets a full socket buffer many times
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == data
        s.sendall(_signed_get(raw, f"/{rb}/slow"))  # and the connection still carries the next request
        assert _read_response(s, "GET").body == data


def test_reader_hanging_up_mid_blob_leaves_the_server_well(server, raw, rb):
    data = os.urandom(16 * 1024 * 1024)
    assert raw.signed("PUT", f"/{rb}/big", data).status == 200
    get(raw, rb, "big")  # warm up: the server's own descriptors settle
    before = _open_fds(server)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", raw.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            s.sendall(_signed_get(raw, f"/{rb}/big"))
            s.recv(100_000)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not a clean FIN
    assert get(raw, rb, "big").body == data
    deadline = time.monotonic() + 5
    while _open_fds(server) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_fds(server) <= before  # no descriptor (socket duplicate, blob file) left behind


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_both_event_loops_serve_every_body_path(make_server, loop):
    """The suite runs on the default loop (uvloop when installed); Python's own loop, the fallback where uvloop is
    missing, must serve the paths that reach into the transport just as well: large plain bodies received straight
    into buffers, aws-chunked bodies, zero-copy GETs whole and ranged, multipart uploads."""
    from boto3.s3.transfer import TransferConfig

    srv = make_server(args=["--event-loop", loop])
    assert f"event loop: {loop}" in srv.log()
    raw = Raw(srv.port)
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="loops")
    data = os.urandom(6 * 1024 * 1024 + 7)
    s3.put_object(Bucket="loops", Key="plain", Body=data)  # Content-Length and a signed payload: direct receive
    headers = streaming_headers(raw, "/loops/chunked", len(data))
    assert raw.send("PUT", "/loops/chunked", aws_chunked(data, 65536, headers), headers).status == 200
    s3.upload_fileobj(io.BytesIO(data), "loops", "parts",
                      Config=TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
    assert s3.head_object(Bucket="loops", Key="parts")["ETag"].endswith('-2"')
    for key in ("plain", "chunked", "parts"):
        assert s3.get_object(Bucket="loops", Key=key)["Body"].read() == data
        ranged = s3.get_object(Bucket="loops", Key=key, Range="bytes=1000000-5500000")["Body"].read()
        assert ranged == data[1000000:5500001]


def test_metadata_bytes_that_are_not_utf8_do_not_break_reads(raw, rb):
    """Header bytes that are not UTF-8 are decoded to surrogates; the stored metadata keeps them (json writes
    them as escapes, which orjson refuses to read: the store then reads that row with json). GET and HEAD
    answer with them (sent back as they came)."""
    put = presign_v4("PUT", f"{raw.endpoint}/{rb}/odd", 300).split(str(raw.port), 1)[1]  # host-only signature
    head = request_bytes("PUT", put, {"Host": f"127.0.0.1:{raw.port}", "Content-Length": "4",
                                       "x-amz-meta-note": "plain"})
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        s.sendall(head.replace(b"x-amz-meta-note: plain", b"x-amz-meta-note: caf\xe9 \xff") + b"body")
        assert _read_response(s, "PUT").status == 200
    for method in ("GET", "HEAD"):
        with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
            s.sendall(request_bytes(method, f"/{rb}/odd", sign_v4(method, f"{raw.endpoint}/{rb}/odd")))
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
        status, _, rest = data.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 200"), data[:300]
        assert b"\r\nx-amz-meta-note: caf" in rest.split(b"\r\n\r\n")[0]
