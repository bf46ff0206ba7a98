"""Bucket policies in the AWS policy language: principals, actions, resources, conditions, Deny over Allow,
validation, policy status and the public access block settings that concern policies.

ALT owns every bucket here; OTHER (another non-admin user) and anonymous callers are the ones the policies
are about. The root user is an admin and would bypass everything, so it is not used."""

from __future__ import annotations

import pytest
from access_helpers import (
    arn,
    canonical_id,
    denied,
    fails,
    policy_doc,
    put_policy,
    unique,
    user_arn,
)

from conftest import OTHER
from rawhttp import Raw


@pytest.fixture
def b(alt) -> str:
    """A bucket of ALT's with a public/ and a private/ object."""
    name = unique("pol")
    alt.create_bucket(Bucket=name)
    alt.put_object(Bucket=name, Key="public/a.txt", Body=b"public data")
    alt.put_object(Bucket=name, Key="private/b.txt", Body=b"private data")
    return name


def allow(principal, action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": resource, **extra}


def deny(principal, action, resource, **extra) -> dict:
    return {"Effect": "Deny", "Principal": principal, "Action": action, "Resource": resource, **extra}


def read(s3, bucket: str, key: str = "public/a.txt") -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


# -- principals --------------------------------------------------------------------------------------------


def test_without_policy_others_are_denied(b, other, anon):
    denied(other.get_object, Bucket=b, Key="public/a.txt")
    denied(other.list_objects_v2, Bucket=b)
    denied(other.put_object, Bucket=b, Key="x", Body=b"x")
    denied(anon.get_object, Bucket=b, Key="public/a.txt")


def test_allow_to_principal_by_canonical_id_arn(b, alt, other, anon, other_id):
    put_policy(alt, b, allow({"AWS": user_arn(other_id)}, "s3:GetObject", arn(b, "*")))
    assert read(other, b) == b"public data"
    assert read(other, b, "private/b.txt") == b"private data"
    denied(anon.get_object, Bucket=b, Key="public/a.txt")
    denied(other.put_object, Bucket=b, Key="x", Body=b"x")
    denied(other.list_objects_v2, Bucket=b)
    denied(other.delete_object, Bucket=b, Key="public/a.txt")


def test_allow_to_principal_by_canonical_user(b, alt, other, anon, other_id):
    put_policy(alt, b, allow({"CanonicalUser": other_id}, ["s3:ListBucket"], arn(b)))
    assert [o["Key"] for o in other.list_objects_v2(Bucket=b)["Contents"]] == ["private/b.txt", "public/a.txt"]
    denied(other.get_object, Bucket=b, Key="public/a.txt")
    denied(anon.list_objects_v2, Bucket=b)


def test_allow_to_a_different_principal_does_not_apply(b, alt, other):
    put_policy(alt, b, allow({"AWS": user_arn("0" * 64)}, "s3:GetObject", arn(b, "*")))
    denied(other.get_object, Bucket=b, Key="public/a.txt")


def test_allow_to_everyone(b, alt, other, anon):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*")))
    assert read(other, b) == b"public data"
    assert read(anon, b) == b"public data"
    denied(anon.put_object, Bucket=b, Key="x", Body=b"x")
    denied(anon.list_objects_v2, Bucket=b)


def test_allow_to_aws_star_is_everyone(b, alt, anon):
    put_policy(alt, b, allow({"AWS": "*"}, "s3:GetObject", arn(b, "*")))
    assert read(anon, b) == b"public data"


def test_deny_wins_over_allow(b, alt, other):
    put_policy(alt, b, allow("*", "s3:*", [arn(b), arn(b, "*")]),
               deny({"AWS": "*"}, "s3:GetObject", arn(b, "private/*")))
    assert read(other, b) == b"public data"
    denied(other.get_object, Bucket=b, Key="private/b.txt")
    other.put_object(Bucket=b, Key="private/new", Body=b"allowed: only reads are denied")
    assert other.list_objects_v2(Bucket=b)["KeyCount"] == 3


def test_deny_wins_over_acl_grant(b, alt, other, anon):
    alt.put_object(Bucket=b, Key="acl-public", Body=b"acl", ACL="public-read")
    assert read(anon, b, "acl-public") == b"acl"
    put_policy(alt, b, deny("*", "s3:GetObject", arn(b, "acl-public")))
    denied(anon.get_object, Bucket=b, Key="acl-public")
    denied(other.get_object, Bucket=b, Key="acl-public")


def test_owner_is_denied_by_explicit_deny_but_can_manage_the_policy(b, alt):
    put_policy(alt, b, deny("*", "s3:*", [arn(b), arn(b, "*")]))
    denied(alt.get_object, Bucket=b, Key="public/a.txt")
    denied(alt.put_object, Bucket=b, Key="x", Body=b"x")
    denied(alt.list_objects_v2, Bucket=b)
    denied(alt.get_bucket_acl, Bucket=b)
    denied(alt.delete_bucket, Bucket=b)
    # ...but it can always read, replace and delete the policy, so the mistake can be undone.
    assert "s3:*" in alt.get_bucket_policy(Bucket=b)["Policy"]
    put_policy(alt, b, deny("*", "s3:PutObject", arn(b, "*")))
    assert read(alt, b) == b"public data"
    denied(alt.put_object, Bucket=b, Key="x", Body=b"x")
    alt.delete_bucket_policy(Bucket=b)
    alt.put_object(Bucket=b, Key="x", Body=b"x")


def test_others_cannot_manage_the_policy_without_a_grant(b, alt, other):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*")))
    denied(other.get_bucket_policy, Bucket=b)
    denied(other.put_bucket_policy, Bucket=b, Policy=policy_doc(allow("*", "s3:*", arn(b, "*"))))
    denied(other.delete_bucket_policy, Bucket=b)
    denied(other.get_bucket_policy_status, Bucket=b)


def test_a_policy_may_grant_policy_management(b, alt, other, other_id):
    put_policy(alt, b, allow({"AWS": user_arn(other_id)}, ["s3:GetBucketPolicy", "s3:PutBucketPolicy"], arn(b)))
    assert "GetBucketPolicy" in other.get_bucket_policy(Bucket=b)["Policy"]
    put_policy(other, b, allow({"AWS": user_arn(other_id)}, "s3:GetObject", arn(b, "*")))
    assert read(other, b) == b"public data"
    denied(other.get_bucket_policy, Bucket=b)  # it replaced its own grant


# -- NotAction, NotResource, NotPrincipal --------------------------------------------------------------------


def test_not_action(b, alt, other, other_id):
    put_policy(alt, b, {"Effect": "Allow", "Principal": {"AWS": user_arn(other_id)},
                        "NotAction": ["s3:DeleteObject", "s3:PutObject"], "Resource": arn(b, "*")})
    assert read(other, b) == b"public data"
    assert other.get_object_tagging(Bucket=b, Key="public/a.txt")["TagSet"] == []
    denied(other.put_object, Bucket=b, Key="x", Body=b"x")
    denied(other.delete_object, Bucket=b, Key="public/a.txt")
    denied(other.list_objects_v2, Bucket=b)  # the statement's resource is objects only


def test_not_resource(b, alt, other, other_id):
    put_policy(alt, b, {"Effect": "Allow", "Principal": {"AWS": user_arn(other_id)}, "Action": "s3:GetObject",
                        "NotResource": arn(b, "private/*")})
    assert read(other, b) == b"public data"
    denied(other.get_object, Bucket=b, Key="private/b.txt")


def test_not_principal_deny_spares_only_the_named(b, alt, other, anon, other_id):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*")),
               {"Effect": "Deny", "NotPrincipal": {"AWS": user_arn(other_id)}, "Action": "s3:GetObject",
                "Resource": arn(b, "private/*")})
    assert read(other, b, "private/b.txt") == b"private data"
    denied(anon.get_object, Bucket=b, Key="private/b.txt")
    denied(alt.get_object, Bucket=b, Key="private/b.txt")  # the owner is not named: denied too
    assert read(anon, b) == b"public data"


