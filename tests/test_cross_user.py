"""A user without permission can do nothing in another user's bucket: not list, read, write or delete, and not
read or change any of its configuration. One entry per S3 operation Shoal serves; a completeness check fails
when a new operation is added without an entry here.

ALT owns the bucket (object lock on, so versioning, retention and legal holds are all reachable); OTHER (a
non-admin user with no policy) and anonymous callers are refused."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from access_helpers import anonymous_client, canonical_id, unique
from botocore.exceptions import ClientError

from shoal.http.handlers import HANDLERS

from conftest import OTHER, client, error_code, status_of
from rawhttp import Raw, error_field


@dataclass
class Target:
    bucket: str  # ALT's
    key: str
    version_id: str
    upload_id: str
    own_bucket: str  # OTHER's own bucket (for copies out of and into ALT's bucket)


@pytest.fixture(scope="module")
def target(alt, other) -> Target:
    bucket = unique("xuser")
    alt.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    version = alt.put_object(Bucket=bucket, Key="k", Body=b"secret", Tagging="a=1")["VersionId"]
    upload = alt.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
    alt.upload_part(Bucket=bucket, Key="mpu", UploadId=upload, PartNumber=1, Body=b"part")
    alt.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "t", "Value": "v"}]})
    alt.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://a.example"], "AllowedMethods": ["GET"]}]})
    alt.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::0000:root"}, "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    own = unique("xown")
    other.create_bucket(Bucket=own)
    other.put_object(Bucket=own, Key="mine", Body=b"mine")
    return Target(bucket, "k", version, upload, own)


XML_LIFECYCLE = {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]}


def _ops() -> dict[str, Callable]:
    """operation name -> call(client, target), each of which must be refused."""
    def tags(c, t):
        return {"TagSet": [{"Key": "x", "Value": "y"}]}

    return {
        # bucket
        "DeleteBucket": lambda c, t: c.delete_bucket(Bucket=t.bucket),
        "HeadBucket": lambda c, t: c.head_bucket(Bucket=t.bucket),
        "GetBucketLocation": lambda c, t: c.get_bucket_location(Bucket=t.bucket),
        "ListObjects": lambda c, t: c.list_objects(Bucket=t.bucket),
        "ListObjectsV2": lambda c, t: c.list_objects_v2(Bucket=t.bucket),
        "ListObjectVersions": lambda c, t: c.list_object_versions(Bucket=t.bucket),
        "ListMultipartUploads": lambda c, t: c.list_multipart_uploads(Bucket=t.bucket),
        "GetBucketVersioning": lambda c, t: c.get_bucket_versioning(Bucket=t.bucket),
        "PutBucketVersioning": lambda c, t: c.put_bucket_versioning(
            Bucket=t.bucket, VersioningConfiguration={"Status": "Suspended"}),
        "GetBucketAcl": lambda c, t: c.get_bucket_acl(Bucket=t.bucket),
        "PutBucketAcl": lambda c, t: c.put_bucket_acl(Bucket=t.bucket, ACL="public-read-write"),
        "GetBucketPolicy": lambda c, t: c.get_bucket_policy(Bucket=t.bucket),
        "PutBucketPolicy": lambda c, t: c.put_bucket_policy(Bucket=t.bucket, Policy=json.dumps({
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*",
                           "Resource": f"arn:aws:s3:::{t.bucket}/*"}]})),
        "DeleteBucketPolicy": lambda c, t: c.delete_bucket_policy(Bucket=t.bucket),
        "GetBucketPolicyStatus": lambda c, t: c.get_bucket_policy_status(Bucket=t.bucket),
        "GetBucketCors": lambda c, t: c.get_bucket_cors(Bucket=t.bucket),
        "PutBucketCors": lambda c, t: c.put_bucket_cors(Bucket=t.bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT"]}]}),
        "DeleteBucketCors": lambda c, t: c.delete_bucket_cors(Bucket=t.bucket),
        "GetBucketLifecycleConfiguration": lambda c, t: c.get_bucket_lifecycle_configuration(Bucket=t.bucket),
        "PutBucketLifecycleConfiguration": lambda c, t: c.put_bucket_lifecycle_configuration(
            Bucket=t.bucket, LifecycleConfiguration=XML_LIFECYCLE),
        "DeleteBucketLifecycle": lambda c, t: c.delete_bucket_lifecycle(Bucket=t.bucket),
        "GetBucketTagging": lambda c, t: c.get_bucket_tagging(Bucket=t.bucket),
        "PutBucketTagging": lambda c, t: c.put_bucket_tagging(Bucket=t.bucket, Tagging=tags(c, t)),
        "DeleteBucketTagging": lambda c, t: c.delete_bucket_tagging(Bucket=t.bucket),
        "GetBucketEncryption": lambda c, t: c.get_bucket_encryption(Bucket=t.bucket),
        "PutBucketEncryption": lambda c, t: c.put_bucket_encryption(
            Bucket=t.bucket, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}),
        "DeleteBucketEncryption": lambda c, t: c.delete_bucket_encryption(Bucket=t.bucket),
        "GetObjectLockConfiguration": lambda c, t: c.get_object_lock_configuration(Bucket=t.bucket),
        "PutObjectLockConfiguration": lambda c, t: c.put_object_lock_configuration(
            Bucket=t.bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {
                "DefaultRetention": {"Mode": "COMPLIANCE", "Days": 3650}}}),
        "GetBucketOwnershipControls": lambda c, t: c.get_bucket_ownership_controls(Bucket=t.bucket),
        "PutBucketOwnershipControls": lambda c, t: c.put_bucket_ownership_controls(
            Bucket=t.bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}),
        "DeleteBucketOwnershipControls": lambda c, t: c.delete_bucket_ownership_controls(Bucket=t.bucket),
        "GetPublicAccessBlock": lambda c, t: c.get_public_access_block(Bucket=t.bucket),
        "PutPublicAccessBlock": lambda c, t: c.put_public_access_block(
            Bucket=t.bucket, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True}),
        "DeletePublicAccessBlock": lambda c, t: c.delete_public_access_block(Bucket=t.bucket),
        "GetBucketWebsite": lambda c, t: c.get_bucket_website(Bucket=t.bucket),
        "GetBucketLogging": lambda c, t: c.get_bucket_logging(Bucket=t.bucket),
        "GetBucketNotificationConfiguration": lambda c, t: c.get_bucket_notification_configuration(Bucket=t.bucket),
        "GetBucketReplication": lambda c, t: c.get_bucket_replication(Bucket=t.bucket),
        "GetBucketAccelerateConfiguration": lambda c, t: c.get_bucket_accelerate_configuration(Bucket=t.bucket),
        "GetBucketRequestPayment": lambda c, t: c.get_bucket_request_payment(Bucket=t.bucket),
        # objects
        "PutObject": lambda c, t: c.put_object(Bucket=t.bucket, Key="new", Body=b"x"),
        "PutObject (overwrite)": lambda c, t: c.put_object(Bucket=t.bucket, Key=t.key, Body=b"x"),
        "GetObject": lambda c, t: c.get_object(Bucket=t.bucket, Key=t.key),
        "GetObject (version)": lambda c, t: c.get_object(Bucket=t.bucket, Key=t.key, VersionId=t.version_id),
        "GetObject (missing key)": lambda c, t: c.get_object(Bucket=t.bucket, Key="missing"),
        "HeadObject": lambda c, t: c.head_object(Bucket=t.bucket, Key=t.key),
        "DeleteObject": lambda c, t: c.delete_object(Bucket=t.bucket, Key=t.key),
        "DeleteObject (version)": lambda c, t: c.delete_object(Bucket=t.bucket, Key=t.key, VersionId=t.version_id),
        "CopyObject": lambda c, t: c.copy_object(Bucket=t.bucket, Key="copy", CopySource={
            "Bucket": t.bucket, "Key": t.key}),
        "GetObjectAcl": lambda c, t: c.get_object_acl(Bucket=t.bucket, Key=t.key),
        "PutObjectAcl": lambda c, t: c.put_object_acl(Bucket=t.bucket, Key=t.key, ACL="public-read"),
        "GetObjectTagging": lambda c, t: c.get_object_tagging(Bucket=t.bucket, Key=t.key),
        "PutObjectTagging": lambda c, t: c.put_object_tagging(Bucket=t.bucket, Key=t.key, Tagging=tags(c, t)),
        "DeleteObjectTagging": lambda c, t: c.delete_object_tagging(Bucket=t.bucket, Key=t.key),
        "GetObjectRetention": lambda c, t: c.get_object_retention(Bucket=t.bucket, Key=t.key),
        "PutObjectRetention": lambda c, t: c.put_object_retention(Bucket=t.bucket, Key=t.key, Retention={
            "Mode": "COMPLIANCE", "RetainUntilDate": "2099-01-01T00:00:00Z"}),
        "GetObjectLegalHold": lambda c, t: c.get_object_legal_hold(Bucket=t.bucket, Key=t.key),
        "PutObjectLegalHold": lambda c, t: c.put_object_legal_hold(Bucket=t.bucket, Key=t.key,
                                                                   LegalHold={"Status": "ON"}),
        "GetObjectAttributes": lambda c, t: c.get_object_attributes(Bucket=t.bucket, Key=t.key,
                                                                    ObjectAttributes=["ETag", "ObjectSize"]),
        # multipart
        "CreateMultipartUpload": lambda c, t: c.create_multipart_upload(Bucket=t.bucket, Key="new-mpu"),
        "UploadPart": lambda c, t: c.upload_part(Bucket=t.bucket, Key="mpu", UploadId=t.upload_id, PartNumber=2,
                                                 Body=b"x"),
        "UploadPartCopy": lambda c, t: c.upload_part_copy(Bucket=t.bucket, Key="mpu", UploadId=t.upload_id,
                                                          PartNumber=2, CopySource={"Bucket": t.bucket, "Key": t.key}),
        "CompleteMultipartUpload": lambda c, t: c.complete_multipart_upload(
            Bucket=t.bucket, Key="mpu", UploadId=t.upload_id, MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                                         "ETag": '"x"'}]}),
        "AbortMultipartUpload": lambda c, t: c.abort_multipart_upload(Bucket=t.bucket, Key="mpu",
                                                                      UploadId=t.upload_id),
        "ListParts": lambda c, t: c.list_parts(Bucket=t.bucket, Key="mpu", UploadId=t.upload_id),
    }


OPS = _ops()
OTHER_ONLY = {
    # copies between OTHER's own bucket and ALT's: each side is checked
    "CopyObject (into own bucket)": lambda c, t: c.copy_object(Bucket=t.own_bucket, Key="stolen", CopySource={
        "Bucket": t.bucket, "Key": t.key}),
    "CopyObject (from own bucket)": lambda c, t: c.copy_object(Bucket=t.bucket, Key="planted", CopySource={
        "Bucket": t.own_bucket, "Key": "mine"}),
}
# Operations that need a test of their own below, or are not about another user's bucket.
SPECIAL = {"ListBuckets", "CreateBucket", "DeleteObjects", "PostObject",
           "PreflightRequest"}  # PreflightRequest: unsigned by definition (CORS, see test_cors.py)


def test_every_operation_is_covered():
    covered = {name.split(" (")[0] for name in OPS} | SPECIAL
    assert covered == set(HANDLERS), (sorted(set(HANDLERS) - covered), sorted(covered - set(HANDLERS)))


@pytest.fixture(scope="module", params=["other", "anonymous"])
def caller(request, server):
    if request.param == "other":
        return client(server.endpoint, OTHER)
    return anonymous_client(server.endpoint)


@pytest.mark.parametrize("operation", list(OPS))
def test_refused(caller, target, operation):
    with pytest.raises(ClientError) as info:
        OPS[operation](caller, target)
    code, status = error_code(info.value), status_of(info.value)
    if operation == "HeadObject" or operation == "HeadBucket":
        assert (code, status) == ("403", 403), info.value.response
    else:
        assert (code, status) == ("AccessDenied", 403), info.value.response


@pytest.mark.parametrize("operation", list(OTHER_ONLY))
def test_refused_copies(other, target, operation):
    with pytest.raises(ClientError) as info:
        OTHER_ONLY[operation](other, target)
    assert (error_code(info.value), status_of(info.value)) == ("AccessDenied", 403), info.value.response


def test_delete_objects_refuses_each_key(caller, target):
    result = caller.delete_objects(Bucket=target.bucket, Delete={"Objects": [
        {"Key": target.key}, {"Key": target.key, "VersionId": target.version_id}, {"Key": "missing"}]})
    assert result.get("Deleted", []) == []
    assert sorted((e["Key"], e["Code"]) for e in result["Errors"]) == [
        ("k", "AccessDenied"), ("k", "AccessDenied"), ("missing", "AccessDenied")]


def test_list_buckets_shows_only_own_buckets(other, alt, server, target):
    names = {b["Name"] for b in other.list_buckets()["Buckets"]}
    assert target.own_bucket in names and target.bucket not in names
    assert other.list_buckets()["Owner"]["ID"] == canonical_id(other) != canonical_id(alt)
    with pytest.raises(ClientError) as info:
        anonymous_client(server.endpoint).list_buckets()
    assert (error_code(info.value), status_of(info.value)) == ("AccessDenied", 403)


def test_create_bucket_with_a_taken_name(other, server, target):
    with pytest.raises(ClientError) as info:
        other.create_bucket(Bucket=target.bucket)
    assert (error_code(info.value), status_of(info.value)) == ("BucketAlreadyExists", 409)
    with pytest.raises(ClientError) as info:
        anonymous_client(server.endpoint).create_bucket(Bucket=f"anon-{uuid.uuid4().hex[:12]}")
    assert (error_code(info.value), status_of(info.value)) == ("AccessDenied", 403)


def _form(url: str, fields: dict[str, str], content: bytes) -> tuple[int, bytes]:
    boundary = uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items())
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'.encode()
             + content + f"\r\n--{boundary}--\r\n".encode())
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("POST", parts.path, body=body,
                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_post_object_forms(server, target):
    url = f"{server.endpoint}/{target.bucket}"
    status, body = _form(url, {"key": "anon-form"}, b"x")
    assert (status, error_field(body, "Code")) == (403, "AccessDenied")
    signer = client(server.endpoint, OTHER, signature_version="s3v4")
    post = signer.generate_presigned_post(target.bucket, "signed-form", ExpiresIn=60)
    status, body = _form(post["url"], post["fields"], b"x")
    assert (status, error_field(body, "Code")) == (403, "AccessDenied")


def test_preflight_is_not_an_access_check(server, target):
    """A CORS preflight is answered from the bucket's CORS rules, whoever asks (it is never signed)."""
    got = Raw(server.port).send("OPTIONS", f"/{target.bucket}/k", headers={
        "Origin": "https://a.example", "Access-Control-Request-Method": "GET"})
    assert got.status == 200 and got.headers["access-control-allow-origin"] == "https://a.example"


