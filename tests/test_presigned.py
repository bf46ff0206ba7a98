"""Presigned URLs made by boto3 (its default SigV2 query form and SigV4), used by a plain HTTP client."""

from __future__ import annotations

import http.client
import re
import time
from urllib.parse import urlsplit

import pytest

from conftest import ALT, ROOT, client


@pytest.fixture(params=["s3", "s3v4"], ids=["sigv2", "sigv4"])
def signer(request, server):
    """A presigning client; boto3 presigns with SigV2 unless told otherwise."""
    return lambda creds=ROOT: client(server.endpoint, creds, signature_version=request.param)


def fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    # http.client sends no Content-Type of its own (it is part of what a SigV2 signature covers).
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, f"{parts.path}?{parts.query}", body=data)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_presigned_get_put_head(signer, s3, bucket):
    c = signer()
    put_url = c.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "via url"}, ExpiresIn=60)
    status, _, body = fetch(put_url, "PUT", b"uploaded through a presigned URL")
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="via url")["Body"].read() == b"uploaded through a presigned URL"
    get_url = c.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "via url"}, ExpiresIn=60)
    status, _, body = fetch(get_url)
    assert (status, body) == (200, b"uploaded through a presigned URL")
    head_url = c.generate_presigned_url("head_object", Params={"Bucket": bucket, "Key": "via url"}, ExpiresIn=60)
    status, headers, body = fetch(head_url, "HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == "32"


def test_presigned_get_with_overrides(signer, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"{}")
    url = signer().generate_presigned_url("get_object", ExpiresIn=60, Params={
        "Bucket": bucket, "Key": "k", "ResponseContentType": "application/json",
        "ResponseContentDisposition": "attachment; filename=k.json"})
    status, headers, body = fetch(url)
    assert (status, body) == (200, b"{}")
    assert headers["content-type"] == "application/json"
    assert headers["content-disposition"] == "attachment; filename=k.json"


def test_presigned_url_expires(signer, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = signer().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=1)
    assert fetch(url)[0] == 200
    time.sleep(2.1)
    status, _, body = fetch(url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body


@pytest.mark.parametrize("tamper", ["key", "expires", "signature"])
def test_presigned_url_tampered(signer, s3, bucket, tamper):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="j", Body=b"y")
    url = signer().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=60)
    if tamper == "key":
        tampered = url.replace(f"/{bucket}/k?", f"/{bucket}/j?")
    elif tamper == "expires":
        tampered = re.sub(r"((?:X-Amz-)?Expires=)(\d+)", lambda m: m.group(1) + str(int(m.group(2)) + 100), url)
    else:
        tampered = re.sub(r"((?:X-Amz-)?Signature=)(.)", lambda m: m.group(1) + ("A" if m.group(2) != "A" else "B"),
                          url)
    assert tampered != url
    status, _, body = fetch(tampered)
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in body


def test_presigned_by_user_without_access(signer, bucket):
    url = signer(ALT).generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "x"}, ExpiresIn=60)
    status, _, body = fetch(url, "PUT", b"nope")
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body
