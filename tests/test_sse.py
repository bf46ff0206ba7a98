"""Server-side encryption at rest: SSE-S3, SSE-KMS (local key service), SSE-C, bucket default encryption."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import client, error_code, status_of

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def ssec(key: bytes, prefix: str = "") -> dict:
    return {
        f"{prefix}SSECustomerAlgorithm": "AES256",
        f"{prefix}SSECustomerKey": base64.b64encode(key).decode(),
        f"{prefix}SSECustomerKeyMD5": base64.b64encode(hashlib.md5(key).digest()).decode(),
    }


def ssec_headers(key: bytes, md5: bytes | None = None) -> dict:
    return {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(md5 or hashlib.md5(key).digest()).decode(),
    }


# mode -> (arguments for writes, arguments for reads, expected response headers)
MODES = {
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}, {"x-amz-server-side-encryption": "AES256"}),
    "kms-default": ({"ServerSideEncryption": "aws:kms"}, {},
                    {"x-amz-server-side-encryption": "aws:kms",
                     "x-amz-server-side-encryption-aws-kms-key-id": "shoal-default-key"}),
    "kms-key": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "testkey-1", "BucketKeyEnabled": True}, {},
                {"x-amz-server-side-encryption": "aws:kms",
                 "x-amz-server-side-encryption-aws-kms-key-id": "testkey-1",
                 "x-amz-server-side-encryption-bucket-key-enabled": "true"}),
    "dsse": ({"ServerSideEncryption": "aws:kms:dsse", "SSEKMSKeyId": "testkey-2"}, {},
             {"x-amz-server-side-encryption": "aws:kms:dsse"}),
    "sse-c": (ssec(KEY_A), ssec(KEY_A),
              {"x-amz-server-side-encryption-customer-algorithm": "AES256",
               "x-amz-server-side-encryption-customer-key-md5": ssec(KEY_A)["SSECustomerKeyMD5"]}),
}
SIZES = [0, 1, 1024, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 1024 * 1024 + 3]


def pattern(size: int, seed: int = 0) -> bytes:
    """Recognisable, position-dependent bytes (a shifted slice would not compare equal)."""
    block = b"".join(i.to_bytes(4, "big") for i in range(seed, seed + 16384))
    return (block * (size // len(block) + 1))[:size]


def headers_of(response) -> dict:
    return response["ResponseMetadata"]["HTTPHeaders"]


def assert_headers(response, expected: dict) -> None:
    got = headers_of(response)
    for name, value in expected.items():
        assert got.get(name) == value, (name, got)


def add_headers(s3, operation: str, headers: dict):
    def hook(params, **kwargs):
        params["headers"].update(headers)

    s3.meta.events.register(f"before-call.s3.{operation}", hook)
    return hook


@pytest.fixture
def raw_s3(server):
    """A client of its own, for tests that inject raw headers with event hooks."""
    return client(server.endpoint)


# -- round trips --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODES))
def test_round_trip_sizes(s3, bucket, mode):
    put_args, get_args, expected = MODES[mode]
    for size in SIZES:
        data = pattern(size, size)
        key = f"obj-{size}"
        put = s3.put_object(Bucket=bucket, Key=key, Body=data, **put_args)
        assert_headers(put, expected)
        assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        got = s3.get_object(Bucket=bucket, Key=key, **get_args)
        assert_headers(got, expected)
        assert got["Body"].read() == data, size
        assert got["ContentLength"] == size
        head = s3.head_object(Bucket=bucket, Key=key, **get_args)
        assert_headers(head, expected)
        assert head["ContentLength"] == size


@pytest.mark.parametrize("mode", ["sse-s3", "sse-c"])
def test_checksums_are_of_the_plaintext(s3, bucket, mode):
    put_args, get_args, _ = MODES[mode]
    data = pattern(300_000, 7)
    put = s3.put_object(Bucket=bucket, Key="ck", Body=data, ChecksumAlgorithm="SHA256", **put_args)
    expected = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert put["ChecksumSHA256"] == expected
    got = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED", **get_args)
    assert got["ChecksumSHA256"] == expected
    assert got["Body"].read() == data


RANGES = [
    (0, 0), (65535, 65536), (65530, 65545), (65536, 131071), (100, 300_000), (131072 * 3 - 7, 131072 * 3 + 7),
    (1024 * 1024 - 5, 1024 * 1024 + 2), (1024 * 1024 + 2, 1024 * 1024 + 2),
]


@pytest.mark.parametrize("mode", ["sse-s3", "kms-key", "sse-c"])
def test_range_reads_cross_block_boundaries(s3, bucket, mode):
    put_args, get_args, _ = MODES[mode]
    data = pattern(1024 * 1024 + 3, 11)
    s3.put_object(Bucket=bucket, Key="big", Body=data, **put_args)
    for first, last in RANGES:
        got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={first}-{last}", **get_args)
        assert got["Body"].read() == data[first : last + 1], (first, last)
        assert got["ContentRange"] == f"bytes {first}-{last}/{len(data)}"
    got = s3.get_object(Bucket=bucket, Key="big", Range="bytes=-70000", **get_args)
    assert got["Body"].read() == data[-70000:]
    small = pattern(5000, 3)
    s3.put_object(Bucket=bucket, Key="small", Body=small, **put_args)
    got = s3.get_object(Bucket=bucket, Key="small", Range="bytes=100-4099", **get_args)
    assert got["Body"].read() == small[100:4100]


@pytest.mark.parametrize("mode", ["sse-s3", "kms-key", "sse-c"])
def test_multipart_encrypted(s3, bucket, mode):
    put_args, get_args, expected = MODES[mode]
    part_sizes = [5 * 1024 * 1024 + 1, 5 * 1024 * 1024 + 1, 70_000]
    data = pattern(sum(part_sizes), 5)
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", **put_args)
    assert_headers(created, expected)
    upload_id = created["UploadId"]
    parts, offset = [], 0
    for number, size in enumerate(part_sizes, 1):
        part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number,
                              Body=data[offset : offset + size], **get_args)
        assert_headers(part, expected)
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
        offset += size
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})
    assert_headers(done, {k: v for k, v in expected.items() if "customer-key-md5" not in k})
    got = s3.get_object(Bucket=bucket, Key="mp", **get_args)
    assert_headers(got, expected)
    assert got["Body"].read() == data
    # Ranges across the part boundaries (which fall inside encryption blocks: parts are not block-aligned).
    boundary = part_sizes[0]
    for first, last in [(boundary - 10, boundary + 10), (boundary - 70_000, 2 * boundary + 5),
                        (len(data) - 70_005, len(data) - 1)]:
        got = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={first}-{last}", **get_args)
        assert got["Body"].read() == data[first : last + 1], (first, last)
    offset = 0
    for number, size in enumerate(part_sizes, 1):
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=number, **get_args)
        assert got["PartsCount"] == 3
        assert got["Body"].read() == data[offset : offset + size]
        offset += size
    head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=2, **get_args)
    assert head["ContentLength"] == part_sizes[1]


def test_transfer_manager_sse_c(s3, bucket):
    data = pattern(11 * 1024 * 1024 + 5, 9)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    extra = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": KEY_B}  # boto3 adds the MD5
    s3.upload_fileobj(io.BytesIO(data), bucket, "tm", Config=cfg, ExtraArgs=extra)
    out = io.BytesIO()
    s3.download_fileobj(bucket, "tm", out, Config=cfg, ExtraArgs=extra)
    assert out.getvalue() == data


# -- on disk ------------------------------------------------------------------------------------------------


def _files_containing(root: str, needle: bytes) -> list[str]:
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                if needle in f.read():
                    found.append(path)
    return found


def test_bytes_on_disk_are_not_the_plaintext(s3, bucket, server):
    store = os.path.join(server.data_dir, ".shoal")
    plain_marker = os.urandom(8).hex().encode()
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain:" + plain_marker * 20000)
    assert _files_containing(os.path.join(store, "blobs"), plain_marker), "control: plain bytes are visible"
    markers = {}
    for mode in ("sse-s3", "kms-key", "dsse", "sse-c"):
        put_args, _, _ = MODES[mode]
        marker = os.urandom(8).hex().encode()
        markers[mode] = marker
        s3.put_object(Bucket=bucket, Key=f"{mode}-big", Body=marker * 40000, **put_args)  # a blob
        s3.put_object(Bucket=bucket, Key=f"{mode}-small", Body=marker * 100, **put_args)  # inline in metadata
    mp = s3.create_multipart_upload(Bucket=bucket, Key="mp", ServerSideEncryption="AES256")
    mp_marker = os.urandom(8).hex().encode()
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=mp["UploadId"], PartNumber=1, Body=mp_marker * 1000)
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=mp["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    for mode, marker in {**markers, "multipart": mp_marker}.items():
        assert _files_containing(store, marker) == [], mode
    key_file = os.path.join(store, "master.key")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    with open(key_file, "rb") as f:
        assert len(base64.b64decode(f.read().strip())) == 32
    blob_bytes = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(os.path.join(store, "blobs"))
                     for n in ns)
    assert blob_bytes > 0


# -- SSE-C rules --------------------------------------------------------------------------------------------


def test_sse_c_key_required_and_checked(s3, bucket):
    s3.put_object(Bucket=bucket, Key="c", Body=b"secret" * 1000, **ssec(KEY_A))
    s3.put_object(Bucket=bucket, Key="c-small", Body=b"x", **ssec(KEY_A))
    for key in ("c", "c-small"):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key=key)
        assert (status_of(e.value), error_code(e.value)) == (400, "InvalidRequest")
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket=bucket, Key=key)
        assert status_of(e.value) == 400
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key=key, **ssec(KEY_B))
        assert (status_of(e.value), error_code(e.value)) == (403, "AccessDenied")
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket=bucket, Key=key, **ssec(KEY_B))
        assert status_of(e.value) == 403
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="c", ObjectAttributes=["ObjectSize"])
    assert status_of(e.value) == 400
    attrs = s3.get_object_attributes(Bucket=bucket, Key="c", ObjectAttributes=["ObjectSize"], **ssec(KEY_A))
    assert attrs["ObjectSize"] == 6000
    # SSE-C parameters for an object that is not SSE-C
    s3.put_object(Bucket=bucket, Key="s3", Body=b"y", ServerSideEncryption="AES256")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="s3", **ssec(KEY_A))
    assert (status_of(e.value), error_code(e.value)) == (400, "InvalidRequest")


@pytest.mark.parametrize("headers", [
    ssec_headers(KEY_A, md5=b"\0" * 16),  # wrong MD5
    {**ssec_headers(KEY_A), "x-amz-server-side-encryption-customer-key": base64.b64encode(b"short").decode()},
    {k: v for k, v in ssec_headers(KEY_A).items() if not k.endswith("MD5")},  # no MD5
    {k: v for k, v in ssec_headers(KEY_A).items() if not k.endswith("algorithm")},  # no algorithm
    {**ssec_headers(KEY_A), "x-amz-server-side-encryption-customer-algorithm": "AES128"},
    {**ssec_headers(KEY_A), "x-amz-server-side-encryption": "AES256"},  # SSE-C and SSE-S3 together
    {**ssec_headers(KEY_A), "x-amz-server-side-encryption": "aws:kms"},
    {"x-amz-server-side-encryption": "AES256", "x-amz-server-side-encryption-aws-kms-key-id": "k"},
    {"x-amz-server-side-encryption-aws-kms-key-id": "k"},  # KMS key without aws:kms
    {"x-amz-server-side-encryption": "aes:kms"},
])
def test_bad_encryption_headers_refused(raw_s3, bucket, headers):
    add_headers(raw_s3, "PutObject", headers)
    with pytest.raises(ClientError) as e:
        raw_s3.put_object(Bucket=bucket, Key="bad", Body=b"data")
    assert (status_of(e.value), error_code(e.value)) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        raw_s3.head_object(Bucket=bucket, Key="bad")
    assert status_of(e.value) == 404  # nothing was stored


def test_sse_s3_header_refused_on_get(raw_s3, bucket):
    raw_s3.put_object(Bucket=bucket, Key="k", Body=b"v", ServerSideEncryption="aws:kms")
    add_headers(raw_s3, "GetObject", {"x-amz-server-side-encryption": "aws:kms"})
    with pytest.raises(ClientError) as e:
        raw_s3.get_object(Bucket=bucket, Key="k")
    assert status_of(e.value) == 400


def test_sse_c_multipart_parts_need_the_upload_key(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", **ssec(KEY_A))["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"x" * 100)
    assert (status_of(e.value), error_code(e.value)) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"x" * 100, **ssec(KEY_B))
    assert status_of(e.value) == 400
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"x" * 100, **ssec(KEY_A))
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id, **ssec(KEY_B),
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert status_of(e.value) == 400
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id, **ssec(KEY_A),
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="mp", **ssec(KEY_A))["Body"].read() == b"x" * 100
    # Parts of an upload that is not SSE-C take no customer key.
    plain = s3.create_multipart_upload(Bucket=bucket, Key="plain")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="plain", UploadId=plain, PartNumber=1, Body=b"x", **ssec(KEY_A))
    assert status_of(e.value) == 400


# -- copies -------------------------------------------------------------------------------------------------

COPY_SOURCES = {
    "plain": ({}, {}, {}),
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}, {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "src-key"}, {}, {}),
    "sse-c": (ssec(KEY_A), ssec(KEY_A), ssec(KEY_A, "CopySource")),
}
COPY_DESTS = {
    "plain": ({}, {}, {"x-amz-server-side-encryption": None}),
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}, {"x-amz-server-side-encryption": "AES256"}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "dest-key"}, {},
                {"x-amz-server-side-encryption": "aws:kms",
                 "x-amz-server-side-encryption-aws-kms-key-id": "dest-key"}),
    "sse-c": (ssec(KEY_B), ssec(KEY_B), {"x-amz-server-side-encryption-customer-algorithm": "AES256"}),
}


@pytest.mark.parametrize("source", list(COPY_SOURCES))
@pytest.mark.parametrize("dest", list(COPY_DESTS))
def test_copy_matrix(s3, bucket, source, dest):
    src_put, src_get, src_copy = COPY_SOURCES[source]
    dst_put, dst_get, dst_expected = COPY_DESTS[dest]
    for size in (1000, 200_000):
        data = pattern(size, size)
        s3.put_object(Bucket=bucket, Key=f"src-{size}", Body=data, **src_put)
        copied = s3.copy_object(Bucket=bucket, Key=f"dst-{size}", CopySource={"Bucket": bucket, "Key": f"src-{size}"},
                                **src_copy, **dst_put)
        assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        got = s3.get_object(Bucket=bucket, Key=f"dst-{size}", **dst_get)
        assert got["Body"].read() == data
        assert_headers(got, {k: v for k, v in dst_expected.items() if v is not None})
        for name, value in dst_expected.items():
            if value is None:
                assert name not in headers_of(got)
        # The source is untouched.
        assert s3.get_object(Bucket=bucket, Key=f"src-{size}", **src_get)["Body"].read() == data


def test_copy_from_sse_c_needs_the_source_key(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"z" * 5000, **ssec(KEY_A))
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert status_of(e.value) == 400
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       **ssec(KEY_B, "CopySource"))
    assert status_of(e.value) == 403


def test_self_copy(s3, bucket):
    data = pattern(300_000, 1)
    s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="AES256", Metadata={"a": "1"})
    # Metadata-only self-copy keeps the encryption and the bytes.
    s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"}, MetadataDirective="REPLACE",
                   Metadata={"a": "2"}, ServerSideEncryption="AES256")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Metadata"] == {"a": "2"} and got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == data
    # Without any change it is refused; asking for encryption is a change.
    s3.put_object(Bucket=bucket, Key="p", Body=data)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="p", CopySource={"Bucket": bucket, "Key": "p"})
    assert error_code(e.value) == "InvalidRequest"
    s3.copy_object(Bucket=bucket, Key="p", CopySource={"Bucket": bucket, "Key": "p"}, **ssec(KEY_A))
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="p")
    assert status_of(e.value) == 400
    assert s3.get_object(Bucket=bucket, Key="p", **ssec(KEY_A))["Body"].read() == data
    # SSE-C onto itself with the same key, new metadata: bytes shared, still readable with the key.
    s3.copy_object(Bucket=bucket, Key="p", CopySource={"Bucket": bucket, "Key": "p"}, MetadataDirective="REPLACE",
                   Metadata={"b": "3"}, **ssec(KEY_A, "CopySource"), **ssec(KEY_A))
    got = s3.get_object(Bucket=bucket, Key="p", **ssec(KEY_A))
    assert got["Metadata"] == {"b": "3"} and got["Body"].read() == data
    # ... and back to plain with the same copy.
    s3.copy_object(Bucket=bucket, Key="p", CopySource={"Bucket": bucket, "Key": "p"}, MetadataDirective="REPLACE",
                   **ssec(KEY_A, "CopySource"))
    assert s3.get_object(Bucket=bucket, Key="p")["Body"].read() == data


def test_upload_part_copy_between_encryptions(s3, bucket):
    first = pattern(5 * 1024 * 1024 + 7, 2)
    second = pattern(300_000, 3)
    s3.put_object(Bucket=bucket, Key="src-c", Body=first, **ssec(KEY_A))
    s3.put_object(Bucket=bucket, Key="src-kms", Body=second, ServerSideEncryption="aws:kms")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst", **ssec(KEY_B))["UploadId"]
    with pytest.raises(ClientError) as e:  # the destination part needs the upload's key too
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src-c"}, **ssec(KEY_A, "CopySource"))
    assert status_of(e.value) == 400
    p1 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src-c"}, **ssec(KEY_A, "CopySource"), **ssec(KEY_B))
    p2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src-kms"}, CopySourceRange="bytes=65000-200000",
                             **ssec(KEY_B))
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=upload_id, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    expected = first + second[65000:200001]
    assert s3.get_object(Bucket=bucket, Key="dst", **ssec(KEY_B))["Body"].read() == expected
    got = s3.get_object(Bucket=bucket, Key="dst", Range=f"bytes={len(first) - 3}-{len(first) + 3}", **ssec(KEY_B))
    assert got["Body"].read() == expected[len(first) - 3 : len(first) + 4]


def test_versions_keep_their_own_keys(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one" * 30000, ServerSideEncryption="AES256")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two" * 30000, **ssec(KEY_A))["VersionId"]
    v3 = s3.put_object(Bucket=bucket, Key="k", Body=b"three")["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one" * 30000
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v2, **ssec(KEY_A))["Body"].read() == b"two" * 30000
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v3)["Body"].read() == b"three"
    s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k", "VersionId": v2},
                   **ssec(KEY_A, "CopySource"), ServerSideEncryption="aws:kms")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["ServerSideEncryption"] == "aws:kms" and got["Body"].read() == b"two" * 30000


def test_block_format():
    from shoal.crypto import blocks

    dek = os.urandom(32)
    for into in (True, False):  # with and without cryptography's encrypt_into/decrypt_into
        saved, blocks._INTO = blocks._INTO, into and blocks._INTO
        try:
            for size in (0, 1, blocks.BLOCK - 1, blocks.BLOCK, blocks.BLOCK + 1, 3 * blocks.BLOCK + 5):
                data = os.urandom(size)
                sealed = blocks.blob_cipher(dek, "ab" * 16).seal(0, data)
                assert len(sealed) == blocks.sealed_size(size) == size + -(-size // blocks.BLOCK) * blocks.TAG
                assert bytes(blocks.blob_cipher(dek, "ab" * 16).open(0, sealed)) == data
                if size:
                    with pytest.raises(blocks.CorruptData):  # another blob's key does not open it
                        blocks.blob_cipher(dek, "cd" * 16).open(0, sealed)
        finally:
            blocks._INTO = saved


def test_concurrent_encrypted_reads_share_a_budget(tmp_path, monkeypatch):
    """Reads of encrypted blobs open up to READ_BLOCKS per worker-thread call alone, and share the read budget
    when several stream at once (64 concurrent GETs held ~3 MiB each), every one still getting its exact bytes."""
    import asyncio

    from shoal import read_budget
    from shoal.crypto import blocks

    dek = os.urandom(32)
    size = 20 * blocks.BLOCK + 123
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(bytes(blocks.blob_cipher(dek, "ab" * 16).seal(0, data)))
    counts: list[int] = []
    real = blocks.read_blocks

    def recording(fd, cipher, first, count, plain_size):
        counts.append(count)
        streaming.append(read_budget.active())
        return real(fd, cipher, first, count, plain_size)

    streaming: list[int] = []

    monkeypatch.setattr(blocks, "read_blocks", recording)
    monkeypatch.setattr(read_budget, "BUDGET", 8 * blocks.BLOCK)

    async def read(offset: int, length: int) -> bytes:
        fd = os.open(path, os.O_RDONLY)
        try:
            out = bytearray()
            async for chunk in blocks.stream_plain(fd, blocks.blob_cipher(dek, "ab" * 16), offset, length, size):
                out += chunk
            return bytes(out)
        finally:
            os.close(fd)

    base = read_budget.active()  # readers of other tests in this process, if any are still open
    assert asyncio.run(read(5, size - 5)) == data[5:]
    assert counts[0] == max(1, 8 // (base + 1)) and read_budget.active() == base  # alone: all of it (not 16)
    counts.clear()
    streaming.clear()

    async def together() -> list[bytes]:
        return await asyncio.gather(*(read(i * 1000, size - i * 3000) for i in range(4)))

    got = asyncio.run(together())
    assert got == [data[i * 1000 : i * 1000 + size - i * 3000] for i in range(4)]
    assert max(streaming) == base + 4 and read_budget.active() == base
    # A share each: 8 blocks alone, 2 with four at once (16 and the rest of the range without the budget).
    assert max(counts) <= 8 and sorted(counts)[len(counts) // 2] <= 2, counts


# -- bucket default encryption ------------------------------------------------------------------------------


def test_bucket_default_encryption(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert (status_of(e.value), error_code(e.value)) == (404, "ServerSideEncryptionConfigurationNotFoundError")
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    put = s3.put_object(Bucket=bucket, Key="a", Body=b"hello")
    assert put["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="a")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == b"hello"
    # An explicit request wins over the default.
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"c", **ssec(KEY_A))
    assert "ServerSideEncryption" not in put and put["SSECustomerAlgorithm"] == "AES256"
    # Multipart and copy without headers get the default too.
    mp = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    assert mp["ServerSideEncryption"] == "AES256"
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=mp["UploadId"], PartNumber=1, Body=b"m" * 70_000)
    assert part["ServerSideEncryption"] == "AES256"
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=mp["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == b"m" * 70_000
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "bucket-key"},
         "BucketKeyEnabled": True}]})
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "bucket-key"}
    assert rule["BucketKeyEnabled"] is True
    copied = s3.copy_object(Bucket=bucket, Key="b", CopySource={"Bucket": bucket, "Key": "a"})
    assert copied["ServerSideEncryption"] == "aws:kms" and copied["SSEKMSKeyId"] == "bucket-key"
    head = s3.head_object(Bucket=bucket, Key="b")
    assert head["SSEKMSKeyId"] == "bucket-key" and head["BucketKeyEnabled"] is True
    assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"hello"
    with pytest.raises(ClientError) as e:  # a KMS key id only goes with aws:kms
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "x"}}]})
    assert status_of(e.value) == 400
    assert s3.delete_bucket_encryption(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert error_code(e.value) == "ServerSideEncryptionConfigurationNotFoundError"
    put = s3.put_object(Bucket=bucket, Key="plain", Body=b"p")
    assert "ServerSideEncryption" not in put
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"hello"  # older objects still decrypt


# -- keys across restarts -----------------------------------------------------------------------------------


def test_data_decrypts_after_restart(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="keep")
    big = pattern(700_000, 4)
    objects = {
        "s3-small": ({"ServerSideEncryption": "AES256"}, {}),
        "s3-big": ({"ServerSideEncryption": "AES256"}, {}),
        "kms-big": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "restart-key"}, {}),
        "c-big": (ssec(KEY_A), ssec(KEY_A)),
    }
    for key, (put_args, _) in objects.items():
        s3.put_object(Bucket="keep", Key=key, Body=b"tiny" if key.endswith("small") else big, **put_args)
    srv.stop()
    srv.start()
    for key, (_, get_args) in objects.items():
        assert s3.get_object(Bucket="keep", Key=key, **get_args)["Body"].read() == \
            (b"tiny" if key.endswith("small") else big)


def test_master_key_from_environment(make_server):
    master = base64.b64encode(os.urandom(32)).decode()
    srv = make_server(env={"SHOAL_MASTER_KEY": master})
    assert not os.path.exists(os.path.join(srv.data_dir, ".shoal", "master.key"))  # never written to disk
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="env")
    s3.put_object(Bucket="env", Key="k", Body=b"v" * 100_000, ServerSideEncryption="AES256")
    srv.stop()
    srv.start()
    assert s3.get_object(Bucket="env", Key="k")["Body"].read() == b"v" * 100_000
    srv.stop()
    srv.env["SHOAL_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()  # a different key cannot read it
    srv.start()
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="env", Key="k")
    assert status_of(e.value) == 500


def test_tampered_block_is_refused_and_only_that_block(make_server):
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="tamper")
    data = pattern(300_000, 8)
    s3.put_object(Bucket="tamper", Key="k", Body=data, ServerSideEncryption="AES256")
    blobs = [os.path.join(d, n) for d, _, ns in os.walk(os.path.join(srv.data_dir, ".shoal", "blobs")) for n in ns]
    assert len(blobs) == 1
    assert os.path.getsize(blobs[0]) == len(data) + 5 * 16  # five sealed 64 KiB blocks, 16-byte tags
    with open(blobs[0], "r+b") as f:  # flip one bit in the second block
        f.seek(65536 + 16 + 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="tamper", Key="k")
    assert status_of(e.value) == 500
    got = s3.get_object(Bucket="tamper", Key="k", Range="bytes=200000-200100")  # blocks it does not touch
    assert got["Body"].read() == data[200000:200101]


def test_kms_encryption_context(s3, bucket):
    context = base64.b64encode(b'{"team": "blue"}').decode()
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"v" * 70_000, ServerSideEncryption="aws:kms",
                        SSEKMSKeyId="ctx-key", SSEKMSEncryptionContext=context)
    assert put["SSEKMSEncryptionContext"] == context
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["SSEKMSKeyId"] == "ctx-key"  # S3 repeats the context on writes only
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v" * 70_000
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"v", ServerSideEncryption="aws:kms",
                      SSEKMSEncryptionContext=base64.b64encode(b"not json").decode())
    assert error_code(e.value) == "InvalidArgument"
