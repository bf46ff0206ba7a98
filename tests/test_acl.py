"""Access control lists (canned ACLs, grant headers, AccessControlPolicy documents), object ownership controls
and the public access block settings that concern ACLs.

ALT owns the buckets; OTHER (another non-admin user) and anonymous callers are who the grants are about."""

from __future__ import annotations

import pytest
from access_helpers import arn, denied, fails, put_policy, unique, user_arn

from conftest import ALT, OTHER
from rawhttp import Raw

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


@pytest.fixture
def b(alt) -> str:
    name = unique("acl")
    alt.create_bucket(Bucket=name)
    alt.put_object(Bucket=name, Key="obj", Body=b"object data")
    return name


def grants(acl: dict) -> set[tuple[str, str]]:
    """{(grantee, permission)}: grantee is a canonical id or a group URI."""
    out = set()
    for g in acl["Grants"]:
        grantee = g["Grantee"]
        out.add((grantee.get("ID") or grantee.get("URI") or grantee.get("EmailAddress"), g["Permission"]))
    return out


def can(fn, **kwargs) -> bool:
    """True if the call succeeds, False if it is refused with 403 AccessDenied (anything else fails the test)."""
    try:
        fn(**kwargs)
        return True
    except Exception as exc:
        response = getattr(exc, "response", None)
        assert response is not None, exc
        assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("AccessDenied", 403), \
            response
        return False


def ownership(s3, bucket: str, value: str) -> None:
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": value}]})


def object_owner(s3, bucket: str, key: str) -> str:
    return s3.get_object_acl(Bucket=bucket, Key=key)["Owner"]["ID"]


# -- canned ACLs -----------------------------------------------------------------------------------------------

BUCKET_CANNED = {
    # name: (OTHER may list, anonymous may list, OTHER may write, anonymous may write, extra grants)
    "private": (False, False, False, False, set()),
    "public-read": (True, True, False, False, {(ALL_USERS, "READ")}),
    "public-read-write": (True, True, True, True, {(ALL_USERS, "READ"), (ALL_USERS, "WRITE")}),
    "authenticated-read": (True, False, False, False, {(AUTHENTICATED, "READ")}),
    "bucket-owner-read": (False, False, False, False, set()),  # the creator is the bucket owner: nothing to add
    "bucket-owner-full-control": (False, False, False, False, set()),
}


@pytest.mark.parametrize("canned", list(BUCKET_CANNED))
def test_canned_acl_on_create_bucket(alt, other, anon, alt_id, canned):
    other_list, anon_list, other_write, anon_write, extra = BUCKET_CANNED[canned]
    name = unique("canned")
    alt.create_bucket(Bucket=name, ACL=canned)
    alt.put_object(Bucket=name, Key="k", Body=b"v")
    alt.put_object(Bucket=name, Key="keep", Body=b"v")
    acl = alt.get_bucket_acl(Bucket=name)
    assert acl["Owner"]["ID"] == alt_id
    assert grants(acl) == {(alt_id, "FULL_CONTROL")} | extra
    assert can(other.list_objects_v2, Bucket=name) is other_list
    assert can(anon.list_objects_v2, Bucket=name) is anon_list
    assert can(other.put_object, Bucket=name, Key="o", Body=b"o") is other_write
    assert can(anon.put_object, Bucket=name, Key="a", Body=b"a") is anon_write
    assert can(other.delete_object, Bucket=name, Key="k") is other_write
    # A bucket grant never reaches the objects: their own ACL is private.
    assert can(other.get_object, Bucket=name, Key="keep") is False
    assert can(anon.get_object, Bucket=name, Key="keep") is False
    assert can(other.get_bucket_acl, Bucket=name) is False


def test_canned_acl_on_put_bucket_acl(b, alt, other, anon, alt_id):
    alt.put_bucket_acl(Bucket=b, ACL="public-read")
    assert grants(alt.get_bucket_acl(Bucket=b)) == {(alt_id, "FULL_CONTROL"), (ALL_USERS, "READ")}
    assert anon.list_objects_v2(Bucket=b)["KeyCount"] == 1
    alt.put_bucket_acl(Bucket=b, ACL="private")
    assert grants(alt.get_bucket_acl(Bucket=b)) == {(alt_id, "FULL_CONTROL")}
    denied(anon.list_objects_v2, Bucket=b)
    denied(other.list_objects_v2, Bucket=b)


