"""Bucket versioning: its state, version ids on every kind of write, reads and deletes by version id, delete
markers, null versions in suspended buckets, ListObjectVersions (order, prefixes, pagination) and
DeleteObjects with version ids; disk space and restarts on a server of their own."""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from xml.etree import ElementTree

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import client, error_code, status_of

BIG = 100 * 1024  # above the inline limit: stored as a blob file
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def enable(s3, bucket, status="Enabled"):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


@pytest.fixture
def vbucket(s3, bucket):
    enable(s3, bucket)
    return bucket


def headers(response) -> dict:
    return response["ResponseMetadata"]["HTTPHeaders"]


def raw_versions(s3, bucket, **params) -> tuple[list[tuple[str, str, str, bool]], list[str], ElementTree.Element]:
    """ListObjectVersions as the server sent it, in document order: (kind, key, version id, is latest) with kind
    "V" for a version and "M" for a delete marker (boto3 splits the two and loses their interleaving)."""
    url = s3.generate_presigned_url("list_object_versions", Params={"Bucket": bucket, **params})
    with urllib.request.urlopen(url) as response:
        root = ElementTree.fromstring(response.read())
    entries = []
    for node in root:
        if node.tag in (NS + "Version", NS + "DeleteMarker"):
            entries.append(("V" if node.tag == NS + "Version" else "M", node.findtext(NS + "Key"),
                            node.findtext(NS + "VersionId"), node.findtext(NS + "IsLatest") == "true"))
    prefixes = [p.findtext(NS + "Prefix") for p in root.findall(NS + "CommonPrefixes")]
    return entries, prefixes, root


def all_versions(s3, bucket, **params) -> list[tuple[str, str, str, bool]]:
    entries, _, root = raw_versions(s3, bucket, **params)
    assert root.findtext(NS + "IsTruncated") == "false"
    return entries


def blob_files(data_dir: str) -> int:
    return sum(len(files) for _, _, files in os.walk(os.path.join(data_dir, ".shoal", "blobs")))


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# -- the bucket's state -------------------------------------------------------------------------------------


def test_never_versioned_bucket_has_no_status(s3, bucket):
    response = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in response
    assert "MFADelete" not in response


def test_enable_suspend_enable(s3, bucket):
    for status in ("Enabled", "Suspended", "Enabled", "Suspended"):
        response = s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == status


@pytest.mark.parametrize("status", ["enabled", "Disabled", "On", ""])
def test_invalid_status_is_malformed_xml(s3, bucket, status):
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
    assert status_of(exc.value) == 400 and error_code(exc.value) == "MalformedXML"
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


def test_suspending_a_never_versioned_bucket(s3, bucket):
    enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == ["null"]


def test_other_users_cannot_read_or_change_versioning(s3, alt_s3, bucket):
    for call in (lambda: alt_s3.get_bucket_versioning(Bucket=bucket),
                 lambda: alt_s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
                 lambda: alt_s3.list_object_versions(Bucket=bucket)):
        with pytest.raises(ClientError) as exc:
            call()
        assert status_of(exc.value) == 403 and error_code(exc.value) == "AccessDenied"
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


def test_missing_bucket(s3):
    name = f"test-missing-{uuid.uuid4().hex[:12]}"
    for call in (lambda: s3.get_bucket_versioning(Bucket=name),
                 lambda: s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"}),
                 lambda: s3.list_object_versions(Bucket=name)):
        with pytest.raises(ClientError) as exc:
            call()
        assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchBucket"


# -- version ids on writes, reads by version id ---------------------------------------------------------------


def test_unversioned_bucket_says_nothing_of_versions(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert "VersionId" not in put
    assert "VersionId" not in s3.get_object(Bucket=bucket, Key="k")
    assert "VersionId" not in s3.head_object(Bucket=bucket, Key="k")
    delete = s3.delete_object(Bucket=bucket, Key="k")
    assert "VersionId" not in delete and "DeleteMarker" not in delete
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)


def test_every_put_makes_a_version(s3, vbucket):
    bodies = [b"one", b"two" * 1000, os.urandom(BIG)]
    ids = [s3.put_object(Bucket=vbucket, Key="k", Body=body)["VersionId"] for body in bodies]
    assert len(set(ids)) == 3 and "null" not in ids
    for version_id, body in zip(ids, bodies, strict=True):
        got = s3.get_object(Bucket=vbucket, Key="k", VersionId=version_id)
        assert got["Body"].read() == body
        assert got["VersionId"] == version_id
        head = s3.head_object(Bucket=vbucket, Key="k", VersionId=version_id)
        assert head["ContentLength"] == len(body) and head["VersionId"] == version_id
    latest = s3.get_object(Bucket=vbucket, Key="k")
    assert latest["VersionId"] == ids[-1] and latest["Body"].read() == bodies[-1]
    listing = s3.list_object_versions(Bucket=vbucket)
    assert [(v["VersionId"], v["IsLatest"], v["Size"]) for v in listing["Versions"]] == \
        [(ids[2], True, BIG), (ids[1], False, 3000), (ids[0], False, 3)]
    assert "DeleteMarkers" not in listing


