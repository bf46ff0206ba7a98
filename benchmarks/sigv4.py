"""A minimal SigV4 query-string presigner: one signing key per run, one HMAC per URL (boto3 costs ~100 µs).
The signing math is Shoal's own (shoal.auth.sigv4), so the benchmark signs exactly as the server verifies."""

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