OBJECT_CANNED = {
    # name: (OTHER may read, anonymous may read, extra grants)
    "private": (False, False, set()),
    "public-read": (True, True, {(ALL_USERS, "READ")}),
    "public-read-write": (True, True, {(ALL_USERS, "READ"), (ALL_USERS, "WRITE")}),
    "authenticated-read": (True, False, {(AUTHENTICATED, "READ")}),
    "bucket-owner-read": (False, False, set()),
    "bucket-owner-full-control": (False, False, set()),
}


@pytest.mark.parametrize("canned", list(OBJECT_CANNED))
def test_canned_acl_on_put_object(b, alt, other, anon, alt_id, canned):
    other_read, anon_read, extra = OBJECT_CANNED[canned]
    alt.put_object(Bucket=b, Key="c", Body=b"canned", ACL=canned)
    acl = alt.get_object_acl(Bucket=b, Key="c")
    assert acl["Owner"]["ID"] == alt_id
    assert grants(acl) == {(alt_id, "FULL_CONTROL")} | extra
    assert can(other.get_object, Bucket=b, Key="c") is other_read
    assert can(anon.get_object, Bucket=b, Key="c") is anon_read
    # An object grant gives no write: overwriting and deleting need WRITE on the bucket.
    assert can(other.put_object, Bucket=b, Key="c", Body=b"x") is False
    assert can(anon.delete_object, Bucket=b, Key="c") is False
    assert can(other.get_object_acl, Bucket=b, Key="c") is False
    assert can(other.put_object_acl, Bucket=b, Key="c", ACL="private") is False
    assert can(other.list_objects_v2, Bucket=b) is False


def test_head_object_follows_the_object_acl(b, alt, other, anon):
    alt.put_object(Bucket=b, Key="pub", Body=b"12345", ACL="public-read")
    assert anon.head_object(Bucket=b, Key="pub")["ContentLength"] == 5
    fails(other.head_object, "403", 403, Bucket=b, Key="obj")