def test_range_and_conditions_on_an_old_version(s3, vbucket):
    old = s3.put_object(Bucket=vbucket, Key="k", Body=b"0123456789")
    s3.put_object(Bucket=vbucket, Key="k", Body=b"new")
    got = s3.get_object(Bucket=vbucket, Key="k", VersionId=old["VersionId"], Range="bytes=2-4",
                        IfMatch=old["ETag"])
    assert got["Body"].read() == b"234" and got["ContentRange"] == "bytes 2-4/10"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k", VersionId=old["VersionId"], IfNoneMatch=old["ETag"])
    assert status_of(exc.value) == 304


def test_copy_makes_a_version_and_names_its_source(s3, vbucket):
    first = s3.put_object(Bucket=vbucket, Key="src", Body=b"first")["VersionId"]
    second = s3.put_object(Bucket=vbucket, Key="src", Body=b"second")["VersionId"]
    copied = s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": vbucket, "Key": "src",
                                                                   "VersionId": first})
    assert copied["CopySourceVersionId"] == first
    assert copied["VersionId"] not in (first, second)
    assert s3.get_object(Bucket=vbucket, Key="dst")["Body"].read() == b"first"
    # Without a version id the latest is copied, and S3 still says which version that was.
    latest = s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": vbucket, "Key": "src"})
    assert latest["CopySourceVersionId"] == second
    assert s3.get_object(Bucket=vbucket, Key="dst")["Body"].read() == b"second"
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=vbucket, Prefix="dst")["Versions"]] == \
        [latest["VersionId"], copied["VersionId"]]


def test_copy_an_old_version_over_the_latest_restores_it(s3, vbucket):
    old = s3.put_object(Bucket=vbucket, Key="k", Body=os.urandom(BIG))
    s3.put_object(Bucket=vbucket, Key="k", Body=b"oops")
    restored = s3.copy_object(Bucket=vbucket, Key="k", CopySource={"Bucket": vbucket, "Key": "k",
                                                                   "VersionId": old["VersionId"]})
    assert restored["CopyObjectResult"]["ETag"] == old["ETag"]
    assert s3.head_object(Bucket=vbucket, Key="k")["VersionId"] == restored["VersionId"]
    assert len(s3.list_object_versions(Bucket=vbucket)["Versions"]) == 3


def test_copy_from_an_unversioned_source_names_no_source_version(s3, vbucket):
    plain = f"test-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=plain)
    s3.put_object(Bucket=plain, Key="src", Body=b"x")
    copied = s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": plain, "Key": "src"})
    assert "CopySourceVersionId" not in copied
    assert copied["VersionId"] != "null"


def test_upload_part_copy_from_an_old_version(s3, vbucket):
    old = s3.put_object(Bucket=vbucket, Key="src", Body=b"old bytes")["VersionId"]
    new = s3.put_object(Bucket=vbucket, Key="src", Body=b"new bytes")["VersionId"]
    upload = s3.create_multipart_upload(Bucket=vbucket, Key="dst")["UploadId"]
    part = s3.upload_part_copy(Bucket=vbucket, Key="dst", UploadId=upload, PartNumber=1,
                               CopySource={"Bucket": vbucket, "Key": "src", "VersionId": old})
    assert part["CopySourceVersionId"] == old
    latest = s3.upload_part_copy(Bucket=vbucket, Key="dst", UploadId=upload, PartNumber=2,
                                 CopySource={"Bucket": vbucket, "Key": "src"}, CopySourceRange="bytes=0-2")
    assert latest["CopySourceVersionId"] == new
    parts = s3.list_parts(Bucket=vbucket, Key="dst", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 9), (2, 3)]
    s3.complete_multipart_upload(Bucket=vbucket, Key="dst", UploadId=upload, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=vbucket, Key="dst")["Body"].read() == b"old bytes"


def test_copy_of_a_delete_marker(s3, vbucket):
    s3.put_object(Bucket=vbucket, Key="src", Body=b"x")
    marker = s3.delete_object(Bucket=vbucket, Key="src")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": vbucket, "Key": "src"})
    assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": vbucket, "Key": "src", "VersionId": marker})
    assert status_of(exc.value) == 400 and error_code(exc.value) == "InvalidRequest"


def test_multipart_complete_makes_a_version(s3, vbucket):
    first = s3.put_object(Bucket=vbucket, Key="mp", Body=b"small")["VersionId"]
    upload = s3.create_multipart_upload(Bucket=vbucket, Key="mp")["UploadId"]
    part1, part2 = os.urandom(5 * 1024 * 1024), b"tail"
    etags = [s3.upload_part(Bucket=vbucket, Key="mp", UploadId=upload, PartNumber=n, Body=body)["ETag"]
             for n, body in ((1, part1), (2, part2))]
    done = s3.complete_multipart_upload(Bucket=vbucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    assert done["VersionId"] not in (None, "null", first)
    assert s3.head_object(Bucket=vbucket, Key="mp")["VersionId"] == done["VersionId"]
    assert s3.get_object(Bucket=vbucket, Key="mp", VersionId=first)["Body"].read() == b"small"
    got = s3.get_object(Bucket=vbucket, Key="mp", VersionId=done["VersionId"], PartNumber=2)
    assert got["Body"].read() == part2
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=vbucket)["Versions"]] == \
        [done["VersionId"], first]


