"""CORS: Put/Get/DeleteBucketCors, preflight (OPTIONS) decisions and the Access-Control-* headers of actual
requests, errors included; the server-wide --cors-origin default."""

from __future__ import annotations

import pytest
from access_helpers import fails

from conftest import client
from rawhttp import Raw

ORIGIN = "https://app.example.com"
ACAO = "access-control-allow-origin"
CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-methods", "access-control-expose-headers",
                "access-control-max-age", "access-control-allow-headers", "access-control-allow-credentials")


def preflight(raw: Raw, path: str, origin: str | None = ORIGIN, method: str | None = "GET",
              headers: str | None = None):
    h = {}
    if origin is not None:
        h["Origin"] = origin
    if method is not None:
        h["Access-Control-Request-Method"] = method
    if headers is not None:
        h["Access-Control-Request-Headers"] = headers
    return raw.send("OPTIONS", path, headers=h)


def no_cors(headers: dict[str, str]) -> bool:
    return not any(h in headers for h in CORS_HEADERS)


RULES = [
    {"ID": "app", "AllowedOrigins": [ORIGIN], "AllowedMethods": ["GET", "HEAD", "PUT"],
     "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag", "x-amz-version-id"],
     "MaxAgeSeconds": 600},
    {"AllowedOrigins": ["https://*.example.org"], "AllowedMethods": ["GET"]},
    {"AllowedOrigins": ["*"], "AllowedMethods": ["DELETE"], "AllowedHeaders": ["*"]},
]


@pytest.fixture
def cors_bucket(s3, bucket) -> str:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    return bucket


# -- configuration ---------------------------------------------------------------------------------------------


def test_cors_round_trip(s3, bucket):
    fails(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": RULES})
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [
        RULES[0], RULES[1], {"AllowedOrigins": ["*"], "AllowedMethods": ["DELETE"], "AllowedHeaders": ["*"]}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [RULES[1]]})  # replaces
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == [RULES[1]]
    s3.delete_bucket_cors(Bucket=bucket)
    fails(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)
    s3.delete_bucket_cors(Bucket=bucket)


@pytest.mark.parametrize("rule, code, message", [
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}, "InvalidRequest",
     "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"),
    ({"AllowedOrigins": ["https://*.*.example.com"], "AllowedMethods": ["GET"]}, "InvalidRequest",
     'AllowedOrigin "https://*.*.example.com" can not have more than one wildcard.'),
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["x-*-*"]}, "InvalidRequest",
     'AllowedHeader "x-*-*" can not have more than one wildcard.'),
    ({"AllowedOrigins": ["*"], "AllowedMethods": ["get"]}, "InvalidRequest",
     "Found unsupported HTTP method in CORS config. Unsupported method is get"),
], ids=["method", "origin-wildcards", "header-wildcards", "lowercase-method"])
def test_invalid_rules(s3, bucket, rule, code, message):
    err = fails(s3.put_bucket_cors, code, 400, Bucket=bucket, CORSConfiguration={"CORSRules": [rule]})
    assert err.response["Error"]["Message"] == message
    fails(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket=bucket)


@pytest.mark.parametrize("body", [
    b"<CORSConfiguration/>",
    b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
    b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>",
    b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
    b"<MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>",
    b"<Configuration/>",
    b"<CORSConfiguration><CORSRule>",
], ids=["empty", "no-origin", "no-method", "bad-max-age", "wrong-root", "truncated"])
def test_malformed_configuration(raw, bucket, body):
    got = raw.signed("PUT", f"/{bucket}?cors", body)
    assert (got.status, got.code) == (400, "MalformedXML"), got


def test_cors_of_missing_bucket(s3):
    fails(s3.get_bucket_cors, "NoSuchBucket", 404, Bucket="no-such-bucket-for-cors")


# -- preflight -------------------------------------------------------------------------------------------------


def test_preflight_needs_origin_and_method(raw, cors_bucket):
    for origin, method in ((None, "GET"), (ORIGIN, None), (None, None)):
        got = preflight(raw, f"/{cors_bucket}/k", origin, method)
        assert (got.status, got.code) == (400, "BadRequest"), got


def test_preflight_on_bucket_without_cors(raw, bucket):
    got = preflight(raw, f"/{bucket}/k")
    assert (got.status, got.code) == (403, "AccessForbidden"), got
    assert no_cors(got.headers)
    got = preflight(raw, "/no-such-bucket-anywhere/k")
    assert (got.status, got.code) == (403, "AccessForbidden"), got