def test_object_acl_on_copy_and_multipart(b, alt, other, anon, alt_id):
    alt.copy_object(Bucket=b, Key="copied", CopySource={"Bucket": b, "Key": "obj"}, ACL="public-read")
    assert anon.get_object(Bucket=b, Key="copied")["Body"].read() == b"object data"
    upload = alt.create_multipart_upload(Bucket=b, Key="mpu", ACL="authenticated-read")["UploadId"]
    etag = alt.upload_part(Bucket=b, Key="mpu", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
    alt.complete_multipart_upload(Bucket=b, Key="mpu", UploadId=upload,
                                  MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert grants(alt.get_object_acl(Bucket=b, Key="mpu")) == {(alt_id, "FULL_CONTROL"), (AUTHENTICATED, "READ")}
    assert other.get_object(Bucket=b, Key="mpu")["Body"].read() == b"part"
    denied(anon.get_object, Bucket=b, Key="mpu")
    # A copy without ACL headers is private, whatever the source's ACL.
    alt.copy_object(Bucket=b, Key="copied-again", CopySource={"Bucket": b, "Key": "copied"})
    denied(anon.get_object, Bucket=b, Key="copied-again")


def test_overwriting_an_object_resets_its_acl(b, alt, anon):
    alt.put_object(Bucket=b, Key="k", Body=b"v1", ACL="public-read")
    assert anon.get_object(Bucket=b, Key="k")["Body"].read() == b"v1"
    alt.put_object(Bucket=b, Key="k", Body=b"v2")
    denied(anon.get_object, Bucket=b, Key="k")


@pytest.fixture
def shared(b, alt, alt_id, other_id) -> str:
    """ALT's bucket where OTHER may write (a WRITE grant to OTHER's canonical id)."""
    alt.put_bucket_acl(Bucket=b, GrantWrite=f'id="{other_id}"', GrantFullControl=f'id="{alt_id}"')
    return b


def test_objects_written_by_another_user_belong_to_it(shared, alt, other, other_id, alt_id):
    other.put_object(Bucket=shared, Key="theirs", Body=b"other's")
    assert object_owner(other, shared, "theirs") == other_id
    assert other.get_object(Bucket=shared, Key="theirs")["Body"].read() == b"other's"
    # ObjectWriter ownership: the bucket owner needs a grant to read someone else's object...
    denied(alt.get_object, Bucket=shared, Key="theirs")
    denied(alt.get_object_acl, Bucket=shared, Key="theirs")
    # ...but may always delete it, and list it.
    assert alt.list_objects_v2(Bucket=shared, Prefix="theirs")["KeyCount"] == 1
    alt.delete_object(Bucket=shared, Key="theirs")
    denied(other.list_objects_v2, Bucket=shared)  # WRITE on the bucket is not READ


def test_bucket_owner_read_and_full_control(shared, alt, other, alt_id, other_id):
    other.put_object(Bucket=shared, Key="bor", Body=b"r", ACL="bucket-owner-read")
    other.put_object(Bucket=shared, Key="bofc", Body=b"f", ACL="bucket-owner-full-control")
    acl = other.get_object_acl(Bucket=shared, Key="bor")
    assert acl["Owner"]["ID"] == other_id
    assert grants(acl) == {(other_id, "FULL_CONTROL"), (alt_id, "READ")}
    assert grants(other.get_object_acl(Bucket=shared, Key="bofc")) == {(other_id, "FULL_CONTROL"),
                                                                        (alt_id, "FULL_CONTROL")}
    assert alt.get_object(Bucket=shared, Key="bor")["Body"].read() == b"r"
    denied(alt.get_object_acl, Bucket=shared, Key="bor")  # READ is not READ_ACP
    assert alt.get_object(Bucket=shared, Key="bofc")["Body"].read() == b"f"
    assert object_owner(alt, shared, "bofc") == other_id
    alt.put_object_acl(Bucket=shared, Key="bofc", ACL="public-read")


# -- grant headers and AccessControlPolicy documents ----------------------------------------------------------------


def test_bucket_grant_headers(b, alt, other, anon, alt_id, other_id):
    alt.put_bucket_acl(Bucket=b, GrantRead=f'id="{other_id}"', GrantFullControl=f"id={alt_id}")
    acl = alt.get_bucket_acl(Bucket=b)
    assert grants(acl) == {(alt_id, "FULL_CONTROL"), (other_id, "READ")}
    shown = next(g for g in acl["Grants"] if g["Grantee"].get("ID") == other_id)["Grantee"]
    assert (shown["Type"], shown["DisplayName"]) == ("CanonicalUser", OTHER[0])
    assert other.list_objects_v2(Bucket=b)["KeyCount"] == 1
    denied(anon.list_objects_v2, Bucket=b)
    denied(other.put_object, Bucket=b, Key="x", Body=b"x")
    denied(other.get_bucket_acl, Bucket=b)

    alt.put_bucket_acl(Bucket=b, GrantReadACP=f'id="{other_id}"', GrantWriteACP=f'id="{other_id}"',
                       GrantFullControl=f'id="{alt_id}"')
    denied(other.list_objects_v2, Bucket=b)  # the ACL was replaced, READ is gone
    assert grants(other.get_bucket_acl(Bucket=b)) == {(alt_id, "FULL_CONTROL"), (other_id, "READ_ACP"),
                                                      (other_id, "WRITE_ACP")}
    other.put_bucket_acl(Bucket=b, GrantWrite=f'uri="{ALL_USERS}"', GrantFullControl=f'id="{alt_id}"')
    anon.put_object(Bucket=b, Key="anon", Body=b"anonymous")
    assert alt.get_object(Bucket=b, Key="anon")["Body"].read() == b"anonymous"
    denied(other.get_bucket_acl, Bucket=b)  # it gave its own ACP grants away


def test_several_grantees_in_one_header(b, alt, other, anon, alt_id, other_id):
    alt.put_bucket_acl(Bucket=b, GrantRead=f'id="{other_id}", uri="{ALL_USERS}"', GrantFullControl=f'id="{alt_id}"')
    assert grants(alt.get_bucket_acl(Bucket=b)) == {(alt_id, "FULL_CONTROL"), (other_id, "READ"),
                                                    (ALL_USERS, "READ")}
    assert anon.list_objects_v2(Bucket=b)["KeyCount"] == 1


def test_bucket_acl_document(b, alt, other, anon, alt_id, other_id):
    policy = {"Owner": {"ID": alt_id}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": alt_id}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "CanonicalUser", "ID": other_id}, "Permission": "WRITE"},
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
    ]}
    alt.put_bucket_acl(Bucket=b, AccessControlPolicy=policy)
    got = alt.get_bucket_acl(Bucket=b)
    assert got["Owner"]["ID"] == alt_id
    assert grants(got) == {(alt_id, "FULL_CONTROL"), (other_id, "WRITE"), (ALL_USERS, "READ")}
    other.put_object(Bucket=b, Key="by-other", Body=b"x")
    assert [o["Key"] for o in anon.list_objects_v2(Bucket=b)["Contents"]] == ["by-other", "obj"]
    denied(anon.put_object, Bucket=b, Key="y", Body=b"y")


def test_object_grant_headers_and_document(b, alt, other, anon, alt_id, other_id):
    alt.put_object(Bucket=b, Key="g", Body=b"granted", GrantRead=f'id="{other_id}"')
    assert grants(alt.get_object_acl(Bucket=b, Key="g")) == {(other_id, "READ")}
    assert other.get_object(Bucket=b, Key="g")["Body"].read() == b"granted"
    denied(anon.get_object, Bucket=b, Key="g")
    alt.put_object_acl(Bucket=b, Key="g", GrantReadACP=f'id="{other_id}"', GrantFullControl=f'id="{alt_id}"')
    denied(other.get_object, Bucket=b, Key="g")
    assert grants(other.get_object_acl(Bucket=b, Key="g")) == {(alt_id, "FULL_CONTROL"), (other_id, "READ_ACP")}
    alt.put_object_acl(Bucket=b, Key="g", AccessControlPolicy={"Owner": {"ID": alt_id}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": alt_id}, "Permission": "FULL_CONTROL"},
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
        {"Grantee": {"Type": "CanonicalUser", "ID": other_id}, "Permission": "WRITE_ACP"}]})
    assert anon.get_object(Bucket=b, Key="g")["Body"].read() == b"granted"
    other.put_object_acl(Bucket=b, Key="g", ACL="private")  # WRITE_ACP lets OTHER change it
    denied(anon.get_object, Bucket=b, Key="g")
    assert grants(alt.get_object_acl(Bucket=b, Key="g")) == {(alt_id, "FULL_CONTROL")}


