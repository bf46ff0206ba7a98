"""Helpers shared by the boto3 test modules: expected checksums, raw HTTP through presigned URLs."""

from __future__ import annotations

import base64
import hashlib
import http.client
import zlib
from urllib.parse import urlsplit

from awscrt import checksums as crt


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def crc_int(algorithm: str, data: bytes) -> int:
    if algorithm == "CRC32":
        return zlib.crc32(data)
    if algorithm == "CRC32C":
        return crt.crc32c(data)
    if algorithm == "CRC64NVME":
        return crt.crc64nvme(data)
    raise ValueError(algorithm)


def checksum(algorithm: str, data: bytes) -> str:
    """The base64 value S3 reports for ``data`` (full-object)."""
    if algorithm in ("CRC32", "CRC32C"):
        return b64(crc_int(algorithm, data).to_bytes(4, "big"))
    if algorithm == "CRC64NVME":
        return b64(crc_int(algorithm, data).to_bytes(8, "big"))
    if algorithm == "SHA1":
        return b64(hashlib.sha1(data).digest())
    if algorithm == "SHA256":
        return b64(hashlib.sha256(data).digest())
    raise ValueError(algorithm)


def md5_b64(data: bytes) -> str:
    return b64(hashlib.md5(data).digest())


def multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def raw_request(s3, method: str, bucket: str, key: str | None = None, headers: dict[str, str] | None = None,
                params: dict | None = None, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send a request through a presigned URL with http.client: to see exactly what the server answers
    (status, headers, body bytes) where boto3 would interpret it."""
    operation = {"GET": "get_object", "HEAD": "head_object", "PUT": "put_object", "DELETE": "delete_object"}[method]
    args: dict = {"Bucket": bucket}
    if key is not None:
        args["Key"] = key
    else:
        operation = {"GET": "list_objects", "HEAD": "head_bucket", "DELETE": "delete_bucket"}[method]
    args.update(params or {})
    url = s3.generate_presigned_url(operation, Params=args, ExpiresIn=300)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, f"{parts.path}?{parts.query}", body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def scrape(endpoint: str, path: str = "/metrics") -> dict[tuple[str, tuple], float]:
    """A server's Prometheus samples: (name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(endpoint + path, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def rss(pid: int) -> int:
    """A process's resident memory, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
