"""Object lock (WORM): the bucket configuration and its default retention, retention and legal holds per version,
what they forbid (deleting a version; weakening a lock) and what they do not (delete markers, new versions), who
may bypass GOVERNANCE, and lifecycle rules that must leave locked versions alone."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from conftest import client, error_code, status_of

FAR = datetime(2140, 1, 1, tzinfo=UTC)


def raises(code: str, status: int, call, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    assert (status_of(exc.value), error_code(exc.value)) == (status, code)
    return exc.value


def soon(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)


@pytest.fixture
def locked(s3) -> str:
    name = f"test-lock-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def config(mode: str | None = None, **period) -> dict:
    conf: dict = {"ObjectLockEnabled": "Enabled"}
    if mode is not None:
        conf["Rule"] = {"DefaultRetention": {"Mode": mode, **period}}
    return conf


def retention(s3, bucket, key, **kwargs) -> dict:
    return s3.get_object_retention(Bucket=bucket, Key=key, **kwargs)["Retention"]


def version_ids(s3, bucket) -> list[str]:
    listing = s3.list_object_versions(Bucket=bucket)
    return [v["VersionId"] for v in listing.get("Versions", [])]


# -- the bucket configuration -------------------------------------------------------------------------------


def test_lock_bucket_is_versioned_for_good(s3, locked):
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == config()
    raises("InvalidBucketState", 409, s3.put_bucket_versioning, Bucket=locked,
           VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=locked, VersioningConfiguration={"Status": "Enabled"})  # no change: fine


@pytest.mark.parametrize("conf", [config("GOVERNANCE", Days=1), config("COMPLIANCE", Days=3650),
                                  config("GOVERNANCE", Years=1), config("COMPLIANCE", Years=100)])
def test_configuration_round_trips(s3, locked, conf):
    response = s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=conf)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == conf


def test_configuration_without_a_rule_removes_the_default(s3, locked):
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=config("GOVERNANCE", Days=1))
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=config())
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == config()
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    assert "ObjectLockMode" not in s3.head_object(Bucket=locked, Key="k")


INVALID_CONFIGURATIONS = {
    "days and years": (config("GOVERNANCE", Days=1, Years=1), 400, "MalformedXML"),
    "neither days nor years": (config("GOVERNANCE"), 400, "MalformedXML"),
    "zero days": (config("GOVERNANCE", Days=0), 400, "InvalidRetentionPeriod"),
    "negative days": (config("COMPLIANCE", Days=-1), 400, "InvalidRetentionPeriod"),
    "zero years": (config("GOVERNANCE", Years=0), 400, "InvalidRetentionPeriod"),
    "lower-case mode": (config("governance", Days=1), 400, "MalformedXML"),
    "unknown mode": (config("FOREVER", Days=1), 400, "MalformedXML"),
    "disabled": ({"ObjectLockEnabled": "Disabled"}, 400, "MalformedXML"),
}


@pytest.mark.parametrize(("conf", "status", "code"), INVALID_CONFIGURATIONS.values(),
                         ids=INVALID_CONFIGURATIONS.keys())
def test_invalid_configurations(s3, locked, conf, status, code):
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=config("GOVERNANCE", Days=7))
    raises(code, status, s3.put_object_lock_configuration, Bucket=locked, ObjectLockConfiguration=conf)
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == \
        config("GOVERNANCE", Days=7)


def test_bucket_without_object_lock(s3, bucket):
    raises("ObjectLockConfigurationNotFoundError", 404, s3.get_object_lock_configuration, Bucket=bucket)
    raises("InvalidBucketState", 409, s3.put_object_lock_configuration, Bucket=bucket,
           ObjectLockConfiguration=config("GOVERNANCE", Days=1))
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    raises("InvalidBucketState", 409, s3.put_object_lock_configuration, Bucket=bucket,
           ObjectLockConfiguration=config("GOVERNANCE", Days=1))
    raises("ObjectLockConfigurationNotFoundError", 404, s3.get_object_lock_configuration, Bucket=bucket)
    # A versioning-enabled bucket can have object lock turned on; then versioning stays on.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=config("GOVERNANCE", Days=1))
    assert s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"] == \
        config("GOVERNANCE", Days=1)
    raises("InvalidBucketState", 409, s3.put_bucket_versioning, Bucket=bucket,
           VersioningConfiguration={"Status": "Suspended"})


def test_lock_settings_on_a_bucket_without_object_lock(s3, bucket):
    raises("InvalidRequest", 400, s3.put_object, Bucket=bucket, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
           ObjectLockRetainUntilDate=FAR)
    raises("InvalidRequest", 400, s3.put_object, Bucket=bucket, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON")
    raises("InvalidRequest", 400, s3.create_multipart_upload, Bucket=bucket, Key="k", ObjectLockLegalHoldStatus="ON")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    raises("InvalidRequest", 400, s3.put_object_retention, Bucket=bucket, Key="k",
           Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FAR})
    raises("InvalidRequest", 400, s3.get_object_retention, Bucket=bucket, Key="k")
    raises("InvalidRequest", 400, s3.put_object_legal_hold, Bucket=bucket, Key="k", LegalHold={"Status": "ON"})
    raises("InvalidRequest", 400, s3.get_object_legal_hold, Bucket=bucket, Key="k")


def test_other_users_cannot_configure_object_lock(alt_s3, locked):
    raises("AccessDenied", 403, alt_s3.get_object_lock_configuration, Bucket=locked)
    raises("AccessDenied", 403, alt_s3.put_object_lock_configuration, Bucket=locked,
           ObjectLockConfiguration=config("GOVERNANCE", Days=1))


# -- retention when written ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "period", "days"), [("GOVERNANCE", {"Days": 2}, 2),
                                                      ("COMPLIANCE", {"Years": 1}, 365)])
def test_default_retention_applies_to_new_versions(s3, locked, mode, period, days):
    before = s3.put_object(Bucket=locked, Key="k", Body=b"before")["VersionId"]
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=config(mode, **period))
    version = s3.put_object(Bucket=locked, Key="k", Body=b"after")["VersionId"]
    head = s3.head_object(Bucket=locked, Key="k")
    expected = datetime.now(UTC) + timedelta(days=days)
    assert head["ObjectLockMode"] == mode
    assert abs((head["ObjectLockRetainUntilDate"] - expected).total_seconds()) < 120
    got = retention(s3, locked, "k", VersionId=version)
    assert got == {"Mode": mode, "RetainUntilDate": head["ObjectLockRetainUntilDate"]}
    # Versions from before the default keep none.
    assert "ObjectLockMode" not in s3.head_object(Bucket=locked, Key="k", VersionId=before)
    raises("NoSuchObjectLockConfiguration", 404, s3.get_object_retention, Bucket=locked, Key="k", VersionId=before)
    # A copy and a multipart upload get the default too.
    copied = s3.copy_object(Bucket=locked, Key="copy", CopySource={"Bucket": locked, "Key": "k",
                                                                   "VersionId": before})
    assert s3.head_object(Bucket=locked, Key="copy", VersionId=copied["VersionId"])["ObjectLockMode"] == mode
    upload = s3.create_multipart_upload(Bucket=locked, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=locked, Key="mp", UploadId=upload, PartNumber=1, Body=b"x")["ETag"]
    s3.complete_multipart_upload(Bucket=locked, Key="mp", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.head_object(Bucket=locked, Key="mp")["ObjectLockMode"] == mode
    # Protected: the version cannot be deleted (COMPLIANCE not even with the bypass).
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="k", VersionId=version)
    if mode == "GOVERNANCE":
        s3.delete_object(Bucket=locked, Key="k", VersionId=version, BypassGovernanceRetention=True)
    else:
        raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="k", VersionId=version,
               BypassGovernanceRetention=True)
    s3.delete_object(Bucket=locked, Key="k", VersionId=before)  # unprotected


def test_explicit_lock_headers_override_the_default(s3, locked):
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=config("GOVERNANCE", Days=1))
    s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=FAR,
                  ObjectLockLegalHoldStatus="ON")
    for response in (s3.head_object(Bucket=locked, Key="k"), s3.get_object(Bucket=locked, Key="k")):
        assert response["ObjectLockMode"] == "COMPLIANCE"
        assert response["ObjectLockRetainUntilDate"] == FAR
        assert response["ObjectLockLegalHoldStatus"] == "ON"
    assert retention(s3, locked, "k") == {"Mode": "COMPLIANCE", "RetainUntilDate": FAR}
    assert s3.get_object_legal_hold(Bucket=locked, Key="k")["LegalHold"] == {"Status": "ON"}


def test_lock_headers_on_multipart_upload(s3, locked):
    upload = s3.create_multipart_upload(Bucket=locked, Key="mp", ObjectLockMode="GOVERNANCE",
                                        ObjectLockRetainUntilDate=FAR, ObjectLockLegalHoldStatus="ON")["UploadId"]
    etag = s3.upload_part(Bucket=locked, Key="mp", UploadId=upload, PartNumber=1, Body=b"abc")["ETag"]
    done = s3.complete_multipart_upload(Bucket=locked, Key="mp", UploadId=upload,
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    head = s3.head_object(Bucket=locked, Key="mp")
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"], head["ObjectLockLegalHoldStatus"]) == \
        ("GOVERNANCE", FAR, "ON")
    # The legal hold holds even against the bypass.
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="mp", VersionId=done["VersionId"],
           BypassGovernanceRetention=True)
    s3.put_object_legal_hold(Bucket=locked, Key="mp", LegalHold={"Status": "OFF"})
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="mp", VersionId=done["VersionId"])
    s3.delete_object(Bucket=locked, Key="mp", VersionId=done["VersionId"], BypassGovernanceRetention=True)
    assert version_ids(s3, locked) == []


INVALID_LOCK_HEADERS = {
    "mode without date": {"ObjectLockMode": "GOVERNANCE"},
    "date without mode": {"ObjectLockRetainUntilDate": FAR},
    "unknown mode": {"ObjectLockMode": "FOREVER", "ObjectLockRetainUntilDate": FAR},
    "date in the past": {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": datetime(2020, 1, 1,
                                                                                              tzinfo=UTC)},
    "unknown legal hold": {"ObjectLockLegalHoldStatus": "MAYBE"},
}


@pytest.mark.parametrize("headers", INVALID_LOCK_HEADERS.values(), ids=INVALID_LOCK_HEADERS.keys())
def test_invalid_lock_headers(s3, locked, headers):
    raises("InvalidArgument", 400, s3.put_object, Bucket=locked, Key="k", Body=b"x", **headers)
    assert version_ids(s3, locked) == []


# -- retention and legal hold afterwards ------------------------------------------------------------------------


def test_retention_by_version(s3, locked):
    v1 = s3.put_object(Bucket=locked, Key="k", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=locked, Key="k", Body=b"2")["VersionId"]
    raises("NoSuchObjectLockConfiguration", 404, s3.get_object_retention, Bucket=locked, Key="k")
    response = s3.put_object_retention(Bucket=locked, Key="k", VersionId=v1,
                                       Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FAR})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert retention(s3, locked, "k", VersionId=v1) == {"Mode": "GOVERNANCE", "RetainUntilDate": FAR}
    raises("NoSuchObjectLockConfiguration", 404, s3.get_object_retention, Bucket=locked, Key="k", VersionId=v2)
    s3.put_object_retention(Bucket=locked, Key="k", Retention={"Mode": "COMPLIANCE", "RetainUntilDate": FAR})
    assert retention(s3, locked, "k") == {"Mode": "COMPLIANCE", "RetainUntilDate": FAR}
    assert s3.head_object(Bucket=locked, Key="k", VersionId=v2)["ObjectLockMode"] == "COMPLIANCE"


def test_retention_of_missing_objects(s3, locked):
    raises("NoSuchKey", 404, s3.get_object_retention, Bucket=locked, Key="missing")
    raises("NoSuchKey", 404, s3.put_object_retention, Bucket=locked, Key="missing",
           Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FAR})
    version = s3.put_object(Bucket=locked, Key="other", Body=b"x")["VersionId"]
    raises("NoSuchVersion", 404, s3.get_object_legal_hold, Bucket=locked, Key="k", VersionId=version)


def test_retention_date_must_be_in_the_future(s3, locked):
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    for until in (datetime(2020, 1, 1, tzinfo=UTC), soon(-5)):
        raises("InvalidArgument", 400, s3.put_object_retention, Bucket=locked, Key="k",
               Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    raises("NoSuchObjectLockConfiguration", 404, s3.get_object_retention, Bucket=locked, Key="k")


@pytest.mark.parametrize("date", [b"notadate", b"1577836800", b""])
def test_unreadable_retention_date_is_malformed_xml(server, s3, locked, date):
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    signer = client(server.endpoint, signature_version="s3v4")  # V4: the signature covers no body header
    url = signer.generate_presigned_url("put_object_retention", Params={"Bucket": locked, "Key": "k"})
    parts = urlsplit(url)
    body = (b'<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>GOVERNANCE</Mode>'
            b"<RetainUntilDate>" + date + b"</RetainUntilDate></Retention>")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("PUT", f"{parts.path}?{parts.query}", body=body)
        response = conn.getresponse()
        status, text = response.status, response.read()
    finally:
        conn.close()
    assert status == 400 and b"<Code>MalformedXML</Code>" in text
    raises("NoSuchObjectLockConfiguration", 404, s3.get_object_retention, Bucket=locked, Key="k")


@pytest.mark.parametrize("mode", ["governance", "abc"])
def test_invalid_retention_mode(s3, locked, mode):
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    raises("MalformedXML", 400, s3.put_object_retention, Bucket=locked, Key="k",
           Retention={"Mode": mode, "RetainUntilDate": FAR})


def test_governance_can_be_extended_but_weakened_only_with_the_bypass(s3, locked):
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    first = datetime(2130, 1, 3, tzinfo=UTC)
    s3.put_object_retention(Bucket=locked, Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": first})
    s3.put_object_retention(Bucket=locked, Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FAR})
    assert retention(s3, locked, "k")["RetainUntilDate"] == FAR
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": first}
    raises("AccessDenied", 403, s3.put_object_retention, Bucket=locked, Key="k", Retention=shorter)
    assert retention(s3, locked, "k")["RetainUntilDate"] == FAR
    s3.put_object_retention(Bucket=locked, Key="k", Retention=shorter, BypassGovernanceRetention=True)
    assert retention(s3, locked, "k")["RetainUntilDate"] == first
    # Switching GOVERNANCE to COMPLIANCE changes the mode of a governance lock: it needs the bypass too.
    stricter = {"Mode": "COMPLIANCE", "RetainUntilDate": first}
    raises("AccessDenied", 403, s3.put_object_retention, Bucket=locked, Key="k", Retention=stricter)
    s3.put_object_retention(Bucket=locked, Key="k", Retention=stricter, BypassGovernanceRetention=True)
    assert retention(s3, locked, "k") == stricter


def test_governance_retention_can_be_removed_with_the_bypass(s3, locked):
    version = s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                            ObjectLockRetainUntilDate=FAR)["VersionId"]
    raises("AccessDenied", 403, s3.put_object_retention, Bucket=locked, Key="k", Retention={})
    s3.put_object_retention(Bucket=locked, Key="k", Retention={}, BypassGovernanceRetention=True)
    raises("NoSuchObjectLockConfiguration", 404, s3.get_object_retention, Bucket=locked, Key="k")
    assert "ObjectLockMode" not in s3.head_object(Bucket=locked, Key="k")
    s3.delete_object(Bucket=locked, Key="k", VersionId=version)


def test_compliance_can_only_be_extended(s3, locked):
    until = datetime(2130, 1, 1, tzinfo=UTC)
    s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    for weaker in ({"Mode": "COMPLIANCE", "RetainUntilDate": until - timedelta(days=1)},
                   {"Mode": "GOVERNANCE", "RetainUntilDate": until},
                   {"Mode": "GOVERNANCE", "RetainUntilDate": FAR},
                   {}):
        raises("AccessDenied", 403, s3.put_object_retention, Bucket=locked, Key="k", Retention=weaker)
        raises("AccessDenied", 403, s3.put_object_retention, Bucket=locked, Key="k", Retention=weaker,
               BypassGovernanceRetention=True)
    assert retention(s3, locked, "k") == {"Mode": "COMPLIANCE", "RetainUntilDate": until}
    s3.put_object_retention(Bucket=locked, Key="k", Retention={"Mode": "COMPLIANCE", "RetainUntilDate": FAR})
    assert retention(s3, locked, "k") == {"Mode": "COMPLIANCE", "RetainUntilDate": FAR}


def test_legal_hold_on_and_off(s3, locked):
    v1 = s3.put_object(Bucket=locked, Key="k", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=locked, Key="k", Body=b"2")["VersionId"]
    response = s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=v1, LegalHold={"Status": "ON"})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object_legal_hold(Bucket=locked, Key="k", VersionId=v1)["LegalHold"] == {"Status": "ON"}
    assert s3.head_object(Bucket=locked, Key="k", VersionId=v1)["ObjectLockLegalHoldStatus"] == "ON"
    assert "ObjectLockLegalHoldStatus" not in s3.head_object(Bucket=locked, Key="k", VersionId=v2)
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="k", VersionId=v1)
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="k", VersionId=v1,
           BypassGovernanceRetention=True)
    s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=v1, LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=locked, Key="k", VersionId=v1)["LegalHold"] == {"Status": "OFF"}
    assert s3.delete_object(Bucket=locked, Key="k", VersionId=v1)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert version_ids(s3, locked) == [v2]


def test_invalid_legal_hold_status(s3, locked):
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    raises("MalformedXML", 400, s3.put_object_legal_hold, Bucket=locked, Key="k", LegalHold={"Status": "abc"})


def test_legal_hold_and_retention_together(s3, locked):
    version = s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockLegalHoldStatus="ON",
                            ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=FAR)["VersionId"]
    # Removing the retention leaves the legal hold in force.
    s3.put_object_retention(Bucket=locked, Key="k", Retention={}, BypassGovernanceRetention=True)
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="k", VersionId=version,
           BypassGovernanceRetention=True)
    s3.put_object_legal_hold(Bucket=locked, Key="k", LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket=locked, Key="k", VersionId=version)


def test_other_users_cannot_change_locks(s3, alt_s3, locked):
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    raises("AccessDenied", 403, alt_s3.put_object_retention, Bucket=locked, Key="k",
           Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FAR})
    raises("AccessDenied", 403, alt_s3.put_object_legal_hold, Bucket=locked, Key="k", LegalHold={"Status": "ON"})
    raises("AccessDenied", 403, alt_s3.get_object_retention, Bucket=locked, Key="k")
    raises("AccessDenied", 403, alt_s3.get_object_legal_hold, Bucket=locked, Key="k")


# -- what a lock forbids, and what it does not ---------------------------------------------------------------


def test_delete_without_version_id_only_adds_a_marker(s3, locked):
    version = s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE",
                            ObjectLockRetainUntilDate=FAR, ObjectLockLegalHoldStatus="ON")["VersionId"]
    deleted = s3.delete_object(Bucket=locked, Key="k")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204 and deleted["DeleteMarker"] is True
    raises("NoSuchKey", 404, s3.get_object, Bucket=locked, Key="k")
    # The marker itself is not locked: removing it brings the version back.
    s3.delete_object(Bucket=locked, Key="k", VersionId=deleted["VersionId"])
    assert s3.get_object(Bucket=locked, Key="k")["VersionId"] == version
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="k", VersionId=version)


def test_new_versions_may_be_written_over_a_locked_one(s3, locked):
    locked_version = s3.put_object(Bucket=locked, Key="k", Body=b"old", ObjectLockMode="COMPLIANCE",
                                   ObjectLockRetainUntilDate=FAR)["VersionId"]
    s3.put_object(Bucket=locked, Key="k", Body=b"new")
    assert s3.get_object(Bucket=locked, Key="k")["Body"].read() == b"new"
    assert s3.get_object(Bucket=locked, Key="k", VersionId=locked_version)["Body"].read() == b"old"
    # Copies do not inherit the source's lock.
    s3.copy_object(Bucket=locked, Key="copy", CopySource={"Bucket": locked, "Key": "k", "VersionId": locked_version})
    assert "ObjectLockMode" not in s3.head_object(Bucket=locked, Key="copy")


def test_tagging_a_locked_version_is_allowed(s3, locked):
    s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=FAR)
    s3.put_object_tagging(Bucket=locked, Key="k", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    assert s3.get_object_tagging(Bucket=locked, Key="k")["TagSet"] == [{"Key": "a", "Value": "1"}]


def test_delete_objects_reports_each_locked_version(s3, locked):
    gov = s3.put_object(Bucket=locked, Key="gov", Body=b"x", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=FAR)["VersionId"]
    comp = s3.put_object(Bucket=locked, Key="comp", Body=b"x", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=FAR)["VersionId"]
    hold = s3.put_object(Bucket=locked, Key="hold", Body=b"x", ObjectLockLegalHoldStatus="ON")["VersionId"]
    free = s3.put_object(Bucket=locked, Key="free", Body=b"x")["VersionId"]
    objects = [{"Key": "gov", "VersionId": gov}, {"Key": "comp", "VersionId": comp},
               {"Key": "hold", "VersionId": hold}, {"Key": "free", "VersionId": free}, {"Key": "marker"}]
    response = s3.delete_objects(Bucket=locked, Delete={"Objects": objects})
    assert sorted((e["Key"], e["VersionId"], e["Code"]) for e in response["Errors"]) == \
        [("comp", comp, "AccessDenied"), ("gov", gov, "AccessDenied"), ("hold", hold, "AccessDenied")]
    assert sorted((d["Key"], d.get("VersionId")) for d in response["Deleted"]) == [("free", free), ("marker", None)]
    # With the bypass only the GOVERNANCE version goes.
    response = s3.delete_objects(Bucket=locked, Delete={"Objects": objects[:3]}, BypassGovernanceRetention=True)
    assert sorted(e["Key"] for e in response["Errors"]) == ["comp", "hold"]
    assert [(d["Key"], d["VersionId"]) for d in response["Deleted"]] == [("gov", gov)]
    assert sorted(version_ids(s3, locked)) == sorted([comp, hold])


def test_locks_expire(s3, locked):
    until = soon(2)
    gov = s3.put_object(Bucket=locked, Key="gov", Body=b"x", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=until)["VersionId"]
    comp = s3.put_object(Bucket=locked, Key="comp", Body=b"x", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=until)["VersionId"]
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="gov", VersionId=gov)
    raises("AccessDenied", 403, s3.delete_object, Bucket=locked, Key="comp", VersionId=comp)
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.2)
    # Once the date has passed, the retention no longer protects anything, and may be set anew.
    s3.put_object_retention(Bucket=locked, Key="comp", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": FAR})
    s3.delete_object(Bucket=locked, Key="gov", VersionId=gov)
    s3.delete_object(Bucket=locked, Key="comp", VersionId=comp, BypassGovernanceRetention=True)
    assert version_ids(s3, locked) == []


def test_bucket_with_locked_versions_cannot_be_deleted(s3, locked):
    version = s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                            ObjectLockRetainUntilDate=FAR)["VersionId"]
    raises("BucketNotEmpty", 409, s3.delete_bucket, Bucket=locked)
    s3.delete_object(Bucket=locked, Key="k", VersionId=version, BypassGovernanceRetention=True)
    s3.delete_bucket(Bucket=locked)


def test_bypass_needs_its_own_permission(s3, alt_s3, locked):
    version = s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                            ObjectLockRetainUntilDate=FAR)["VersionId"]
    allow = {"Effect": "Allow", "Principal": "*",
             "Action": ["s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:GetObjectRetention"],
             "Resource": f"arn:aws:s3:::{locked}/*"}
    s3.put_bucket_policy(Bucket=locked, Policy=json.dumps({"Version": "2012-10-17", "Statement": [allow]}))
    # Without s3:BypassGovernanceRetention the header changes nothing.
    raises("AccessDenied", 403, alt_s3.delete_object, Bucket=locked, Key="k", VersionId=version,
           BypassGovernanceRetention=True)
    raises("AccessDenied", 403, alt_s3.put_object_retention, Bucket=locked, Key="k", Retention={},
           BypassGovernanceRetention=True)
    bypass = {"Effect": "Allow", "Principal": "*", "Action": "s3:BypassGovernanceRetention",
              "Resource": f"arn:aws:s3:::{locked}/*"}
    s3.put_bucket_policy(Bucket=locked, Policy=json.dumps({"Version": "2012-10-17", "Statement": [allow, bypass]}))
    raises("AccessDenied", 403, alt_s3.delete_object, Bucket=locked, Key="k", VersionId=version)
    response = alt_s3.delete_object(Bucket=locked, Key="k", VersionId=version, BypassGovernanceRetention=True)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204


# -- lifecycle -------------------------------------------------------------------------------------------------


def test_lifecycle_leaves_locked_versions_alone(make_server):
    srv = make_server(args=["--lifecycle-day-seconds", "1", "--lifecycle-interval", "0.5"])
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="vault", ObjectLockEnabledForBucket=True)
    held = s3.put_object(Bucket="vault", Key="nc/k", Body=b"1", ObjectLockLegalHoldStatus="ON")["VersionId"]
    gov = s3.put_object(Bucket="vault", Key="nc/k", Body=b"2", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=FAR)["VersionId"]
    plain = [s3.put_object(Bucket="vault", Key="nc/k", Body=b"3")["VersionId"] for _ in range(2)]
    current = s3.put_object(Bucket="vault", Key="nc/k", Body=b"4")["VersionId"]
    comp = s3.put_object(Bucket="vault", Key="cur/k", Body=b"x", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=FAR)["VersionId"]
    s3.put_bucket_lifecycle_configuration(Bucket="vault", LifecycleConfiguration={"Rules": [
        {"ID": "noncurrent", "Filter": {"Prefix": "nc/"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
        {"ID": "current", "Filter": {"Prefix": "cur/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
    ]})
    deadline = time.time() + 15
    while time.time() < deadline:
        listing = s3.list_object_versions(Bucket="vault")
        ids = [v["VersionId"] for v in listing.get("Versions", [])]
        if not set(plain) & set(ids) and listing.get("DeleteMarkers"):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"lifecycle did not act: {listing}")
    time.sleep(1.5)  # further passes change nothing
    listing = s3.list_object_versions(Bucket="vault")
    assert [(v["Key"], v["VersionId"]) for v in listing["Versions"]] == \
        [("cur/k", comp), ("nc/k", current), ("nc/k", gov), ("nc/k", held)]
    # The locked current version was expired the only way S3 may: a delete marker over it.
    assert [(m["Key"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [("cur/k", True)]
    assert s3.get_object(Bucket="vault", Key="cur/k", VersionId=comp)["Body"].read() == b"x"