def test_nothing_changed(alt, target):
    """After all the refused calls, ALT's bucket is as it was."""
    b = target.bucket
    assert alt.get_object(Bucket=b, Key="k")["Body"].read() == b"secret"
    versions = alt.list_object_versions(Bucket=b)
    assert [v["VersionId"] for v in versions["Versions"]] == [target.version_id]
    assert "DeleteMarkers" not in versions
    assert alt.get_object_tagging(Bucket=b, Key="k")["TagSet"] == [{"Key": "a", "Value": "1"}]
    assert [g["Permission"] for g in alt.get_object_acl(Bucket=b, Key="k")["Grants"]] == ["FULL_CONTROL"]
    assert [g["Permission"] for g in alt.get_bucket_acl(Bucket=b)["Grants"]] == ["FULL_CONTROL"]
    assert "arn:aws:iam::0000:root" in alt.get_bucket_policy(Bucket=b)["Policy"]
    assert alt.get_bucket_cors(Bucket=b)["CORSRules"][0]["AllowedOrigins"] == ["https://a.example"]
    assert alt.get_bucket_tagging(Bucket=b)["TagSet"] == [{"Key": "t", "Value": "v"}]
    assert alt.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    assert "Rule" not in alt.get_object_lock_configuration(Bucket=b)["ObjectLockConfiguration"]
    for missing in (alt.get_bucket_lifecycle_configuration, alt.get_bucket_encryption,
                    alt.get_bucket_ownership_controls, alt.get_public_access_block):
        with pytest.raises(ClientError) as info:
            missing(Bucket=b)
        assert status_of(info.value) == 404, missing
    uploads = alt.list_multipart_uploads(Bucket=b)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [target.upload_id]
    assert [p["PartNumber"] for p in alt.list_parts(Bucket=b, Key="mpu", UploadId=target.upload_id)["Parts"]] == [1]
    assert alt.list_objects_v2(Bucket=b)["KeyCount"] == 1
    with pytest.raises(ClientError) as info:
        alt.get_object_retention(Bucket=b, Key="k")
    assert error_code(info.value) == "NoSuchObjectLockConfiguration"
    assert alt.get_object_legal_hold(Bucket=b, Key="k")["LegalHold"]["Status"] == "OFF"