def test_object_acl_of_a_version(alt, anon):
    name = unique("aclv")
    alt.create_bucket(Bucket=name)
    alt.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    v1 = alt.put_object(Bucket=name, Key="k", Body=b"one")["VersionId"]
    alt.put_object(Bucket=name, Key="k", Body=b"two")
    alt.put_object_acl(Bucket=name, Key="k", VersionId=v1, ACL="public-read")
    assert anon.get_object(Bucket=name, Key="k", VersionId=v1)["Body"].read() == b"one"
    denied(anon.get_object, Bucket=name, Key="k")
    assert grants(alt.get_object_acl(Bucket=name, Key="k", VersionId=v1)) >= {(ALL_USERS, "READ")}


@pytest.mark.parametrize("how", ["bucket-header", "bucket-document", "object-header", "object-document",
                                 "put-object", "create-bucket"])
def test_grant_to_unknown_canonical_id(b, alt, alt_id, how):
    ghost = "f" * 64
    doc = {"Owner": {"ID": alt_id}, "Grants": [
        {"Grantee": {"Type": "CanonicalUser", "ID": ghost}, "Permission": "READ"}]}
    call = {
        "bucket-header": lambda: alt.put_bucket_acl(Bucket=b, GrantRead=f'id="{ghost}"'),
        "bucket-document": lambda: alt.put_bucket_acl(Bucket=b, AccessControlPolicy=doc),
        "object-header": lambda: alt.put_object_acl(Bucket=b, Key="obj", GrantRead=f'id="{ghost}"'),
        "object-document": lambda: alt.put_object_acl(Bucket=b, Key="obj", AccessControlPolicy=doc),
        "put-object": lambda: alt.put_object(Bucket=b, Key="new", Body=b"x", GrantRead=f'id="{ghost}"'),
        "create-bucket": lambda: alt.create_bucket(Bucket=unique("ghost"), GrantRead=f'id="{ghost}"'),
    }[how]
    call.__name__ = how
    fails(call, "InvalidArgument", 400)
    assert grants(alt.get_bucket_acl(Bucket=b)) == {(alt_id, "FULL_CONTROL")}
    assert grants(alt.get_object_acl(Bucket=b, Key="obj")) == {(alt_id, "FULL_CONTROL")}