def test_preflight_matching_rule(raw, cors_bucket):
    got = preflight(raw, f"/{cors_bucket}/k", method="PUT", headers="Content-Type, X-Amz-Meta-Color")
    assert got.status == 200, got
    assert got.body == b""
    h = got.headers
    assert h[ACAO] == ORIGIN
    assert h["access-control-allow-methods"] == "GET, HEAD, PUT"
    assert h["access-control-allow-headers"].lower() == "content-type, x-amz-meta-color"
    assert h["access-control-expose-headers"] == "ETag, x-amz-version-id"
    assert h["access-control-max-age"] == "600"
    assert h["access-control-allow-credentials"] == "true"
    assert set(h["vary"].replace(" ", "").split(",")) >= {"Origin", "Access-Control-Request-Headers",
                                                          "Access-Control-Request-Method"}


def test_preflight_on_the_bucket_itself(raw, cors_bucket):
    got = preflight(raw, f"/{cors_bucket}")
    assert (got.status, got.headers[ACAO]) == (200, ORIGIN)


@pytest.mark.parametrize("origin, method, headers", [
    ("https://evil.example.net", "GET", None),  # origin in no rule
    ("http://app.example.com", "GET", None),  # scheme differs
    (ORIGIN, "POST", None),  # method in no rule for this origin
    (ORIGIN, "PUT", "x-custom-header"),  # header not allowed
    ("https://cdn.example.org", "PUT", None),  # wildcard origin, but only GET
    ("https://example.org", "GET", None),  # the wildcard needs something before the dot
], ids=["origin", "scheme", "method", "header", "wildcard-method", "wildcard-origin"])
def test_preflight_refused(raw, cors_bucket, origin, method, headers):
    got = preflight(raw, f"/{cors_bucket}/k", origin, method, headers)
    assert (got.status, got.code) == (403, "AccessForbidden"), got
    assert no_cors(got.headers), got.headers


def test_preflight_wildcard_origin_rule(raw, cors_bucket):
    got = preflight(raw, f"/{cors_bucket}/k", "https://cdn.example.org", "GET")
    assert got.status == 200
    assert got.headers[ACAO] == "https://cdn.example.org"
    assert got.headers["access-control-allow-methods"] == "GET"
    assert "access-control-max-age" not in got.headers and "access-control-expose-headers" not in got.headers


def test_preflight_any_origin_rule(raw, cors_bucket):
    got = preflight(raw, f"/{cors_bucket}/k", "https://anything.test", "DELETE", "X-Whatever, Authorization")
    assert got.status == 200, got
    assert got.headers[ACAO] == "*"
    assert got.headers["access-control-allow-methods"] == "DELETE"
    assert got.headers["access-control-allow-headers"].lower() == "x-whatever, authorization"
    assert "access-control-allow-credentials" not in got.headers  # never with "*"


