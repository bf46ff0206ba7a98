"""Browser-based uploads: S3 POST Object with signed POST policies (Signature V4 and V2), anonymous forms,
policy conditions and their refusals, success responses, streaming of large files.

Forms are encoded here by hand and sent with http.client, so every byte of the multipart body is the test's."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ALT, ROOT
from rawhttp import Response, check_common_headers, error_field, signing_key

# -- building and sending forms -----------------------------------------------------------------------------

File = bytes | tuple[str, bytes] | tuple[str, bytes, str]  # content, or (filename, content[, content type])


def _part_header(boundary: str, name: str, filename: str | None = None, content_type: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    text = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if content_type is not None:
        text += f"Content-Type: {content_type}\r\n"
    return (text + "\r\n").encode()


def encode_form(fields: Iterable[tuple[str, str]], file: File | None, after: Iterable[tuple[str, str]] = (),
                *, chunks: Iterable[bytes] | None = None, size: int = 0) -> tuple[str, list[bytes] | Iterator[bytes],
                                                                                   int]:
    """(content type, body pieces, length). ``chunks`` + ``size`` stream a file without holding it."""
    boundary = f"----shoalform{uuid.uuid4().hex}"
    head = b"".join(_part_header(boundary, name) + value.encode() + b"\r\n" for name, value in fields)
    tail = b"".join(_part_header(boundary, name) + value.encode() + b"\r\n" for name, value in after)
    tail += f"--{boundary}--\r\n".encode()
    if file is None and chunks is None:
        pieces: list[bytes] = [head, tail]
        return f"multipart/form-data; boundary={boundary}", pieces, len(head) + len(tail)
    if chunks is None:
        assert file is not None
        filename, content, ctype = (None, file, None) if isinstance(file, bytes) else (*file, None)[:3]
        head += _part_header(boundary, "file", filename, ctype)
        body = head + content + b"\r\n" + tail
        return f"multipart/form-data; boundary={boundary}", [body], len(body)
    head += _part_header(boundary, "file", "big.bin", "application/octet-stream")

    def stream() -> Iterator[bytes]:
        yield head
        yield from chunks
        yield b"\r\n" + tail

    return f"multipart/form-data; boundary={boundary}", stream(), len(head) + size + 2 + len(tail)


def send(url: str, content_type: str, pieces, length: int, headers: dict[str, str] | None = None) -> Response:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest("POST", parts.path or "/", skip_accept_encoding=True)
        conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(length))
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        for piece in pieces:
            conn.send(piece)
        resp = conn.getresponse()
        body = resp.read()
        reply = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()
    if reply.status != 303:
        check_common_headers(reply.status, reply.headers, reply.body, "POST")
    return reply


def post(url: str, fields: Iterable[tuple[str, str]] | dict[str, str], file: File | None = b"hello",
         after: Iterable[tuple[str, str]] = (), headers: dict[str, str] | None = None) -> Response:
    items = list(fields.items()) if isinstance(fields, dict) else list(fields)
    content_type, pieces, length = encode_form(items, file, after)
    return send(url, content_type, pieces, length, headers)


def expiration(seconds: float = 3600) -> str:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_policy(document: dict | str) -> str:
    text = document if isinstance(document, str) else json.dumps(document)
    return base64.b64encode(text.encode()).decode()


def v2_form(policy: dict | str, creds=ROOT) -> dict[str, str]:
    encoded = encode_policy(policy)
    signature = base64.b64encode(hmac.digest(creds[1].encode(), encoded.encode(), "sha1")).decode()
    return {"AWSAccessKeyId": creds[0], "policy": encoded, "signature": signature}


def v4_form(bucket: str, conditions: list, creds=ROOT, *, expires: str | None = None,
            region: str = "us-east-1") -> dict[str, str]:
    """The signing fields of a V4 form; the policy covers them, the bucket and ``conditions``."""
    now = datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{creds[0]}/{amz_date[:8]}/{region}/s3/aws4_request"
    signing = {"x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": credential, "x-amz-date": amz_date}
    document = {"expiration": expires or expiration(),
                "conditions": [{"bucket": bucket}, *conditions, *({k: v} for k, v in signing.items())]}
    encoded = encode_policy(document)
    key = signing_key(creds[1], amz_date[:8], region)
    signature = hmac.new(key, encoded.encode(), hashlib.sha256).hexdigest()
    return {**signing, "policy": encoded, "x-amz-signature": signature}


def v2_policy(bucket: str, *conditions, expires: str | None = None) -> dict:
    return {"expiration": expires or expiration(), "conditions": [{"bucket": bucket}, *conditions]}


@pytest.fixture
def url(server, bucket) -> str:
    return f"{server.endpoint}/{bucket}"


@pytest.fixture
def public_bucket(s3) -> str:
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name, ACL="public-read-write")
    return name


def body_of(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def absent(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("404", "NoSuchKey")
    return False


# -- successful uploads -------------------------------------------------------------------------------------


def test_v4_signed_form(s3, url, bucket):
    fields = {"key": "uploads/a.txt", "Content-Type": "text/plain", "x-amz-meta-colour": "blue",
              **v4_form(bucket, [["starts-with", "$key", "uploads/"], {"Content-Type": "text/plain"},
                                 ["starts-with", "$x-amz-meta-colour", ""]])}
    reply = post(url, fields, b"hello world")
    assert reply.status == 204, reply
    assert reply.body == b""
    etag = reply.headers["etag"]
    assert etag == f'"{hashlib.md5(b"hello world").hexdigest()}"'
    assert reply.headers["location"] == f"{url}/uploads/a.txt"
    got = s3.get_object(Bucket=bucket, Key="uploads/a.txt")
    assert got["Body"].read() == b"hello world"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"colour": "blue"}
    assert got["ETag"] == etag


def test_v2_signed_form(s3, url, bucket):
    policy = v2_policy(bucket, ["starts-with", "$key", "foo"], {"acl": "private"},
                       ["starts-with", "$Content-Type", "text/plain"], ["content-length-range", 0, 1024])
    fields = {"key": "foo.txt", "acl": "private", "Content-Type": "text/plain", **v2_form(policy)}
    reply = post(url, fields, b"bar")
    assert reply.status == 204, reply
    assert body_of(s3, bucket, "foo.txt") == b"bar"


def test_boto3_generate_presigned_post_v4(server, s3, bucket):
    v4 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ROOT[0],
                      aws_secret_access_key=ROOT[1], region_name="us-east-1",
                      config=Config(signature_version="s3v4"))
    presigned = v4.generate_presigned_post(
        bucket, "docs/${filename}", Fields={"Content-Type": "text/csv", "x-amz-meta-owner": "ann"},
        Conditions=[{"Content-Type": "text/csv"}, {"x-amz-meta-owner": "ann"}, ["content-length-range", 1, 1000],
                    ["starts-with", "$key", "docs/"]],
        ExpiresIn=600)
    assert presigned["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    reply = post(presigned["url"], presigned["fields"], ("report.csv", b"a,b\n1,2\n", "text/csv"))
    assert reply.status == 204, reply
    got = s3.get_object(Bucket=bucket, Key="docs/report.csv")
    assert got["Body"].read() == b"a,b\n1,2\n"
    assert got["ContentType"] == "text/csv"
    assert got["Metadata"] == {"owner": "ann"}


def test_boto3_generate_presigned_post_v2(server, s3, bucket):
    v2 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ROOT[0],
                      aws_secret_access_key=ROOT[1], region_name="us-east-1",
                      config=Config(signature_version="s3"))
    presigned = v2.generate_presigned_post(bucket, "v2-object", ExpiresIn=600)
    assert "signature" in presigned["fields"]
    reply = post(presigned["url"], presigned["fields"], b"signed the old way")
    assert reply.status == 204, reply
    assert body_of(s3, bucket, "v2-object") == b"signed the old way"


def test_anonymous_form_on_public_write_bucket(server, s3, public_bucket):
    url = f"{server.endpoint}/{public_bucket}"
    reply = post(url, [("key", "anon.txt"), ("acl", "public-read"), ("Content-Type", "text/plain")], b"bar")
    assert reply.status == 204, reply
    assert body_of(s3, public_bucket, "anon.txt") == b"bar"
    acl = s3.get_object_acl(Bucket=public_bucket, Key="anon.txt")
    assert acl["Owner"]["ID"] == s3.get_bucket_acl(Bucket=public_bucket)["Owner"]["ID"]  # owned by the bucket owner
    anonymous = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                             config=Config(signature_version=UNSIGNED))
    assert anonymous.get_object(Bucket=public_bucket, Key="anon.txt")["Body"].read() == b"bar"  # acl=public-read


def test_anonymous_put_on_public_write_bucket(server, s3, public_bucket):
    """The same ownership rule for a plain anonymous PUT (it used to fail an assertion: a 500)."""
    anonymous = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                             config=Config(signature_version=UNSIGNED))
    anonymous.put_object(Bucket=public_bucket, Key="anon-put", Body=b"x")
    acl = s3.get_object_acl(Bucket=public_bucket, Key="anon-put")
    assert acl["Owner"]["ID"] == s3.get_bucket_acl(Bucket=public_bucket)["Owner"]["ID"]


def test_anonymous_form_refused_on_private_bucket(s3, url, bucket):
    reply = post(url, {"key": "anon.txt"}, b"bar")
    assert reply.status == 403 and reply.code == "AccessDenied", reply
    assert absent(s3, bucket, "anon.txt")


def test_anonymous_form_allowed_by_bucket_policy(s3, url, bucket):
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/drop/*"}]}))
    assert post(url, {"key": "drop/x"}, b"1").status == 204
    assert post(url, {"key": "elsewhere"}, b"1").code == "AccessDenied"
    assert body_of(s3, bucket, "drop/x") == b"1"


def test_signed_form_needs_the_signers_permission(server, alt_s3, s3, url, bucket):
    fields = {"key": "k", **v4_form(bucket, [["starts-with", "$key", ""]], creds=ALT)}
    reply = post(url, fields)
    assert reply.status == 403 and reply.code == "AccessDenied", reply
    mine = f"test-{uuid.uuid4().hex[:20]}"
    alt_s3.create_bucket(Bucket=mine)
    fields = {"key": "k", **v4_form(mine, [["starts-with", "$key", ""]], creds=ALT)}
    assert post(f"{server.endpoint}/{mine}", fields).status == 204
    assert alt_s3.get_object_acl(Bucket=mine, Key="k")["Owner"]["ID"] != s3.get_bucket_acl(
        Bucket=bucket)["Owner"]["ID"]


def test_key_from_filename(s3, url, bucket):
    policy = v2_policy(bucket, ["starts-with", "$key", "in/"])
    reply = post(url, {"key": "in/${filename}", **v2_form(policy)}, ("photo.jpg", b"jpeg bytes", "image/jpeg"))
    assert reply.status == 204, reply
    assert body_of(s3, bucket, "in/photo.jpg") == b"jpeg bytes"
    # The condition applies to the key after substitution.
    policy = v2_policy(bucket, ["starts-with", "$key", "in/ok"])
    reply = post(url, {"key": "in/${filename}", **v2_form(policy)}, ("photo.jpg", b"x"))
    assert reply.status == 403 and "Policy Condition failed" in reply.message, reply


def test_fields_set_object_attributes(server, s3, url, bucket):
    tagging = ("<Tagging><TagSet><Tag><Key>team</Key><Value>blue</Value></Tag>"
               "<Tag><Key>tier</Key><Value>1</Value></Tag></TagSet></Tagging>")
    fields = {"key": "attrs", "acl": "public-read", "Content-Type": "image/png", "Cache-Control": "max-age=60",
              "Content-Disposition": "attachment", "x-amz-meta-a": "1", "X-Amz-Meta-B": "two",
              "x-amz-storage-class": "STANDARD_IA", "tagging": tagging}
    conditions = [["starts-with", f"${name}", ""] for name in fields if name != "key"] + [{"key": "attrs"}]
    reply = post(url, {**fields, **v4_form(bucket, conditions)}, b"\x89PNG")
    assert reply.status == 204, reply
    got = s3.get_object(Bucket=bucket, Key="attrs")
    assert got["ContentType"] == "image/png"
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == "attachment"
    assert got["Metadata"] == {"a": "1", "b": "two"}
    assert got["StorageClass"] == "STANDARD_IA"
    tags = s3.get_object_tagging(Bucket=bucket, Key="attrs")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("team", "blue"), ("tier", "1")]
    grants = s3.get_object_acl(Bucket=bucket, Key="attrs")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("/global/AllUsers") and g["Permission"] == "READ"
               for g in grants)


def test_bad_tagging_document(url, bucket):
    fields = {"key": "t", "tagging": "<Tagging><TagSet>", **v2_form(v2_policy(
        bucket, ["starts-with", "$key", ""], ["starts-with", "$tagging", ""]))}
    reply = post(url, fields)
    assert reply.status == 400 and reply.code == "MalformedXML", reply


def test_server_side_encryption_and_checksum_fields(s3, url, bucket):
    data = b"x" * 3000
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    sign = v2_form(v2_policy(bucket, ["starts-with", "$key", ""], ["eq", "$x-amz-server-side-encryption",
                                                                      "AES256"]))
    fields = {"key": "enc", "x-amz-server-side-encryption": "AES256", "x-amz-checksum-sha256": good, **sign}
    reply = post(url, fields, data)
    assert reply.status == 204, reply
    assert reply.headers["x-amz-server-side-encryption"] == "AES256"
    assert reply.headers["x-amz-checksum-sha256"] == good
    head = s3.head_object(Bucket=bucket, Key="enc")
    assert head["ServerSideEncryption"] == "AES256"
    assert body_of(s3, bucket, "enc") == data
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    reply = post(url, {**fields, "key": "enc2", "x-amz-checksum-sha256": wrong}, data)
    assert reply.status == 400 and reply.code == "BadDigest", reply
    reply = post(url, {**fields, "key": "enc2", "x-amz-checksum-sha256": "sailorjerry"}, data)
    assert reply.status == 400, reply
    assert absent(s3, bucket, "enc2")


def test_customer_key_fields(s3, url, bucket):
    key = os.urandom(32)
    customer = {"x-amz-server-side-encryption-customer-algorithm": "AES256",
                "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
                "x-amz-server-side-encryption-customer-key-md5": base64.b64encode(hashlib.md5(key).digest()).decode()}
    conditions = [["starts-with", "$key", ""], *(["starts-with", f"${name}", ""] for name in customer)]
    reply = post(url, {"key": "ssec", **customer, **v2_form(v2_policy(bucket, *conditions))}, b"secret")
    assert reply.status == 204, reply
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="ssec")
    got = s3.get_object(Bucket=bucket, Key="ssec", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert got["Body"].read() == b"secret"


def test_bucket_policy_conditions_see_form_fields(s3, url, bucket):
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"StringEquals": {"s3:x-amz-acl": "public-read"}}}]}))
    assert post(url, {"key": "p", "acl": "public-read"}).status == 204
    assert post(url, {"key": "q", "acl": "private"}).code == "AccessDenied"
    assert post(url, {"key": "q"}).code == "AccessDenied"


def test_case_insensitive_field_names_and_operators(s3, url, bucket):
    policy = {"expiration": expiration(), "conditions": [{"bUcKeT": bucket}, ["StArTs-WiTh", "$KeY", "foo"],
                                                         {"AcL": "private"}, ["EQ", "$CoNtEnT-TyPe", "text/plain"]]}
    fields = [("kEy", "foo.txt"), ("aCl", "private"), ("cOnTeNt-TyPe", "text/plain"), ("AWSAccessKeyId", ROOT[0]),
              ("pOLICy", v2_form(policy)["policy"]), ("Signature", v2_form(policy)["signature"])]
    reply = post(url, fields, b"bar")
    assert reply.status == 204, reply
    assert body_of(s3, bucket, "foo.txt") == b"bar"


def test_ignored_fields(s3, url, bucket):
    policy = v2_policy(bucket, ["starts-with", "$key", ""])
    reply = post(url, {"key": "ign", "x-ignore-tracking": "abc", **v2_form(policy)}, b"data",
                 after=[("x-amz-meta-late", "1"), ("anything", "goes")])
    assert reply.status == 204, reply
    assert s3.head_object(Bucket=bucket, Key="ign")["Metadata"] == {}


# -- responses ----------------------------------------------------------------------------------------------


def test_success_action_redirect(s3, url, bucket):
    target = "https://app.example.com/done?from=upload"
    policy = v2_policy(bucket, ["starts-with", "$key", ""], {"success_action_redirect": target})
    reply = post(url, {"key": "my file.txt", "success_action_redirect": target, **v2_form(policy)}, b"r")
    assert reply.status == 303, reply
    etag = s3.head_object(Bucket=bucket, Key="my file.txt")["ETag"].strip('"')
    assert reply.headers["location"] == f"{target}&bucket={bucket}&key=my%20file.txt&etag=%22{etag}%22"
    # The legacy "redirect" field, with a URL that has no query yet.
    policy = v2_policy(bucket, ["starts-with", "$key", ""], ["starts-with", "$redirect", "http://"])
    reply = post(url, {"key": "k2", "redirect": "http://localhost/ok", **v2_form(policy)}, b"r")
    assert reply.status == 303, reply
    assert reply.headers["location"].startswith(f"http://localhost/ok?bucket={bucket}&key=k2&etag=%22")


@pytest.mark.parametrize(("given", "expected"), [("200", 200), ("201", 201), ("204", 204), ("404", 204),
                                                 ("", 204)])
def test_success_action_status(server, s3, public_bucket, given, expected):
    url = f"{server.endpoint}/{public_bucket}"
    reply = post(url, [("key", "s.txt"), ("success_action_status", given)], b"s")
    assert reply.status == expected, reply
    if expected == 201:
        root = ET.fromstring(reply.body)
        assert root.tag == "PostResponse"
        assert root.findtext("Bucket") == public_bucket
        assert root.findtext("Key") == "s.txt"
        assert root.findtext("ETag") == reply.headers["etag"]
        assert root.findtext("Location") == f"{url}/s.txt"
    else:
        assert reply.body == b""


def test_cors_headers_on_post(s3, url, bucket):
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["POST"], "ExposeHeaders": ["ETag"]}]})
    fields = {"key": "cors", **v2_form(v2_policy(bucket, ["starts-with", "$key", ""]))}
    reply = post(url, fields, headers={"Origin": "https://app.example.com"})
    assert reply.status == 204, reply
    assert reply.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "ETag" in reply.headers["access-control-expose-headers"]
    refused = post(url, {**fields, "signature": "AAAA"}, headers={"Origin": "https://app.example.com"})
    assert refused.status == 403
    assert refused.headers["access-control-allow-origin"] == "https://app.example.com"  # the page sees the error
    other = post(url, fields, headers={"Origin": "https://evil.example.com"})
    assert other.status == 204 and "access-control-allow-origin" not in other.headers


# -- refusals -----------------------------------------------------------------------------------------------


def _policy_fields(bucket: str, *conditions, expires: str | None = None) -> dict[str, str]:
    return {"key": "foo.txt", **v2_form(v2_policy(bucket, ["starts-with", "$key", "foo"], *conditions,
                                                  expires=expires))}


def test_bad_signature(s3, url, bucket):
    fields = _policy_fields(bucket)
    reply = post(url, {**fields, "signature": base64.b64encode(b"x" * 20).decode()})
    assert reply.status == 403 and reply.code == "SignatureDoesNotMatch", reply
    v4 = {"key": "foo.txt", **v4_form(bucket, [["starts-with", "$key", ""]])}
    reply = post(url, {**v4, "x-amz-signature": "0" * 64})
    assert reply.status == 403 and reply.code == "SignatureDoesNotMatch", reply
    other_secret = {"key": "foo.txt", **v4_form(bucket, [["starts-with", "$key", ""]], creds=(ROOT[0], "wrong"))}
    assert post(url, other_secret).code == "SignatureDoesNotMatch"
    assert absent(s3, bucket, "foo.txt")


def test_unknown_access_key(url, bucket):
    reply = post(url, {**_policy_fields(bucket), "AWSAccessKeyId": "NOSUCHKEY"})
    assert reply.status == 403 and reply.code == "InvalidAccessKeyId", reply
    reply = post(url, {"key": "foo.txt", **v4_form(bucket, [["starts-with", "$key", ""]], creds=("NOSUCHKEY", "s"))})
    assert reply.status == 403 and reply.code == "InvalidAccessKeyId", reply


def test_expired_policy(s3, url, bucket):
    reply = post(url, _policy_fields(bucket, expires=expiration(-60)))
    assert reply.status == 403 and reply.code == "AccessDenied", reply
    assert reply.message == "Invalid according to Policy: Policy expired."
    assert absent(s3, bucket, "foo.txt")


def test_condition_failed(s3, url, bucket):
    reply = post(url, {**_policy_fields(bucket, ["eq", "$x-amz-meta-foo", ""]), "x-amz-meta-foo": "barclamp"})
    assert reply.status == 403 and reply.code == "AccessDenied", reply
    assert reply.message.startswith("Invalid according to Policy: Policy Condition failed:")
    assert "$x-amz-meta-foo" in reply.message
    # A condition on a field the form lacks compares against the empty string.
    reply = post(url, _policy_fields(bucket, ["starts-with", "$x-amz-meta-foo", "bar"]))
    assert reply.status == 403 and "Policy Condition failed" in reply.message, reply
    assert post(url, _policy_fields(bucket, ["starts-with", "$x-amz-meta-foo", ""])).status == 204
    # Values are case-sensitive.
    reply = post(url, {**_policy_fields(bucket, {"acl": "private"}), "acl": "PRIVATE"})
    assert reply.status == 403, reply


def test_extra_input_fields(s3, url, bucket):
    reply = post(url, {**_policy_fields(bucket), "x-amz-meta-sneaky": "1"})
    assert reply.status == 403 and reply.code == "AccessDenied", reply
    assert reply.message == "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky"
    # The bucket is always a field: a policy without a condition on it does not cover it.
    policy = {"expiration": expiration(), "conditions": [["starts-with", "$key", ""]]}
    reply = post(url, {"key": "foo.txt", **v2_form(policy)})
    assert reply.status == 403 and reply.message.endswith("Extra input fields: bucket"), reply
    assert absent(s3, bucket, "foo.txt")


def test_policy_for_another_bucket(server, s3, url, bucket):
    other = f"test-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=other)
    fields = {**_policy_fields(other), "bucket": other}  # the bucket field of the form does not count
    reply = post(url, fields)
    assert reply.status == 403 and "Policy Condition failed" in reply.message, reply
    assert absent(s3, bucket, "foo.txt") and absent(s3, other, "foo.txt")


def test_missing_key(url, bucket):
    fields = {k: v for k, v in _policy_fields(bucket).items() if k != "key"}
    reply = post(url, fields)
    assert reply.status == 400 and reply.code == "InvalidArgument", reply
    assert "field named 'key'" in reply.message


def test_missing_file(url, bucket):
    reply = post(url, _policy_fields(bucket), file=None)
    assert reply.status == 400 and reply.code == "IncorrectNumberOfFilesInPostRequest", reply


@pytest.mark.parametrize("missing", ["signature", "AWSAccessKeyId"])
def test_incomplete_v2_signature(url, bucket, missing):
    fields = {k: v for k, v in _policy_fields(bucket).items() if k != missing}
    reply = post(url, fields)
    assert reply.status == 400 and reply.code == "InvalidArgument", reply


@pytest.mark.parametrize("missing", ["x-amz-credential", "x-amz-date", "x-amz-signature"])
def test_incomplete_v4_signature(url, bucket, missing):
    fields = {"key": "k", **v4_form(bucket, [["starts-with", "$key", ""]])}
    del fields[missing]
    reply = post(url, fields)
    assert reply.status == 400 and reply.code == "InvalidArgument", reply


def test_signature_without_policy(url, bucket):
    reply = post(url, {"key": "k", "AWSAccessKeyId": ROOT[0], "signature": "abc"})
    assert reply.status == 400 and reply.code == "InvalidArgument", reply


@pytest.mark.parametrize("document", [
    pytest.param("{not json", id="malformed-json"),
    pytest.param("[]", id="not-an-object"),
    pytest.param({"conditions": [["starts-with", "$key", ""]]}, id="no-expiration"),
    pytest.param({"EXPIRATION": "2100-01-01T00:00:00Z", "conditions": []}, id="expiration-case"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z"}, id="no-conditions"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "CONDITIONS": []}, id="conditions-case"),
    pytest.param({"expiration": "2100-01-01 00:00:00.123456+00:00", "conditions": []}, id="bad-date"),
    pytest.param({"expiration": "2100-13-01T00:00:00Z", "conditions": []}, id="bad-month"),
    pytest.param({"expiration": 4102444800, "conditions": []}, id="numeric-date"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [{}]}, id="empty-condition"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [{"a": "1", "b": "2"}]}, id="two-properties"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [["content-length-range", 0]]},
                 id="range-one-argument"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [["content-length-range", -1, 0]]},
                 id="range-negative"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [["content-length-range", 10, 5]]},
                 id="range-reversed"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [["content-length-range", "a", 5]]},
                 id="range-not-a-number"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [["matches", "$key", ".*"]]},
                 id="unknown-operator"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [["eq", "key", "k"]]}, id="no-dollar"),
    pytest.param({"expiration": "2100-01-01T00:00:00Z", "conditions": [["eq", "$key"]]}, id="short-condition"),
])
def test_invalid_policy_document(url, bucket, document):
    reply = post(url, {"key": "k", **v2_form(document)})
    assert reply.status == 400 and reply.code == "InvalidPolicyDocument", reply
    assert reply.message.startswith("Invalid Policy:")


def test_not_base64_policy(url):
    fields = {"key": "k", "AWSAccessKeyId": ROOT[0], "policy": "###",
              "signature": base64.b64encode(hmac.digest(ROOT[1].encode(), b"###", "sha1")).decode()}
    reply = post(url, fields)
    assert reply.status == 400 and reply.code == "InvalidPolicyDocument", reply


def test_not_a_form(server, bucket):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", f"/{bucket}", body=b"key=a", headers={"Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        assert resp.status == 412
        assert error_field(resp.read(), "Code") == "PreconditionFailed"
    finally:
        conn.close()


def test_malformed_multipart(url):
    reply = send(url, "multipart/form-data; boundary=xyz", [b"this is not multipart at all"], 28)
    assert reply.status == 400 and reply.code == "MalformedPOSTRequest", reply
    reply = send(url, "multipart/form-data", [b"--x\r\n\r\n"], 7)  # no boundary parameter
    assert reply.status == 400 and reply.code == "MalformedPOSTRequest", reply


def test_fields_before_file_are_bounded(url, bucket):
    reply = post(url, {**_policy_fields(bucket), "x-ignore-padding": "p" * (100 * 1024)})
    assert reply.status == 400 and reply.code == "MaxPostPreDataLengthExceededError", reply


def test_no_such_bucket(server):
    reply = post(f"{server.endpoint}/no-such-bucket-{uuid.uuid4().hex[:8]}", {"key": "k"})
    assert reply.status == 404 and reply.code == "NoSuchBucket", reply


# -- sizes --------------------------------------------------------------------------------------------------


def test_content_length_range(s3, url, bucket):
    fields = _policy_fields(bucket, ["content-length-range", 10, 20])
    assert post(url, fields, b"x" * 10).status == 204
    assert post(url, fields, b"x" * 20).status == 204
    too_big = post(url, fields, b"x" * 21)
    assert too_big.status == 400 and too_big.code == "EntityTooLarge", too_big
    assert error_field(too_big.body, "MaxSizeAllowed") == "20"
    too_small = post(url, fields, b"x" * 9)
    assert too_small.status == 400 and too_small.code == "EntityTooSmall", too_small
    assert error_field(too_small.body, "MinSizeAllowed") == "10"
    assert body_of(s3, bucket, "foo.txt") == b"x" * 20  # the refused uploads changed nothing
    fields = {**_policy_fields(bucket, ["content-length-range", 0, 0]), "key": "foo-empty"}
    assert post(url, fields, b"").status == 204
    assert post(url, {**fields, "key": "foo-none"}, b"x").code == "EntityTooLarge"
    assert absent(s3, bucket, "foo-none")


def test_large_file_is_streamed(s3, url, bucket):
    size = 10 * 1024 * 1024 + 123
    block = os.urandom(1 << 16)
    digest = hashlib.md5()

    def chunks() -> Iterator[bytes]:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            digest.update(piece)
            left -= len(piece)
            yield piece

    fields = _policy_fields(bucket, ["content-length-range", 1, 11 * 1024 * 1024])
    content_type, pieces, length = encode_form(list(fields.items()), None, chunks=chunks(), size=size)
    started = time.monotonic()
    reply = send(url, content_type, pieces, length)
    assert reply.status == 204, reply
    assert time.monotonic() - started < 20
    assert reply.headers["etag"] == f'"{digest.hexdigest()}"'
    head = s3.head_object(Bucket=bucket, Key="foo.txt")
    assert head["ContentLength"] == size
    got = s3.get_object(Bucket=bucket, Key="foo.txt", Range="bytes=1048570-1048581")["Body"].read()
    expected = (block * ((1048582 // len(block)) + 1))[1048570:1048582]
    assert got == expected


def test_large_file_over_the_limit_is_refused(s3, url, bucket):
    size = 3 * 1024 * 1024
    fields = _policy_fields(bucket, ["content-length-range", 0, 1024 * 1024])
    content_type, pieces, length = encode_form(list(fields.items()), None,
                                               chunks=(b"z" * 65536 for _ in range(size // 65536)), size=size)
    try:
        reply = send(url, content_type, pieces, length)
    except (BrokenPipeError, ConnectionResetError):
        reply = None  # the server may close while the client is still sending: also a refusal
    if reply is not None:
        assert reply.status == 400 and reply.code == "EntityTooLarge", reply
    assert absent(s3, bucket, "foo.txt")