def test_unknown_version_id(s3, vbucket):
    other = s3.put_object(Bucket=vbucket, Key="other", Body=b"x")["VersionId"]
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    for version_id in (other, "null"):
        with pytest.raises(ClientError) as exc:
            s3.get_object(Bucket=vbucket, Key="k", VersionId=version_id)
        assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchVersion"
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=vbucket, Key="k", VersionId=version_id)
        assert status_of(exc.value) == 404
        with pytest.raises(ClientError) as exc:
            s3.get_object_tagging(Bucket=vbucket, Key="k", VersionId=version_id)
        assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchVersion"
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=vbucket, Key="dst", CopySource={"Bucket": vbucket, "Key": "k",
                                                                  "VersionId": version_id})
        assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchVersion"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="missing", VersionId=other)
    assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchVersion"


def test_empty_version_id_is_invalid(server, s3, vbucket):
    from s3util import raw_request

    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    # (signed with V4: V2 signatures cannot tell "versionId=" from "versionId")
    status, _, body = raw_request(client(server.endpoint, signature_version="s3v4"), "GET", vbucket, "k",
                                  params={"VersionId": ""})
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body


def test_other_users_cannot_read_a_version(s3, alt_s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"x")["VersionId"]
    with pytest.raises(ClientError) as exc:
        alt_s3.get_object(Bucket=vbucket, Key="k", VersionId=version)
    assert status_of(exc.value) == 403 and error_code(exc.value) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        alt_s3.delete_object(Bucket=vbucket, Key="k", VersionId=version)
    assert status_of(exc.value) == 403 and error_code(exc.value) == "AccessDenied"
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=version)["Body"].read() == b"x"


# -- deleting versions, delete markers ------------------------------------------------------------------------


def test_delete_by_version_id(s3, vbucket):
    ids = [s3.put_object(Bucket=vbucket, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(3)]
    response = s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[1])
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert response["VersionId"] == ids[1]
    assert "DeleteMarker" not in response
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=vbucket)["Versions"]] == [ids[2], ids[0]]
    # Deleting the latest version makes the next newest one current again.
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[2])
    got = s3.get_object(Bucket=vbucket, Key="k")
    assert got["Body"].read() == b"v0" and got["VersionId"] == ids[0]
    listing = s3.list_object_versions(Bucket=vbucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in listing["Versions"]] == [(ids[0], True)]
    # Idempotent: deleting a version that is gone succeeds.
    again = s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[2])
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[0])
    assert "Versions" not in s3.list_object_versions(Bucket=vbucket)
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)


def test_delete_without_version_adds_a_marker(s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"data")["VersionId"]
    deleted = s3.delete_object(Bucket=vbucket, Key="k")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (version, "null")
    assert headers(deleted)["x-amz-delete-marker"] == "true"
    assert headers(deleted)["x-amz-version-id"] == marker

    # The latest version is the marker: GET and HEAD say so in a 404.
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k")
    assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchKey"
    assert headers(exc.value.response)["x-amz-delete-marker"] == "true"
    assert headers(exc.value.response)["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=vbucket, Key="k")
    assert status_of(exc.value) == 404
    assert headers(exc.value.response)["x-amz-delete-marker"] == "true"
    assert headers(exc.value.response)["x-amz-version-id"] == marker

    # The marker itself cannot be read: 405.
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert status_of(exc.value) == 405 and error_code(exc.value) == "MethodNotAllowed"
    assert headers(exc.value.response)["x-amz-delete-marker"] == "true"
    assert "last-modified" in headers(exc.value.response)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert status_of(exc.value) == 405
    assert headers(exc.value.response)["x-amz-delete-marker"] == "true"

    # The data is still there by version id, and the key is gone from listings.
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=version)["Body"].read() == b"data"
    assert "Contents" not in s3.list_objects_v2(Bucket=vbucket)
    assert "Contents" not in s3.list_objects(Bucket=vbucket)
    listing = s3.list_object_versions(Bucket=vbucket)
    assert [(m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [(marker, True)]
    assert [(v["VersionId"], v["IsLatest"]) for v in listing["Versions"]] == [(version, False)]
    assert listing["DeleteMarkers"][0]["Owner"]["ID"]

    # Deleting the marker brings the object back.
    undone = s3.delete_object(Bucket=vbucket, Key="k", VersionId=marker)
    assert undone["DeleteMarker"] is True and undone["VersionId"] == marker
    got = s3.get_object(Bucket=vbucket, Key="k")
    assert got["Body"].read() == b"data" and got["VersionId"] == version
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=vbucket)["Contents"]] == ["k"]


