"""Bucket lifecycle: the configuration as S3 validates and returns it, and the worker that carries it out."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from email.utils import parsedate_to_datetime

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from shoal.s3.lifecycle import DAY, Rule, current_expiry, plan_key
from shoal.storage.records import ObjectRecord

from conftest import ROOT, ServerProcess, client, error_code, free_port, status_of

UTC = datetime.UTC
BIG = 100 * 1024  # above the inline limit: stored as a blob file


def put_rules(s3, bucket, rules):
    return s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})


def blob_files(data_dir: str) -> int:
    return sum(len(files) for _, _, files in os.walk(os.path.join(data_dir, ".shoal", "blobs")))


def wait_for(condition, timeout: float = 10.0, what: str = "condition"):
    deadline = time.time() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def keys(s3, bucket) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def raw_put_lifecycle(endpoint: str, bucket: str, body: bytes) -> tuple[int, str]:
    """PUT ?lifecycle with a hand-written document (for what boto3 would refuse to send)."""
    url = f"{endpoint}/{bucket}?lifecycle"
    request = AWSRequest("PUT", url, data=body, headers={"Content-Type": "application/xml"})
    S3SigV4Auth(Credentials(*ROOT), "s3", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(url, data=body, method="PUT", headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        code = re.search(r"<Code>(.*?)</Code>", text)
        return exc.code, code.group(1) if code else ""


# -- configuration ------------------------------------------------------------------------------------------


def test_no_configuration_then_put_get_delete(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert status_of(exc.value) == 404 and error_code(exc.value) == "NoSuchLifecycleConfiguration"
    assert s3.delete_bucket_lifecycle(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    rules = [{"ID": "test1/", "Expiration": {"Days": 31}, "Prefix": "test1/", "Status": "Enabled"},
             {"ID": "test2/", "Expiration": {"Days": 120}, "Prefix": "test2/", "Status": "Disabled"}]
    assert put_rules(s3, bucket, rules)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules
    assert s3.delete_bucket_lifecycle(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_code(exc.value) == "NoSuchLifecycleConfiguration"


def test_every_element_round_trips(s3, bucket):
    rules = [
        {"ID": "date", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
         "Expiration": {"Date": datetime.datetime(2030, 1, 1, tzinfo=UTC)},
         "Transitions": [{"Date": datetime.datetime(2029, 1, 1, tzinfo=UTC), "StorageClass": "GLACIER"}]},
        {"ID": "tag", "Filter": {"Tag": {"Key": "class", "Value": "temp"}}, "Status": "Enabled",
         "Expiration": {"Days": 3}},
        {"ID": "and", "Status": "Disabled",
         "Filter": {"And": {"Prefix": "a/", "Tags": [{"Key": "k1", "Value": "v1"}, {"Key": "k2", "Value": ""}],
                            "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 5000}},
         "Expiration": {"Days": 1},
         "Transitions": [{"Days": 0, "StorageClass": "GLACIER_IR"}, {"Days": 30, "StorageClass": "DEEP_ARCHIVE"}]},
        {"ID": "size", "Filter": {"ObjectSizeGreaterThan": 1048576}, "Status": "Enabled",
         "Expiration": {"Days": 7}},
        {"ID": "versions", "Filter": {}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True},
         "NoncurrentVersionTransitions": [{"NoncurrentDays": 5, "StorageClass": "STANDARD_IA",
                                           "NewerNoncurrentVersions": 2}],
         "NoncurrentVersionExpiration": {"NoncurrentDays": 10, "NewerNoncurrentVersions": 3},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}},
    ]
    put_rules(s3, bucket, rules)
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert got["Rules"] == rules
    assert got["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"


def test_rule_ids_are_generated_when_absent(s3, bucket):
    put_rules(s3, bucket, [{"Expiration": {"Days": 31}, "Prefix": "test1/", "Status": "Enabled"},
                           {"Expiration": {"Days": 120}, "Prefix": "test2/", "Status": "Enabled"}])
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [r["Prefix"] for r in got] == ["test1/", "test2/"]
    ids = [r["ID"] for r in got]
    assert all(ids) and len(set(ids)) == 2 and all(len(i) <= 255 for i in ids)


def _rule(**changes):
    rule = {"ID": "r", "Filter": {"Prefix": "p/"}, "Status": "Enabled", "Expiration": {"Days": 1}}
    rule.update(changes)
    return {k: v for k, v in rule.items() if v is not None}


@pytest.mark.parametrize(("rules", "code"), [
    ([_rule(ID="a" * 256)], "InvalidArgument"),
    ([_rule(ID="same"), _rule(ID="same", Filter={"Prefix": "q/"})], "InvalidArgument"),
    ([_rule(Status="enabled")], "MalformedXML"),
    ([_rule(Status="invalid")], "MalformedXML"),
    ([_rule(Expiration={"Days": 0})], "InvalidArgument"),
    ([_rule(Expiration={"Days": -3})], "InvalidArgument"),
    ([_rule(Expiration={"Date": datetime.datetime(2030, 1, 1, 10, 30, tzinfo=UTC)})], "InvalidArgument"),
    ([_rule(Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True})], "MalformedXML"),
    ([_rule(Expiration={"Days": 1, "Date": datetime.datetime(2030, 1, 1, tzinfo=UTC)})], "MalformedXML"),
    ([_rule(Expiration={})], "MalformedXML"),
    ([_rule(Prefix="p/")], "MalformedXML"),  # both Prefix and Filter
    ([_rule(Filter=None)], "MalformedXML"),  # neither
    ([_rule(Filter={"Prefix": "p/", "Tag": {"Key": "k", "Value": "v"}})], "MalformedXML"),
    ([_rule(Filter={"And": {"Tags": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]}})], "InvalidRequest"),
    ([_rule(Filter={"And": {"ObjectSizeGreaterThan": 100, "ObjectSizeLessThan": 100}})], "InvalidArgument"),
    ([_rule(Expiration=None, NoncurrentVersionExpiration={"NoncurrentDays": 0})], "InvalidArgument"),
    ([_rule(NoncurrentVersionExpiration={"NoncurrentDays": 1, "NewerNoncurrentVersions": 101})],
     "InvalidArgument"),
    ([_rule(Expiration=None, AbortIncompleteMultipartUpload={"DaysAfterInitiation": 0})], "InvalidArgument"),
    ([_rule(Filter={"Tag": {"Key": "k", "Value": "v"}},
            AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1})], "InvalidRequest"),
    ([_rule(Expiration=None)], "InvalidRequest"),  # no action at all
    ([_rule(Expiration=None, Transitions=[{"Days": 1, "StorageClass": "NOPE"}])], "MalformedXML"),
    ([_rule(Expiration=None, Transitions=[{"Days": -1, "StorageClass": "GLACIER"}])], "InvalidArgument"),
    ([], "MalformedXML"),
])
def test_invalid_configurations_are_refused(s3, bucket, rules, code):
    with pytest.raises(ClientError) as exc:
        put_rules(s3, bucket, rules)
    assert status_of(exc.value) == 400
    assert error_code(exc.value) == code
    with pytest.raises(ClientError):  # nothing was stored
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)


@pytest.mark.parametrize(("date", "code"), [
    ("20200101", "MalformedXML"),
    ("2020-02-30T00:00:00Z", "MalformedXML"),
    ("tomorrow", "MalformedXML"),
    ("2020-01-01T00:00:01Z", "InvalidArgument"),
    ("2020-01-01T00:00:00+01:00", "InvalidArgument"),
])
def test_invalid_dates_are_refused(server, s3, bucket, date, code):
    body = (f"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>x/</Prefix></Filter><Status>Enabled</Status>"
            f"<Expiration><Date>{date}</Date></Expiration></Rule></LifecycleConfiguration>").encode()
    assert raw_put_lifecycle(server.endpoint, bucket, body) == (400, code)


def test_midnight_dates_in_any_iso_form_are_accepted(server, s3, bucket):
    body = (b"<LifecycleConfiguration xmlns='http://s3.amazonaws.com/doc/2006-03-01/'><Rule><Prefix>x/</Prefix>"
            b"<Status>Enabled</Status><Expiration><Date>2017-09-27</Date></Expiration></Rule>"
            b"</LifecycleConfiguration>")
    assert raw_put_lifecycle(server.endpoint, bucket, body) == (200, "")
    rule = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]
    assert rule["Expiration"]["Date"] == datetime.datetime(2017, 9, 27, tzinfo=UTC)


def test_other_users_cannot_touch_the_configuration(s3, alt_s3, bucket):
    put_rules(s3, bucket, [_rule()])
    with pytest.raises(ClientError) as exc:
        alt_s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_code(exc.value) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        alt_s3.delete_bucket_lifecycle(Bucket=bucket)
    assert error_code(exc.value) == "AccessDenied"


# -- x-amz-expiration ---------------------------------------------------------------------------------------


def _expiration(response) -> tuple[datetime.datetime, str] | None:
    value = response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration")
    if value is None:
        return None
    m = re.fullmatch(r'expiry-date="(.+)", rule-id="(.+)"', value)
    assert m, value
    return parsedate_to_datetime(m.group(1)), m.group(2)


def test_expiration_header_on_put_head_get(s3, bucket):
    put_rules(s3, bucket, [
        _rule(ID="days1", Filter={"Prefix": "days1/"}, Expiration={"Days": 1}),
        _rule(ID="tagged", Filter={"Tag": {"Key": "k", "Value": "v"}}, Expiration={"Days": 3}),
        _rule(ID="off", Filter={"Prefix": "off/"}, Status="Disabled"),
    ])
    now = datetime.datetime.now(UTC)
    put = s3.put_object(Bucket=bucket, Key="days1/foo", Body=b"x")
    expiry, rule_id = _expiration(put)
    assert rule_id == "days1"
    # Real days: creation + 1 day, rounded up to the next midnight UTC, as S3 does.
    assert (expiry.hour, expiry.minute, expiry.second) == (0, 0, 0)
    assert datetime.timedelta(days=1) <= expiry - now.replace(microsecond=0) <= datetime.timedelta(days=2)
    assert _expiration(s3.head_object(Bucket=bucket, Key="days1/foo")) == (expiry, "days1")
    assert _expiration(s3.get_object(Bucket=bucket, Key="days1/foo")) == (expiry, "days1")
    # Not matched (wrong prefix, tag absent, disabled rule): no header.
    for key in ("other", "off/x"):
        assert _expiration(s3.put_object(Bucket=bucket, Key=key, Body=b"x")) is None
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="k=v")
    assert _expiration(s3.head_object(Bucket=bucket, Key="t"))[1] == "tagged"
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "k", "Value": "other"}]})
    assert _expiration(s3.head_object(Bucket=bucket, Key="t")) is None


# -- the worker ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    """A server whose lifecycle day lasts one second, with a pass every half second."""
    base = tmp_path_factory.mktemp("lifecycle")
    srv = ServerProcess(str(base / "data"), free_port(),
                        args=["--lifecycle-day-seconds", "1", "--lifecycle-interval", "0.5"]).start()
    yield srv
    assert srv.stop() == 0  # the worker stops cleanly with the server


@pytest.fixture
def fast_s3(fast):
    return client(fast.endpoint)


@pytest.fixture
def fast_bucket(fast_s3):
    name = f"lc-{uuid.uuid4().hex[:20]}"
    fast_s3.create_bucket(Bucket=name)
    return name


def test_expiration_by_prefix_tag_and_size(fast, fast_s3, fast_bucket):
    s3, b = fast_s3, fast_bucket
    before = blob_files(fast.data_dir)
    body = os.urandom(BIG)
    for key in ("logs/a", "logs/b", "keep/a", "other", "big/large"):
        s3.put_object(Bucket=b, Key=key, Body=body)
    s3.put_object(Bucket=b, Key="temp-file", Body=body, Tagging="class=temp")
    s3.put_object(Bucket=b, Key="big/small", Body=b"tiny")
    assert blob_files(fast.data_dir) == before + 6
    put_rules(s3, b, [
        _rule(ID="logs", Filter=None, Prefix="logs/"),  # the legacy rule-level prefix
        _rule(ID="temp", Filter={"Tag": {"Key": "class", "Value": "temp"}}),
        _rule(ID="big", Filter={"And": {"Prefix": "big/", "ObjectSizeGreaterThan": 1000}}),
        _rule(ID="keep", Filter={"Prefix": "keep/"}, Status="Disabled"),
    ])
    remaining = {"keep/a", "other", "big/small"}
    wait_for(lambda: keys(s3, b) == remaining, what="expiration")
    # Disk space is freed: only the two big objects that stay still have files.
    wait_for(lambda: blob_files(fast.data_dir) == before + 2, what="blob files to be deleted")
    time.sleep(1.5)  # nothing more goes
    assert keys(s3, b) == remaining
    assert "Versions" not in s3.list_object_versions(Bucket=b, Prefix="logs/")


def test_expiration_in_versioned_bucket_leaves_a_delete_marker(fast_s3, fast_bucket):
    s3, b = fast_s3, fast_bucket
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=b, Key="cur/a", Body=b"data")["VersionId"]
    put_rules(s3, b, [_rule(ID="cur", Filter={"Prefix": "cur/"})])
    wait_for(lambda: not keys(s3, b), what="expiration")
    listing = s3.list_object_versions(Bucket=b)
    assert [v["VersionId"] for v in listing["Versions"]] == [version]
    assert not listing["Versions"][0]["IsLatest"]
    assert [m["IsLatest"] for m in listing["DeleteMarkers"]] == [True]
    assert s3.get_object(Bucket=b, Key="cur/a", VersionId=version)["Body"].read() == b"data"


def test_noncurrent_versions_expire_keeping_the_newest(fast, fast_s3, fast_bucket):
    s3, b = fast_s3, fast_bucket
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    before = blob_files(fast.data_dir)
    ids = [s3.put_object(Bucket=b, Key="doc", Body=os.urandom(BIG))["VersionId"] for _ in range(6)]
    s3.put_object(Bucket=b, Key="other/doc", Body=b"1")
    s3.put_object(Bucket=b, Key="other/doc", Body=b"2")
    put_rules(s3, b, [_rule(ID="nc", Filter={"Prefix": "doc"}, Expiration=None,
                            NoncurrentVersionExpiration={"NoncurrentDays": 1, "NewerNoncurrentVersions": 2})])

    def versions(key):
        return [v["VersionId"] for v in s3.list_object_versions(Bucket=b, Prefix=key)["Versions"] if v["Key"] == key]

    wait_for(lambda: versions("doc") == ids[::-1][:3], what="noncurrent expiration")
    wait_for(lambda: blob_files(fast.data_dir) == before + 3, what="blob files to be deleted")
    time.sleep(1.5)
    assert versions("doc") == ids[::-1][:3]  # the current one and the two newest noncurrent ones stay
    assert len(versions("other/doc")) == 2
    assert s3.get_object(Bucket=b, Key="doc")["VersionId"] == ids[-1]


def test_expired_object_delete_markers_are_removed(fast_s3, fast_bucket):
    s3, b = fast_s3, fast_bucket
    s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    for key in ("test1/a", "test2/abc"):
        s3.put_object(Bucket=b, Key=key, Body=b"x")
        s3.delete_object(Bucket=b, Key=key)
    put_rules(s3, b, [_rule(ID="dm", Filter={"Prefix": "test1/"}, Expiration={"ExpiredObjectDeleteMarker": True},
                            NoncurrentVersionExpiration={"NoncurrentDays": 1})])

    def remaining():
        listing = s3.list_object_versions(Bucket=b)
        return sorted((v["Key"], "marker" if v in listing.get("DeleteMarkers", []) else "version")
                      for v in listing.get("Versions", []) + listing.get("DeleteMarkers", []))

    wait_for(lambda: remaining() == [("test2/abc", "marker"), ("test2/abc", "version")], what="marker removal")


def test_incomplete_multipart_uploads_are_aborted(fast, fast_s3, fast_bucket):
    s3, b = fast_s3, fast_bucket
    before = blob_files(fast.data_dir)
    uploads = {}
    for key in ("mpu/a", "keepmpu/b"):
        upload_id = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        s3.upload_part(Bucket=b, Key=key, UploadId=upload_id, PartNumber=1, Body=os.urandom(BIG))
        uploads[key] = upload_id
    assert blob_files(fast.data_dir) == before + 2
    put_rules(s3, b, [_rule(ID="mpu", Filter={"Prefix": "mpu/"}, Expiration=None,
                            AbortIncompleteMultipartUpload={"DaysAfterInitiation": 1})])

    def in_progress():
        return {u["Key"] for u in s3.list_multipart_uploads(Bucket=b).get("Uploads", [])}

    wait_for(lambda: in_progress() == {"keepmpu/b"}, what="upload abort")
    wait_for(lambda: blob_files(fast.data_dir) == before + 1, what="part files to be deleted")
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=b, Key="mpu/a", UploadId=uploads["mpu/a"])
    assert error_code(exc.value) == "NoSuchUpload"


def test_scaled_day_in_expiration_header(fast_s3, fast_bucket):
    put_rules(fast_s3, fast_bucket, [_rule(ID="d3", Filter={"Prefix": ""}, Expiration={"Days": 30})])
    start = time.time()
    expiry, rule_id = _expiration(fast_s3.put_object(Bucket=fast_bucket, Key="k", Body=b"x"))
    assert rule_id == "d3"
    assert start + 29 <= expiry.timestamp() <= start + 32  # 30 one-second days, no rounding to midnight


def test_worker_is_stateless_across_restarts(make_server):
    srv = make_server(args=["--lifecycle-day-seconds", "1", "--lifecycle-interval", "0"])  # worker off
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="restart")
    s3.put_object(Bucket="restart", Key="tmp/a", Body=b"x")
    put_rules(s3, "restart", [_rule(ID="tmp", Filter={"Prefix": "tmp/"})])
    time.sleep(1.5)
    assert keys(s3, "restart") == {"tmp/a"}  # due, but no worker runs
    assert srv.stop() == 0
    srv = make_server(args=["--lifecycle-day-seconds", "1", "--lifecycle-interval", "0.5"], data_dir=srv.data_dir)
    s3 = client(srv.endpoint)
    wait_for(lambda: not keys(s3, "restart"), what="expiration after restart")


# -- evaluation with real days --------------------------------------------------------------------------------


def _at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _version(key, version_id, modified, latest=False, marker=False, size=10):
    return ObjectRecord("b", key, version_id, size, "e", _at(modified), {}, delete_marker=marker, is_latest=latest)


def test_real_days_round_up_to_midnight_and_act_on_the_first_pass_after():
    rule = Rule.from_stored({"ID": "r", "Prefix": "", "Status": "Enabled", "Expiration": {"Days": 1}})
    current = _version("k", "null", "2024-01-01T10:00:00", latest=True)
    assert current_expiry([rule], current, DAY) == (_at("2024-01-03T00:00:00"), "r")
    assert plan_key([current], [rule], False, _at("2024-01-02T23:59:59"), DAY) == []
    assert [a.kind for a in plan_key([current], [rule], False, _at("2024-01-03T00:00:01"), DAY)] == ["delete"]
    assert [a.kind for a in plan_key([current], [rule], True, _at("2024-01-03T00:00:01"), DAY)] == ["expire"]


def test_keep_only_the_last_version_acts_when_due_not_a_day_later():
    rule = Rule.from_stored({"ID": "r", "Filter": {}, "Status": "Enabled",
                             "NoncurrentVersionExpiration": {"NoncurrentDays": 1}})
    versions = [_version("k", "v3", "2024-01-05T08:00:00", latest=True),
                _version("k", "v2", "2024-01-04T09:00:00"),  # noncurrent since 2024-01-05T08:00
                _version("k", "v1", "2024-01-01T09:00:00")]  # noncurrent since 2024-01-04T09:00
    due = plan_key(versions, [rule], True, _at("2024-01-06T00:00:01"), DAY)
    assert [a.record.version_id for a in due] == ["v1"]
    due = plan_key(versions, [rule], True, _at("2024-01-07T00:00:01"), DAY)
    assert [a.record.version_id for a in due] == ["v2", "v1"]


def test_newer_noncurrent_versions_and_lone_delete_markers():
    rule = Rule.from_stored({"ID": "r", "Filter": {"Prefix": "k"}, "Status": "Enabled",
                             "Expiration": {"ExpiredObjectDeleteMarker": True},
                             "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}})
    now = _at("2024-02-01T00:00:00")
    versions = [_version("k", "dm", "2024-01-05T00:00:00", latest=True, marker=True),
                _version("k", "v2", "2024-01-04T00:00:00"),
                _version("k", "v1", "2024-01-03T00:00:00")]
    assert [a.record.version_id for a in plan_key(versions, [rule], True, now, DAY)] == ["v1"]
    assert [(a.kind, a.record.version_id) for a in plan_key(versions[:1], [rule], True, now, DAY)] == \
        [("marker", "dm")]


# -- the admin command --------------------------------------------------------------------------------------


def test_lifecycle_apply_command(make_server):
    srv = make_server()  # real days, and the worker will not pass again for a minute
    s3 = client(srv.endpoint)
    b = "apply-now"
    s3.create_bucket(Bucket=b)
    before = blob_files(srv.data_dir)
    for key in ("old/a", "old/b", "new/a"):
        s3.put_object(Bucket=b, Key=key, Body=os.urandom(BIG))
    time.sleep(0.6)  # the first pass, at start, is over
    put_rules(s3, b, [_rule(ID="past", Filter={"Prefix": "old/"},
                            Expiration={"Date": datetime.datetime(2020, 1, 1, tzinfo=UTC)})])
    assert keys(s3, b) == {"old/a", "old/b", "new/a"}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's shoal, not an installed one
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "shoal", "lifecycle", "apply", b, srv.data_dir],
                          capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "2 expired" in done.stdout and "2 blob files freed" in done.stdout
    assert keys(s3, b) == {"new/a"}  # the running server sees it at once
    assert blob_files(srv.data_dir) == before + 1
    s3.put_object(Bucket=b, Key="after", Body=b"still serving")
    missing = subprocess.run([sys.executable, "-m", "shoal", "lifecycle", "apply", "no-such-bucket",
                              srv.data_dir], capture_output=True, text=True, env=env, timeout=30)
    assert missing.returncode != 0
    assert srv.stop() == 0
