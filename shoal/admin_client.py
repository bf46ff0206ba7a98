"""A small client for the admin API, signing with AWS Signature V4 (shoal.auth.sigv4; no botocore needed)."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from urllib.parse import quote, urlsplit

from shoal.auth import sigv4

PREFIX = "/_shoal/admin/v1/"


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class AdminClient:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1",
                 timeout: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.timeout = timeout

    def request(self, method: str, *path: str, body: dict | None = None):
        """``path``: segments after the prefix (each percent-encoded here). Returns the decoded JSON, or None."""
        raw_path = PREFIX + "/".join(quote(p, safe="") for p in path)
        data = json.dumps(body).encode() if body is not None else b""
        payload_hash = hashlib.sha256(data).hexdigest()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        host = urlsplit(self.endpoint).netloc
        headers = {"host": [host], "x-amz-date": [amz_date], "x-amz-content-sha256": [payload_hash]}
        if body is not None:
            headers["content-type"] = ["application/json"]
        signed = sorted(headers)
        scope = sigv4.Scope(amz_date[:8], self.region, "s3")
        canonical = sigv4.canonical_request(method, raw_path, [], headers, signed, payload_hash,
                                            encoded_path=raw_path)
        key = sigv4.signing_key(self.secret_key, scope.date, scope.region, scope.service)
        signature = sigv4.sign(key, sigv4.string_to_sign(amz_date, scope, canonical))
        send = {name: values[0] for name, values in headers.items() if name != "host"}
        send["Authorization"] = (f"{sigv4.ALGORITHM} Credential={self.access_key}/{scope}, "
                                 f"SignedHeaders={';'.join(signed)}, Signature={signature}")
        req = urllib.request.Request(self.endpoint + raw_path, data=data if body is not None else None,
                                     method=method, headers=send)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read()
            try:
                err = json.loads(text)
                code, message = err.get("Code", "Error"), err.get("Message", "")
            except ValueError:
                code, message = "Error", text.decode(errors="replace")[:500]
            raise AdminError(exc.code, code, message) from None
        return json.loads(text) if text.strip() else None

    # -- users --------------------------------------------------------------------------------------------

    def list_users(self) -> list[dict]:
        return self.request("GET", "users")["users"]

    def get_user(self, name: str) -> dict:
        return self.request("GET", "users", name)

    def create_user(self, name: str, policies: list | None = None, display_name: str | None = None,
                    with_key: bool = False) -> dict:
        body: dict = {"name": name, "policies": policies or [], "with_key": with_key}
        if display_name:
            body["display_name"] = display_name
        return self.request("POST", "users", body=body)

    def set_enabled(self, name: str, enabled: bool) -> dict:
        return self.request("PATCH", "users", name, body={"enabled": enabled})

    def delete_user(self, name: str) -> None:
        self.request("DELETE", "users", name)

    # -- keys ---------------------------------------------------------------------------------------------

    def create_key(self, user: str, access_key: str | None = None, secret_key: str | None = None) -> dict:
        body = {k: v for k, v in (("access_key", access_key), ("secret_key", secret_key)) if v}
        return self.request("POST", "users", user, "keys", body=body)

    def list_keys(self, user: str) -> list[dict]:
        return self.request("GET", "users", user, "keys")["access_keys"]

    def set_key_status(self, access_key: str, status: str) -> dict:
        return self.request("PATCH", "keys", access_key, body={"status": status})

    def delete_key(self, access_key: str) -> None:
        self.request("DELETE", "keys", access_key)

    # -- policies -----------------------------------------------------------------------------------------

    def attach_policy(self, user: str, policy, name: str | None = None) -> dict:
        body = {"policy": policy}
        if name:
            body["name"] = name
        return self.request("POST", "users", user, "policies", body=body)

    def detach_policy(self, user: str, name: str) -> dict:
        return self.request("DELETE", "users", user, "policies", name)