def test_delete_markers_stack(s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"x")["VersionId"]
    markers = [s3.delete_object(Bucket=vbucket, Key="k")["VersionId"] for _ in range(3)]
    assert len(set(markers)) == 3
    assert all_versions(s3, vbucket) == [("M", "k", markers[2], True), ("M", "k", markers[1], False),
                                         ("M", "k", markers[0], False), ("V", "k", version, False)]
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=markers[2])
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k")
    assert headers(exc.value.response)["x-amz-version-id"] == markers[1]
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=markers[0])
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=markers[1])
    assert s3.get_object(Bucket=vbucket, Key="k")["VersionId"] == version


def test_delete_of_a_missing_key_still_adds_a_marker(s3, vbucket):
    deleted = s3.delete_object(Bucket=vbucket, Key="never")
    assert deleted["DeleteMarker"] is True
    assert all_versions(s3, vbucket) == [("M", "never", deleted["VersionId"], True)]


def test_overwriting_a_deleted_key(s3, vbucket):
    old = s3.put_object(Bucket=vbucket, Key="k", Body=b"old")["VersionId"]
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    new = s3.put_object(Bucket=vbucket, Key="k", Body=b"new")["VersionId"]
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"new"
    assert all_versions(s3, vbucket) == [("V", "k", new, True), ("M", "k", marker, False),
                                         ("V", "k", old, False)]


def test_tagging_and_attributes_of_a_delete_marker(s3, vbucket):
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object_tagging(Bucket=vbucket, Key="k")
    assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=vbucket, Key="k", VersionId=marker, Tagging={"TagSet": []})
    assert status_of(exc.value) == 405 and error_code(exc.value) == "MethodNotAllowed"


def test_conditional_writes_see_a_delete_marker_as_no_object(s3, vbucket):
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=vbucket, Key="k")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=vbucket, Key="k", Body=b"y", IfMatch="*")
    assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchKey"
    s3.put_object(Bucket=vbucket, Key="k", Body=b"y", IfNoneMatch="*")
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"y"
    assert [e[0] for e in all_versions(s3, vbucket)] == ["V", "M", "V"]


# -- null versions -------------------------------------------------------------------------------------------


def test_objects_from_before_versioning_are_the_null_version(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")
    enable(s3, bucket)
    new = s3.put_object(Bucket=bucket, Key="k", Body=b"after")["VersionId"]
    assert new != "null"
    assert all_versions(s3, bucket) == [("V", "k", new, True), ("V", "k", "null", False)]
    old = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert old["Body"].read() == b"before" and old["VersionId"] == "null"
    # Once versioning was on, the null version says its id even when read as the latest.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=new)
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == "null"


def test_suspended_put_replaces_only_the_null_version(s3, vbucket):
    ids = [s3.put_object(Bucket=vbucket, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(2)]
    enable(s3, vbucket, "Suspended")
    for body in (b"null-1", b"null-2", b"null-3"):
        s3.put_object(Bucket=vbucket, Key="k", Body=body)
    assert all_versions(s3, vbucket) == [("V", "k", "null", True), ("V", "k", ids[1], False),
                                         ("V", "k", ids[0], False)]
    got = s3.get_object(Bucket=vbucket, Key="k")
    assert got["Body"].read() == b"null-3" and got["VersionId"] == "null"
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=ids[0])["Body"].read() == b"v0"
    # Re-enabled: new versions get ids again, and the null version stays among them.
    enable(s3, vbucket)
    new = s3.put_object(Bucket=vbucket, Key="k", Body=b"v2")["VersionId"]
    assert [v[2] for v in all_versions(s3, vbucket)] == [new, "null", ids[1], ids[0]]
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId="null")["Body"].read() == b"null-3"