def test_grant_by_email_is_unresolvable(b, alt, alt_id):
    fails(alt.put_bucket_acl, "UnresolvableGrantByEmailAddress", 400, Bucket=b,
          GrantRead='emailAddress="nobody@example.com"')
    fails(alt.put_object_acl, "UnresolvableGrantByEmailAddress", 400, Bucket=b, Key="obj", AccessControlPolicy={
        "Owner": {"ID": alt_id}, "Grants": [
            {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "nobody@example.com"},
             "Permission": "READ"}]})


def test_unknown_group_uri_is_refused(b, alt):
    fails(alt.put_bucket_acl, "InvalidArgument", 400, Bucket=b, GrantRead='uri="http://example.com/everyone"')


def test_canned_acl_and_grant_headers_together(b, alt, other_id):
    fails(alt.put_bucket_acl, "InvalidRequest", 400, Bucket=b, ACL="public-read", GrantRead=f'id="{other_id}"')
    fails(alt.put_object_acl, "InvalidRequest", 400, Bucket=b, Key="obj", ACL="private",
          GrantRead=f'id="{other_id}"')
    fails(alt.put_object, "InvalidRequest", 400, Bucket=b, Key="new", Body=b"x", ACL="public-read",
          GrantRead=f'id="{other_id}"')
    fails(alt.create_bucket, "InvalidRequest", 400, Bucket=unique("both"), ACL="public-read",
          GrantRead=f'id="{other_id}"')
    fails(alt.head_object, "404", 404, Bucket=b, Key="new")


def test_unknown_canned_acl(b, alt):
    fails(alt.put_bucket_acl, "InvalidArgument", 400, Bucket=b, ACL="world-writable")
    fails(alt.put_object, "InvalidArgument", 400, Bucket=b, Key="x", Body=b"x", ACL="world-writable")


def test_malformed_acl_documents(server, b):
    raw = Raw(server.port)

    def put(body: bytes):
        return raw.signed("PUT", f"/{b}?acl", body, creds=ALT)

    bad_permission = (b'<AccessControlPolicy><Owner><ID>x</ID></Owner><AccessControlList><Grant>'
                      b'<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
                      b'<URI>' + ALL_USERS.encode() + b'</URI></Grantee><Permission>EVERYTHING</Permission>'
                      b'</Grant></AccessControlList></AccessControlPolicy>')
    no_grantee = (b"<AccessControlPolicy><AccessControlList><Grant><Permission>READ</Permission></Grant>"
                  b"</AccessControlList></AccessControlPolicy>")
    wrong_root = b"<Policy><AccessControlList/></Policy>"
    for body in (bad_permission, no_grantee, wrong_root):
        got = put(body)
        assert (got.status, got.code) == (400, "MalformedACLError"), (body, got)
    got = put(b"<AccessControlPolicy><unclosed>")
    assert (got.status, got.code) == (400, "MalformedXML"), got


def test_acl_of_missing_things(b, alt):
    fails(alt.get_object_acl, "NoSuchKey", 404, Bucket=b, Key="missing")
    fails(alt.put_object_acl, "NoSuchKey", 404, Bucket=b, Key="missing", ACL="private")
    fails(alt.get_bucket_acl, "NoSuchBucket", 404, Bucket=unique("gone"))


# -- ownership controls ------------------------------------------------------------------------------------------


def test_ownership_controls_round_trip(b, alt):
    fails(alt.get_bucket_ownership_controls, "OwnershipControlsNotFoundError", 404, Bucket=b)
    for value in ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter"):
        ownership(alt, b, value)
        rules = alt.get_bucket_ownership_controls(Bucket=b)["OwnershipControls"]["Rules"]
        assert rules == [{"ObjectOwnership": value}]
    alt.delete_bucket_ownership_controls(Bucket=b)
    fails(alt.get_bucket_ownership_controls, "OwnershipControlsNotFoundError", 404, Bucket=b)
    fails(alt.put_bucket_ownership_controls, "MalformedXML", 400, Bucket=b,
          OwnershipControls={"Rules": [{"ObjectOwnership": "Whoever"}]})


def test_create_bucket_with_ownership(alt):
    name = unique("own")
    alt.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced")
    assert alt.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"] == [
        {"ObjectOwnership": "BucketOwnerEnforced"}]
    fails(alt.create_bucket, "InvalidBucketAclWithObjectOwnership", 400, Bucket=unique("own"),
          ObjectOwnership="BucketOwnerEnforced", ACL="public-read")
    fails(alt.create_bucket, "InvalidArgument", 400, Bucket=unique("own"), ObjectOwnership="Nobody")