# -- resources and actions ------------------------------------------------------------------------------------


def test_resource_prefix_wildcard(b, alt, other):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "public/*")))
    assert read(other, b) == b"public data"
    denied(other.get_object, Bucket=b, Key="private/b.txt")


def test_resource_question_mark_wildcard(b, alt, other):
    alt.put_object(Bucket=b, Key="f1", Body=b"1")
    alt.put_object(Bucket=b, Key="f10", Body=b"10")
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "f?")))
    assert read(other, b, "f1") == b"1"
    denied(other.get_object, Bucket=b, Key="f10")


def test_bucket_resource_does_not_cover_objects_and_vice_versa(b, alt, other):
    put_policy(alt, b, allow("*", ["s3:GetObject", "s3:ListBucket"], arn(b)))
    denied(other.get_object, Bucket=b, Key="public/a.txt")
    assert other.list_objects_v2(Bucket=b)["KeyCount"] == 2
    put_policy(alt, b, allow("*", ["s3:GetObject", "s3:ListBucket"], arn(b, "*")))
    assert read(other, b) == b"public data"
    denied(other.list_objects_v2, Bucket=b)


def test_action_wildcard(b, alt, other):
    put_policy(alt, b, allow("*", "s3:Get*", [arn(b), arn(b, "*")]))
    assert read(other, b) == b"public data"
    assert other.get_object_tagging(Bucket=b, Key="public/a.txt")["TagSet"] == []
    assert other.get_bucket_location(Bucket=b)["LocationConstraint"] is None
    denied(other.list_objects_v2, Bucket=b)
    denied(other.put_object, Bucket=b, Key="x", Body=b"x")
    denied(other.delete_object, Bucket=b, Key="public/a.txt")


