"""Authenticating a request: which identity signed it (or none), and a body reader that verifies the payload
the way the signature promised (hash, chunk signatures, trailers)."""

from __future__ import annotations

import calendar
import functools
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from multidict import CIMultiDictProxy

from shoal.auth import sigv2, sigv4
from shoal.auth.identities import Identity, IdentityStore
from shoal.errors import S3Error
from shoal.http.body import ChunkedBody, ChunkSigner, EmptyBody, PlainBody, _Continue
from shoal.http.request import Request

MAX_SKEW_SECONDS = 15 * 60
_SHA256_HEX = re.compile(r"[0-9a-f]{64}").fullmatch
MAX_PRESIGN_SECONDS = 7 * 24 * 3600


class HeaderLists(Mapping[str, list[str]]):
    """A request's headers as ``{lower-case name: [values]}``, looked up in the request's case-insensitive multidict:
    signing reads a few headers by name, so the whole grouped dict is built only when iterated (V2 signing)."""

    __slots__ = ("_grouped", "_headers")

    def __init__(self, headers: CIMultiDictProxy[str]) -> None:
        self._headers = headers
        self._grouped: dict[str, list[str]] | None = None

    def get(self, name: str, default=None):  # type: ignore[override]
        return self._headers.getall(name, default)

    def __getitem__(self, name: str) -> list[str]:
        return self._headers.getall(name)

    def __contains__(self, name: object) -> bool:
        return name in self._headers

    def _all(self) -> dict[str, list[str]]:
        if self._grouped is None:
            grouped: dict[str, list[str]] = {}
            for name, value in self._headers.items():
                grouped.setdefault(name.lower(), []).append(value)
            self._grouped = grouped
        return self._grouped

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def items(self):  # type: ignore[override]
        return self._all().items()


@dataclass(slots=True)
class RequestView:
    """The parts of an HTTP request that signatures cover, decoded once."""

    method: str
    raw_path: str  # path as sent, percent-encoded, without the query
    path: str  # decoded path
    query_pairs: list[tuple[str, str]]  # decoded, in order
    headers: Mapping[str, list[str]]  # lower-case names (a HeaderLists)
    bucket_from_host: str | None


@functools.lru_cache(maxsize=1024)  # presigned URLs and bursts of requests share their dates
def parse_amz_date(value: str) -> float:
    """``20250101T000000Z`` -> epoch seconds. Raises ValueError."""
    return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))


def _parse_any_date(value: str) -> float:
    from email.utils import parsedate_to_datetime

    try:
        return parse_amz_date(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header") from None


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _lookup(identities: IdentityStore, access_key: str) -> Identity:
    identity = identities.get(access_key)
    if identity is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return identity


def _check_skew(request_time: float, now: float) -> None:
    if abs(now - request_time) > MAX_SKEW_SECONDS:
        raise S3Error("RequestTimeTooSkewed", RequestTime=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(request_time)),
                      ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                      MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000))


def _content_length(request: Request) -> int | None:
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        raise S3Error("InvalidArgument", "Content-Length is not a number.") from None
    if n < 0:
        raise S3Error("InvalidArgument", "Content-Length is negative.")
    return n


def _has_body(request: Request) -> bool:
    return request.body_exists


def _plain_body(request: Request, expected_sha256: str | None, cont: _Continue):
    length = _content_length(request)
    if length == 0 or not _has_body(request):
        if expected_sha256 is not None and expected_sha256 != sigv4.EMPTY_SHA256:
            return _EmptyChecked(expected_sha256)
        return EmptyBody()
    return PlainBody(request.content, length, expected_sha256, cont)


class _EmptyChecked(EmptyBody):
    wants_sha256 = True

    def __init__(self, expected: str) -> None:
        self._expected = expected

    def check_sha256(self, hexdigest: str) -> None:
        if hexdigest != self._expected:
            raise S3Error("XAmzContentSHA256Mismatch", ClientComputedContentSHA256=self._expected,
                          S3ComputedContentSHA256=hexdigest)


