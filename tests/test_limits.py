"""Input limits: each refused with S3's error, before the server spends memory or disk on it."""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT
from rawhttp import request_bytes, sign_v4

GiB = 1024**3


@pytest.fixture
def rb(s3, bucket) -> str:
    return bucket


def _headers_only(port: int, method: str, target: str, headers: dict[str, str], timeout: float = 10) -> tuple:
    """Send a request head only (the body it announces never follows) and read the answer: a refusal must come
    without the server waiting for the body. Returns (status, code, seconds)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request_bytes(method, target, headers))
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"</Error>"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - started
    status = int(data.split(b" ", 2)[1])
    body = data.split(b"\r\n\r\n", 1)[1]
    return status, ET.fromstring(body).findtext("Code"), elapsed


@pytest.mark.parametrize("size, code", [(5 * GiB, None), (5 * GiB + 1, "EntityTooLarge"), (10**15, "EntityTooLarge")])
def test_single_put_over_5_gib_is_refused_before_reading(server, rb, size, code):
    target = f"/{rb}/huge"
    headers = sign_v4("PUT", f"{server.endpoint}{target}", b"", {"Content-Length": str(size)},
                      payload="UNSIGNED-PAYLOAD")
    if code is None:
        # Exactly 5 GiB is allowed: the server starts reading (and, as no body comes, times out or waits):
        # just check that it does not refuse at once.
        with socket.create_connection(("127.0.0.1", server.port), timeout=1) as s:
            s.sendall(request_bytes("PUT", target, headers))
            with pytest.raises(TimeoutError):
                s.recv(100)
        return
    status, got, elapsed = _headers_only(server.port, "PUT", target, headers)
    assert (status, got) == (400, code)
    assert elapsed < 5


def test_expect_continue_put_over_5_gib_gets_no_100(server, rb):
    target = f"/{rb}/huge"
    headers = sign_v4("PUT", f"{server.endpoint}{target}", b"", {"Content-Length": str(6 * GiB),
                                                                 "Expect": "100-continue"},
                      payload="UNSIGNED-PAYLOAD")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request_bytes("PUT", target, headers))
        first = s.recv(65536)
    assert first.startswith(b"HTTP/1.1 400"), first[:200]
    assert b"<Code>EntityTooLarge</Code>" in first or b"EntityTooLarge" in first


def test_aws_chunked_put_declaring_over_5_gib_is_refused(server, rb):
    target = f"/{rb}/huge"
    headers = sign_v4("PUT", f"{server.endpoint}{target}", b"", {
        "Content-Length": str(6 * GiB + 100_000), "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(6 * GiB)}, payload="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    status, code, _ = _headers_only(server.port, "PUT", target, headers)
    assert (status, code) == (400, "EntityTooLarge")


def test_upload_part_over_5_gib_is_refused_before_reading(server, s3, rb):
    upload = s3.create_multipart_upload(Bucket=rb, Key="mp")["UploadId"]
    target = f"/{rb}/mp?partNumber=1&uploadId={upload}"
    headers = sign_v4("PUT", f"{server.endpoint}{target}", b"", {"Content-Length": str(5 * GiB + 1)},
                      payload="UNSIGNED-PAYLOAD")
    status, code, elapsed = _headers_only(server.port, "PUT", target, headers)
    assert (status, code) == (400, "EntityTooLarge") and elapsed < 5
    assert s3.list_parts(Bucket=rb, Key="mp", UploadId=upload).get("Parts", []) == []


def test_user_metadata_limit_is_2_kib(raw, rb):
    # Names (without x-amz-meta-) and values count; 2048 bytes in all is allowed, one more is not.
    ok = {"x-amz-meta-a": "v" * (2048 - 1)}
    assert raw.signed("PUT", f"/{rb}/m", b"x", ok).status == 200
    too_big = {"x-amz-meta-a": "v" * 2048}
    resp = raw.signed("PUT", f"/{rb}/m2", b"x", too_big)
    assert (resp.status, resp.code) == (400, "MetadataTooLarge")
    resp = raw.signed("POST", f"/{rb}/m3?uploads", b"", {"x-amz-meta-" + "n" * 1100: "v" * 1000})
    assert (resp.status, resp.code) == (400, "MetadataTooLarge")


def test_key_longer_than_1024_bytes(raw, rb):
    resp = raw.signed("PUT", f"/{rb}/" + "k" * 1025, b"x")
    assert (resp.status, resp.code) == (400, "KeyTooLongError")


def test_oversize_header_is_an_s3_error(raw, rb):
    resp = raw.send("GET", f"/{rb}/k", headers={"X-Big": "a" * 20_000})
    assert (resp.status, resp.code) == (400, "RequestHeaderSectionTooLarge")


@pytest.mark.parametrize("header", ["a\x00b", "a\rb"])
def test_malformed_header_is_an_s3_error(server, rb, header):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"GET /{rb}/k HTTP/1.1\r\nHost: x\r\nX-Bad: {header}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", data[:300]
    assert b"x-amz-request-id" in head.lower() and b"application/xml" in head.lower()
    assert ET.fromstring(body).findtext("Code") == "BadRequest"


def test_xml_entity_expansion_is_refused(raw, s3, rb):
    s3.put_object(Bucket=rb, Key="k", Body=b"x")
    laughs = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">]>'
              b"<Tagging><TagSet><Tag><Key>k</Key><Value>&d;</Value></Tag></TagSet></Tagging>")
    resp = raw.signed("PUT", f"/{rb}/k?tagging", laughs)
    assert (resp.status, resp.code) == (400, "MalformedXML")
    external = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                b"<Tagging><TagSet><Tag><Key>k</Key><Value>&e;</Value></Tag></TagSet></Tagging>")
    resp = raw.signed("PUT", f"/{rb}/k?tagging", external)
    assert (resp.status, resp.code) == (400, "MalformedXML")
    assert s3.get_object_tagging(Bucket=rb, Key="k")["TagSet"] == []


def test_oversize_xml_documents_are_refused(raw, rb):
    big = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 200_000 + b"</Delete>"  # ~5.6 MiB > 4 MiB
    resp = raw.signed("POST", f"/{rb}?delete", big, payload="UNSIGNED-PAYLOAD")
    assert (resp.status, resp.code) == (400, "MalformedXML")
    rules = "".join(f"<CORSRule><AllowedOrigin>http://{i}.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
                    "</CORSRule>" for i in range(2000)).encode()  # > 64 KiB
    resp = raw.signed("PUT", f"/{rb}?cors", b"<CORSConfiguration>" + rules + b"</CORSConfiguration>")
    assert (resp.status, resp.code) == (400, "MalformedXML")


def test_delete_objects_over_1000_keys_is_refused(raw, rb):
    doc = b"<Delete>" + b"".join(b"<Object><Key>k%d</Key></Object>" % i for i in range(1001)) + b"</Delete>"
    resp = raw.signed("POST", f"/{rb}?delete", doc)
    assert (resp.status, resp.code) == (400, "MalformedXML")


def test_bucket_policy_over_20_kb_is_refused(raw, rb):
    import json

    statement = {"Effect": "Allow", "Principal": {"AWS": ROOT[0]}, "Action": "s3:GetObject",
                 "Resource": f"arn:aws:s3:::{rb}/*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [statement] * 200}).encode()
    assert len(policy) > 20 * 1024
    resp = raw.signed("PUT", f"/{rb}?policy", policy)
    assert (resp.status, resp.code) == (400, "MalformedPolicy")
    huge = json.dumps({"Version": "2012-10-17", "Statement": [statement] * 1000}).encode()
    assert len(huge) > 64 * 1024  # beyond what the server reads at all
    resp = raw.signed("PUT", f"/{rb}?policy", huge)
    assert (resp.status, resp.code) == (400, "MalformedPolicy")