def test_action_names_are_case_insensitive(b, alt, other):
    put_policy(alt, b, allow("*", "S3:getobject", arn(b, "*")))
    assert read(other, b) == b"public data"


def test_resource_is_case_sensitive(b, alt, other):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "PUBLIC/*")))
    denied(other.get_object, Bucket=b, Key="public/a.txt")


def test_head_object_needs_get_object(b, alt, other):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "public/*")))
    assert other.head_object(Bucket=b, Key="public/a.txt")["ContentLength"] == 11
    denied(other.head_object, Bucket=b, Key="private/b.txt")


def test_missing_key_is_403_without_list_and_404_with_it(b, alt, other):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*")))
    denied(other.get_object, Bucket=b, Key="nope")
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*")), allow("*", "s3:ListBucket", arn(b)))
    fails(other.get_object, "NoSuchKey", 404, Bucket=b, Key="nope")


def test_policy_grants_write_and_delete(b, alt, other, other_id):
    put_policy(alt, b, allow({"AWS": user_arn(other_id)}, ["s3:PutObject", "s3:DeleteObject"], arn(b, "drop/*")))
    other.put_object(Bucket=b, Key="drop/x", Body=b"from other")
    assert read(other, b, "drop/x") == b"from other"  # its writer owns it and reads it through its ACL
    denied(alt.get_object, Bucket=b, Key="drop/x")  # ObjectWriter: the bucket owner was given no grant
    other.put_object(Bucket=b, Key="drop/y", Body=b"handed over", ACL="bucket-owner-full-control")
    assert read(alt, b, "drop/y") == b"handed over"
    denied(other.put_object, Bucket=b, Key="elsewhere", Body=b"x")
    other.delete_object(Bucket=b, Key="drop/x")
    assert alt.list_objects_v2(Bucket=b, Prefix="drop/")["KeyCount"] == 1


# -- conditions -------------------------------------------------------------------------------------------------


def test_string_equals_on_prefix(b, alt, other):
    put_policy(alt, b, allow("*", "s3:ListBucket", arn(b), Condition={"StringEquals": {"s3:prefix": "public/"}}))
    assert [o["Key"] for o in other.list_objects_v2(Bucket=b, Prefix="public/")["Contents"]] == ["public/a.txt"]
    denied(other.list_objects_v2, Bucket=b, Prefix="private/")
    denied(other.list_objects_v2, Bucket=b)  # no prefix at all: the key is missing, the condition fails
    denied(other.list_objects_v2, Bucket=b, Prefix="public/a")


