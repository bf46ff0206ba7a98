"""ListObjects v1 and v2, ListObjectVersions (unversioned form), and a property test of pagination against a
pure-Python model of S3 listing."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal.storage.records import Bucket, ObjectRecord
from shoal.storage.sqlite_meta import SqliteMetadataStore

from conftest import client, error_code, status_of

KEYS = ["asdf", "boo/bar", "boo/baz/xyzzy", "cquux/thud", "cquux/bla", "dir/", "dir/a", "zz"]


def put_keys(s3, bucket, keys, body=b"x"):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body), keys))


@pytest.fixture(scope="module")
def listed(s3):
    bucket = f"test-list-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    put_keys(s3, bucket, KEYS)
    return bucket


def keys_of(resp):
    return [o["Key"] for o in resp.get("Contents", [])]


def prefixes_of(resp):
    return [p["Prefix"] for p in resp.get("CommonPrefixes", [])]


# -- v1 ---------------------------------------------------------------------------------------------------------


def test_v1_all(s3, listed):
    resp = s3.list_objects(Bucket=listed)
    assert keys_of(resp) == sorted(KEYS)
    assert resp["IsTruncated"] is False
    assert resp["MaxKeys"] == 1000
    assert resp["Name"] == listed
    assert "NextMarker" not in resp
    first = resp["Contents"][0]
    assert first["Size"] == 1
    assert first["ETag"] == '"9dd4e461268c8034f5c8564e155c67a6"'
    assert first["StorageClass"] == "STANDARD"
    assert first["Owner"]["ID"]  # v1 always names the owner


def test_v1_prefix_and_delimiter(s3, listed):
    resp = s3.list_objects(Bucket=listed, Delimiter="/")
    assert keys_of(resp) == ["asdf", "zz"]
    assert prefixes_of(resp) == ["boo/", "cquux/", "dir/"]
    assert resp["Delimiter"] == "/"
    resp = s3.list_objects(Bucket=listed, Prefix="boo/", Delimiter="/")
    assert keys_of(resp) == ["boo/bar"]
    assert prefixes_of(resp) == ["boo/baz/"]
    assert resp["Prefix"] == "boo/"
    resp = s3.list_objects(Bucket=listed, Prefix="dir/", Delimiter="/")
    assert keys_of(resp) == ["dir/", "dir/a"]
    resp = s3.list_objects(Bucket=listed, Prefix="nothing")
    assert keys_of(resp) == []
    assert prefixes_of(resp) == []


def test_v1_delimiter_not_slash(s3, listed):
    resp = s3.list_objects(Bucket=listed, Delimiter="a")
    assert prefixes_of(resp) == ["a", "boo/ba", "cquux/bla", "dir/a"]
    assert keys_of(resp) == ["cquux/thud", "dir/", "zz"]


def test_v1_marker_pagination_with_delimiter(s3, listed):
    # NextMarker is given only with a delimiter, and it may be a common prefix.
    seen_keys, seen_prefixes, marker, pages = [], [], "", 0
    while True:
        resp = s3.list_objects(Bucket=listed, Delimiter="/", MaxKeys=1, Marker=marker)
        pages += 1
        seen_keys += keys_of(resp)
        seen_prefixes += prefixes_of(resp)
        assert len(keys_of(resp)) + len(prefixes_of(resp)) == 1
        if not resp["IsTruncated"]:
            assert "NextMarker" not in resp
            break
        marker = resp["NextMarker"]
        assert marker == (keys_of(resp) + prefixes_of(resp))[0]
    assert pages == 5
    assert seen_keys == ["asdf", "zz"]
    assert seen_prefixes == ["boo/", "cquux/", "dir/"]


def test_v1_marker_pagination_without_delimiter(s3, listed):
    got, marker = [], ""
    while True:
        resp = s3.list_objects(Bucket=listed, MaxKeys=3, Marker=marker)
        assert "NextMarker" not in resp  # no delimiter: the client continues from the last key
        got += keys_of(resp)
        if not resp["IsTruncated"]:
            break
        marker = keys_of(resp)[-1]
    assert got == sorted(KEYS)


def test_v1_marker_between_keys(s3, listed):
    assert keys_of(s3.list_objects(Bucket=listed, Marker="boo/bas")) == sorted(KEYS)[2:]
    assert keys_of(s3.list_objects(Bucket=listed, Marker="zz")) == []
    assert keys_of(s3.list_objects(Bucket=listed, Marker="zzz")) == []


def test_v1_max_keys_zero(s3, listed):
    resp = s3.list_objects(Bucket=listed, MaxKeys=0)
    assert keys_of(resp) == []
    assert resp["IsTruncated"] is False
    assert resp["MaxKeys"] == 0


def test_v1_exact_page_is_not_truncated(s3, listed):
    resp = s3.list_objects(Bucket=listed, MaxKeys=len(KEYS))
    assert len(keys_of(resp)) == len(KEYS)
    assert resp["IsTruncated"] is False
    resp = s3.list_objects(Bucket=listed, MaxKeys=len(KEYS) - 1)
    assert resp["IsTruncated"] is True


@pytest.mark.parametrize("value", ["-1", "abc"])
def test_invalid_max_keys(server, listed, value):
    # boto3 checks MaxKeys is an integer itself: put the bad value into the query before signing.
    c = client(server.endpoint)

    def rewrite(request, **kwargs):
        request.url = request.url.replace("max-keys=1", f"max-keys={value}")

    c.meta.events.register("before-sign.s3.ListObjects", rewrite)
    with pytest.raises(ClientError) as e:
        c.list_objects(Bucket=listed, MaxKeys=1)
    assert error_code(e.value) == "InvalidArgument"
    assert status_of(e.value) == 400


# -- v2 ---------------------------------------------------------------------------------------------------------


def test_v2_basic(s3, listed):
    resp = s3.list_objects_v2(Bucket=listed)
    assert keys_of(resp) == sorted(KEYS)
    assert resp["KeyCount"] == len(KEYS)
    assert resp["IsTruncated"] is False
    assert "NextContinuationToken" not in resp
    assert "Owner" not in resp["Contents"][0]  # only with fetch-owner


def test_v2_fetch_owner(s3, listed):
    resp = s3.list_objects_v2(Bucket=listed, FetchOwner=True)
    owners = {o["Owner"]["ID"] for o in resp["Contents"]}
    assert len(owners) == 1
    assert s3.list_buckets()["Owner"]["ID"] in owners
    assert resp["Contents"][0]["Owner"]["DisplayName"]


def test_v2_key_count_includes_prefixes(s3, listed):
    resp = s3.list_objects_v2(Bucket=listed, Delimiter="/")
    assert keys_of(resp) == ["asdf", "zz"]
    assert prefixes_of(resp) == ["boo/", "cquux/", "dir/"]
    assert resp["KeyCount"] == 5


def test_v2_continuation(s3, listed):
    seen, token, pages = [], None, 0
    while True:
        args = {"Bucket": listed, "MaxKeys": 2, "Delimiter": "/"}
        if token:
            args["ContinuationToken"] = token
        resp = s3.list_objects_v2(**args)
        pages += 1
        if token:
            assert resp["ContinuationToken"] == token
        seen += [("K", k) for k in keys_of(resp)] + [("P", p) for p in prefixes_of(resp)]
        assert resp["KeyCount"] <= 2
        if not resp["IsTruncated"]:
            break
        token = resp["NextContinuationToken"]
    assert pages == 3
    assert sorted(v for _, v in seen) == ["asdf", "boo/", "cquux/", "dir/", "zz"]


def test_v2_start_after(s3, listed):
    resp = s3.list_objects_v2(Bucket=listed, StartAfter="boo/baz/xyzzy")
    assert keys_of(resp) == sorted(KEYS)[3:]
    assert resp["StartAfter"] == "boo/baz/xyzzy"
    resp = s3.list_objects_v2(Bucket=listed, StartAfter="cquux/", Delimiter="/")
    assert keys_of(resp) == ["zz"]
    assert prefixes_of(resp) == ["dir/"]


def test_v2_continuation_token_wins_over_start_after(s3, listed):
    first = s3.list_objects_v2(Bucket=listed, MaxKeys=2)
    resp = s3.list_objects_v2(Bucket=listed, MaxKeys=2, StartAfter="zz",
                              ContinuationToken=first["NextContinuationToken"])
    assert keys_of(resp) == sorted(KEYS)[2:4]


def test_v2_max_keys_zero(s3, listed):
    resp = s3.list_objects_v2(Bucket=listed, MaxKeys=0)
    assert resp["KeyCount"] == 0
    assert keys_of(resp) == []
    assert resp["IsTruncated"] is False


def test_v2_bad_continuation_token(s3, listed):
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=listed, ContinuationToken="!!!not-a-token!!!")
    assert error_code(e.value) == "InvalidArgument"
    assert status_of(e.value) == 400


def test_v2_empty_bucket(s3, bucket):
    resp = s3.list_objects_v2(Bucket=bucket)
    assert resp["KeyCount"] == 0
    assert "Contents" not in resp
    assert resp["IsTruncated"] is False


def test_listing_reflects_overwrite_and_delete(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    s3.put_object(Bucket=bucket, Key="k", Body=b"22")
    resp = s3.list_objects_v2(Bucket=bucket)
    assert [(o["Key"], o["Size"]) for o in resp["Contents"]] == [("k", 2)]
    s3.delete_object(Bucket=bucket, Key="k")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_list_more_than_1000(s3, bucket):
    keys = [f"many/{i:05d}" for i in range(1100)]
    put_keys(s3, bucket, keys, b"")
    resp = s3.list_objects_v2(Bucket=bucket)
    assert resp["KeyCount"] == 1000
    assert resp["IsTruncated"] is True
    rest = s3.list_objects_v2(Bucket=bucket, ContinuationToken=resp["NextContinuationToken"])
    assert keys_of(resp) + keys_of(rest) == keys
    assert rest["IsTruncated"] is False
    resp = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert resp["KeyCount"] == 1000
    paginator = s3.get_paginator("list_objects")
    assert [k for page in paginator.paginate(Bucket=bucket) for k in keys_of(page)] == keys


# -- encoding-type=url ------------------------------------------------------------------------------------------

AWKWARD = ["a b", "a+b", "a%20b", "x&y<z>", "caf\u00e9", "\u65e5\u672c/\u8a9e", "tab\there", "emoji\U0001f600",
           "semi;colon", "q?u=e#ry", "new\nline"]


def test_encoding_type_url_raw_values(s3, bucket):
    put_keys(s3, bucket, AWKWARD)
    resp = s3.list_objects_v2(Bucket=bucket, EncodingType="url")  # given explicitly, boto3 does not decode
    assert resp["EncodingType"] == "url"
    got = keys_of(resp)
    safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~/%+")
    assert all(set(k) <= safe for k in got), got  # really encoded: nothing but URL-safe characters
    assert [unquote_plus(k) for k in got] == sorted(AWKWARD)


def test_encoding_type_url_round_trip(s3, bucket):
    put_keys(s3, bucket, AWKWARD)
    # boto3 asks for encoding-type=url by default and decodes the answer.
    assert keys_of(s3.list_objects_v2(Bucket=bucket)) == sorted(AWKWARD)
    assert keys_of(s3.list_objects(Bucket=bucket)) == sorted(AWKWARD)
    resp = s3.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="\u65e5")
    assert prefixes_of(resp) == ["\u65e5\u672c/"]
    resp = s3.list_objects(Bucket=bucket, Delimiter="+")
    assert prefixes_of(resp) == ["a+"]
    assert keys_of(resp) == sorted(set(AWKWARD) - {"a+b"})
    resp = s3.list_objects_v2(Bucket=bucket, Delimiter=" ", MaxKeys=1)
    assert prefixes_of(resp) == ["a "]
    versions = s3.list_object_versions(Bucket=bucket)
    assert [v["Key"] for v in versions["Versions"]] == sorted(AWKWARD)


def test_awkward_prefixes_are_echoed_as_given(s3, bucket):
    """boto3 lists with encoding-type=url and decodes what S3 encodes; the Prefix a V1 listing echoes is not
    encoded (botocore does not decode it), the V2 one is."""
    put_keys(s3, bucket, AWKWARD)
    for prefix in ("new\n", "\n", "a b", "caf\u00e9", "a%20"):
        assert s3.list_objects(Bucket=bucket, Prefix=prefix)["Prefix"] == prefix
        assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Prefix"] == prefix
    assert keys_of(s3.list_objects(Bucket=bucket, Prefix="new\n")) == ["new\nline"]


def test_invalid_encoding_type(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=bucket, EncodingType="base64")
    assert error_code(e.value) == "InvalidArgument"
    assert status_of(e.value) == 400


# -- ListObjectVersions (unversioned bucket) --------------------------------------------------------------------


def test_list_object_versions_unversioned(s3, listed):
    resp = s3.list_object_versions(Bucket=listed)
    versions = resp["Versions"]
    assert [v["Key"] for v in versions] == sorted(KEYS)
    assert all(v["VersionId"] == "null" for v in versions)
    assert all(v["IsLatest"] is True for v in versions)
    assert all(v["Size"] == 1 and v["ETag"] == '"9dd4e461268c8034f5c8564e155c67a6"' for v in versions)
    assert "DeleteMarkers" not in resp
    assert resp["IsTruncated"] is False


def test_list_object_versions_paging_and_delimiter(s3, listed):
    resp = s3.list_object_versions(Bucket=listed, Delimiter="/")
    assert [v["Key"] for v in resp["Versions"]] == ["asdf", "zz"]
    assert prefixes_of(resp) == ["boo/", "cquux/", "dir/"]
    resp = s3.list_object_versions(Bucket=listed, MaxKeys=3)
    assert [v["Key"] for v in resp["Versions"]] == sorted(KEYS)[:3]
    assert resp["IsTruncated"] is True
    assert resp["NextKeyMarker"] == sorted(KEYS)[2]
    assert resp["NextVersionIdMarker"] == "null"
    rest = s3.list_object_versions(Bucket=listed, KeyMarker=resp["NextKeyMarker"])
    assert [v["Key"] for v in rest["Versions"]] == sorted(KEYS)[3:]
    resp = s3.list_object_versions(Bucket=listed, Prefix="cquux/")
    assert [v["Key"] for v in resp["Versions"]] == ["cquux/bla", "cquux/thud"]


# -- property test: pagination against a model ------------------------------------------------------------------

ALPHABET = st.sampled_from(["a", "b", "/", "+", " ", "%", "\u00e9", "\u00ff", "\u65e5", "\U0001f600", "-", "."])
KEY = st.text(ALPHABET, min_size=1, max_size=8)


def model_listing(keys: set[str], prefix: str, delimiter: str, after: str = "") -> list[tuple[str, str]]:
    """S3's listing as a list of ("K", key) / ("P", common prefix) in UTF-8 byte order, of the keys after
    ``after`` (after all of them when ``after`` is a common prefix itself, as a v1 NextMarker can be)."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    after_is_prefix = bool(delimiter) and after.startswith(prefix) and after.endswith(delimiter) \
        and after.find(delimiter, len(prefix)) == len(after) - len(delimiter)
    for key in sorted(keys, key=lambda k: k.encode("utf-8")):
        if not key.startswith(prefix) or key.encode("utf-8") <= after.encode("utf-8"):
            continue
        if after_is_prefix and key.startswith(after):
            continue
        if delimiter:
            i = key.find(delimiter, len(prefix))
            if i >= 0:
                common = key[: i + len(delimiter)]
                if common not in seen:
                    seen.add(common)
                    out.append(("P", common))
                continue
        out.append(("K", key))
    return out


