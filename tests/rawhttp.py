"""Raw HTTP against the server: requests signed by botocore's signers (or by hand, following the AWS documents),
sent with http.client or plain sockets so that every byte on the wire is ours to choose."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from email.utils import formatdate
from unittest import mock
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ROOT

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def code(self) -> str | None:
        return error_field(self.body, "Code")

    @property
    def message(self) -> str | None:
        return error_field(self.body, "Message")

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers}, {self.body[:400]!r})"


def error_field(body: bytes, name: str) -> str | None:
    if not body:
        return None
    root = ET.fromstring(body)
    node = root.find(name)
    return None if node is None else (node.text or "")


class _Signer(S3SigV4Auth):
    """botocore's S3 SigV4 signer, with the payload hash and the clock under the test's control."""

    def __init__(self, creds, region: str, payload: str | None, when: datetime.datetime | None) -> None:
        super().__init__(Credentials(*creds), "s3", region)
        self._payload = payload
        self._when = when

    def payload(self, request):
        return self._payload if self._payload is not None else super().payload(request)

    def add_auth(self, request):
        if self._when is None:
            return super().add_auth(request)
        with mock.patch("botocore.auth.get_current_datetime", return_value=self._when):
            return super().add_auth(request)


def sign_v4(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None, *, creds=ROOT,
            region: str = "us-east-1", payload: str | None = None,
            when: datetime.datetime | None = None) -> dict[str, str]:
    """The headers of a SigV4-signed request (Host included). ``url`` carries the path exactly as it will be sent."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    _Signer(creds, region, payload, when).add_auth(request)
    out = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    out.setdefault("Host", urlsplit(url).netloc)
    return out


def presign_v4(method: str, url: str, expires: int, *, creds=ROOT, when: datetime.datetime | None = None) -> str:
    """A presigned URL from botocore's pure-Python query signer (the clock under the test's control)."""
    from botocore.auth import S3SigV4QueryAuth

    request = AWSRequest(method=method, url=url)
    signer = S3SigV4QueryAuth(Credentials(*creds), "s3", "us-east-1", expires=expires)
    if when is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(request)
    return request.prepare().url


def signing_key(secret: str, date: str, region: str = "us-east-1", service: str = "s3") -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def parse_auth_header(value: str) -> dict[str, str]:
    algorithm, _, rest = value.partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    return dict(item.strip().split("=", 1) for item in rest.split(","))


def aws_chunked(data: bytes, chunk_size: int, headers: dict[str, str], secret: str = ROOT[1], *,
                trailer: tuple[str, str] | None = None, signed: bool = True,
                tamper_chunk: int | None = None) -> bytes:
    """An aws-chunked body, every chunk signature computed by hand from the seed signature in ``headers``."""
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    out = bytearray()
    if signed:
        auth = parse_auth_header(headers["Authorization"])
        _, date, region, service, _ = auth["Credential"].split("/")
        amz_date = headers["X-Amz-Date"]
        scope = f"{date}/{region}/{service}/aws4_request"
        key = signing_key(secret, date, region, service)
        previous = auth["Signature"]
    for index, chunk in enumerate(chunks):
        if signed:
            to_sign = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256,
                                 hashlib.sha256(chunk).hexdigest()))
            signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            previous = signature
            if index == tamper_chunk:
                signature = ("0" if signature[0] != "0" else "1") + signature[1:]
            out += f"{len(chunk):x};chunk-signature={signature}\r\n".encode()
        else:
            out += f"{len(chunk):x}\r\n".encode()
        if chunk:
            out += chunk + b"\r\n"
    if trailer is not None:
        name, value = trailer
        out += f"{name}:{value}\r\n".encode()
        if signed:
            digest = hashlib.sha256(f"{name}:{value}\n".encode()).hexdigest()
            to_sign = "\n".join(("AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous, digest))
            out += f"x-amz-trailer-signature:{hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def sign_v2(method: str, resource: str, headers: dict[str, str], secret: str = ROOT[1], expires: str | None = None
            ) -> str:
    """Signature V2 (https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html)."""
    lower = {k.lower(): v for k, v in headers.items()}
    amz = "".join(f"{k}:{lower[k].strip()}\n" for k in sorted(lower) if k.startswith("x-amz-"))
    date = expires if expires is not None else ("" if "x-amz-date" in lower else lower.get("date", ""))
    text = f"{method}\n{lower.get('content-md5', '')}\n{lower.get('content-type', '')}\n{date}\n{amz}{resource}"
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()).decode()


def http_date() -> str:
    return formatdate(usegmt=True)


class Raw:
    """http.client against one server; every response is checked for S3's common headers and a true length."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.endpoint = f"http://{host}:{port}"

    def connection(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def send(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *,
             conn: http.client.HTTPConnection | None = None) -> Response:
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            headers = dict(headers or {})
            if not any(k.lower() == "host" for k in headers):
                headers["Host"] = f"{self.host}:{self.port}"
            framed = any(k.lower() in ("content-length", "transfer-encoding") for k in headers)
            if (body or method in ("PUT", "POST")) and not framed:
                headers["Content-Length"] = str(len(body))
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.endheaders(body or None)
            return read_response(conn.getresponse(), method)
        finally:
            if own:
                conn.close()

    def signed(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, *,
               conn: http.client.HTTPConnection | None = None, **sign) -> Response:
        signed = sign_v4(method, self.endpoint + path, body, headers, **sign)
        return self.send(method, path, body, signed, conn=conn)


def read_response(resp: http.client.HTTPResponse, method: str) -> Response:
    body = resp.read()
    names = [k.lower() for k, _ in resp.getheaders()]
    # Response headers are a plain dict on the server, each name spelled one way (shoal.http.response): a name
    # sent twice would be two spellings of one header.
    assert len(set(names)) == len(names), resp.getheaders()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    check_common_headers(resp.status, headers, body, method)
    return Response(resp.status, headers, body)


def check_common_headers(status: int, headers: dict[str, str], body: bytes, method: str) -> None:
    for name in ("x-amz-request-id", "x-amz-id-2", "date"):
        assert headers.get(name), f"{status} response without {name}: {headers}"
    assert "transfer-encoding" not in headers or method == "GET", headers
    if "transfer-encoding" not in headers and status not in (204, 304) and method != "HEAD":
        assert int(headers["content-length"]) == len(body), (headers, body[:200])
    if method == "HEAD" or status in (204, 304):
        assert body == b""
    if status >= 300 and method != "HEAD" and status != 304:
        assert headers.get("content-type", "").startswith("application/xml"), headers
        assert error_field(body, "RequestId") == headers["x-amz-request-id"], body


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """A request as it goes on the wire (HTTP/1.1), headers exactly as given."""
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n").encode() + body


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset ends it too: what came before it is kept). A timeout
    is raised: a server that neither answers nor closes is a failure."""
    out = bytearray()
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionError:
        pass
    return bytes(out)


def raw_exchange(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send bytes on a fresh socket, half-close, and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = bytearray()
        while chunk := s.recv(65536):
            out += chunk
        return bytes(out)