def test_string_like_on_prefix(b, alt, other):
    put_policy(alt, b, allow("*", "s3:ListBucket", arn(b), Condition={"StringLike": {"s3:prefix": "pub*"}}))
    assert other.list_objects_v2(Bucket=b, Prefix="public/")["KeyCount"] == 1
    assert other.list_objects(Bucket=b, Prefix="pub")["Contents"][0]["Key"] == "public/a.txt"
    denied(other.list_objects_v2, Bucket=b, Prefix="private/")
    denied(other.list_objects_v2, Bucket=b, Prefix="pu")


def test_string_not_equals_on_prefix(b, alt, other):
    put_policy(alt, b, allow("*", "s3:ListBucket", arn(b)),
               deny("*", "s3:ListBucket", arn(b), Condition={"StringNotEquals": {"s3:prefix": "public/"}}))
    assert other.list_objects_v2(Bucket=b, Prefix="public/")["KeyCount"] == 1
    denied(other.list_objects_v2, Bucket=b, Prefix="private/")
    denied(other.list_objects_v2, Bucket=b)  # a missing key is "not equal"


def test_numeric_condition_on_max_keys(b, alt, other):
    put_policy(alt, b, allow("*", "s3:ListBucket", arn(b),
                             Condition={"NumericLessThanEquals": {"s3:max-keys": "10"}}))
    assert other.list_objects_v2(Bucket=b, MaxKeys=10)["KeyCount"] == 2
    assert other.list_objects(Bucket=b, MaxKeys=1)["IsTruncated"] is True
    denied(other.list_objects_v2, Bucket=b, MaxKeys=11)
    denied(other.list_objects_v2, Bucket=b)


def test_source_ip(b, alt, other):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}))
    assert read(other, b) == b"public data"
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    denied(other.get_object, Bucket=b, Key="public/a.txt")
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert read(other, b) == b"public data"
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]}}))
    assert read(other, b) == b"public data"


def test_source_ip_deny_applies_to_the_owner(b, alt):
    put_policy(alt, b, deny("*", "s3:GetObject", arn(b, "*"),
                            Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    denied(alt.get_object, Bucket=b, Key="public/a.txt")


def test_secure_transport(b, alt, other):
    # Plain HTTP: aws:SecureTransport is false. The usual "deny insecure transport" policy refuses everything.
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*")),
               deny("*", "s3:*", arn(b, "*"), Condition={"Bool": {"aws:SecureTransport": "false"}}))
    denied(other.get_object, Bucket=b, Key="public/a.txt")
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"), Condition={"Bool": {"aws:SecureTransport": False}}))
    assert read(other, b) == b"public data"
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"), Condition={"Bool": {"aws:SecureTransport": "true"}}))
    denied(other.get_object, Bucket=b, Key="public/a.txt")


def test_x_amz_acl_condition_on_put(b, alt, other):
    put_policy(alt, b, allow("*", "s3:PutObject", arn(b, "*"),
                             Condition={"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}))
    other.put_object(Bucket=b, Key="ok", Body=b"x", ACL="bucket-owner-full-control")
    denied(other.put_object, Bucket=b, Key="no-acl", Body=b"x")
    denied(other.put_object, Bucket=b, Key="public", Body=b"x", ACL="public-read")
    assert alt.get_object(Bucket=b, Key="ok")["Body"].read() == b"x"  # the grant lets the owner read it


def test_existing_object_tag_condition(b, alt, other):
    alt.put_object(Bucket=b, Key="tagged", Body=b"t", Tagging="class=public")
    alt.put_object(Bucket=b, Key="secret", Body=b"s", Tagging="class=secret")
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"StringEquals": {"s3:ExistingObjectTag/class": "public"}}))
    assert read(other, b, "tagged") == b"t"
    denied(other.get_object, Bucket=b, Key="secret")
    denied(other.get_object, Bucket=b, Key="public/a.txt")  # no tag at all
    # The tag is read at request time: retagging changes the answer.
    alt.put_object_tagging(Bucket=b, Key="secret", Tagging={"TagSet": [{"Key": "class", "Value": "public"}]})
    assert read(other, b, "secret") == b"s"


def test_request_object_tag_condition(b, alt, other):
    put_policy(alt, b, allow("*", "s3:PutObject", arn(b, "*"),
                             Condition={"StringEquals": {"s3:RequestObjectTag/team": "blue"}}))
    other.put_object(Bucket=b, Key="blue", Body=b"x", Tagging="team=blue")
    denied(other.put_object, Bucket=b, Key="red", Body=b"x", Tagging="team=red")
    denied(other.put_object, Bucket=b, Key="untagged", Body=b"x")
    assert other.get_object_tagging(Bucket=b, Key="blue")["TagSet"] == [{"Key": "team", "Value": "blue"}]


def test_request_object_tag_keys_condition(b, alt, other):
    put_policy(alt, b, allow("*", "s3:PutObject", arn(b, "*"),
                             Condition={"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "env"]}}))
    other.put_object(Bucket=b, Key="ok", Body=b"x", Tagging="team=a&env=b")
    denied(other.put_object, Bucket=b, Key="no", Body=b"x", Tagging="team=a&cost=1")


def test_date_conditions_on_current_time(b, alt, other):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"DateLessThan": {"aws:CurrentTime": "2000-01-01T00:00:00Z"}}))
    denied(other.get_object, Bucket=b, Key="public/a.txt")
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"DateLessThan": {"aws:CurrentTime": "2100-01-01T00:00:00Z"}}))
    assert read(other, b) == b"public data"
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"DateGreaterThan": {"aws:CurrentTime": "2100-01-01T00:00:00Z"}}))
    denied(other.get_object, Bucket=b, Key="public/a.txt")


