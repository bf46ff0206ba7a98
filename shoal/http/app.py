"""The request entry point: route, authenticate, dispatch to a handler, render errors.

aiohttp's low-level server calls :meth:`S3App.handle` once per request; no framework router or middleware
sits on the data path.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDictProxy

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.authenticate import RequestView, authenticate
from shoal.http.routing import resolve, split_target
from shoal.s3 import context, cors
from shoal.s3.service import S3Service

log = logging.getLogger("shoal.http")
access_log = logging.getLogger("shoal.access")

SERVER_NAME = "Shoal"
MAX_XML_BODY = 4 * 1024 * 1024


@dataclass(slots=True)
class S3Request:
    """One request as handlers see it."""

    http: web.BaseRequest
    method: str
    bucket: str | None
    key: str | None
    operation: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    identity: Identity | None
    body: object
    request_id: str
    response_headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    async def read_body(self, limit: int = MAX_XML_BODY) -> bytes:
        """The whole (small) request body, for XML documents; verified like any payload."""
        import hashlib

        body = self.body
        chunks: list[bytes] = []
        total = 0
        digest = hashlib.sha256() if body.wants_sha256 else None  # type: ignore[attr-defined]
        while chunk := await body.read():  # type: ignore[attr-defined]
            total += len(chunk)
            if total > limit:
                raise S3Error("MalformedXML", "The XML you provided was larger than the maximum allowed size.")
            if digest is not None:
                digest.update(chunk)
            chunks.append(chunk)
        if digest is not None:
            body.check_sha256(digest.hexdigest())  # type: ignore[attr-defined]
        data = b"".join(chunks)
        md5 = self.headers.get("Content-MD5")
        if md5 is not None:
            from shoal.s3.ingest import check_content_md5

            check_content_md5(md5, hashlib.md5(data).digest())
        return data


def xml_response(root: str, inner: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=xml.document(root, inner), status=status, headers=headers,
                        content_type="application/xml")


def error_document(error: S3Error, resource: str, request_id: str) -> bytes:
    inner = xml.el("Code", error.code) + xml.el("Message", error.message)
    inner += "".join(xml.el(k, v) for k, v in error.extra.items())
    inner += xml.el("Resource", resource) + xml.el("RequestId", request_id) + xml.el("HostId", request_id)
    return xml.document("Error", inner, namespace=False)


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    if not raw_query:
        return pairs
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        try:
            pairs.append((unquote(name, errors="strict"), unquote(value, errors="strict")))
        except UnicodeDecodeError:
            raise S3Error("InvalidURI") from None
    return pairs


def _request_context(
    request: web.BaseRequest, view: RequestView, query: dict[str, str], signed: bool
) -> context.RequestContext:
    headers = {name: values[0] for name, values in view.headers.items()}
    version = auth_type = None
    if signed:
        authorization = headers.get("authorization", "")
        if authorization:
            auth_type = "REST-HEADER"
            version = "AWS" if authorization.startswith("AWS ") else "AWS4-HMAC-SHA256"
        else:
            auth_type = "REST-QUERY-STRING"
            version = "AWS4-HMAC-SHA256" if "X-Amz-Algorithm" in query else "AWS"
    return context.RequestContext(request.remote, request.secure, headers, query, version, auth_type)


class S3App:
    def __init__(self, service: S3Service, *, domain: str | None = None, region: str = "us-east-1") -> None:
        from shoal.http.handlers import HANDLERS

        self.service = service
        self.domain = domain
        self.region = region
        self.handlers = HANDLERS
        self.host_id = base64.b64encode(os.urandom(24)).decode()
        self.extra_routes: dict[str, object] = {}

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = os.urandom(8).hex().upper()
        raw_path, _, raw_query = request.raw_path.partition("?")
        resource = raw_path
        operation = "-"
        status = 500
        cors_headers = self._cors_headers(request, raw_path) if "Origin" in request.headers else {}
        try:
            special = self.extra_routes.get(raw_path)
            if special is not None and request.method in ("GET", "HEAD"):
                response = await special(request)  # type: ignore[operator]
            else:
                response, operation = await self._s3(request, request_id, raw_path, raw_query, cors_headers)
        except S3Error as exc:
            response = self._error_response(request, exc, resource, request_id)
        except Exception:
            log.exception("internal error in %s %s", request.method, raw_path)
            response = self._error_response(request, S3Error("InternalError"), resource, request_id)
        if not response.prepared:  # streamed responses set these themselves before sending headers
            response.headers.update(self.common_headers(request_id))
            for name, value in cors_headers.items():
                response.headers.setdefault(name, value)
            if not request.body_exists and request.headers.get("Expect", "").lower() == "100-continue":
                # No body to ask for, so no body read ever sent "100 Continue" (the RFC lets us skip it). But
                # botocore, having seen a final response instead, keeps expecting that status line on this
                # connection and misreads its next response: send the interim response anyway.
                try:
                    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                except ConnectionError:
                    pass
            elif request.body_exists and not request.content.is_eof():
                # Answered without reading the whole body (an early refusal, often before a client waiting on
                # "Expect: 100-continue" sent any of it): the connection cannot carry another request, since
                # its next bytes may be the rest of this body or the client's next request.
                response.force_close()
        status = response.status
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("%s %s %s %s %d %.1fms", request.remote, request.method, raw_path, operation, status,
                            (time.perf_counter() - started) * 1000)
        return response

    def common_headers(self, request_id: str) -> dict[str, str]:
        return {"x-amz-request-id": request_id, "x-amz-id-2": self.host_id, "Server": SERVER_NAME}

    def _error_response(self, request: web.BaseRequest, exc: S3Error, resource: str, request_id: str):
        headers = dict(exc.headers)
        if exc.status == 304 or request.method == "HEAD":
            # No body: HEAD never has one, and 304 must not. The status (and headers) tell the story.
            response = web.Response(status=exc.status, headers=headers)
            if request.method == "HEAD" and exc.status != 304:
                response.headers["x-amz-error-code"] = exc.code
            return response
        body = error_document(exc, resource, request_id)
        return web.Response(status=exc.status, body=body, headers=headers, content_type="application/xml")

    def _cors_headers(self, request: web.BaseRequest, raw_path: str) -> dict[str, str]:
        """CORS headers for an actual (non-preflight) request from a browser, per the bucket's rules."""
        if request.method == "OPTIONS":
            return {}
        try:
            bucket_name, _ = split_target(raw_path, request.headers.get("Host", ""), self.domain)
        except S3Error:
            return {}
        bucket = self.service.storage.meta.get_bucket(bucket_name) if bucket_name else None
        rules = cors.rules_of(bucket, self.service.default_cors)
        method = request.headers.get("Access-Control-Request-Method", request.method)
        return cors.actual_headers(rules, request.headers["Origin"], method)

    async def _s3(
        self, request: web.BaseRequest, request_id: str, raw_path: str, raw_query: str, cors_headers: dict[str, str]
    ):
        headers = request.headers
        query_pairs = parse_query(raw_query)
        query = dict(query_pairs)
        bucket, key = split_target(raw_path, headers.get("Host", ""), self.domain)
        view_headers: dict[str, list[str]] = {}
        for name, value in headers.items():
            view_headers.setdefault(name.lower(), []).append(value)
        path = unquote(raw_path)
        view = RequestView(request.method, raw_path, path, query_pairs, view_headers,
                           bucket if self.domain and bucket and not raw_path.startswith(f"/{bucket}") else None)
        route = resolve(request.method, bucket, key, query, headers)
        if route.operation == "PreflightRequest":
            identity, body = None, None
        else:
            identity, body = await authenticate(request, view, self.service.identities)
        context.current.set(_request_context(request, view, query, identity is not None))
        handler = self.handlers.get(route.operation)
        if handler is None:
            raise S3Error("NotImplemented", f"{route.operation} is not implemented by Shoal yet.")
        s3req = S3Request(request, request.method, route.bucket, route.key, route.operation, query, headers,
                          identity, body, request_id, self.common_headers(request_id) | cors_headers)
        response = await handler(self.service, s3req)
        if not response.prepared:
            for name, value in s3req.response_headers.items():
                response.headers.setdefault(name, value)
        return response, route.operation
