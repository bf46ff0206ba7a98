"""AWS Signature Version 4: canonical requests, signing keys and signatures (pure functions, no HTTP).

See https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html. The functions work on
decoded values and re-encode them the way AWS canonicalises, so the result does not depend on how a client
chose to percent-encode its request line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress, starmap
from operator import itemgetter
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = {STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch
_UNRESERVED_OR_SLASH = re.compile(r"[A-Za-z0-9_.~/-]*").fullmatch


def uri_encode(value: str, *, keep_slash: bool = False) -> str:
    """AWS's URI encoding: every byte except A-Z a-z 0-9 - _ . ~ is percent-encoded (uppercase hex)."""
    if (_UNRESERVED_OR_SLASH if keep_slash else _UNRESERVED)(value) is not None:
        return value  # most values: nothing to encode (quote() costs ~3 µs even then)
    return _quote(value, "/~" if keep_slash else "~")


@lru_cache(maxsize=4096)
def _quote(value: str, safe: str) -> str:
    # Cached: the values that need encoding repeat from request to request (X-Amz-Credential has slashes).
    return quote(value, safe=safe)


@lru_cache(maxsize=8192)
def _encoded_pair(name: str, value: str) -> tuple[str, str]:
    # Cached: presigned URLs repeat their X-Amz-* parameters (all but the signature, which is never encoded).
    return uri_encode(name), uri_encode(value)


def canonical_query(params: Iterable[tuple[str, str]], *, skip: str | None = None) -> str:
    if skip is not None:
        params = list(params)
        params = compress(params, map(skip.__ne__, map(_NAME, params)))  # type: ignore[assignment]
    # All in C: the filter above, the cached encodings, the sort and the joins.
    return "&".join(map("=".join, sorted(starmap(_encoded_pair, params))))


_NAME = itemgetter(0)


# Whitespace that canonicalisation changes: any but a single inner space (str.split and re's \s agree on what
# whitespace is). Values without it, nearly all, are used as they are.
_UNTIDY = re.compile(r"^\s|\s$|\s\s|[^\S ]").search


def _tidy(value: str) -> str:
    if " " not in value and value.isprintable():
        return value  # no whitespace at all: every whitespace character but " " is unprintable
    return " ".join(value.split()) if _UNTIDY(value) else value


def canonical_headers(headers: Mapping[str, list[str]], signed: list[str]) -> str:
    lines = []
    for name in signed:
        values = headers.get(name, [])
        if len(values) == 1:
            lines.append(f"{name}:{_tidy(values[0])}\n")
        else:
            lines.append(f"{name}:{','.join(map(_tidy, values))}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, list[str]],
    signed_headers: list[str],
    payload_hash: str,
    *,
    skip_query: str | None = None,
    encoded_path: str | None = None,
) -> str:
    """``path`` is decoded and encoded the AWS way; ``encoded_path``, when given, is used exactly as it is."""
    return "\n".join(
        (
            method,
            uri_encode(path, keep_slash=True) if encoded_path is None else encoded_path,
            canonical_query(query, skip=skip_query),
            canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        )
    )


@dataclass(frozen=True, slots=True)
class Scope:
    date: str  # YYYYMMDD
    region: str
    service: str

    def __str__(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def string_to_sign(amz_date: str, scope: Scope, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


@lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    # Cached: deriving the key is four HMACs, and it changes only once a day per user and region.
    key = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, b"aws4_request", "sha256")


def sign(key: bytes, text: str) -> str:
    """HMAC-SHA256 of ``text`` under a signing key, as hex: RFC 2104 from the key's padded hash states, which are
    computed once per key (a signing key serves a user for a day). Copying two states takes ~40% fewer
    instructions than ``hmac.digest``, which sets OpenSSL's HMAC up from the key on every call; every request
    and every aws-chunked chunk signs once."""
    inner, outer = _hmac_states(key)
    h = inner.copy()
    h.update(text.encode("utf-8", "surrogateescape"))
    o = outer.copy()
    o.update(h.digest())
    return o.hexdigest()


@lru_cache(maxsize=1024)
def _hmac_states(key: bytes) -> tuple:
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in block)), hashlib.sha256(bytes(b ^ 0x5C for b in block)))


def signatures_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def chunk_string_to_sign(amz_date: str, scope: Scope, previous: str, chunk_sha256: str) -> str:
    return f"{ALGORITHM}-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{chunk_sha256}"


def trailer_string_to_sign(amz_date: str, scope: Scope, previous: str, trailer_sha256: str) -> str:
    return f"{ALGORITHM}-TRAILER\n{amz_date}\n{scope}\n{previous}\n{trailer_sha256}"


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    access_key: str
    scope: Scope
    signed_headers: list[str]
    signature: str


@lru_cache(maxsize=1024)  # presigned URLs and a client's requests of one day share their credential
def parse_credential(credential: str) -> tuple[str, Scope]:
    """``AKID/20250101/us-east-1/s3/aws4_request`` -> (AKID, scope). Raises ValueError."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or len(parts[1]) != 8 or not parts[1].isdigit():
        raise ValueError("malformed credential")
    return parts[0], Scope(parts[1], parts[2], parts[3])


def parse_authorization(header: str) -> ParsedAuthorization:
    """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``. Raises ValueError."""
    algorithm, _, rest = header.partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError("unsupported algorithm")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, value = item.strip().partition("=")
        if not eq:
            raise ValueError(f"malformed field {item!r}")
        fields[name] = value
    try:
        access_key, scope = parse_credential(fields["Credential"])
        names = fields["SignedHeaders"]
        signature = fields["Signature"]
    except KeyError as exc:
        raise ValueError(f"missing {exc.args[0]}") from None
    signed = names.split(";")
    if "" in signed or names != names.lower():  # no empty name, all lower case
        raise ValueError("malformed SignedHeaders")
    return ParsedAuthorization(access_key, scope, signed, signature)