def _body_for_payload(
    request: Request, view: RequestView, payload: str, signer: ChunkSigner | None, cont: _Continue
):
    if payload in sigv4.STREAMING_MODES:
        decoded = _first(view.headers, "x-amz-decoded-content-length")
        length = None
        if decoded is not None:
            try:
                length = int(decoded)
            except ValueError:
                raise S3Error("InvalidArgument", "x-amz-decoded-content-length is not a number.") from None
        elif _content_length(request) is None and request.method == "PUT":
            raise S3Error("MissingContentLength")
        use_signer = signer if payload != sigv4.STREAMING_UNSIGNED_TRAILER else None
        return ChunkedBody(request.content, length, use_signer, payload != sigv4.STREAMING_SIGNED, cont,
                           _content_length(request) if _has_body(request) else None)
    if payload == sigv4.UNSIGNED_PAYLOAD:
        return _plain_body(request, None, cont)
    if _SHA256_HEX(payload) is None:
        raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-..., or a "
                      "SHA-256 hex digest.", ArgumentName="x-amz-content-sha256", ArgumentValue=payload)
    return _plain_body(request, payload, cont)


def expects_continue(request: Request) -> _Continue:
    expect = request.headers.get("Expect")
    if expect is None or request.version == (1, 0):
        return _NO_CONTINUE  # most requests: nothing to send, ever (and HTTP/1.0 has no 100 Continue: RFC 9110)
    return _Continue(request.protocol, expect.strip().lower() == "100-continue")


_NO_CONTINUE = _Continue(None, False)


def authenticate(
    request: Request, view: RequestView, identities: IdentityStore, now: float | None = None,
    cont: _Continue | None = None,
) -> tuple[Identity | None, object]:
    """(identity or None for anonymous, body). Raises S3Error when a signature is present but wrong. A plain
    function (most requests have nothing to wait for): when ``needs_continue(body, cont)``, the caller awaits
    ``cont()``."""
    cont = cont or expects_continue(request)
    return _authenticate(request, view, identities, time.time() if now is None else now, cont)


def needs_continue(body: object, cont: _Continue) -> bool:
    """The request has no body to read, and its client waits for 100 Continue: answer the expectation now. A
    final response without a preceding 100 would also be legal, but botocore then keeps the early status line
    around for the next request on the connection and misreads that request's response."""
    return cont.pending and isinstance(body, EmptyBody)


def _authenticate(request: Request, view: RequestView, identities: IdentityStore, now: float, cont: _Continue):
    authorization = _first(view.headers, "authorization")
    query = dict(view.query_pairs)
    if authorization is not None:
        if authorization.startswith(sigv4.ALGORITHM):
            return _v4_header(request, view, identities, authorization, now, cont)
        if authorization.startswith("AWS "):
            return _v2_header(request, view, identities, authorization, now, cont)
        raise S3Error("InvalidArgument", "Unsupported Authorization Type", ArgumentName="Authorization",
                      ArgumentValue=authorization.split(" ", 1)[0])
    if "X-Amz-Algorithm" in query or "X-Amz-Signature" in query:
        return _v4_query(request, view, identities, query, now, cont)
    if "Signature" in query and "AWSAccessKeyId" in query:
        return _v2_query(request, view, identities, query, now, cont)
    payload = _first(view.headers, "x-amz-content-sha256") or sigv4.UNSIGNED_PAYLOAD
    return None, _body_for_payload(request, view, payload, None, cont)


def _v4_header(request, view: RequestView, identities, authorization: str, now: float, cont):
    try:
        parsed = sigv4.parse_authorization(authorization)
    except ValueError as exc:
        raise S3Error("AuthorizationHeaderMalformed", f"The authorization header is malformed; {exc}.") from None
    identity = _lookup(identities, parsed.access_key)
    amz_date = _first(view.headers, "x-amz-date")
    if amz_date is None:
        date_header = _first(view.headers, "date")
        if date_header is None:
            raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
        request_time = _parse_any_date(date_header)
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(request_time))
    else:
        try:
            request_time = parse_amz_date(amz_date)
        except ValueError:
            raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header") from None
    _check_skew(request_time, now)
    if parsed.scope.date != amz_date[:8]:
        raise S3Error("AuthorizationHeaderMalformed", f"The authorization header is malformed; Invalid credential "
                      f"date \"{parsed.scope.date}\". This date is not the same as X-Amz-Date: \"{amz_date[:8]}\".")
    if "host" not in parsed.signed_headers:
        raise S3Error("AccessDenied", "The host header must be signed.")
    payload = _first(view.headers, "x-amz-content-sha256")
    if payload is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
    key = sigv4.signing_key(identity.secret_key, parsed.scope.date, parsed.scope.region, parsed.scope.service)
    if not _v4_signature_matches(view, key, amz_date, parsed.scope, parsed.signed_headers, payload,
                                 parsed.signature):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=parsed.access_key)
    signer = ChunkSigner(key, amz_date, parsed.scope, parsed.signature)
    return identity, _body_for_payload(request, view, payload, signer, cont)