def test_first_matching_rule_wins(s3, raw, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": [ORIGIN], "AllowedMethods": ["GET"], "MaxAgeSeconds": 1},
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT"], "MaxAgeSeconds": 2}]})
    assert preflight(raw, f"/{bucket}/k").headers["access-control-max-age"] == "1"
    got = preflight(raw, f"/{bucket}/k", method="PUT")
    assert (got.headers["access-control-max-age"], got.headers[ACAO]) == ("2", "*")


def test_header_names_match_case_insensitively(s3, raw, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": [ORIGIN], "AllowedMethods": ["PUT"], "AllowedHeaders": ["X-Amz-Meta-*"]}]})
    assert preflight(raw, f"/{bucket}/k", method="PUT", headers="x-amz-meta-a,X-AMZ-META-B").status == 200
    assert preflight(raw, f"/{bucket}/k", method="PUT", headers="x-amz-meta-a, content-type").status == 403


# -- actual requests -----------------------------------------------------------------------------------------------


def test_actual_get_and_head(raw, cors_bucket):
    got = raw.signed("GET", f"/{cors_bucket}/k", headers={"Origin": ORIGIN})
    assert (got.status, got.body) == (200, b"data")
    h = got.headers
    assert h[ACAO] == ORIGIN
    assert h["access-control-allow-methods"] == "GET, HEAD, PUT"
    assert h["access-control-expose-headers"] == "ETag, x-amz-version-id"
    assert "Origin" in h["vary"]
    head = raw.signed("HEAD", f"/{cors_bucket}/k", headers={"Origin": ORIGIN})
    assert (head.status, head.headers[ACAO]) == (200, ORIGIN)


def test_actual_put_and_delete(s3, raw, cors_bucket):
    put = raw.signed("PUT", f"/{cors_bucket}/new", b"xyz", headers={"Origin": ORIGIN})
    assert (put.status, put.headers[ACAO]) == (200, ORIGIN)
    delete = raw.signed("DELETE", f"/{cors_bucket}/new", headers={"Origin": "https://other.test"})
    assert (delete.status, delete.headers[ACAO]) == (204, "*")
    assert delete.headers["access-control-allow-methods"] == "DELETE"


def test_actual_request_without_matching_rule(raw, cors_bucket):
    got = raw.signed("GET", f"/{cors_bucket}/k", headers={"Origin": "https://evil.example.net"})
    assert got.status == 200 and no_cors(got.headers), got.headers
    got = raw.signed("PUT", f"/{cors_bucket}/x", b"x", headers={"Origin": "https://cdn.example.org"})
    assert got.status == 200 and no_cors(got.headers), got.headers  # that origin may only GET
    got = raw.signed("GET", f"/{cors_bucket}/k")
    assert no_cors(got.headers)  # no Origin: not a CORS request


def test_cors_headers_on_errors(raw, cors_bucket):
    missing = raw.signed("GET", f"/{cors_bucket}/missing", headers={"Origin": ORIGIN})
    assert (missing.status, missing.code, missing.headers[ACAO]) == (404, "NoSuchKey", ORIGIN)
    forbidden = raw.send("GET", f"/{cors_bucket}/k", headers={"Origin": ORIGIN})  # anonymous
    assert (forbidden.status, forbidden.code, forbidden.headers[ACAO]) == (403, "AccessDenied", ORIGIN)
    assert forbidden.headers["access-control-expose-headers"] == "ETag, x-amz-version-id"
    head = raw.send("HEAD", f"/{cors_bucket}/k", headers={"Origin": ORIGIN})
    assert (head.status, head.headers[ACAO]) == (403, ORIGIN)
    bad_sig = raw.signed("GET", f"/{cors_bucket}/k", headers={"Origin": ORIGIN}, creds=("shoaltestroot", "wrong"))
    assert (bad_sig.status, bad_sig.code, bad_sig.headers[ACAO]) == (403, "SignatureDoesNotMatch", ORIGIN)


def test_anonymous_browser_read_of_public_object(s3, raw, cors_bucket):
    s3.put_object(Bucket=cors_bucket, Key="pub", Body=b"hello browser", ACL="public-read")
    got = raw.send("GET", f"/{cors_bucket}/pub", headers={"Origin": ORIGIN})
    assert (got.status, got.body, got.headers[ACAO]) == (200, b"hello browser", ORIGIN)


def test_deleting_the_rules_stops_cors(s3, raw, cors_bucket):
    s3.delete_bucket_cors(Bucket=cors_bucket)
    assert preflight(raw, f"/{cors_bucket}/k").status == 403
    assert no_cors(raw.signed("GET", f"/{cors_bucket}/k", headers={"Origin": ORIGIN}).headers)


# -- the server-wide default --------------------------------------------------------------------------------------


def test_server_wide_default_only_for_buckets_without_rules(make_server):
    srv = make_server(["--cors-origin", "*"])
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="plain")
    s3.create_bucket(Bucket="own-rules")
    s3.put_bucket_cors(Bucket="own-rules", CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": [ORIGIN], "AllowedMethods": ["GET"]}]})
    raw = Raw(srv.port)

    got = preflight(raw, "/plain/k", "https://anywhere.test", "PUT", "content-type")
    assert (got.status, got.headers[ACAO]) == (200, "*")
    assert got.headers["access-control-expose-headers"] == "ETag, x-amz-version-id, x-amz-request-id"
    assert raw.signed("GET", "/plain?list-type=2", headers={"Origin": "https://anywhere.test"}).headers[ACAO] == "*"
    fails(s3.get_bucket_cors, "NoSuchCORSConfiguration", 404, Bucket="plain")  # a default, not a configuration

    refused = preflight(raw, "/own-rules/k", "https://anywhere.test", "GET")
    assert (refused.status, refused.code) == (403, "AccessForbidden")
    assert no_cors(raw.signed("GET", "/own-rules?list-type=2", headers={"Origin": "https://anywhere.test"}).headers)
    assert preflight(raw, "/own-rules/k", ORIGIN, "GET").headers[ACAO] == ORIGIN
    got = preflight(raw, "/own-rules/k", ORIGIN, "PUT")
    assert got.status == 403  # its own rules only: the default does not add PUT


def test_no_default_without_the_flag(raw, bucket):
    got = raw.signed("GET", f"/{bucket}?list-type=2", headers={"Origin": ORIGIN})
    assert got.status == 200 and no_cors(got.headers)