def test_enforced_ownership_needs_a_private_bucket_acl(b, alt):
    alt.put_bucket_acl(Bucket=b, ACL="public-read")
    fails(alt.put_bucket_ownership_controls, "InvalidBucketAclWithObjectOwnership", 400, Bucket=b,
          OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    alt.put_bucket_acl(Bucket=b, ACL="private")
    ownership(alt, b, "BucketOwnerEnforced")


@pytest.fixture
def writable(b, alt, other_id) -> str:
    """ALT's bucket where a bucket policy lets OTHER write, read and manage object ACLs."""
    put_policy(alt, b, {"Effect": "Allow", "Principal": {"AWS": user_arn(other_id)},
                        "Action": ["s3:PutObject", "s3:GetObject", "s3:GetObjectAcl", "s3:PutObjectAcl",
                                   "s3:AbortMultipartUpload"],
                        "Resource": arn(b, "*")})
    return b


def test_bucket_owner_enforced(writable, alt, other, anon, alt_id):
    b = writable
    alt.put_object(Bucket=b, Key="was-public", Body=b"p", ACL="public-read")
    assert anon.get_object(Bucket=b, Key="was-public")["Body"].read() == b"p"
    ownership(alt, b, "BucketOwnerEnforced")
    denied(anon.get_object, Bucket=b, Key="was-public")  # ACLs no longer count

    other.put_object(Bucket=b, Key="no-acl", Body=b"n")
    assert object_owner(alt, b, "no-acl") == alt_id
    assert alt.get_object(Bucket=b, Key="no-acl")["Body"].read() == b"n"
    other.put_object(Bucket=b, Key="bofc", Body=b"f", ACL="bucket-owner-full-control")
    assert object_owner(alt, b, "bofc") == alt_id
    other.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "no-acl"})
    assert object_owner(alt, b, "copy") == alt_id
    upload = other.create_multipart_upload(Bucket=b, Key="mpu")["UploadId"]
    other.abort_multipart_upload(Bucket=b, Key="mpu", UploadId=upload)

    for canned in ("private", "public-read", "authenticated-read"):
        fails(other.put_object, "AccessControlListNotSupported", 400, Bucket=b, Key="x", Body=b"x", ACL=canned)
        fails(alt.put_object, "AccessControlListNotSupported", 400, Bucket=b, Key="x", Body=b"x", ACL=canned)
    fails(other.copy_object, "AccessControlListNotSupported", 400, Bucket=b, Key="x",
          CopySource={"Bucket": b, "Key": "no-acl"}, ACL="private")
    fails(other.create_multipart_upload, "AccessControlListNotSupported", 400, Bucket=b, Key="x", ACL="private")
    fails(alt.put_bucket_acl, "AccessControlListNotSupported", 400, Bucket=b, ACL="private")
    fails(alt.put_bucket_acl, "AccessControlListNotSupported", 400, Bucket=b, ACL="public-read")
    fails(alt.put_object_acl, "AccessControlListNotSupported", 400, Bucket=b, Key="no-acl", ACL="private")
    fails(alt.put_object_acl, "AccessControlListNotSupported", 400, Bucket=b, Key="no-acl", ACL="public-read")
    fails(alt.head_object, "404", 404, Bucket=b, Key="x")
    # Reading ACLs still works and shows the bucket owner in full control.
    assert grants(alt.get_bucket_acl(Bucket=b)) == {(alt_id, "FULL_CONTROL")}
    assert grants(other.get_object_acl(Bucket=b, Key="no-acl")) == {(alt_id, "FULL_CONTROL")}


def test_object_writer_ownership(writable, alt, other, other_id):
    ownership(alt, writable, "ObjectWriter")
    other.put_object(Bucket=writable, Key="plain", Body=b"x")
    other.put_object(Bucket=writable, Key="bofc", Body=b"x", ACL="bucket-owner-full-control")
    assert object_owner(other, writable, "plain") == other_id
    assert object_owner(other, writable, "bofc") == other_id
    alt.put_bucket_acl(Bucket=writable, ACL="private")  # ACLs remain settable
    other.put_object_acl(Bucket=writable, Key="plain", ACL="private")