def test_if_exists_passes_when_the_key_is_missing(b, alt, other):
    put_policy(alt, b, allow("*", "s3:ListBucket", arn(b),
                             Condition={"StringEqualsIfExists": {"s3:prefix": "public/"}}))
    assert other.list_objects_v2(Bucket=b)["KeyCount"] == 2
    assert other.list_objects_v2(Bucket=b, Prefix="public/")["KeyCount"] == 1
    denied(other.list_objects_v2, Bucket=b, Prefix="private/")


def test_null_condition(b, alt, other, anon):
    # Only requests that name a prefix may list; and anonymous requests (no aws:userid) are denied everything.
    put_policy(alt, b, allow("*", ["s3:ListBucket"], arn(b), Condition={"Null": {"s3:prefix": "false"}}),
               allow("*", "s3:GetObject", arn(b, "*")),
               deny("*", "s3:GetObject", arn(b, "*"), Condition={"Null": {"aws:userid": "true"}}))
    assert other.list_objects_v2(Bucket=b, Prefix="p")["KeyCount"] == 2
    denied(other.list_objects_v2, Bucket=b)
    assert read(other, b) == b"public data"
    denied(anon.get_object, Bucket=b, Key="public/a.txt")


def test_several_conditions_must_all_hold(b, alt, other):
    put_policy(alt, b, allow("*", "s3:ListBucket", arn(b), Condition={
        "StringEquals": {"s3:prefix": "public/"}, "NumericLessThanEquals": {"s3:max-keys": "5"}}))
    assert other.list_objects_v2(Bucket=b, Prefix="public/", MaxKeys=5)["KeyCount"] == 1
    denied(other.list_objects_v2, Bucket=b, Prefix="public/", MaxKeys=6)
    denied(other.list_objects_v2, Bucket=b, Prefix="private/", MaxKeys=5)


def test_username_condition(b, alt, other):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"), Condition={"StringEquals": {"aws:username": OTHER[0]}}))
    assert read(other, b) == b"public data"
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"), Condition={"StringEquals": {"aws:username": "nobody"}}))
    denied(other.get_object, Bucket=b, Key="public/a.txt")


def test_referer_condition(server, b, alt):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"),
                             Condition={"StringLike": {"aws:Referer": "https://app.example.com/*"}}))
    raw = Raw(server.port)
    ok = raw.send("GET", f"/{b}/public/a.txt", headers={"Referer": "https://app.example.com/page"})
    assert (ok.status, ok.body) == (200, b"public data")
    bad = raw.send("GET", f"/{b}/public/a.txt", headers={"Referer": "https://evil.example.net/"})
    assert (bad.status, bad.code) == (403, "AccessDenied")
    assert raw.send("GET", f"/{b}/public/a.txt").status == 403


