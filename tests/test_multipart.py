"""Multipart uploads through boto3: the whole life cycle, listing, UploadPartCopy, errors, the md5-of-md5s ETag,
COMPOSITE and FULL_OBJECT checksums, conditional completion."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, status_of
from s3util import b64, checksum, multipart_etag

MiB = 1024 * 1024
PART = 5 * MiB


def upload_parts(s3, bucket, key, upload_id, parts, **extra):
    done = []
    for n, data in enumerate(parts, 1):
        resp = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data, **extra)
        entry = {"PartNumber": n, "ETag": resp["ETag"]}
        for name in ("ChecksumCRC32", "ChecksumCRC32C", "ChecksumCRC64NVME", "ChecksumSHA1", "ChecksumSHA256"):
            if name in resp and "ChecksumAlgorithm" in extra:
                entry[name] = resp[name]
        done.append(entry)
    return done


def complete(s3, bucket, key, upload_id, done, **extra):
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": done}, **extra)


@pytest.fixture(scope="module")
def parts3():
    return [os.urandom(PART), os.urandom(PART + 1), os.urandom(12345)]


# -- life cycle -------------------------------------------------------------------------------------------------


def test_full_life_cycle(s3, bucket, parts3):
    create = s3.create_multipart_upload(Bucket=bucket, Key="obj", ContentType="video/x-test",
                                        Metadata={"kind": "multipart"}, StorageClass="REDUCED_REDUNDANCY",
                                        CacheControl="max-age=5")
    assert create["Bucket"] == bucket
    assert create["Key"] == "obj"
    upload_id = create["UploadId"]
    done = upload_parts(s3, bucket, "obj", upload_id, parts3)
    for entry, data in zip(done, parts3, strict=True):
        assert entry["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    # Not visible before completion.
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="obj")
    assert status_of(e.value) == 404
    resp = complete(s3, bucket, "obj", upload_id, done)
    assert resp["ETag"] == multipart_etag(parts3)
    assert resp["Bucket"] == bucket
    assert resp["Key"] == "obj"
    assert resp["Location"].endswith(f"/{bucket}/obj")
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ETag"] == multipart_etag(parts3)
    assert head["ContentLength"] == sum(len(p) for p in parts3)
    assert head["ContentType"] == "video/x-test"
    assert head["Metadata"] == {"kind": "multipart"}
    assert head["StorageClass"] == "REDUCED_REDUNDANCY"
    assert head["CacheControl"] == "max-age=5"
    body = s3.get_object(Bucket=bucket, Key="obj")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(parts3)).digest()
    # Completing again succeeds while the object is the one the upload made (as S3), and changes nothing.
    again = complete(s3, bucket, "obj", upload_id, done)
    assert again["ETag"] == multipart_etag(parts3)
    # The upload itself is gone.
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="obj", UploadId=upload_id)
    assert error_code(e.value) == "NoSuchUpload"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_single_small_part(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    done = upload_parts(s3, bucket, "small", upload_id, [b"tiny"])
    assert complete(s3, bucket, "small", upload_id, done)["ETag"] == multipart_etag([b"tiny"])
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"tiny"


def test_subset_of_parts_and_gaps(s3, bucket, parts3):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="gaps")["UploadId"]
    done = upload_parts(s3, bucket, "gaps", upload_id, parts3)
    chosen = [done[0], done[2]]  # part 2 left out: numbers need not be consecutive
    assert complete(s3, bucket, "gaps", upload_id, chosen)["ETag"] == multipart_etag([parts3[0], parts3[2]])
    assert s3.head_object(Bucket=bucket, Key="gaps")["ContentLength"] == len(parts3[0]) + len(parts3[2])
    assert s3.get_object(Bucket=bucket, Key="gaps", Range=f"bytes={PART}-{PART + 9}")["Body"].read() == \
        parts3[2][:10]


def test_part_reupload_last_wins(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="re")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=b"first")
    etag = s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=b"second")["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key="re", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, etag, 6)]
    complete(s3, bucket, "re", upload_id, [{"PartNumber": 1, "ETag": etag}])
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read() == b"second"


def test_complete_overwrites_existing_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"old", Metadata={"old": "1"})
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    complete(s3, bucket, "k", upload_id, upload_parts(s3, bucket, "k", upload_id, [b"new"]))
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"new"
    assert got["Metadata"] == {}


def test_abort(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="ab")["UploadId"]
    done = upload_parts(s3, bucket, "ab", upload_id, [b"data"])
    assert s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=upload_id)[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (
        lambda: s3.upload_part(Bucket=bucket, Key="ab", UploadId=upload_id, PartNumber=2, Body=b"x"),
        lambda: s3.list_parts(Bucket=bucket, Key="ab", UploadId=upload_id),
        lambda: complete(s3, bucket, "ab", upload_id, done),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=upload_id),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == "NoSuchUpload"
        assert status_of(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="ab")
    assert status_of(e.value) == 404


def test_upload_ids_can_be_passed_on_a_command_line(s3, bucket):
    """No upload id starts with "-": the AWS CLI would take ``--upload-id -abc`` for a missing value and another
    option (one random id in 64 did; 300 uploads all but surely include one)."""
    ids = [s3.create_multipart_upload(Bucket=bucket, Key=f"k{i}")["UploadId"] for i in range(300)]
    assert len(set(ids)) == 300
    assert not [i for i in ids if i.startswith("-")]


def test_unknown_upload_id(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId="not-an-upload", PartNumber=1, Body=b"x")
    assert error_code(e.value) == "NoSuchUpload"
    assert status_of(e.value) == 404


def test_upload_id_belongs_to_its_key(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="right")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="wrong", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert error_code(e.value) == "NoSuchUpload"


# -- errors at completion ---------------------------------------------------------------------------------------


@pytest.fixture
def two_parts(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="e")["UploadId"]
    done = upload_parts(s3, bucket, "e", upload_id, [os.urandom(PART), b"last"])
    return bucket, upload_id, done


def test_invalid_part_wrong_etag(s3, two_parts):
    bucket, upload_id, done = two_parts
    bad = [done[0], {"PartNumber": 2, "ETag": '"00000000000000000000000000000000"'}]
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "e", upload_id, bad)
    assert error_code(e.value) == "InvalidPart"
    assert status_of(e.value) == 400
    # Still completable with the right list.
    complete(s3, bucket, "e", upload_id, done)


def test_invalid_part_missing_number(s3, two_parts):
    bucket, upload_id, done = two_parts
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "e", upload_id, [*done, {"PartNumber": 3, "ETag": done[1]["ETag"]}])
    assert error_code(e.value) == "InvalidPart"
    assert status_of(e.value) == 400


def test_invalid_part_order(s3, two_parts):
    bucket, upload_id, done = two_parts
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "e", upload_id, [done[1], done[0]])
    assert error_code(e.value) == "InvalidPartOrder"
    assert status_of(e.value) == 400
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "e", upload_id, [done[0], done[0], done[1]])
    assert error_code(e.value) == "InvalidPartOrder"


def test_entity_too_small(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    done = upload_parts(s3, bucket, "small", upload_id, [os.urandom(PART - 1), b"last"])
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "small", upload_id, done)
    assert error_code(e.value) == "EntityTooSmall"
    assert status_of(e.value) == 400


def test_complete_without_parts(s3, two_parts):
    bucket, upload_id, _ = two_parts
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="e", UploadId=upload_id, MultipartUpload={"Parts": []})
    assert error_code(e.value) == "MalformedXML"
    assert status_of(e.value) == 400


@pytest.mark.parametrize("number", [0, 10001])
def test_invalid_part_number(s3, bucket, number):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="pn")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="pn", UploadId=upload_id, PartNumber=number, Body=b"x")
    assert error_code(e.value) == "InvalidArgument"
    assert status_of(e.value) == 400


def test_conditional_complete(s3, bucket):
    # If-None-Match: * refuses to complete over an existing object; If-Match on a missing key is NoSuchKey.
    s3.put_object(Bucket=bucket, Key="exists", Body=b"x")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="exists")["UploadId"]
    done = upload_parts(s3, bucket, "exists", upload_id, [b"mp"])
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "exists", upload_id, done, IfNoneMatch="*")
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412
    etag = s3.head_object(Bucket=bucket, Key="exists")["ETag"]
    complete(s3, bucket, "exists", upload_id, done, IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="exists")["Body"].read() == b"mp"

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="absent")["UploadId"]
    done = upload_parts(s3, bucket, "absent", upload_id, [b"mp"])
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "absent", upload_id, done, IfMatch='"d41d8cd98f00b204e9800998ecf8427e"')
    assert error_code(e.value) == "NoSuchKey"
    assert status_of(e.value) == 404
    complete(s3, bucket, "absent", upload_id, done, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="absent")["Body"].read() == b"mp"


# -- listing parts and uploads ----------------------------------------------------------------------------------


def test_list_parts_pagination(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="lp")["UploadId"]
    bodies = [f"part-{i}".encode() for i in range(1, 8)]
    done = upload_parts(s3, bucket, "lp", upload_id, bodies)
    resp = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id)
    assert [p["PartNumber"] for p in resp["Parts"]] == list(range(1, 8))
    assert [p["ETag"] for p in resp["Parts"]] == [d["ETag"] for d in done]
    assert [p["Size"] for p in resp["Parts"]] == [len(b) for b in bodies]
    assert resp["IsTruncated"] is False
    assert resp["UploadId"] == upload_id
    assert resp["Initiator"]["ID"]
    assert resp["Owner"]["ID"]
    assert resp["StorageClass"] == "STANDARD"
    seen, marker = [], 0
    while True:
        page = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id, MaxParts=3, PartNumberMarker=marker)
        seen += [p["PartNumber"] for p in page["Parts"]]
        assert page["MaxParts"] == 3
        if not page["IsTruncated"]:
            break
        marker = page["NextPartNumberMarker"]
        assert marker == seen[-1]
    assert seen == list(range(1, 8))


def test_list_multipart_uploads_pages_through_many_uploads_of_one_key(s3, bucket):
    """Uploads of one key are listed oldest first; their ids are random, so a page ending inside the key must
    resume after its last upload in that order, not after the next larger id."""
    started = [s3.create_multipart_upload(Bucket=bucket, Key="same")["UploadId"] for _ in range(6)]
    seen: list[str] = []
    markers: dict[str, str] = {}
    for _ in range(10):
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=1, **markers)
        seen += [u["UploadId"] for u in page.get("Uploads", [])]
        if not page["IsTruncated"]:
            break
        markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert seen == started


def test_list_multipart_uploads(s3, bucket):
    ids = {}
    for key in ["a/1", "a/2", "b", "c/d/e"]:
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    resp = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in resp["Uploads"]] == sorted(ids.items())
    assert all(u["Initiator"]["ID"] and u["StorageClass"] == "STANDARD" for u in resp["Uploads"])
    resp = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in resp["Uploads"]] == ["a/1", "a/2"]
    resp = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [u["Key"] for u in resp["Uploads"]] == ["b"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/", "c/"]
    resp = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2)
    assert [u["Key"] for u in resp["Uploads"]] == ["a/1", "a/2"]
    assert resp["IsTruncated"] is True
    rest = s3.list_multipart_uploads(Bucket=bucket, KeyMarker=resp["NextKeyMarker"],
                                     UploadIdMarker=resp["NextUploadIdMarker"])
    assert [u["Key"] for u in rest["Uploads"]] == ["b", "c/d/e"]
    assert rest["IsTruncated"] is False
    # Markers before, within and past a prefix's keys; a marker key with uploads left after the upload id marker.
    second = s3.create_multipart_upload(Bucket=bucket, Key="a/2")["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("a/1", ids["a/1"]), ("a/2", ids["a/2"]), ("a/2", second)]
    rest = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", KeyMarker="a/2", UploadIdMarker=ids["a/2"])
    assert [(u["Key"], u["UploadId"]) for u in rest["Uploads"]] == [("a/2", second)]
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix="c/", KeyMarker="0")["Uploads"]] \
        == ["c/d/e"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket, Prefix="a/", KeyMarker="z")
    s3.abort_multipart_upload(Bucket=bucket, Key="a/2", UploadId=second)
    s3.abort_multipart_upload(Bucket=bucket, Key="b", UploadId=ids["b"])
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == ["a/1", "a/2", "c/d/e"]


def test_several_uploads_for_one_key(s3, bucket):
    first = s3.create_multipart_upload(Bucket=bucket, Key="same")["UploadId"]
    second = s3.create_multipart_upload(Bucket=bucket, Key="same")["UploadId"]
    assert first != second
    listed = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]]
    assert sorted(listed) == sorted([first, second])
    complete(s3, bucket, "same", second, upload_parts(s3, bucket, "same", second, [b"two"]))
    complete(s3, bucket, "same", first, upload_parts(s3, bucket, "same", first, [b"one"]))
    assert s3.get_object(Bucket=bucket, Key="same")["Body"].read() == b"one"


# -- UploadPartCopy ---------------------------------------------------------------------------------------------


def test_upload_part_copy(s3, bucket):
    source = os.urandom(PART + 2 * MiB)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload_id, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "source"},
                             CopySourceRange=f"bytes=0-{PART - 1}")
    p2 = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload_id, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "source"},
                             CopySourceRange=f"bytes={PART}-{PART + 99}")
    p3 = s3.upload_part(Bucket=bucket, Key="assembled", UploadId=upload_id, PartNumber=3, Body=b"tail")
    assert p1["CopyPartResult"]["ETag"] == f'"{hashlib.md5(source[:PART]).hexdigest()}"'
    assert p2["CopyPartResult"]["ETag"] == f'"{hashlib.md5(source[PART:PART + 100]).hexdigest()}"'
    s3.put_object(Bucket=bucket, Key="source", Body=b"changed afterwards")  # parts are their own copies
    done = [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
            {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]
    with pytest.raises(ClientError) as e:  # part 2 (100 bytes) is not last
        complete(s3, bucket, "assembled", upload_id, [*done, {"PartNumber": 3, "ETag": p3["ETag"]}])
    assert error_code(e.value) == "EntityTooSmall"
    resp = complete(s3, bucket, "assembled", upload_id, done)
    expected = source[:PART] + source[PART:PART + 100]
    assert resp["ETag"] == multipart_etag([source[:PART], source[PART:PART + 100]])
    assert s3.get_object(Bucket=bucket, Key="assembled")["Body"].read() == expected


def test_upload_part_copy_whole_object_and_across_buckets(s3, bucket):
    import uuid

    other = f"test-upc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=other)
    s3.put_object(Bucket=other, Key="small source", Body=b"whole source object")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    r = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                            CopySource={"Bucket": other, "Key": "small source"})
    complete(s3, bucket, "dst", upload_id, [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}])
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"whole source object"


@pytest.mark.parametrize("bad_range, code", [("bytes=5-100", "InvalidRange"), ("bytes=10-5", "InvalidRange"),
                                             ("bytes=0-", "InvalidArgument"), ("items=0-1", "InvalidArgument")])
def test_upload_part_copy_bad_range(s3, bucket, bad_range, code):
    s3.put_object(Bucket=bucket, Key="source", Body=b"0123456789")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "source"}, CopySourceRange=bad_range)
    assert error_code(e.value) == code
    assert status_of(e.value) == (416 if code == "InvalidRange" else 400)


def test_upload_part_copy_conditions(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="source", Body=b"src")["ETag"]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "source"}, CopySourceIfNoneMatch=etag)
    assert error_code(e.value) == "PreconditionFailed"
    assert status_of(e.value) == 412
    s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                        CopySource={"Bucket": bucket, "Key": "source"}, CopySourceIfMatch=etag)


# -- checksums --------------------------------------------------------------------------------------------------


def test_default_full_object_crc64nvme(s3, bucket, parts3):
    # No algorithm chosen: S3 gives every new object a full-object CRC64NVME.
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="d")["UploadId"]
    complete(s3, bucket, "d", upload_id, upload_parts(s3, bucket, "d", upload_id, parts3))
    head = s3.head_object(Bucket=bucket, Key="d", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == checksum("CRC64NVME", b"".join(parts3))
    assert head["ChecksumType"] == "FULL_OBJECT"


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_composite_checksum(s3, bucket, parts3, algorithm):
    create = s3.create_multipart_upload(Bucket=bucket, Key="c", ChecksumAlgorithm=algorithm)
    assert create["ChecksumAlgorithm"] == algorithm
    upload_id = create["UploadId"]
    done = upload_parts(s3, bucket, "c", upload_id, parts3, ChecksumAlgorithm=algorithm)
    for entry, data in zip(done, parts3, strict=True):
        assert entry[f"Checksum{algorithm}"] == checksum(algorithm, data)
    resp = complete(s3, bucket, "c", upload_id, done)
    raw = b"".join(base64.b64decode(checksum(algorithm, p)) for p in parts3)
    expected = f"{checksum(algorithm, raw)}-{len(parts3)}"
    assert resp[f"Checksum{algorithm}"] == expected
    assert resp["ChecksumType"] == "COMPOSITE"
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected
    assert head["ChecksumType"] == "COMPOSITE"
    # A part fetched by number carries no whole-object checksum to validate against.
    got = s3.get_object(Bucket=bucket, Key="c", PartNumber=3, ChecksumMode="ENABLED")
    assert got["Body"].read() == parts3[2]


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
@pytest.mark.parametrize("send_full", [False, True])
def test_full_object_checksum(s3, bucket, parts3, algorithm, send_full):
    create = s3.create_multipart_upload(Bucket=bucket, Key="f", ChecksumAlgorithm=algorithm,
                                        ChecksumType="FULL_OBJECT")
    assert create["ChecksumType"] == "FULL_OBJECT"
    upload_id = create["UploadId"]
    done = upload_parts(s3, bucket, "f", upload_id, parts3, ChecksumAlgorithm=algorithm)
    expected = checksum(algorithm, b"".join(parts3))
    extra = {"ChecksumType": "FULL_OBJECT"}
    if send_full:
        extra[f"Checksum{algorithm}"] = expected
    resp = complete(s3, bucket, "f", upload_id, done, **extra)
    assert resp[f"Checksum{algorithm}"] == expected
    assert resp["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="f", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected
    assert head["ChecksumType"] == "FULL_OBJECT"
    # boto3 validates a full-object checksum against the bytes it receives.
    got = s3.get_object(Bucket=bucket, Key="f", ChecksumMode="ENABLED")
    assert hashlib.md5(got["Body"].read()).digest() == hashlib.md5(b"".join(parts3)).digest()


def test_full_object_checksum_mismatch(s3, bucket, parts3):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="f", ChecksumAlgorithm="CRC32C",
                                           ChecksumType="FULL_OBJECT")["UploadId"]
    done = upload_parts(s3, bucket, "f", upload_id, parts3[1:], ChecksumAlgorithm="CRC32C")
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "f", upload_id, done, ChecksumType="FULL_OBJECT",
                 ChecksumCRC32C=checksum("CRC32C", b"something else"))
    assert error_code(e.value) == "BadDigest"
    assert status_of(e.value) == 400
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="f")
    assert status_of(e.value) == 404


def test_part_checksum_mismatch_at_completion(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="pc", ChecksumAlgorithm="SHA256")["UploadId"]
    done = upload_parts(s3, bucket, "pc", upload_id, [b"part one"], ChecksumAlgorithm="SHA256")
    done[0]["ChecksumSHA256"] = checksum("SHA256", b"not part one")
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "pc", upload_id, done)
    assert error_code(e.value) == "InvalidPart"
    assert status_of(e.value) == 400


def test_part_with_wrong_checksum_value(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="w", ChecksumAlgorithm="SHA1")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="w", UploadId=upload_id, PartNumber=1, Body=b"data",
                       ChecksumSHA1=b64(hashlib.sha1(b"other").digest()))
    assert error_code(e.value) == "BadDigest"
    assert status_of(e.value) == 400
    assert s3.list_parts(Bucket=bucket, Key="w", UploadId=upload_id).get("Parts", []) == []


def test_part_checksum_algorithm_must_match_upload(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="m", ChecksumAlgorithm="CRC32C")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=b"x",
                       ChecksumAlgorithm="SHA256")
    assert error_code(e.value) == "InvalidRequest"
    assert status_of(e.value) == 400


@pytest.mark.parametrize("algorithm, kind", [("SHA256", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")])
def test_unsupported_checksum_type_combinations(s3, bucket, algorithm, kind):
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="x", ChecksumAlgorithm=algorithm, ChecksumType=kind)
    assert error_code(e.value) == "InvalidRequest"
    assert status_of(e.value) == 400


def test_list_parts_shows_checksums(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="lc", ChecksumAlgorithm="CRC32")["UploadId"]
    upload_parts(s3, bucket, "lc", upload_id, [b"one", b"two"], ChecksumAlgorithm="CRC32")
    resp = s3.list_parts(Bucket=bucket, Key="lc", UploadId=upload_id)
    assert resp["ChecksumAlgorithm"] == "CRC32"
    assert [p["ChecksumCRC32"] for p in resp["Parts"]] == [checksum("CRC32", b"one"), checksum("CRC32", b"two")]


def test_part_content_md5(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="md5")["UploadId"]
    data = os.urandom(1000)
    ok = s3.upload_part(Bucket=bucket, Key="md5", UploadId=upload_id, PartNumber=1, Body=data,
                        ContentMD5=b64(hashlib.md5(data).digest()))
    assert ok["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="md5", UploadId=upload_id, PartNumber=2, Body=data,
                       ContentMD5=b64(hashlib.md5(b"other").digest()))
    assert error_code(e.value) == "BadDigest"
    assert status_of(e.value) == 400
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="md5", UploadId=upload_id)["Parts"]] == [1]
