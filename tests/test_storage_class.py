"""Storage classes: accepted on every write, echoed where S3 echoes them (never for STANDARD on HEAD/GET), and
refused when unknown. There is one tier: the class is a label."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import error_code, status_of

CLASSES = ["REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"]


def raises(code: str, status: int, call, *args, **kwargs) -> None:
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    assert (status_of(exc.value), error_code(exc.value)) == (status, code)


def storage_class_header(response) -> str | None:
    return response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-storage-class")


@pytest.mark.parametrize("storage_class", CLASSES)
def test_class_is_echoed_everywhere(s3, bucket, storage_class):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass=storage_class)
    assert storage_class_header(s3.head_object(Bucket=bucket, Key="k")) == storage_class
    assert s3.get_object(Bucket=bucket, Key="k")["StorageClass"] == storage_class
    assert s3.list_objects(Bucket=bucket)["Contents"][0]["StorageClass"] == storage_class
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["StorageClass"] == storage_class
    assert s3.list_object_versions(Bucket=bucket)["Versions"][0]["StorageClass"] == storage_class
    attributes = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["StorageClass"])
    assert attributes["StorageClass"] == storage_class


def test_standard_is_never_echoed_on_reads(s3, bucket):
    s3.put_object(Bucket=bucket, Key="explicit", Body=b"x", StorageClass="STANDARD")
    s3.put_object(Bucket=bucket, Key="implicit", Body=b"x")
    for key in ("explicit", "implicit"):
        assert storage_class_header(s3.head_object(Bucket=bucket, Key=key)) is None
        assert "StorageClass" not in s3.get_object(Bucket=bucket, Key=key)
    assert [o["StorageClass"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["STANDARD"] * 2
    assert [v["StorageClass"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == ["STANDARD"] * 2


def test_each_version_keeps_its_class(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass="STANDARD_IA")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"y", StorageClass="REDUCED_REDUNDANCY")
    assert [v["StorageClass"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == \
        ["REDUCED_REDUNDANCY", "STANDARD_IA"]
    assert storage_class_header(s3.head_object(Bucket=bucket, Key="k", VersionId=old)) == "STANDARD_IA"


def test_multipart_upload_class(s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", StorageClass="STANDARD_IA")["UploadId"]
    assert s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["StorageClass"] == "STANDARD_IA"
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload)["StorageClass"] == "STANDARD_IA"
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert storage_class_header(s3.head_object(Bucket=bucket, Key="mp")) == "STANDARD_IA"
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["StorageClass"] == "STANDARD_IA"


def test_copy_sets_the_class_it_is_given(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", StorageClass="STANDARD_IA")
    # Like S3: without x-amz-storage-class the copy is STANDARD, whatever the source's class.
    s3.copy_object(Bucket=bucket, Key="plain", CopySource={"Bucket": bucket, "Key": "src"})
    assert storage_class_header(s3.head_object(Bucket=bucket, Key="plain")) is None
    s3.copy_object(Bucket=bucket, Key="rr", CopySource={"Bucket": bucket, "Key": "src"},
                   StorageClass="REDUCED_REDUNDANCY")
    assert storage_class_header(s3.head_object(Bucket=bucket, Key="rr")) == "REDUCED_REDUNDANCY"
    # Changing only the class is a valid copy onto itself.
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"}, StorageClass="ONEZONE_IA")
    assert storage_class_header(s3.head_object(Bucket=bucket, Key="src")) == "ONEZONE_IA"
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"x"


@pytest.mark.parametrize("storage_class", ["FANCY", "standard", ""])
def test_unknown_class_is_refused_on_every_write(s3, bucket, storage_class):
    raises("InvalidStorageClass", 400, s3.put_object, Bucket=bucket, Key="k", Body=b"x", StorageClass=storage_class)
    raises("InvalidStorageClass", 400, s3.create_multipart_upload, Bucket=bucket, Key="k",
           StorageClass=storage_class)
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    raises("InvalidStorageClass", 400, s3.copy_object, Bucket=bucket, Key="k",
           CopySource={"Bucket": bucket, "Key": "src"}, StorageClass=storage_class)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["src"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
