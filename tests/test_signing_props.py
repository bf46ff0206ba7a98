"""Property tests of the pure parts: SigV4 against botocore's implementation, Authorization parsing, the
aws-chunked decoder, byte ranges and conditional requests against small independent models."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import random
import zlib
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from shoal.auth import sigv4
from shoal.errors import S3Error
from shoal.http import body as body_module
from shoal.http.body import ChunkedBody, ChunkSigner, _Continue
from shoal.s3.conditions import Conditions, evaluate
from shoal.s3.objects import parse_range

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CREDS = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
WHEN = datetime.datetime(2025, 3, 14, 15, 9, 26)

# -- SigV4 agrees with botocore --------------------------------------------------------------------------------

# Any text at all for keys and query values (but no surrogates: those are not UTF-8).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
segment = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="/"), min_size=1, max_size=10)
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).filter(
    lambda v: v.strip() != "")
LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
header_name = st.text(LOWER, min_size=1, max_size=8).map(lambda s: "x-amz-meta-" + s)


@st.composite
def requests(draw):
    method = draw(st.sampled_from(["GET", "PUT", "HEAD", "DELETE", "POST"]))
    path = "/" + "/".join(draw(st.lists(segment, min_size=1, max_size=4)))
    if draw(st.booleans()):
        path += "/"
    params = draw(st.dictionaries(text.filter(bool), text, max_size=4))
    headers = draw(st.dictionaries(header_name, header_value, max_size=4))
    body = draw(st.binary(max_size=64))
    return method, path, params, headers, body


def _shoal_signature(method, path, query_pairs, headers, signed, payload, amz_date, credential, skip=None):
    access_key, scope = sigv4.parse_credential(credential)
    assert access_key == CREDS[0]
    lower: dict[str, list[str]] = {}
    for name, value in headers.items():
        lower.setdefault(name.lower(), []).append(value)
    canonical = sigv4.canonical_request(method, path, query_pairs, lower, signed, payload, skip_query=skip)
    key = sigv4.signing_key(CREDS[1], scope.date, scope.region, scope.service)
    return sigv4.sign(key, sigv4.string_to_sign(amz_date, scope, canonical))


@SETTINGS
@given(requests())
@example(("GET", "/bucket/a b+c~d*e'(f)!/", {"list-type": "2", "prefix": "a/b c", "empty": ""}, {}, b""))
@example(("PUT", "/b/ünï/😀/%41", {"x": "=&?/"}, {"x-amz-meta-a": "  two   spaces  "}, b"data"))
def test_header_signature_matches_botocore(req):
    method, path, params, headers, body = req
    url = "http://127.0.0.1:9000" + quote(path, safe="/~")
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers), params=params)
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        S3SigV4Auth(Credentials(*CREDS), "s3", "us-east-1").add_auth(request)
    auth = sigv4.parse_authorization(request.headers["Authorization"])
    sent = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    sent["host"] = "127.0.0.1:9000"
    ours = _shoal_signature(method, path, list(params.items()), sent, auth.signed_headers,
                            sent["X-Amz-Content-SHA256"], sent["X-Amz-Date"],
                            request.headers["Authorization"].split("Credential=")[1].split(",")[0])
    assert ours == auth.signature
    assert sigv4.signatures_match(ours, auth.signature)
    # And one changed byte anywhere in what is signed gives another signature.
    other = _shoal_signature(method, path + "x", list(params.items()), sent, auth.signed_headers,
                             sent["X-Amz-Content-SHA256"], sent["X-Amz-Date"],
                             request.headers["Authorization"].split("Credential=")[1].split(",")[0])
    assert other != auth.signature


@SETTINGS
@given(requests(), st.integers(1, 604800))
def test_presigned_signature_matches_botocore(req, expires):
    method, path, params, _headers, _body = req
    url = "http://127.0.0.1:9000" + quote(path, safe="/~")
    request = AWSRequest(method=method, url=url, params=dict(params))
    with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
        S3SigV4QueryAuth(Credentials(*CREDS), "s3", "us-east-1", expires=expires).add_auth(request)
    prepared = request.prepare()
    from urllib.parse import parse_qsl, urlsplit

    query = parse_qsl(urlsplit(prepared.url).query, keep_blank_values=True)
    q = dict(query)
    assert q["X-Amz-Expires"] == str(expires)
    ours = _shoal_signature(method, path, query, {"host": "127.0.0.1:9000"}, q["X-Amz-SignedHeaders"].split(";"),
                            sigv4.UNSIGNED_PAYLOAD, q["X-Amz-Date"], q["X-Amz-Credential"], skip="X-Amz-Signature")
    assert ours == q["X-Amz-Signature"]


def test_signing_key_matches_the_aws_documentation_example():
    # The worked example of https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request
    key = sigv4.signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


@SETTINGS
@given(st.binary(max_size=130),
       st.text(st.one_of(st.characters(exclude_categories=("Cs",)),
                         st.sampled_from([chr(c) for c in range(0xDC80, 0xDD00)])), max_size=300))
def test_sign_is_hmac_sha256(key, text):
    """sigv4.sign computes HMAC from cached padded states: it must equal the standard HMAC for any key (keys
    longer than a block are hashed first) and any text, with the surrogates that stand for undecodable bytes in
    request headers."""
    expected = hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()
    assert sigv4.sign(key, text) == expected
    assert sigv4.sign(key, text) == expected  # again, from the cached states


@SETTINGS
@given(st.text(st.sampled_from(" a\t\xa0\u2003b\x0b\x1c\x85\u3000"), max_size=10))
def test_header_values_are_tidied_as_aws_does(value):
    """Canonical header values: whitespace trimmed and runs of it collapsed to one space, as botocore does it
    (" ".join(value.split())); shoal skips the work for values that need none."""
    assert sigv4.canonical_headers({"x-amz-meta-v": [value]}, ["x-amz-meta-v"]) == \
        f"x-amz-meta-v:{' '.join(value.split())}\n"


# -- Authorization header parsing -------------------------------------------------------------------------------

token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/,= "), min_size=1,
                max_size=20)


@SETTINGS
@given(access_key=token, date=st.integers(0, 99999999).map("{:08d}".format), region=token, service=token,
       signed=st.lists(st.text(LOWER + "-", min_size=1, max_size=12), min_size=1, max_size=6, unique=True),
       signature=st.binary(min_size=32, max_size=32).map(bytes.hex),
       separator=st.sampled_from([",", ", ", " , ", ",  "]))
def test_parse_authorization_round_trips(access_key, date, region, service, signed, signature, separator):
    header = (f"AWS4-HMAC-SHA256 Credential={access_key}/{date}/{region}/{service}/aws4_request{separator}"
              f"SignedHeaders={';'.join(signed)}{separator}Signature={signature}")
    parsed = sigv4.parse_authorization(header)
    assert parsed.access_key == access_key
    assert (parsed.scope.date, parsed.scope.region, parsed.scope.service) == (date, region, service)
    assert str(parsed.scope) == f"{date}/{region}/{service}/aws4_request"
    assert parsed.signed_headers == signed
    assert parsed.signature == signature


@SETTINGS
@given(st.text(max_size=200))
@example("AWS4-HMAC-SHA256 ")
@example("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=, Signature=x")
@example("AWS4-HMAC-SHA256 Credential=a/20250101/r/s/aws4_request, SignedHeaders=Host, Signature=x")
def test_parse_authorization_fails_only_with_value_error(header):
    try:
        parsed = sigv4.parse_authorization(header)
    except ValueError:
        return
    assert len(parsed.scope.date) == 8 and parsed.scope.date.isdigit()
    assert all(h and h == h.lower() for h in parsed.signed_headers)


@SETTINGS
@given(st.text(max_size=60))
def test_parse_authorization_fuzzed_prefix(rest):
    try:
        sigv4.parse_authorization("AWS4-HMAC-SHA256 " + rest)
    except ValueError:
        pass


# -- the aws-chunked decoder ------------------------------------------------------------------------------------


class _Protocol:
    """What the body stream (shoal.http.stream) needs from its connection."""

    connected = True
    _reading_paused = False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


SCOPE = sigv4.Scope("20250314", "us-east-1", "s3")
AMZ_DATE = "20250314T150926Z"
SEED = hashlib.sha256(b"seed").hexdigest()


def _key(secret: str = CREDS[1]) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (SCOPE.date, SCOPE.region, SCOPE.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def encode_chunked(chunks: list[bytes], *, signed: bool, trailer: tuple[str, str] | None = None) -> bytes:
    """The encoding, per the AWS documents, written independently of the server's code."""
    out = bytearray()
    previous = SEED
    key = _key()
    for chunk in [*chunks, b""]:
        if signed:
            to_sign = "\n".join(("AWS4-HMAC-SHA256-PAYLOAD", AMZ_DATE, str(SCOPE), previous,
                                 hashlib.sha256(b"").hexdigest(), hashlib.sha256(chunk).hexdigest()))
            previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode()
        else:
            out += f"{len(chunk):x}\r\n".encode()
        if chunk:
            out += chunk + b"\r\n"
    if trailer is not None:
        out += f"{trailer[0]}:{trailer[1]}\r\n".encode()
        if signed:
            digest = hashlib.sha256(f"{trailer[0]}:{trailer[1]}\n".encode()).hexdigest()
            to_sign = "\n".join(("AWS4-HMAC-SHA256-TRAILER", AMZ_DATE, str(SCOPE), previous, digest))
            out += f"x-amz-trailer-signature:{hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def decode_chunked(encoded: bytes, cuts: list[int], *, signed: bool, trailer: bool,
                   length: int | None, into: int | None = None, wire: int | None = None,
                   fill: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Run ChunkedBody over ``encoded`` delivered in pieces split at ``cuts``, taken with read() or, given
    ``into``, with readinto() of a buffer that size (as uploads of a declared length do); raises what it raises.
    ``wire``: the encoded length the request declared (Content-Length), so the body is received in fills of its
    own (at most ``fill`` bytes each) rather than read from the stream as it comes."""
    from shoal.http.stream import BodyStream

    if fill is not None:
        saved = body_module.MAX_READ, body_module.MIN_FILL
        body_module.MAX_READ = body_module.MIN_FILL = fill
        try:
            return decode_chunked(encoded, cuts, signed=signed, trailer=trailer, length=length, into=into, wire=wire)
        finally:
            body_module.MAX_READ, body_module.MIN_FILL = saved

    async def run():
        stream = BodyStream(_Protocol(), 2**16, asyncio.get_running_loop())
        signer = ChunkSigner(_key(), AMZ_DATE, SCOPE, SEED) if signed else None
        body = ChunkedBody(stream, length, signer, trailer, _Continue(None, False), wire)
        points = sorted({c for c in cuts if 0 < c < len(encoded)})

        async def feed():
            start = 0
            for point in [*points, len(encoded)]:
                stream.feed_data(encoded[start:point])
                start = point
                await asyncio.sleep(0)
            stream.feed_eof()

        feeder = asyncio.ensure_future(feed())
        out = bytearray()
        try:
            if into is None:
                while chunk := await body.read():
                    out += chunk
            else:
                buffer = memoryview(bytearray(into))
                while n := await body.readinto(buffer):
                    assert n == into or not await body.readinto(buffer)  # a short fill only at the end
                    out += buffer[:n]
            assert await body.read() == b""
            # Done: out of the fill budget, its last fill let go (an idle keep-alive connection keeps the body).
            assert body not in body_module._chunked_bodies and not body._buf
        finally:
            await feeder
        return bytes(out), body.trailers

    return asyncio.run(run())


@st.composite
def chunked_payloads(draw):
    data = draw(st.binary(max_size=3000))
    sizes = []
    left = len(data)
    while left:
        n = draw(st.integers(1, max(1, min(left, 1200))))
        sizes.append(n)
        left -= n
    chunks, at = [], 0
    for n in sizes:
        chunks.append(data[at : at + n])
        at += n
    cuts = draw(st.lists(st.integers(0, len(data) + 200 * (len(chunks) + 2)), max_size=12))
    return data, chunks, cuts


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


_INTO = st.one_of(st.none(), st.integers(1, 4000))
_FILL = st.one_of(st.none(), st.integers(1, 3000))  # fills of a body whose encoded length is declared


@SETTINGS
@given(chunked_payloads(), st.booleans(), st.booleans(), st.booleans(), _INTO, st.booleans(), _FILL)
def test_chunked_decoder_round_trips(payload, signed, with_trailer, declare_length, into, wire, fill):
    data, chunks, cuts = payload
    trailer = ("x-amz-checksum-crc32", crc32_b64(data)) if with_trailer else None
    encoded = encode_chunked(chunks, signed=signed, trailer=trailer)
    out, trailers = decode_chunked(encoded, cuts, signed=signed, trailer=with_trailer,
                                   length=len(data) if declare_length else None, into=into,
                                   wire=len(encoded) if wire else None, fill=fill)
    assert out == data
    assert trailers == ({"x-amz-checksum-crc32": trailer[1]} if trailer else {})


@pytest.mark.parametrize("fill", [None, 1, 50, 999])
@pytest.mark.parametrize("into", [1, 7, 64, 1000, 5000])
@pytest.mark.parametrize("signed", [False, True])
def test_chunked_readinto_fills_across_deliveries(into, signed, fill):
    """readinto fills the whole buffer however the stream arrives (here a few bytes at a time, chunk headers and
    data split anywhere), short only at the end, and loses nothing between deliveries; also when the body is
    received in fills of its own (``fill`` bytes; the declared Content-Length)."""
    rnd = random.Random(into)
    data = rnd.randbytes(4321)
    chunks = [data[:1000], data[1000:1001], data[1001:3000], data[3000:]]
    encoded = encode_chunked(chunks, signed=signed)
    cuts = sorted(rnd.sample(range(1, len(encoded)), 300))
    out, _ = decode_chunked(encoded, cuts, signed=signed, trailer=False, length=len(data), into=into,
                            wire=None if fill is None else len(encoded), fill=fill)
    assert out == data


@pytest.mark.parametrize("view_size", [1, 1000, 100_000])
def test_plain_body_readinto_takes_no_more_than_fits(view_size):
    """A plain body read through its stream (no direct receive: here no transport) fills each buffer with
    at most what fits, although the stream holds more (it raised ValueError, and an aws-chunked body's fills
    read this way)."""
    from shoal.http.body import PlainBody
    from shoal.http.stream import BodyStream

    data = random.Random(view_size).randbytes(300_000)

    async def run():
        stream = BodyStream(_Protocol(), 2**16, asyncio.get_running_loop())
        stream.feed_data(data)
        stream.feed_eof()
        body = PlainBody(stream, len(data), None, _Continue(None, False))
        out, view = bytearray(), memoryview(bytearray(view_size))
        while n := await body.readinto(view):
            out += view[:n]
        return bytes(out)

    assert asyncio.run(run()) == data


@SETTINGS
@given(chunked_payloads(), st.data(), _INTO, st.booleans(), _FILL)
def test_chunked_decoder_detects_any_changed_byte_in_a_signed_stream(payload, data, into, wire, fill):
    plain, chunks, cuts = payload
    encoded = bytearray(encode_chunked(chunks, signed=True))
    at = data.draw(st.integers(0, len(encoded) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != encoded[at]))
    encoded[at] = new
    # Some changes keep the meaning (hex digits in another case, "a" vs "A"), or only touch the last CRLF.
    assume(bytes(encoded).lower() != encode_chunked(chunks, signed=True).lower())
    try:
        out, _ = decode_chunked(bytes(encoded), cuts, signed=True, trailer=False, length=len(plain), into=into,
                                wire=len(encoded) if wire else None, fill=fill)
    except S3Error as exc:
        assert exc.code in ("SignatureDoesNotMatch", "IncompleteBody", "InvalidRequest"), exc.code
        return
    # Only a change the encoding does not see may pass, and then the data must be intact.
    assert out == plain


@SETTINGS
@given(chunked_payloads(), st.booleans(), st.data(), _INTO, st.booleans(), _FILL)
def test_chunked_decoder_refuses_any_truncation(payload, signed, data, into, wire, fill):
    _, chunks, cuts = payload
    encoded = encode_chunked(chunks, signed=signed)
    # Everything but the final CRLF matters (a missing final CRLF is a missing end of the stream). With the
    # length declared, the connection ends before the declared length.
    end = data.draw(st.integers(0, len(encoded) - 3))
    with pytest.raises(S3Error) as exc:
        decode_chunked(encoded[:end], cuts, signed=signed, trailer=False, length=None, into=into,
                       wire=len(encoded) if wire else None, fill=fill)
    assert exc.value.code in ("IncompleteBody", "SignatureDoesNotMatch")


@SETTINGS
@given(chunked_payloads(), _INTO, st.booleans(), _FILL)
def test_chunked_decoder_checks_the_declared_length(payload, into, wire, fill):
    plain, chunks, cuts = payload
    encoded = encode_chunked(chunks, signed=False)
    with pytest.raises(S3Error) as exc:
        decode_chunked(encoded, cuts, signed=False, trailer=False, length=len(plain) + 1, into=into,
                       wire=len(encoded) if wire else None, fill=fill)
    assert exc.value.code == "IncompleteBody"


@SETTINGS
@given(chunked_payloads(), _INTO, st.booleans(), _FILL)
def test_chunked_decoder_refuses_a_wrong_trailer_signature(payload, into, wire, fill):
    plain, chunks, cuts = payload
    encoded = encode_chunked(chunks, signed=True, trailer=("x-amz-checksum-crc32", crc32_b64(plain)))
    tampered = encoded.replace(f"crc32:{crc32_b64(plain)}".encode(), f"crc32:{crc32_b64(plain + b'x')}".encode())
    with pytest.raises(S3Error) as exc:
        decode_chunked(tampered, cuts, signed=True, trailer=True, length=len(plain), into=into,
                       wire=len(tampered) if wire else None, fill=fill)
    assert exc.value.code == "SignatureDoesNotMatch"


# -- Range against a model --------------------------------------------------------------------------------------


def range_model(spec: tuple, size: int):
    """S3's single byte range (RFC 9110 14.1.2), from the parsed pieces: (start, length), None (whole object),
    or "416"."""
    kind = spec[0]
    if kind == "suffix":
        n = spec[1]
        if n == 0 or size == 0:
            return "416"
        n = min(n, size)
        return size - n, n
    first = spec[1]
    last = spec[2] if kind == "closed" else None
    if last is not None and last < first:
        return None  # syntactically invalid: ignored
    if first >= size:
        return "416"
    end = size - 1 if last is None else min(last, size - 1)
    return first, end - first + 1


ranges = st.one_of(
    st.tuples(st.just("suffix"), st.integers(0, 2000)),
    st.tuples(st.just("open"), st.integers(0, 2000)),
    st.tuples(st.just("closed"), st.integers(0, 2000), st.integers(0, 2000)),
)


def render(spec: tuple, spaces: bool) -> str:
    sp = " " if spaces else ""
    if spec[0] == "suffix":
        return f"bytes={sp}-{spec[1]}"
    if spec[0] == "open":
        return f"bytes={sp}{spec[1]}-"
    return f"bytes={sp}{spec[1]}-{spec[2]}{sp}"


@SETTINGS
@given(ranges, st.integers(0, 1500), st.booleans())
@example(("closed", 0, 0), 0, False)
@example(("suffix", 5), 3, False)
@example(("closed", 3, 2), 10, False)
def test_parse_range_against_model(spec, size, spaces):
    expected = range_model(spec, size)
    if expected == "416":
        with pytest.raises(S3Error) as exc:
            parse_range(render(spec, spaces), size)
        assert exc.value.code == "InvalidRange" and exc.value.status == 416
    else:
        assert parse_range(render(spec, spaces), size) == expected


@SETTINGS
@given(st.text(max_size=30), st.integers(0, 1000))
@example("bytes=0-1,3-4", 10)
@example("items=0-1", 10)
@example("bytes=-", 10)
@example("bytes=1-2-3", 10)
@example("bytes=٣-٤", 10)  # Unicode digits are not digits here
def test_parse_range_of_anything_is_whole_or_a_valid_slice(header, size):
    try:
        parsed = parse_range(header, size)
    except S3Error as exc:
        assert exc.code == "InvalidRange"
        return
    if parsed is not None:
        start, length = parsed
        assert start >= 0 and length > 0 and start + length <= size


# -- conditional requests against the S3 precedence table -------------------------------------------------------

etags = st.sampled_from(["aaaa", "bbbb", "cccc-2"])


@st.composite
def etag_headers(draw):
    values = draw(st.lists(st.one_of(etags, st.just("*")), min_size=1, max_size=3))
    quoted = [f'"{v}"' if v != "*" and draw(st.booleans()) else v for v in values]
    return draw(st.sampled_from([", ", ","])).join(quoted)


def _matches(header: str, etag: str) -> bool:
    return any(v.strip() in ("*", etag, f'"{etag}"') for v in header.split(","))


def conditions_model(c: Conditions, etag: str, mtime: int) -> int | None:
    """The S3 documentation's table (GetObject, HeadObject), written as the table, one row at a time."""
    match = None if c.if_match is None else _matches(c.if_match, etag)
    none_match = None if c.if_none_match is None else not _matches(c.if_none_match, etag)  # True: proceed
    unmodified = None if c.if_unmodified_since is None else mtime <= c.if_unmodified_since
    modified = None if c.if_modified_since is None else mtime > c.if_modified_since
    # If-Match true + If-Unmodified-Since false -> 200: If-Match decides when present.
    if match is False:
        return 412
    if match is None and unmodified is False:
        return 412
    # If-None-Match false + If-Modified-Since true -> 304: If-None-Match decides when present.
    if none_match is False:
        return 304
    if none_match is None and modified is False:
        return 304
    return None


