"""The request entry point: route, authenticate, dispatch to a handler, render errors.

The front end (shoal.http.protocol) calls :meth:`S3App.handle` once per request and sends what it returns; no
framework router or middleware sits on the data path.
"""

from __future__ import annotations

import base64
import functools
import itertools
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from multidict import CIMultiDictProxy

from shoal.auth.identities import Identity
from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.authenticate import HeaderLists, RequestView, authenticate, expects_continue, needs_continue
from shoal.http.request import Request
from shoal.http.response import Response, StreamResponse
from shoal.http.routing import decode_path, resolve, split_path, split_target
from shoal.s3 import context, cors
from shoal.s3.service import S3Service

if TYPE_CHECKING:
    from shoal.metrics import Metrics  # imported by the server only when metrics are on (prometheus_client)

log = logging.getLogger("shoal.http")
access_log = logging.getLogger("shoal.access")

SERVER_NAME = "Shoal"
# Presigned URLs' signatures and credentials are not written to logs.
_SECRET_PARAMS = re.compile(r"((?:X-Amz-Signature|Signature|X-Amz-Credential|AWSAccessKeyId|X-Amz-Security-Token)=)"
                            r"[^&]*", re.IGNORECASE)
MAX_XML_BODY = 4 * 1024 * 1024


@dataclass(slots=True)
class S3Request:
    """One request as handlers see it."""

    http: Request
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
    stall_timeout: float | None = None  # seconds the client may stop reading a response body (--body-timeout)
    _names: str | None = field(default=None, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_names(self) -> str:
        """context.header_names of this request's headers, made once however many parsers ask."""
        names = self._names
        if names is None:
            names = self._names = context.header_names(self.headers)
        return names

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


def storage_full(exc: BaseException) -> bool:
    """A write failed for want of space (the blob files' file system, or SQLite's)."""
    import errno
    import sqlite3

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)


def xml_response(root: str, inner: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=xml.document(root, inner), status=status, headers=headers,
                        content_type="application/xml")


def error_document(error: S3Error, resource: str, request_id: str, host_id: str) -> bytes:
    inner = xml.el("Code", error.code) + xml.el("Message", xml.printable(error.message))
    inner += "".join(xml.el(k, xml.printable(v)) for k, v in error.extra.items())
    inner += xml.el("Resource", resource) + xml.el("RequestId", request_id) + xml.el("HostId", host_id)
    return xml.document("Error", inner, namespace=False)


_ID_PREFIX = os.urandom(4).hex().upper()  # this process's: ids stay unique across workers and restarts
_id_counter = itertools.count()