def test_suspended_put_moves_the_null_version_to_the_top(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-old")
    enable(s3, bucket)
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned")["VersionId"]
    enable(s3, bucket, "Suspended")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-new")
    assert all_versions(s3, bucket) == [("V", "k", "null", True), ("V", "k", version, False)]
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"null-new"


def test_suspended_delete_makes_a_null_marker(s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"kept")["VersionId"]
    enable(s3, vbucket, "Suspended")
    s3.put_object(Bucket=vbucket, Key="k", Body=b"null data")
    deleted = s3.delete_object(Bucket=vbucket, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    # The null version's data is gone, replaced by the marker; the enabled-era version is kept.
    assert all_versions(s3, vbucket) == [("M", "k", "null", True), ("V", "k", version, False)]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=vbucket, Key="k")
    assert error_code(exc.value) == "NoSuchKey"
    assert headers(exc.value.response)["x-amz-version-id"] == "null"
    # Deleting again replaces the null marker: still one.
    s3.delete_object(Bucket=vbucket, Key="k")
    assert all_versions(s3, vbucket) == [("M", "k", "null", True), ("V", "k", version, False)]
    # Removing the null marker by id brings back the older version.
    s3.delete_object(Bucket=vbucket, Key="k", VersionId="null")
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"kept"


def test_suspended_delete_replaces_an_older_null_version(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"from before versioning")
    enable(s3, bucket)
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned")["VersionId"]
    enable(s3, bucket, "Suspended")
    response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    assert response["Deleted"] == [{"Key": "k", "DeleteMarker": True, "DeleteMarkerVersionId": "null"}]
    # The null version, wherever it stood, is replaced by the marker on top.
    assert all_versions(s3, bucket) == [("M", "k", "null", True), ("V", "k", version, False)]


def test_suspended_delete_of_a_versioned_latest_keeps_it(s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"kept")["VersionId"]
    enable(s3, vbucket, "Suspended")
    s3.delete_object(Bucket=vbucket, Key="k")
    assert all_versions(s3, vbucket) == [("M", "k", "null", True), ("V", "k", version, False)]


def test_delete_the_null_version_by_id(s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"versioned")["VersionId"]
    enable(s3, vbucket, "Suspended")
    s3.put_object(Bucket=vbucket, Key="k", Body=b"null")
    response = s3.delete_object(Bucket=vbucket, Key="k", VersionId="null")
    assert response["VersionId"] == "null" and "DeleteMarker" not in response
    assert all_versions(s3, vbucket) == [("V", "k", version, True)]
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"versioned"


def test_suspended_copy_and_multipart_write_the_null_version(s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"v1")["VersionId"]
    enable(s3, vbucket, "Suspended")
    copied = s3.copy_object(Bucket=vbucket, Key="k", CopySource={"Bucket": vbucket, "Key": "k"},
                            MetadataDirective="REPLACE", Metadata={"m": "1"})
    assert copied.get("VersionId", "null") == "null"
    upload = s3.create_multipart_upload(Bucket=vbucket, Key="k")["UploadId"]
    etag = s3.upload_part(Bucket=vbucket, Key="k", UploadId=upload, PartNumber=1, Body=b"mp")["ETag"]
    done = s3.complete_multipart_upload(Bucket=vbucket, Key="k", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done.get("VersionId", "null") == "null"
    assert all_versions(s3, vbucket) == [("V", "k", "null", True), ("V", "k", version, False)]
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"mp"


# -- tagging by version id ----------------------------------------------------------------------------------


def test_tagging_by_version_id(s3, vbucket):
    v1 = s3.put_object(Bucket=vbucket, Key="k", Body=b"1", Tagging="gen=1")["VersionId"]
    v2 = s3.put_object(Bucket=vbucket, Key="k", Body=b"2", Tagging="gen=2")["VersionId"]
    got = s3.get_object_tagging(Bucket=vbucket, Key="k", VersionId=v1)
    assert got["TagSet"] == [{"Key": "gen", "Value": "1"}] and got["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=vbucket, Key="k")["VersionId"] == v2
    put = s3.put_object_tagging(Bucket=vbucket, Key="k", VersionId=v1,
                                Tagging={"TagSet": [{"Key": "old", "Value": "yes"}]})
    assert put["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=vbucket, Key="k", VersionId=v1)["TagSet"] == [{"Key": "old", "Value": "yes"}]
    assert s3.get_object_tagging(Bucket=vbucket, Key="k")["TagSet"] == [{"Key": "gen", "Value": "2"}]
    deleted = s3.delete_object_tagging(Bucket=vbucket, Key="k", VersionId=v1)
    assert deleted["VersionId"] == v1 and deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=vbucket, Key="k", VersionId=v1)["TagSet"] == []
    assert s3.get_object(Bucket=vbucket, Key="k", VersionId=v2)["TagCount"] == 1
    # Tagging an old version changes neither the latest nor the version order.
    assert all_versions(s3, vbucket) == [("V", "k", v2, True), ("V", "k", v1, False)]


# -- ListObjectVersions -------------------------------------------------------------------------------------


def test_list_versions_order_latest_flags_and_fields(s3, vbucket):
    ids: dict[str, list[tuple[str, str]]] = {}

    def put(key, body=b"x"):
        ids.setdefault(key, []).append(("V", s3.put_object(Bucket=vbucket, Key=key, Body=body)["VersionId"]))

    def delete(key):
        ids.setdefault(key, []).append(("M", s3.delete_object(Bucket=vbucket, Key=key)["VersionId"]))

    # Interleaved writes to several keys: the listing is by key, then newest first, whatever the write order.
    put("b"), put("a"), put("c/1"), delete("b"), put("a"), put("b"), put("c/2"), delete("c/1"), put("a")
    expected = [(kind, key, version, i == 0)
                for key in sorted(ids) for i, (kind, version) in enumerate(reversed(ids[key]))]
    assert all_versions(s3, vbucket) == expected
    listing = s3.list_object_versions(Bucket=vbucket)
    assert listing["IsTruncated"] is False and listing["MaxKeys"] == 1000 and listing["Name"] == vbucket
    assert "NextKeyMarker" not in listing and "NextVersionIdMarker" not in listing
    first = listing["Versions"][0]
    assert first["Key"] == "a" and first["Size"] == 1 and first["ETag"] == '"9dd4e461268c8034f5c8564e155c67a6"'
    assert first["StorageClass"] == "STANDARD" and first["Owner"]["ID"]
    times = [v["LastModified"] for v in listing["Versions"] if v["Key"] == "a"]
    assert times == sorted(times, reverse=True)


def test_list_versions_prefix_and_delimiter(s3, vbucket):
    for key in ("a/1", "a/2", "b/1", "b/x/1", "top", "d/gone"):
        s3.put_object(Bucket=vbucket, Key=key, Body=b"x")
    s3.put_object(Bucket=vbucket, Key="a/1", Body=b"x")
    s3.delete_object(Bucket=vbucket, Key="d/gone")
    response = s3.list_object_versions(Bucket=vbucket, Delimiter="/")
    assert [p["Prefix"] for p in response["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert [v["Key"] for v in response["Versions"]] == ["top"]
    assert response["Delimiter"] == "/"
    # ListObjects does not show a prefix whose only key is deleted.
    assert [p["Prefix"] for p in s3.list_objects_v2(Bucket=vbucket, Delimiter="/")["CommonPrefixes"]] == ["a/", "b/"]
    response = s3.list_object_versions(Bucket=vbucket, Prefix="b/", Delimiter="/")
    assert [v["Key"] for v in response["Versions"]] == ["b/1"]
    assert [p["Prefix"] for p in response["CommonPrefixes"]] == ["b/x/"]
    assert response["Prefix"] == "b/"
    response = s3.list_object_versions(Bucket=vbucket, Prefix="a/")
    assert [v["Key"] for v in response["Versions"]] == ["a/1", "a/1", "a/2"]
    assert "CommonPrefixes" not in response
    response = s3.list_object_versions(Bucket=vbucket, Prefix="d")
    assert [v["Key"] for v in response["Versions"]] == [m["Key"] for m in response["DeleteMarkers"]] == ["d/gone"]


def test_list_versions_markers_page_by_page(s3, vbucket):
    for key in ("a", "b"):
        for _ in range(2):
            s3.put_object(Bucket=vbucket, Key=key, Body=b"x")
    s3.delete_object(Bucket=vbucket, Key="b")
    full = all_versions(s3, vbucket)
    assert len(full) == 5
    seen, key_marker, version_marker = [], "", ""
    for i in range(5):
        params = {"MaxKeys": 2}
        if key_marker:
            params |= {"KeyMarker": key_marker, "VersionIdMarker": version_marker}
        entries, _, root = raw_versions(s3, vbucket, **params)
        seen += entries
        assert root.findtext(NS + "KeyMarker") == key_marker
        assert root.findtext(NS + "VersionIdMarker") == version_marker
        if i == 2:
            assert root.findtext(NS + "IsTruncated") == "false" and root.find(NS + "NextKeyMarker") is None
            break
        assert root.findtext(NS + "IsTruncated") == "true"
        key_marker = root.findtext(NS + "NextKeyMarker")
        version_marker = root.findtext(NS + "NextVersionIdMarker")
        assert (key_marker, version_marker) == seen[-1][1:3]
    assert seen == full
    # A key marker alone starts after every version of that key.
    assert all_versions(s3, vbucket, KeyMarker="a") == [e for e in full if e[1] == "b"]
    assert all_versions(s3, vbucket, KeyMarker="b") == []
    assert all_versions(s3, vbucket, KeyMarker="0") == full


def test_list_versions_max_keys_zero(s3, vbucket):
    s3.put_object(Bucket=vbucket, Key="k", Body=b"x")
    response = s3.list_object_versions(Bucket=vbucket, MaxKeys=0)
    assert response["IsTruncated"] is False and "Versions" not in response


def test_version_id_marker_needs_a_key_marker(s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"x")["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.list_object_versions(Bucket=vbucket, VersionIdMarker=version)
    assert status_of(exc.value) == 400 and error_code(exc.value) == "InvalidArgument"


def test_list_versions_url_encoding(s3, vbucket):
    s3.put_object(Bucket=vbucket, Key="sp ace/\u00e9", Body=b"x")
    entries, _, root = raw_versions(s3, vbucket, EncodingType="url")
    assert entries[0][1] == "sp%20ace/%C3%A9"
    assert root.findtext(NS + "EncodingType") == "url"
    assert s3.list_object_versions(Bucket=vbucket)["Versions"][0]["Key"] == "sp ace/\u00e9"


def test_pagination_resumes_after_the_marker_version_was_deleted(s3, vbucket):
    ids = [s3.put_object(Bucket=vbucket, Key="k", Body=f"{i}".encode())["VersionId"] for i in range(5)]
    s3.put_object(Bucket=vbucket, Key="l", Body=b"x")
    full = all_versions(s3, vbucket)
    page = s3.list_object_versions(Bucket=vbucket, MaxKeys=2)
    assert [v["VersionId"] for v in page["Versions"]] == [ids[4], ids[3]]
    assert page["NextVersionIdMarker"] == ids[3]
    # The marker version goes away before the next page is asked for: the listing carries on where it was.
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=ids[3])
    rest = all_versions(s3, vbucket, KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])
    assert rest == full[2:]
    # Also when the marker was a delete marker and the latest version.
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    page = s3.list_object_versions(Bucket=vbucket, MaxKeys=1)
    assert page["NextVersionIdMarker"] == marker
    s3.delete_object(Bucket=vbucket, Key="k", VersionId=marker)
    rest = all_versions(s3, vbucket, KeyMarker="k", VersionIdMarker=marker)
    assert [e[2] for e in rest] == [ids[4], ids[2], ids[1], ids[0], full[-1][2]]


PAGING_KEYS = ["a", "b/1", "b/2", "b/c/1", "c", "d/1", "d/2", "e"]


@pytest.fixture(scope="module")
def paged(s3):
    """A versioned bucket with keys having 1 to 4 versions and some delete markers."""
    bucket = f"test-vpage-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    enable(s3, bucket)

    def write(i_key):
        i, key = i_key
        for n in range(i % 4 + 1):
            s3.put_object(Bucket=bucket, Key=key, Body=f"{n}".encode())
        if i % 3 == 0:
            s3.delete_object(Bucket=bucket, Key=key)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, enumerate(PAGING_KEYS)))
    return bucket


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=30), prefix=st.sampled_from(["", "b/", "d", "x"]),
       delimiter=st.sampled_from(["", "/"]))