def test_bucket_owner_preferred(writable, alt, other, alt_id, other_id):
    b = writable
    ownership(alt, b, "BucketOwnerPreferred")
    other.put_object(Bucket=b, Key="plain", Body=b"x")
    assert object_owner(other, b, "plain") == other_id
    other.put_object(Bucket=b, Key="private", Body=b"x", ACL="private")
    assert object_owner(other, b, "private") == other_id
    other.put_object(Bucket=b, Key="bofc", Body=b"x", ACL="bucket-owner-full-control")
    assert object_owner(alt, b, "bofc") == alt_id
    assert alt.get_object(Bucket=b, Key="bofc")["Body"].read() == b"x"
    other.copy_object(Bucket=b, Key="copy-bofc", CopySource={"Bucket": b, "Key": "plain"},
                      ACL="bucket-owner-full-control")
    assert object_owner(alt, b, "copy-bofc") == alt_id
    upload = other.create_multipart_upload(Bucket=b, Key="mpu", ACL="bucket-owner-full-control")["UploadId"]
    etag = other.upload_part(Bucket=b, Key="mpu", UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
    other.complete_multipart_upload(Bucket=b, Key="mpu", UploadId=upload,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert object_owner(alt, b, "mpu") == alt_id
    alt.put_bucket_acl(Bucket=b, ACL="private")
    other.put_object_acl(Bucket=b, Key="plain", ACL="private")


# -- public access block and ACLs ------------------------------------------------------------------------------------


def test_public_access_block_round_trip(b, alt):
    fails(alt.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", 404, Bucket=b)
    settings = {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": False}
    alt.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=settings)
    assert alt.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"] == settings
    alt.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
    assert alt.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": False, "IgnorePublicAcls": True, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False}
    alt.delete_public_access_block(Bucket=b)
    fails(alt.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", 404, Bucket=b)


def test_block_public_acls(b, alt, anon, other_id, alt_id):
    alt.put_object(Bucket=b, Key="already-public", Body=b"p", ACL="public-read")
    alt.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
    denied(alt.put_bucket_acl, Bucket=b, ACL="public-read")
    denied(alt.put_bucket_acl, Bucket=b, ACL="authenticated-read")
    denied(alt.put_bucket_acl, Bucket=b, GrantRead=f'uri="{ALL_USERS}"')
    denied(alt.put_object, Bucket=b, Key="x", Body=b"x", ACL="public-read")
    denied(alt.put_object, Bucket=b, Key="x", Body=b"x", GrantRead=f'uri="{AUTHENTICATED}"')
    denied(alt.put_object_acl, Bucket=b, Key="obj", ACL="public-read-write")
    denied(alt.copy_object, Bucket=b, Key="x", CopySource={"Bucket": b, "Key": "obj"}, ACL="public-read")
    fails(alt.head_object, "404", 404, Bucket=b, Key="x")
    # Private ACLs and grants to users are fine; existing public ACLs keep working.
    alt.put_object(Bucket=b, Key="y", Body=b"y", ACL="private")
    alt.put_bucket_acl(Bucket=b, GrantRead=f'id="{other_id}"', GrantFullControl=f'id="{alt_id}"')
    assert anon.get_object(Bucket=b, Key="already-public")["Body"].read() == b"p"


def test_ignore_public_acls(b, alt, other, anon, alt_id, other_id):
    alt.put_bucket_acl(Bucket=b, ACL="public-read")
    alt.put_object(Bucket=b, Key="pub", Body=b"p", ACL="public-read")
    alt.put_object(Bucket=b, Key="auth", Body=b"a", ACL="authenticated-read")
    alt.put_object(Bucket=b, Key="granted", Body=b"g", GrantRead=f'id="{other_id}"')
    assert anon.list_objects_v2(Bucket=b)["KeyCount"] == 4
    alt.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"IgnorePublicAcls": True})
    denied(anon.list_objects_v2, Bucket=b)
    denied(other.list_objects_v2, Bucket=b)
    denied(anon.get_object, Bucket=b, Key="pub")
    denied(other.get_object, Bucket=b, Key="auth")
    assert other.get_object(Bucket=b, Key="granted")["Body"].read() == b"g"  # not a public grant
    alt.put_object(Bucket=b, Key="new", Body=b"n", ACL="public-read")  # accepted, but ignored
    denied(anon.get_object, Bucket=b, Key="new")
    alt.delete_public_access_block(Bucket=b)
    assert anon.get_object(Bucket=b, Key="new")["Body"].read() == b"n"