@SETTINGS
@given(st.one_of(st.none(), etag_headers()), st.one_of(st.none(), etag_headers()),
       st.one_of(st.none(), st.integers(990, 1010)), st.one_of(st.none(), st.integers(990, 1010)),
       etags, st.floats(999.0, 1001.0))
@example(None, None, None, None, "aaaa", 1000.9)
def test_conditions_follow_the_s3_table(if_match, if_none_match, ims, ius, etag, last_modified):
    c = Conditions(if_match, if_none_match, ims, ius)
    assert evaluate(c, etag, last_modified) == conditions_model(c, etag, int(last_modified))


def test_conditions_documented_rows():
    etag, mtime = "aaaa", 1000.0
    # If-Match true, If-Unmodified-Since false: 200.
    assert evaluate(Conditions(if_match='"aaaa"', if_unmodified_since=900), etag, mtime) is None
    # If-None-Match false, If-Modified-Since true: 304.
    assert evaluate(Conditions(if_none_match='"aaaa"', if_modified_since=900), etag, mtime) == 304
    # Each alone.
    assert evaluate(Conditions(if_match='"bbbb"'), etag, mtime) == 412
    assert evaluate(Conditions(if_unmodified_since=999), etag, mtime) == 412
    assert evaluate(Conditions(if_modified_since=1000), etag, mtime) == 304
    assert evaluate(Conditions(if_modified_since=999), etag, mtime) is None
    assert evaluate(Conditions(if_none_match="*"), etag, mtime) == 304
    # A failed precondition (412) outranks not-modified (304).
    assert evaluate(Conditions(if_match='"bbbb"', if_none_match='"aaaa"'), etag, mtime) == 412