def test_paging_with_any_max_keys_yields_the_full_listing(s3, paged, sizes, prefix, delimiter):
    params = {"Prefix": prefix, "Delimiter": delimiter}
    full_entries, full_prefixes, _ = raw_versions(s3, paged, **params)
    entries, prefixes = [], []
    key_marker = version_marker = None
    for i in range(100):
        page_params = dict(params, MaxKeys=sizes[i % len(sizes)])
        if key_marker is not None:
            page_params["KeyMarker"] = key_marker
            if version_marker is not None:
                page_params["VersionIdMarker"] = version_marker
        page_entries, page_prefixes, root = raw_versions(s3, paged, **page_params)
        assert len(page_entries) + len(page_prefixes) <= page_params["MaxKeys"]
        entries += page_entries
        prefixes += page_prefixes
        if root.findtext(NS + "IsTruncated") != "true":
            break
        key_marker = root.findtext(NS + "NextKeyMarker")
        version_marker = root.findtext(NS + "NextVersionIdMarker")
        assert key_marker is not None
    assert entries == full_entries
    assert prefixes == full_prefixes
    assert len(set(prefixes)) == len(prefixes)


# -- DeleteObjects with version ids -----------------------------------------------------------------------------


def test_delete_objects_with_version_ids(s3, vbucket):
    ids = [s3.put_object(Bucket=vbucket, Key="k", Body=f"{i}".encode())["VersionId"] for i in range(3)]
    marker = s3.delete_object(Bucket=vbucket, Key="k")["VersionId"]
    other = s3.put_object(Bucket=vbucket, Key="other", Body=b"x")["VersionId"]
    response = s3.delete_objects(Bucket=vbucket, Delete={"Objects": [
        {"Key": "k", "VersionId": ids[0]}, {"Key": "k", "VersionId": ids[1]}, {"Key": "k", "VersionId": marker},
        {"Key": "other"},
    ]})
    assert "Errors" not in response
    deleted = {(d["Key"], d.get("VersionId")): d for d in response["Deleted"]}
    assert set(deleted) == {("k", ids[0]), ("k", ids[1]), ("k", marker), ("other", None)}
    assert "DeleteMarker" not in deleted["k", ids[0]] and "DeleteMarkerVersionId" not in deleted["k", ids[0]]
    # Removing a delete marker by id: S3 says it was one, and which.
    assert deleted["k", marker]["DeleteMarker"] is True
    assert deleted["k", marker]["DeleteMarkerVersionId"] == marker
    # Deleting without a version id in a versioned bucket makes a marker.
    new_marker = deleted["other", None]["DeleteMarkerVersionId"]
    assert deleted["other", None]["DeleteMarker"] is True
    assert all_versions(s3, vbucket) == [("V", "k", ids[2], True), ("M", "other", new_marker, True),
                                         ("V", "other", other, False)]
    assert s3.get_object(Bucket=vbucket, Key="k")["Body"].read() == b"2"


