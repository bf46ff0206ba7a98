"""A minimal SigV4 signer: presigned paths (one signing key per run, one HMAC per URL; boto3 costs ~100 µs) and
header-signed requests with a payload hash (as boto3 signs over plain HTTP). The signing math is Shoal's own
(shoal.auth.sigv4), so the benchmark signs exactly as the server verifies."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import quote

from shoal.auth import sigv4

_SAFE = "-_.~"


def _enc(s: str, slash: bool = False) -> str:
    return quote(s, safe=_SAFE + ("/" if slash else ""))


class Presigner:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1",
                 expires: int = 86400) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.host = self.endpoint.split("://", 1)[1]
        self.access_key = access_key
        self.region = region
        self.expires = expires
        now = time.gmtime()
        self.amz_date = time.strftime("%Y%m%dT%H%M%SZ", now)
        self.date = self.amz_date[:8]
        self.key = sigv4.signing_key(secret_key, self.date, region, "s3")
        self.scope = f"{self.date}/{region}/s3/aws4_request"

    def path(self, method: str, bucket: str, key: str = "", query: dict[str, str] | None = None) -> str:
        """The signed path + query string (no scheme/host), for wrk and raw clients."""
        uri = "/" + bucket + ("/" + _enc(key, slash=True) if key else "")
        if key == "" and bucket:
            uri = "/" + bucket
        params = dict(query or {})
        params.update({
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{self.access_key}/{self.scope}",
            "X-Amz-Date": self.amz_date,
            "X-Amz-Expires": str(self.expires),
            "X-Amz-SignedHeaders": "host",
        })
        qs = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()))
        creq = f"{method}\n{uri}\n{qs}\nhost:{self.host}\n\nhost\nUNSIGNED-PAYLOAD"
        sts = f"AWS4-HMAC-SHA256\n{self.amz_date}\n{self.scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
        sig = sigv4.sign(self.key, sts)
        return f"{uri}?{qs}&X-Amz-Signature={sig}"

    def url(self, method: str, bucket: str, key: str = "", query: dict[str, str] | None = None) -> str:
        return self.endpoint + self.path(method, bucket, key, query)

    def header_auth(self, method: str, bucket: str, key: str, payload_sha256: str,
                    headers: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
        """(path, headers) for a request signed in its Authorization header, over ``headers`` (lower-case names)
        and a hex SHA-256 of the payload that the server must check against the bytes it receives."""
        uri = "/" + bucket + ("/" + _enc(key, slash=True) if key else "")
        signed = dict(headers or {})
        signed.update({"host": self.host, "x-amz-content-sha256": payload_sha256, "x-amz-date": self.amz_date})
        names = sorted(signed)
        canonical = "".join(f"{n}:{signed[n]}\n" for n in names)
        creq = f"{method}\n{uri}\n\n{canonical}\n{';'.join(names)}\n{payload_sha256}"
        sts = f"AWS4-HMAC-SHA256\n{self.amz_date}\n{self.scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
        signed["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{self.scope}, "
                                   f"SignedHeaders={';'.join(names)}, Signature={sigv4.sign(self.key, sts)}")
        del signed["host"]  # stream_put writes its own
        return uri, signed