@pytest.fixture(scope="module")
def prop_bucket(s3):
    name = f"test-prop-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.sets(KEY, min_size=0, max_size=25),
    prefix=st.one_of(st.just(""), st.text(ALPHABET, max_size=2)),
    delimiter=st.sampled_from(["", "/", "+", " ", "\u00e9", "a/", "%"]),
    page=st.integers(min_value=1, max_value=7),
    v1=st.booleans(),
    # Before, inside or past the prefix's keys: the listing is one key range either way (shoal.storage.sqlite_meta).
    after=st.one_of(st.just(""), st.text(ALPHABET, min_size=1, max_size=3)),
)
def test_pagination_matches_model(s3, prop_bucket, keys, prefix, delimiter, page, v1, after):
    put_keys(s3, prop_bucket, keys)
    try:
        expected = model_listing(keys, prefix, delimiter, after)
        got: list[tuple[str, str]] = []
        token = None
        marker = after or None
        for _ in range(len(keys) + 2):
            args = {"Bucket": prop_bucket, "Prefix": prefix, "Delimiter": delimiter, "MaxKeys": page}
            if v1:
                if marker is not None:
                    args["Marker"] = marker
                resp = s3.list_objects(**args)
            else:
                if token is not None:
                    args["ContinuationToken"] = token
                elif after:
                    args["StartAfter"] = after
                resp = s3.list_objects_v2(**args)
                assert resp["KeyCount"] == len(resp.get("Contents", [])) + len(resp.get("CommonPrefixes", []))
            entries = sorted([("K", k) for k in keys_of(resp)] + [("P", p) for p in prefixes_of(resp)],
                             key=lambda e: e[1].encode("utf-8"))
            assert len(entries) <= page
            got += entries
            if not resp["IsTruncated"]:
                break
            assert entries, "a truncated page must not be empty"
            if v1:
                marker = resp.get("NextMarker") or keys_of(resp)[-1]
            else:
                token = resp["NextContinuationToken"]
        else:
            pytest.fail("pagination did not end")
        assert got == expected
    finally:
        if keys:
            s3.delete_objects(Bucket=prop_bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})