def test_delete_objects_every_version_of_a_key(s3, vbucket):
    objects = []
    for key in ("x", "y"):
        for _ in range(3):
            objects.append({"Key": key, "VersionId": s3.put_object(Bucket=vbucket, Key=key, Body=b"x")["VersionId"]})
        objects.append({"Key": key, "VersionId": s3.delete_object(Bucket=vbucket, Key=key)["VersionId"]})
    response = s3.delete_objects(Bucket=vbucket, Delete={"Objects": objects})
    assert sorted((d["Key"], d["VersionId"]) for d in response["Deleted"]) == \
        sorted((o["Key"], o["VersionId"]) for o in objects)
    listing = s3.list_object_versions(Bucket=vbucket)
    assert "Versions" not in listing and "DeleteMarkers" not in listing
    # Again: every version is already gone, and each is reported deleted.
    again = s3.delete_objects(Bucket=vbucket, Delete={"Objects": objects})
    assert len(again["Deleted"]) == len(objects) and "Errors" not in again


def test_delete_objects_quiet_with_versions(s3, vbucket):
    version = s3.put_object(Bucket=vbucket, Key="k", Body=b"x")["VersionId"]
    response = s3.delete_objects(Bucket=vbucket, Delete={"Quiet": True, "Objects": [
        {"Key": "k", "VersionId": version}, {"Key": "k"}]})
    assert "Deleted" not in response and "Errors" not in response
    assert [e[0] for e in all_versions(s3, vbucket)] == ["M"]