def new_request_id() -> str:
    """A 16-hex-digit x-amz-request-id, unique per process. Not random per request: os.urandom gives up the GIL,
    and taking it back behind busy threads cost ~10 µs a request under load."""
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08X}"


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, in order, percent-decoded."""
    if not raw_query:
        return []
    try:
        # Iterated in C: the items repeat from request to request (a presigned URL's X-Amz-* parameters, list
        # parameters), and a cached item costs no Python at all.
        return list(map(_query_item, filter(None, raw_query.split("&"))))
    except UnicodeDecodeError:
        raise S3Error("InvalidURI") from None


@functools.lru_cache(maxsize=512)  # at most 512 items of at most 16 KiB (the front end's limit on the target)
def _query_item(item: str) -> tuple[str, str]:
    name, _, value = item.partition("=")
    if "%" in item:
        return unquote(name, errors="strict"), unquote(value, errors="strict")
    return name, value


def _request_context(
    request: Request, view: RequestView, query: dict[str, str], signed: bool
) -> context.RequestContext:
    headers = request.headers  # case-insensitive: policy conditions look names up in lower case
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
        # Non-S3 APIs under a path prefix, any method: handler(app, request, raw_path, raw_query, cont) -> response.
        # Matched only for path-style requests (not when the Host names a bucket under --domain).
        self.prefix_routes: list[tuple[str, object]] = []
        self.in_flight = 0  # requests between their headers and their handler's answer
        self.requests_started = 0  # S3 and admin requests (not health checks or scrapes: see server._IdleTrim)
        self.draining = False  # shutting down: answer what is in flight, then close each connection
        self.body_timeout: float | None = None  # seconds a request body may stall (see shoal.http.body)
        self.metrics: Metrics | None = None  # told about every request

    async def handle(self, request: Request) -> StreamResponse:
        self.in_flight += 1
        try:
            response = await self._handle(request)
        finally:
            self.in_flight -= 1
            body, request.body = request.body, None
            # Part of the body was taken straight from the socket and the rest was not (the request failed
            # midway): the connection cannot carry another request.
            abandoned = body is not None and await body.abandon()
        if self.draining or abandoned:
            response.force_close()
        return response

    async def _handle(self, request: Request) -> StreamResponse:
        context.current.set(None)  # nothing from an earlier request on this connection carries over
        started = time.perf_counter()
        request_id = new_request_id()
        raw_path, _, raw_query = request.raw_path.partition("?")
        resource = raw_path
        operation = "-"
        status = 500
        cors_headers = self._cors_headers(request, raw_path) if "Origin" in request.headers else {}
        cont = expects_continue(request)
        try:
            special = self.extra_routes.get(raw_path)
            prefixed = self._prefix_route(request, raw_path) if self.prefix_routes else None
            response = None
            if special is not None and request.method in ("GET", "HEAD"):
                # A special route may decline (None): then the path is an S3 request after all.
                response = await special(request)  # type: ignore[operator]
                operation = getattr(special, "operation", "-")
            if response is not None:
                pass
            elif prefixed is not None:
                self.requests_started += 1
                response = await prefixed(self, request, raw_path, raw_query, cont)  # type: ignore[operator]
                operation = "Admin"
            else:
                self.requests_started += 1
                response, operation = await self._s3(request, request_id, raw_path, raw_query, cont,
                                                     cors_headers)
        except S3Error as exc:
            operation = request.operation if request.operation != "-" else operation
            response = self._error_response(request, exc, resource, request_id)
            if exc.code == "RequestTimeout":
                # The client stalled mid-body: answer, then close at once (never wait for the rest of its body).
                response.headers.update(self.common_headers(request_id))
                await self._answer_and_close(request, response)
                return response
        except Exception as exc:
            operation = request.operation if request.operation != "-" else operation
            if storage_full(exc):
                log.error("storage full in %s %s: %s", request.method, raw_path, exc)
                error = S3Error("ServiceUnavailable", "The server's storage is full; nothing was stored. Free space "
                                "(delete objects) or retry later.", headers={"Retry-After": "30"})
            else:
                log.exception("internal error in %s %s", request.method, raw_path)
                error = S3Error("InternalError")
            response = self._error_response(request, error, resource, request_id)
        if not response.prepared and "x-amz-request-id" not in response.headers:
            # Streamed responses, and handlers that merged req.response_headers, carry these already.
            response.headers.update(self.common_headers(request_id))
            for name, value in cors_headers.items():
                response.headers.setdefault(name, value)
        if cont.pending:
            # Answered without asking for the body. A client that holds its body back may still send it, or may
            # reuse the connection for its next request: either way the connection cannot carry another request,
            # and waiting for a body the client is not sending would only hold it up. With no body announced at
            # all, the 100 costs nothing and keeps the connection usable.
            if request.body_exists:
                await self._answer_and_close(request, response)
            elif not response.prepared:
                await cont()
        status = response.status
        metrics = self.metrics
        if metrics is not None or access_log.isEnabledFor(logging.INFO):
            elapsed = time.perf_counter() - started
            received = request.content_length or 0
            sent = (response.content_length or 0) if request.method != "HEAD" else 0
            if metrics is not None:
                metrics.observe(operation, status, elapsed, received, sent)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("%s %s %s %s %d %.1fms", request.remote, request.method, raw_path, operation, status,
                                elapsed * 1000, extra={"access": {
                                    "remote": request.remote, "method": request.method, "path": raw_path,
                                    "query": _SECRET_PARAMS.sub(r"\1***", raw_query),
                                    "operation": operation, "status": status,
                                    "duration_ms": round(elapsed * 1000, 3), "bytes_in": received, "bytes_out": sent,
                                    "request_id": request_id}})
        return response

    def _prefix_route(self, request: Request, raw_path: str):
        for prefix, handler in self.prefix_routes:
            if raw_path.startswith(prefix):
                host = request.headers.get("Host", "").rsplit(":", 1)[0].lower()
                if self.domain and host.endswith("." + self.domain):
                    return None  # virtual-hosted: the path is a key in that bucket
                return handler
        return None

    async def authenticate_plain(self, request: Request, raw_path: str, raw_query: str, cont):
        """(identity or None, body reader) for a non-S3 request signed like an S3 one (path-style)."""
        query_pairs = parse_query(raw_query)
        view = RequestView(request.method, raw_path, decode_path(raw_path), query_pairs, HeaderLists(request.headers),
                           None)
        identity, body = authenticate(request, view, self.service.identities, cont=cont)
        if needs_continue(body, cont):
            await cont()
        return identity, body

    @staticmethod
    async def _answer_and_close(request: Request, response: StreamResponse) -> None:
        response.force_close()
        try:
            if not response.prepared:
                await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            pass
        # Closing the transport flushes what was written first. Never linger for a body the client holds back
        # until it sees a 100 that never comes.
        request.protocol.force_close()

    def connection_error(self, error: S3Error) -> Response:
        """The answer to a request the front end could not parse (a malformed request line or header, a header
        section over the limits): an S3 XML error with our common headers, like any other."""
        request_id = new_request_id()
        return Response(status=error.status, body=error_document(error, "", request_id, self.host_id),
                        content_type="application/xml", headers=self.common_headers(request_id))

    def common_headers(self, request_id: str) -> dict[str, str]:
        return {"x-amz-request-id": request_id, "x-amz-id-2": self.host_id, "Server": SERVER_NAME}

    def _error_response(self, request: Request, exc: S3Error, resource: str, request_id: str):
        headers = dict(exc.headers)
        if exc.status == 304:
            return Response(status=exc.status, headers=headers)  # must not have a body
        body = error_document(exc, resource, request_id, self.host_id)
        if request.method == "HEAD":
            # HEAD never has a body; its Content-Length is that of the document a GET would have had.
            response = Response(status=exc.status, headers=headers, content_type="application/xml")
            response.headers["x-amz-error-code"] = exc.code
            response.headers["Content-Length"] = str(len(body))
            return response
        response = Response(status=exc.status, body=body, headers=headers, content_type="application/xml")
        if (exc.status in (400, 403, 411, 413) or exc.status >= 500) and request.body_exists \
                and not request.content.is_eof():
            # We refused before reading the body: do not try to read the rest of a possibly huge upload.
            response.force_close()
        return response

    def _cors_headers(self, request: Request, raw_path: str) -> dict[str, str]:
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
        self, request: Request, request_id: str, raw_path: str, raw_query: str, cont,
        cors_headers: dict[str, str],
    ):
        headers = request.headers
        query_pairs = parse_query(raw_query)
        query = dict(query_pairs)
        path = decode_path(raw_path)
        bucket, key = split_path(path, headers.get("Host", ""), self.domain)
        view = RequestView(request.method, raw_path, path, query_pairs, HeaderLists(headers),
                           bucket if self.domain and bucket and not raw_path.startswith(f"/{bucket}") else None)
        route = resolve(request.method, bucket, key, query, headers)
        request.operation = route.operation  # for metrics and the access log, should it fail
        if route.operation == "PreflightRequest":
            identity, body = None, None  # CORS preflight requests are never signed
        else:
            identity, body = authenticate(request, view, self.service.identities, cont=cont)
            if needs_continue(body, cont):
                await cont()
            if hasattr(body, "abandon"):
                request.body = body  # see handle()
            if hasattr(body, "timeout"):
                body.timeout = self.body_timeout  # type: ignore[union-attr]
        context.current.set(_request_context(request, view, query, identity is not None))
        handler = self.handlers.get(route.operation)
        if handler is None:
            raise S3Error("NotImplemented", f"{route.operation} is not implemented by Shoal yet.")
        common = self.common_headers(request_id)
        if cors_headers:
            common.update(cors_headers)
        s3req = S3Request(request, request.method, route.bucket, route.key, route.operation, query, headers,
                          identity, body, request_id, common, self.body_timeout)
        # The common headers (request id, CORS) reach a response the handler built without them in _handle.
        return await handler(self.service, s3req), route.operation
