"""Helpers shared by the access-control test modules (bucket policies, ACLs, cross-user checks, CORS)."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from conftest import client, error_code, status_of


def unique(prefix: str = "acl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def anonymous_client(endpoint: str):
    """A boto3 client that signs nothing: S3's anonymous requests."""
    return client(endpoint, ("unused", "unused"), signature_version=UNSIGNED)


def canonical_id(s3) -> str:
    return s3.list_buckets()["Owner"]["ID"]


def fails(fn, code: str, status: int, **kwargs) -> ClientError:
    """Call ``fn(**kwargs)``; it must fail with exactly this error code and HTTP status."""
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    got = (error_code(info.value), status_of(info.value))
    if fn.__name__.startswith("head_"):
        # HEAD responses have no body: botocore reports the status number as the code.
        code = str(status)
    assert got == (code, status), info.value.response
    return info.value


def denied(fn, **kwargs) -> ClientError:
    return fails(fn, "AccessDenied", 403, **kwargs)


def policy_doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def put_policy(s3, bucket: str, *statements: dict) -> None:
    s3.put_bucket_policy(Bucket=bucket, Policy=policy_doc(*statements))


def arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" if key is None else f"arn:aws:s3:::{bucket}/{key}"


def user_arn(user_id: str) -> str:
    return f"arn:aws:iam::{user_id}:root"