# -- ListObjects ---------------------------------------------------------------------------------------------


def test_list_objects_shows_only_live_latest_versions(s3, vbucket):
    for key in ("a", "b", "c", "dir/d", "dir/e"):
        s3.put_object(Bucket=vbucket, Key=key, Body=b"old")
        s3.put_object(Bucket=vbucket, Key=key, Body=b"newer")
    for key in ("b", "dir/d", "dir/e"):
        s3.delete_object(Bucket=vbucket, Key=key)
    v2 = s3.list_objects_v2(Bucket=vbucket)
    assert [(o["Key"], o["Size"]) for o in v2["Contents"]] == [("a", 5), ("c", 5)]
    assert "CommonPrefixes" not in s3.list_objects_v2(Bucket=vbucket, Delimiter="/")
    pages = [s3.list_objects(Bucket=vbucket, MaxKeys=1)]
    pages.append(s3.list_objects(Bucket=vbucket, MaxKeys=1, Marker=pages[0]["Contents"][0]["Key"]))
    assert [p["Contents"][0]["Key"] for p in pages] == ["a", "c"]
    assert pages[1]["IsTruncated"] is False


# -- storage: space and restarts ------------------------------------------------------------------------------


def test_deleting_versions_frees_disk_space(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="space")
    enable(s3, "space")
    before = blob_files(srv.data_dir)
    ids = [s3.put_object(Bucket="space", Key="k", Body=os.urandom(BIG))["VersionId"] for _ in range(3)]
    s3.put_object(Bucket="space", Key="small", Body=b"inline")
    assert blob_files(srv.data_dir) == before + 3
    # A delete marker hides the data but keeps it.
    s3.delete_object(Bucket="space", Key="k")
    time.sleep(0.3)
    assert blob_files(srv.data_dir) == before + 3
    s3.delete_object(Bucket="space", Key="k", VersionId=ids[1])
    wait_for(lambda: blob_files(srv.data_dir) == before + 2, what="one blob freed")
    s3.delete_objects(Bucket="space", Delete={"Objects": [{"Key": "k", "VersionId": v} for v in (ids[0], ids[2])]})
    wait_for(lambda: blob_files(srv.data_dir) == before, what="every blob freed")
    # Overwriting the null version in a suspended bucket frees the old one's space too.
    enable(s3, "space", "Suspended")
    for _ in range(3):
        s3.put_object(Bucket="space", Key="n", Body=os.urandom(BIG))
    wait_for(lambda: blob_files(srv.data_dir) == before + 1, what="replaced null versions freed")
    s3.delete_object(Bucket="space", Key="n")  # the null marker replaces the null version
    wait_for(lambda: blob_files(srv.data_dir) == before, what="null version freed by the null marker")


def test_versions_survive_a_restart(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="durable")
    enable(s3, "durable")
    bodies = [os.urandom(BIG), b"small"]
    ids = [s3.put_object(Bucket="durable", Key="k", Body=body)["VersionId"] for body in bodies]
    marker = s3.delete_object(Bucket="durable", Key="k")["VersionId"]
    before = all_versions(s3, "durable")
    srv.stop()
    srv = make_server(data_dir=srv.data_dir, port=srv.port)
    assert s3.get_bucket_versioning(Bucket="durable")["Status"] == "Enabled"
    assert all_versions(s3, "durable") == before == [("M", "k", marker, True), ("V", "k", ids[1], False),
                                                      ("V", "k", ids[0], False)]
    for version_id, body in zip(ids, bodies, strict=True):
        assert s3.get_object(Bucket="durable", Key="k", VersionId=version_id)["Body"].read() == body
    # New versions after the restart come after the old ones.
    new = s3.put_object(Bucket="durable", Key="k", Body=b"new")["VersionId"]
    assert [e[2] for e in all_versions(s3, "durable")] == [new, marker, ids[1], ids[0]]