# -- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "{not json",
    "[]",
    policy_doc({"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/*"}),
    policy_doc({"Effect": "Allow", "Principal": "*", "Resource": "arn:aws:s3:::B/*"}),
    policy_doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}),
    policy_doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/*"}),
    policy_doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::elsewhere/*"}),
    policy_doc({"Effect": "Allow", "Principal": "*", "Action": "iam:CreateUser", "Resource": "arn:aws:s3:::B/*"}),
    policy_doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::B/*",
                "Condition": {"StringSorta": {"s3:prefix": "a"}}}),
    policy_doc({"Effect": "Allow", "Principal": {"Someone": "x"}, "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::B/*"}),
    '{"Version": "2012-10-17"}',
    '{"Version": "1999-01-01", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", '
    '"Resource": "arn:aws:s3:::B/*"}]}',
], ids=["bad-json", "not-object", "bad-effect", "no-action", "no-resource", "no-principal", "other-bucket",
        "not-s3-action", "unknown-operator", "bad-principal-kind", "no-statement", "bad-version"])
def test_malformed_policies_are_refused(b, alt, text):
    fails(alt.put_bucket_policy, "MalformedPolicy", 400, Bucket=b, Policy=text.replace("arn:aws:s3:::B", arn(b)))
    fails(alt.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=b)


def test_policy_round_trip_and_delete(b, alt):
    text = policy_doc(allow("*", "s3:GetObject", arn(b, "*")))
    alt.put_bucket_policy(Bucket=b, Policy=text)
    assert alt.get_bucket_policy(Bucket=b)["Policy"] == text
    alt.delete_bucket_policy(Bucket=b)
    fails(alt.get_bucket_policy, "NoSuchBucketPolicy", 404, Bucket=b)
    alt.delete_bucket_policy(Bucket=b)  # deleting what is not there succeeds, as in S3


def test_policy_on_missing_bucket(alt):
    fails(alt.put_bucket_policy, "NoSuchBucket", 404, Bucket=unique("gone"), Policy=policy_doc(
        allow("*", "s3:GetObject", "arn:aws:s3:::*")))


def test_policy_too_large(b, alt):
    big = [arn(b, f"{i:05d}-" + "x" * 40) for i in range(500)]
    fails(alt.put_bucket_policy, "MalformedPolicy", 400, Bucket=b, Policy=policy_doc(allow("*", "s3:GetObject", big)))


# -- policy status and public access block -----------------------------------------------------------------------


def test_policy_status(b, alt, other_id):
    # No policy: not public by policy (ceph/s3-tests expect an answer, not NoSuchBucketPolicy).
    assert alt.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is False
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*")))
    assert alt.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is True
    put_policy(alt, b, allow({"AWS": user_arn(other_id)}, "s3:GetObject", arn(b, "*")))
    assert alt.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is False
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*"), Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    assert alt.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is False
    put_policy(alt, b, deny("*", "s3:GetObject", arn(b, "*")))
    assert alt.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is False


def test_block_public_policy_refuses_public_policies(b, alt, other, other_id):
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "public/*")))  # set before the block: it stays in force
    alt.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    denied(alt.put_bucket_policy, Bucket=b, Policy=policy_doc(allow("*", "s3:GetObject", arn(b, "*"))))
    assert read(other, b) == b"public data"
    assert "public/*" in alt.get_bucket_policy(Bucket=b)["Policy"]
    put_policy(alt, b, allow({"AWS": user_arn(other_id)}, "s3:GetObject", arn(b, "*")))  # not public: accepted
    assert read(other, b, "private/b.txt") == b"private data"


def test_restrict_public_buckets_neutralises_a_public_policy(b, alt, other, anon):
    put_policy(alt, b, allow("*", ["s3:GetObject", "s3:ListBucket"], [arn(b), arn(b, "*")]))
    assert read(anon, b) == b"public data"
    alt.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
    denied(anon.get_object, Bucket=b, Key="public/a.txt")
    denied(anon.list_objects_v2, Bucket=b)
    denied(other.get_object, Bucket=b, Key="public/a.txt")  # another account: restricted too
    assert read(alt, b) == b"public data"
    alt.delete_public_access_block(Bucket=b)
    assert read(anon, b) == b"public data"


def test_restrict_public_buckets_leaves_non_public_policies(b, alt, other, other_id):
    put_policy(alt, b, allow({"AWS": user_arn(other_id)}, "s3:GetObject", arn(b, "*")))
    alt.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
    assert read(other, b) == b"public data"


# -- anonymous requests over raw HTTP -------------------------------------------------------------------------------


def test_anonymous_raw_http_through_public_read_policy(server, b, alt):
    raw = Raw(server.port)
    assert (raw.send("GET", f"/{b}/public/a.txt").status) == 403
    put_policy(alt, b, allow("*", "s3:GetObject", arn(b, "*")))
    got = raw.send("GET", f"/{b}/public/a.txt")
    assert (got.status, got.body) == (200, b"public data")
    head = raw.send("HEAD", f"/{b}/private/b.txt")
    assert (head.status, head.headers["content-length"]) == (200, "12")
    listing = raw.send("GET", f"/{b}")
    assert (listing.status, listing.code) == (403, "AccessDenied")
    listing = raw.send("GET", f"/{b}?list-type=2")
    assert (listing.status, listing.code) == (403, "AccessDenied")
    missing = raw.send("GET", f"/{b}/no-such-key")
    assert (missing.status, missing.code) == (403, "AccessDenied")  # without ListBucket: no existence oracle
    put = raw.send("PUT", f"/{b}/new", b"data")
    assert (put.status, put.code) == (403, "AccessDenied")
    delete = raw.send("DELETE", f"/{b}/public/a.txt")
    assert (delete.status, delete.code) == (403, "AccessDenied")
    assert read(alt, b) == b"public data"


def test_anonymous_raw_http_list_with_list_grant(server, b, alt):
    put_policy(alt, b, allow("*", "s3:ListBucket", arn(b)), allow("*", "s3:GetObject", arn(b, "*")))
    raw = Raw(server.port)
    listing = raw.send("GET", f"/{b}?list-type=2&prefix=public/")
    assert listing.status == 200 and b"<Key>public/a.txt</Key>" in listing.body
    missing = raw.send("GET", f"/{b}/no-such-key")
    assert (missing.status, missing.code) == (404, "NoSuchKey")


def test_anonymous_write_through_policy_belongs_to_bucket_owner(server, b, alt, anon):
    put_policy(alt, b, allow("*", "s3:PutObject", arn(b, "inbox/*")))
    raw = Raw(server.port)
    put = raw.send("PUT", f"/{b}/inbox/drop", b"anonymous upload")
    assert put.status == 200, put
    assert read(alt, b, "inbox/drop") == b"anonymous upload"
    acl = alt.get_object_acl(Bucket=b, Key="inbox/drop")
    assert acl["Owner"]["ID"] == canonical_id(alt)
    denied(anon.get_object, Bucket=b, Key="inbox/drop")


def test_not_principal_with_allow_is_refused(b, alt, other_id):
    # AWS accepts NotPrincipal only with Deny: an Allow would grant everyone (anonymous too) but a few.
    statement = {"Effect": "Allow", "NotPrincipal": {"AWS": user_arn(other_id)}, "Action": "s3:ListBucket",
                 "Resource": arn(b)}
    fails(alt.put_bucket_policy, "MalformedPolicy", 400, Bucket=b, Policy=policy_doc(statement))


def test_missing_key_is_404_only_within_a_listable_prefix(b, alt, other):
    # ListBucket granted for s3:prefix public/*: a missing key there is NoSuchKey, elsewhere AccessDenied.
    put_policy(alt, b, allow("*", "s3:ListBucket", arn(b), Condition={"StringLike": {"s3:prefix": "public/*"}}))
    fails(other.head_object, "404", 404, Bucket=b, Key="public/missing")
    fails(other.head_object, "403", 403, Bucket=b, Key="private/missing")
    fails(other.get_object, "NoSuchKey", 404, Bucket=b, Key="public/missing")
    fails(other.get_object, "AccessDenied", 403, Bucket=b, Key="private/missing")