def _v4_signature_matches(view: RequestView, key: bytes, amz_date: str, scope: sigv4.Scope, signed_headers: list[str],
                          payload: str, given: str, skip_query: str | None = None) -> bool:
    """Does ``given`` sign this request? The canonical URI is the path encoded the AWS way; a client that signed
    the path exactly as it sent it, encoded some other way (``%2F`` for a slash inside a key, lower-case hex,
    ``%2E``), signed the same request, so that is accepted too."""
    aws_encoded = sigv4.uri_encode(view.path, keep_slash=True)
    encodings = [aws_encoded] if view.raw_path == aws_encoded else [aws_encoded, view.raw_path]
    for encoded_path in encodings:
        canonical = sigv4.canonical_request(view.method, view.path, view.query_pairs, view.headers, signed_headers,
                                            payload, skip_query=skip_query, encoded_path=encoded_path)
        expected = sigv4.sign(key, sigv4.string_to_sign(amz_date, scope, canonical))
        if sigv4.signatures_match(expected, given):
            return True
    return False


@dataclass(slots=True, frozen=True)
class _PresignedURL:
    """What a verified presigned URL said, for its next use (see _v4_query)."""

    access_key: str
    secret_key: str  # the secret it verified under: a changed key verifies again
    request_time: float
    expires: int
    payload: str


# Presigned URLs that verified, by everything their signature covers. Lazy loaders, browsers and CDNs fetch
# one URL again and again (range after range); each use then skips the canonical request, its SHA-256 and the
# HMAC, ~12% of a small GET's instructions. Every use still checks the time window and the access key. Bounded:
# at most _PRESIGNED_MAX URLs, each remembered only if its target and signed header values come to at most
# _PRESIGNED_MAX_KEY characters (~16 MiB in all), emptied when full. (Any key holder can fill it, so the bound
# counts everything a key keeps: a head may carry 1 MiB of signed headers.)
_presigned: dict[tuple, _PresignedURL] = {}
_PRESIGNED_MAX = 4096
_PRESIGNED_MAX_KEY = 4096


def _v4_query(request, view: RequestView, identities, query: dict[str, str], now: float, cont):
    memo = None
    target = request.raw_path
    signed = query.get("X-Amz-SignedHeaders")
    if len(target) <= _PRESIGNED_MAX_KEY and signed is not None:
        # The method and the request target (path and query, as sent) are signed, and so are the values of the
        # signed headers; the x-amz-content-sha256 header may stand in for an unsigned query's payload.
        headers = view.headers
        payload_header = _first(headers, "x-amz-content-sha256")
        values = [tuple(headers.get(name, ())) for name in signed.split(";")]
        size = len(target) + len(payload_header or "") + sum(len(v) for value in values for v in value)
        if size <= _PRESIGNED_MAX_KEY:
            memo = (request.method, target, payload_header, *values)
    if memo is not None:
        known = _presigned.get(memo)
        if known is not None:
            identity = _lookup(identities, known.access_key)
            if identity.secret_key == known.secret_key:
                _check_presigned_time(known.request_time, known.expires, now)
                return identity, _body_for_payload(request, view, known.payload, None, cont)
    identity, verified = _verify_presigned(view, identities, query, now)
    body = _body_for_payload(request, view, verified.payload, None, cont)
    if memo is not None:
        if len(_presigned) >= _PRESIGNED_MAX:
            _presigned.clear()
        _presigned[memo] = verified
    return identity, body


def _check_presigned_time(request_time: float, expires: int, now: float) -> None:
    if request_time - now > MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "Request is not valid yet")
    if now > request_time + expires:
        raise S3Error("AccessDenied", "Request has expired", Expires=time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(request_time + expires)), ServerTime=time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))