# -- a listing page is one index range, wherever it starts ------------------------------------------------------


def test_a_listing_reads_only_its_own_key_range(tmp_path):
    """Listing a prefix late in the bucket costs what listing one early does: the store seeks to the later of the
    start-after key and the prefix (SQLite seeks by one lower bound only; given two, it filtered by the other and
    read every key before it). Counted in SQLite VM steps, which do not depend on the machine's speed."""
    store = SqliteMetadataStore(str(tmp_path / "meta.sqlite3"))
    try:
        store.create_bucket_sync(Bucket("bkt", "owner", time.time()))

        async def fill() -> None:
            await asyncio.gather(*(store.put_object(ObjectRecord(
                bucket="bkt", key=f"p{i % 10}/k{i:05d}", version_id="null", size=1, etag="0" * 32,
                last_modified=time.time(), meta={}, inline=b"x")) for i in range(5000)))

        asyncio.run(fill())
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        def cost(prefix: str, after: str) -> tuple[int, list[str]]:
            nonlocal steps
            steps = 0
            conn = store._reader()
            conn.set_progress_handler(count, 10)
            try:
                keys = [r.key for r in store.list_objects("bkt", after, prefix, 10)]
            finally:
                conn.set_progress_handler(None, 0)
            return steps, keys

        early, early_keys = cost("p0/", "")
        late, late_keys = cost("p9/", "")
        within, within_keys = cost("p9/", "p9/k02000")
        assert early_keys == [f"p0/k{i:05d}" for i in range(0, 100, 10)]
        assert late_keys == [f"p9/k{i:05d}" for i in range(9, 109, 10)]
        assert within_keys == [f"p9/k{i:05d}" for i in range(2009, 2109, 10)]
        assert late < 3 * early and within < 3 * early, (early, late, within)
    finally:
        store.close()


def test_listed_storage_class_and_checksums_are_each_objects_own(s3, bucket):
    """The storage class and checksum elements of a listing are rendered once per distinct value and reused: each
    key must still show its own."""
    s3.put_object(Bucket=bucket, Key="a-crc32c", Body=b"1", ChecksumAlgorithm="CRC32C")
    s3.put_object(Bucket=bucket, Key="b-sha256-ia", Body=b"2", ChecksumAlgorithm="SHA256", StorageClass="STANDARD_IA")
    s3.put_object(Bucket=bucket, Key="c-crc32c", Body=b"3", ChecksumAlgorithm="CRC32C", StorageClass="GLACIER_IR")
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {k: (o["StorageClass"], o["ChecksumAlgorithm"], o["ChecksumType"]) for k, o in listed.items()} == {
        "a-crc32c": ("STANDARD", ["CRC32C"], "FULL_OBJECT"),
        "b-sha256-ia": ("STANDARD_IA", ["SHA256"], "FULL_OBJECT"),
        "c-crc32c": ("GLACIER_IR", ["CRC32C"], "FULL_OBJECT"),
    }