def _verify_presigned(view: RequestView, identities, query: dict[str, str], now: float
                      ) -> tuple[Identity, _PresignedURL]:
    if query.get("X-Amz-Algorithm") != sigv4.ALGORITHM:
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
    try:
        access_key, scope = sigv4.parse_credential(query["X-Amz-Credential"])
        amz_date = query["X-Amz-Date"]
        request_time = parse_amz_date(amz_date)
        expires = int(query["X-Amz-Expires"])
        signed_headers = query["X-Amz-SignedHeaders"].split(";")
        signature = query["X-Amz-Signature"]
    except (KeyError, ValueError):
        raise S3Error("AuthorizationQueryParametersError", "Query-string authentication version 4 requires the "
                      "X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                      "X-Amz-Expires parameters.") from None
    if expires < 0:
        raise S3Error("AccessDenied", "X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_SECONDS:
        raise S3Error("AccessDenied", "X-Amz-Expires must be less than a week (in seconds) that is; 604800")
    identity = _lookup(identities, access_key)
    _check_presigned_time(request_time, expires, now)
    if scope.date != amz_date[:8]:
        raise S3Error("AuthorizationQueryParametersError", "Invalid credential date.")
    payload = (query.get("X-Amz-Content-Sha256") or _first(view.headers, "x-amz-content-sha256")
               or sigv4.UNSIGNED_PAYLOAD)
    key = sigv4.signing_key(identity.secret_key, scope.date, scope.region, scope.service)
    signed_payload = payload if payload in (sigv4.UNSIGNED_PAYLOAD,) or len(payload) == 64 else sigv4.UNSIGNED_PAYLOAD
    if not _v4_signature_matches(view, key, amz_date, scope, signed_headers, signed_payload, signature,
                                 skip_query="X-Amz-Signature"):
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key)
    return identity, _PresignedURL(access_key, identity.secret_key, request_time, expires, payload)


def _v2_header(request, view: RequestView, identities, authorization: str, now: float, cont):
    credentials = authorization[4:].strip()
    access_key, sep, signature = credentials.rpartition(":")
    if not sep or not access_key:
        raise S3Error("InvalidArgument", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature")
    identity = _lookup(identities, access_key)
    amz_date = _first(view.headers, "x-amz-date")
    date_header = _first(view.headers, "date")
    if not (amz_date if amz_date is not None else date_header):
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    request_time = _parse_any_date(amz_date if amz_date is not None else date_header or "")
    if request_time < 0:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    _check_skew(request_time, now)
    date_value = "" if amz_date else (date_header or "")
    _check_v2(view, identity, view.query_pairs, date_value, signature)
    return identity, _plain_body(request, None, cont)


def _v2_resource_paths(view: RequestView) -> list[str]:
    """Bucket-level requests: AWS signs ``/bucket/``, some clients ``/bucket``; both name the same resource."""
    path = view.raw_path or "/"
    if view.bucket_from_host is None and path.count("/") == 1 and len(path) > 1:
        return [path + "/", path]
    return [path]


def _check_v2(view: RequestView, identity: Identity, pairs, date_value: str, signature: str) -> None:
    for path in _v2_resource_paths(view):
        resource = sigv2.canonical_resource(view.bucket_from_host, path, pairs)
        text = sigv2.string_to_sign(view.method, view.headers, date_value, resource)
        if sigv4.signatures_match(sigv2.sign(identity.secret_key, text), signature):
            return
    raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=identity.access_key)


def _v2_query(request, view: RequestView, identities, query: dict[str, str], now: float, cont):
    identity = _lookup(identities, query["AWSAccessKeyId"])
    try:
        expires = int(query.get("Expires", ""))
    except ValueError:
        raise S3Error("AccessDenied", "Query-string authentication requires the Expires parameter") from None
    if now > expires:
        raise S3Error("AccessDenied", "Request has expired")
    pairs = [(k, v) for k, v in view.query_pairs if k not in ("Signature", "AWSAccessKeyId", "Expires")]
    _check_v2(view, identity, pairs, str(expires), query["Signature"])
    return identity, _plain_body(request, None, cont)
