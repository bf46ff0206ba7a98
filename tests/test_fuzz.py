"""Hostile input. Part one fuzzes the pure parsers (routing, query strings, XML documents, bucket policies, POST
policies): each must answer a Route / a value or an S3Error, never another exception. Part two fuzzes a live
server over raw sockets: random methods, paths, queries, headers and bodies, signed and unsigned; every answer
must be a well-formed HTTP response carrying an S3 XML error or a success, never a 500, the server must stay up
and nothing may appear outside its data directory.

Example counts are bounded so the module runs in about 20 s; ``--runslow`` (or SHOAL_SLOW=1) multiplies them.
Run with ``--hypothesis-show-statistics`` to see how many cases each test ran.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import random
import socket
import string
import time
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from shoal.errors import S3Error
from shoal.http import xml
from shoal.http.app import parse_query
from shoal.http.handlers.tagging import parse_tagging
from shoal.http.routing import Route, resolve, split_target
from shoal.s3 import cors, lifecycle, policy, post_policy, tagging

from rawhttp import read_until_closed

SLOW = os.environ.get("SHOAL_SLOW") == "1"
SCALE = 10 if SLOW else 1


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


# -- strategies -----------------------------------------------------------------------------------------------

any_text = st.text(max_size=40)
# Path-ish text: lots of the characters that matter to parsers (/, %, ., ?, &, =, NUL, non-ASCII).
PATHY = "/%.?&=+ \x00\\:;#@~-_" + string.ascii_letters[:6] + string.digits[:4] + "é☃\U0001f600"
pathy = st.text(PATHY, max_size=40)
percent_escape = st.builds(lambda b: f"%{b:02X}", st.integers(0, 255)) | st.sampled_from(
    ["%", "%G0", "%0", "%%", "%c3%28", "%ed%a0%80", "%ff%fe", "%00", "%2e%2e%2f", "%2F"])


@st.composite
def raw_paths(draw) -> str:
    parts = draw(st.lists(pathy | percent_escape | st.sampled_from(["..", ".", "../", "//", "/"]), max_size=8))
    return "/" + "".join(parts) if draw(st.booleans()) else "".join(parts)


methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT",
                           "get", "FOO", ""])
SUBRESOURCES = ["uploads", "versions", "location", "versioning", "acl", "policyStatus", "policy", "cors",
                "lifecycle", "tagging", "encryption", "object-lock", "ownershipControls", "publicAccessBlock",
                "website", "logging", "notification", "replication", "accelerate", "requestPayment", "analytics",
                "uploadId", "partNumber", "retention", "legal-hold", "attributes", "torrent", "delete", "restore",
                "select", "list-type", "versionId", "prefix", "delimiter", "max-keys", "marker", "encoding-type",
                "continuation-token", "start-after", "key-marker", "version-id-marker", "max-parts",
                "part-number-marker", "max-uploads", "upload-id-marker", "response-content-type",
                "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-Expires",
                "AWSAccessKeyId", "Signature", "Expires", "x-id"]
query_dicts = st.dictionaries(st.sampled_from(SUBRESOURCES) | any_text, any_text, max_size=5)


class _Headers(dict):
    """Header lookups are case-insensitive in the server (a CIMultiDict); enough of that for routing."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k in self)


# -- routing and query strings --------------------------------------------------------------------------------


@fuzz_settings(400)
@given(raw_paths(), st.text(max_size=30) | st.sampled_from(["", "b.example.com", "b.example.com:9000", "[::1]",
                                                              "[::1]:80", "EXAMPLE.COM", ".example.com"]),
       st.sampled_from([None, "example.com", "", "com"]), methods, query_dicts,
       st.sampled_from([{}, {"x-amz-copy-source": "/b/k"}]))
@example("/%ff", "", None, "GET", {}, {})
@example("/b/%00", "", None, "PUT", {}, {})
@example("", "b.example.com", "example.com", "GET", {}, {})
@example("/b/k?x", "[::1", "example.com", "DELETE", {"uploadId": ""}, {})
def test_routing_never_raises_anything_but_s3error(path, host, domain, method, query, headers):
    try:
        bucket, key = split_target(path, host, domain)
    except S3Error as exc:
        assert exc.code == "InvalidURI"
        return
    assert bucket is None or isinstance(bucket, str)
    assert key is None or isinstance(key, str)
    try:
        route = resolve(method, bucket, key, query, _Headers(headers))
    except S3Error as exc:
        assert exc.status in (400, 405), exc
        return
    assert isinstance(route, Route) and isinstance(route.operation, str)
    assert route.bucket == bucket and (route.key == key or bucket is None)  # "//k" is the service


@fuzz_settings(300)
@given(st.lists(st.text(PATHY + "&=", max_size=12) | percent_escape, max_size=10).map("".join))
@example("a=%ff&b")
@example("&&=&%=")
def test_parse_query_never_raises_anything_but_invalid_uri(raw):
    from urllib.parse import unquote

    try:
        model = [(unquote(n, errors="strict"), unquote(v, errors="strict"))
                 for n, _, v in (item.partition("=") for item in raw.split("&") if item)]
    except UnicodeDecodeError:
        model = None
    try:
        pairs = parse_query(raw)
    except S3Error as exc:
        assert exc.code == "InvalidURI" and model is None
        return
    assert all(isinstance(n, str) and isinstance(v, str) for n, v in pairs)
    assert pairs == model  # each non-empty item split at its first "=", both sides percent-decoded


# -- XML documents --------------------------------------------------------------------------------------------

# Every element name of every document Shoal accepts, so that generated trees are structured but wrong.
DOCUMENTS = {
    "CreateBucketConfiguration": ["LocationConstraint", "Location", "Bucket", "Name", "Type"],
    "Delete": ["Object", "Key", "VersionId", "Quiet", "ETag"],
    "CompleteMultipartUpload": ["Part", "PartNumber", "ETag", "ChecksumCRC32", "ChecksumCRC32C", "ChecksumSHA1",
                                "ChecksumSHA256", "ChecksumCRC64NVME"],
    "Tagging": ["TagSet", "Tag", "Key", "Value"],
    "VersioningConfiguration": ["Status", "MfaDelete"],
    "LifecycleConfiguration": ["Rule", "ID", "Prefix", "Filter", "And", "Tag", "Key", "Value", "Status",
                               "Expiration", "Days", "Date", "ExpiredObjectDeleteMarker", "Transition",
                               "StorageClass", "NoncurrentVersionTransition", "NoncurrentVersionExpiration",
                               "NoncurrentDays", "NewerNoncurrentVersions", "AbortIncompleteMultipartUpload",
                               "DaysAfterInitiation", "ObjectSizeGreaterThan", "ObjectSizeLessThan"],
    "CORSConfiguration": ["CORSRule", "ID", "AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader",
                          "MaxAgeSeconds"],
    "ObjectLockConfiguration": ["ObjectLockEnabled", "Rule", "DefaultRetention", "Mode", "Days", "Years"],
    "Retention": ["Mode", "RetainUntilDate"],
    "LegalHold": ["Status"],
    "AccessControlPolicy": ["Owner", "ID", "DisplayName", "AccessControlList", "Grant", "Grantee", "URI",
                            "EmailAddress", "Permission"],
    "OwnershipControls": ["Rule", "ObjectOwnership"],
    "PublicAccessBlockConfiguration": ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                       "RestrictPublicBuckets"],
    "ServerSideEncryptionConfiguration": ["Rule", "ApplyServerSideEncryptionByDefault", "SSEAlgorithm",
                                          "KMSMasterKeyID", "BucketKeyEnabled"],
}
ALL_TAGS = sorted({t for names in DOCUMENTS.values() for t in names} | set(DOCUMENTS))
# Values that parsers convert: numbers of every shape, dates, booleans, enumerations, odd text.
xml_values = st.sampled_from([
    "", " ", "0", "1", "-1", "30", "1.5", "1e9", "99999999999999999999999", "٣", "²", "NaN", "true", "false",
    "TRUE", "Enabled", "Disabled", "Suspended", "ON", "OFF", "GOVERNANCE", "COMPLIANCE", "GLACIER", "STANDARD",
    "AES256", "aws:kms", "BucketOwnerEnforced", "ObjectWriter", "FULL_CONTROL", "READ", "WRITE_ACP",
    "http://acs.amazonaws.com/groups/global/AllUsers", "2030-01-01T00:00:00Z", "2030-01-01", "2030-02-30T00:00:00Z",
    "9999-12-31T23:59:59.999999999+14:00", "0000-00-00", "GET", "PATCH", "*", "**", "*.*", "k", "aws:x",
    '"etag"', "us-east-1", "EU", "\u2028", "a" * 300,
]) | st.text(max_size=12)


def _tree(tags: list[str], depth: int):
    leaf = st.builds(lambda t, v: (t, v), st.sampled_from(tags), xml_values)
    if depth == 0:
        return leaf
    return leaf | st.builds(lambda t, kids: (t, kids), st.sampled_from(tags),
                            st.lists(_tree(tags, depth - 1), max_size=4))


def _render(node) -> str:
    tag, inner = node
    if isinstance(inner, str):
        return xml.el(tag, inner)
    return f"<{tag}>" + "".join(_render(n) for n in inner) + f"</{tag}>"


@st.composite
def documents(draw, root: str | None = None) -> bytes:
    """A well-formed document whose root and children are drawn from the names Shoal knows."""
    root = root or draw(st.sampled_from(sorted(DOCUMENTS)))
    tags = DOCUMENTS.get(root, ALL_TAGS) + draw(st.lists(st.sampled_from(ALL_TAGS), max_size=2))
    children = draw(st.lists(_tree(tags, 3), max_size=5))
    ns = draw(st.sampled_from(["", f' xmlns="{xml.NS}"', ' xmlns="urn:other"']))
    head = draw(st.sampled_from(["", xml.HEADER, '<?xml version="1.0" encoding="ISO-8859-1"?>']))
    return (f"{head}<{root}{ns}>" + "".join(_render(c) for c in children) + f"</{root}>").encode()


hostile_xml = st.sampled_from([
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Tagging><TagSet><Tag><Key>&c;</Key><Value>v</Value></Tag>'
    b'</TagSet></Tagging>',
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&e;</Key>'
    b'</Object></Delete>',
    b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><Delete/>',
    b"<a>" * 5000 + b"</a>" * 5000,
    b"<Delete>" + b"<Object><Key>k</Key></Object>" * 2000 + b"</Delete>",
    b"\xef\xbb\xbf<Delete/>", b"\xff\xfe<\x00D\x00/\x00>\x00", b"<Delete>\x00</Delete>", b"<Delete>&#0;</Delete>",
    b"<Delete>&#xD800;</Delete>", b"<Delete xmlns:a='x'><a:Object/></Delete>", b"<?xml?>", b"<", b"\x00",
])


@fuzz_settings(300)
@given(st.binary(max_size=300) | documents() | hostile_xml)
def test_xml_parse_is_malformed_xml_or_an_element(body):
    try:
        root = xml.parse(body)
    except S3Error as exc:
        assert exc.code == "MalformedXML"
        return
    assert isinstance(root, ET.Element)


def test_xml_entity_expansion_and_external_entities_are_refused():
    for body in (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><T>&b;</T>',
                 b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><T>&e;</T>',
                 b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><T/>'):
        with pytest.raises(S3Error) as info:
            xml.parse(body)
        assert info.value.code == "MalformedXML"


@fuzz_settings(200)
@given(documents("Tagging") | documents() | hostile_xml)
def test_tagging_documents(body):
    try:
        tags = parse_tagging(body)
        tagging.validate(tags, tagging.MAX_BUCKET_TAGS)
    except S3Error as exc:
        assert exc.status == 400, exc


def _maybe(draw, tag: str, value) -> str:
    """``<tag>value</tag>`` usually, sometimes a wrong value, sometimes nothing."""
    choice = draw(st.integers(0, 29))
    if choice == 0:
        return ""
    return xml.el(tag, draw(xml_values) if choice == 1 else value)


@st.composite
def lifecycle_rules(draw) -> str:
    """A rule close to valid: each part is right most of the time, so the deeper checks get exercised."""
    inner = _maybe(draw, "ID", draw(st.text(string.ascii_letters, min_size=1, max_size=8)))
    days = draw(st.integers(-1, 400).map(str))
    tag = "<Tag>" + _maybe(draw, "Key", "t") + _maybe(draw, "Value", "v") + "</Tag>"
    filt = draw(st.sampled_from([
        "", xml.el("Prefix", "logs/"), tag, "<And>" + xml.el("Prefix", "p/") + tag + tag + "</And>",
        "<And>" + _maybe(draw, "ObjectSizeGreaterThan", "10") + _maybe(draw, "ObjectSizeLessThan", "5") + "</And>",
        _maybe(draw, "ObjectSizeGreaterThan", "100")]))
    inner += draw(st.sampled_from([f"<Filter>{filt}</Filter>"] * 6 + [xml.el("Prefix", "x"), ""]))
    inner += _maybe(draw, "Status", draw(st.sampled_from(["Enabled", "Disabled"])))
    actions = {
        "Expiration": _maybe(draw, "Days", days) + draw(st.sampled_from(
            ["", xml.el("Date", "2030-01-01T00:00:00Z"), xml.el("ExpiredObjectDeleteMarker", "true")])),
        "Transition": _maybe(draw, "Days", days) + _maybe(draw, "StorageClass", "GLACIER"),
        "NoncurrentVersionTransition": _maybe(draw, "NoncurrentDays", days) + _maybe(draw, "StorageClass",
                                                                                      "STANDARD_IA"),
        "NoncurrentVersionExpiration": _maybe(draw, "NoncurrentDays", days)
        + _maybe(draw, "NewerNoncurrentVersions", "3"),
        "AbortIncompleteMultipartUpload": _maybe(draw, "DaysAfterInitiation", days),
    }
    for name in draw(st.lists(st.sampled_from(sorted(actions)), min_size=1, max_size=3, unique=True)):
        inner += f"<{name}>{actions[name]}</{name}>"
    return f"<Rule>{inner}</Rule>"


lifecycle_documents = st.lists(lifecycle_rules(), min_size=1, max_size=3).map(
    lambda rules: f"<LifecycleConfiguration xmlns=\"{xml.NS}\">{''.join(rules)}</LifecycleConfiguration>".encode())


@fuzz_settings(300)
@given(lifecycle_documents | documents("LifecycleConfiguration") | hostile_xml)
def test_lifecycle_documents(body):
    try:
        rules = lifecycle.parse_configuration(body)
    except S3Error as exc:
        assert exc.status == 400, exc
        event(f"refused: {exc.code}")
        return
    event("accepted")
    for rule in rules:  # what was accepted can be stored, compiled and rendered
        lifecycle.Rule.from_stored(json.loads(json.dumps(rule)))
    ET.fromstring(f"<R>{lifecycle.render_rules(rules)}</R>")


@fuzz_settings(100)
@given(st.lists(st.builds(cors.Rule, st.lists(any_text, max_size=3), st.lists(any_text | st.sampled_from(
    cors.METHODS), max_size=3), st.lists(any_text, max_size=2), st.lists(any_text, max_size=2),
    st.none() | st.integers()), max_size=3), any_text, any_text, any_text)
def test_cors_rules_validate_and_match(rules, origin, method, request_headers):
    try:
        cors.validate(rules)
    except S3Error as exc:
        assert exc.status == 400
        return
    try:
        cors.preflight(rules, origin, method, request_headers)
    except S3Error as exc:
        assert exc.status in (400, 403)
    cors.actual_headers(rules, origin, method)


@fuzz_settings(200)
@given(st.text(max_size=60) | st.lists(st.tuples(any_text, any_text), max_size=12).map(
    lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)))
def test_tagging_header(value):
    try:
        tagging.parse_header(value)
    except S3Error as exc:
        assert exc.code in ("InvalidArgument", "InvalidTag")


# -- bucket policies ------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
    st.text(max_size=6), kids, max_size=3), max_leaves=10)
OPERATORS = [*sorted(policy._OPERATORS), "ForAnyValue:StringLike", "ForAllValues:StringEquals",
             "StringEqualsIfExists", "Bogus", "ForSome:StringEquals"]
ACTIONS = ["s3:GetObject", "s3:*", "*", "s3:Get*", "iam:PassRole", "S3:putobject", "s3:?etObject", "", "s3:[a]*"]
RESOURCES = ["*", "arn:aws:s3:::b", "arn:aws:s3:::b/*", "arn:aws:s3:::*/*", "arn:aws:s3:::other/*",
             "arn:aws:s3:::b?/k[", "", "b/*"]
CONDITION_KEYS = ["aws:SourceIp", "s3:prefix", "aws:CurrentTime", "s3:max-keys", "aws:SecureTransport",
                  "s3:ExistingObjectTag/t", "aws:username", "s3:x-amz-acl"]
CONDITION_VALUES = ["10.0.0.0/8", "::1/128", "not-an-ip", "2030-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                    "1e400", "nan", "-5", "true", "*", "a*b?", "", "1" * 5000]


def _one_or_list(values):
    return st.sampled_from(values) | st.lists(st.sampled_from(values), max_size=3)


@st.composite
def statements(draw) -> dict:
    s: dict = {}
    fields = {
        "Effect": st.sampled_from(["Allow", "Deny", "allow", ""]) | json_values,
        "Principal": st.sampled_from(["*", {"AWS": "*"}, {"AWS": ["u1", "arn:aws:iam::u1:root"]},
                                      {"CanonicalUser": "u1"}, {"Bogus": "x"}, {}]) | json_values,
        "NotPrincipal": st.sampled_from([{"AWS": "u2"}, "*"]) | json_values,
        "Action": _one_or_list(ACTIONS) | json_values,
        "NotAction": _one_or_list(ACTIONS) | json_values,
        "Resource": _one_or_list(RESOURCES) | json_values,
        "NotResource": _one_or_list(RESOURCES) | json_values,
        "Condition": st.dictionaries(st.sampled_from(OPERATORS), st.dictionaries(
            st.sampled_from(CONDITION_KEYS), _one_or_list(CONDITION_VALUES) | json_values, max_size=2),
            max_size=3) | json_values,
        "Sid": json_values,
    }
    for name in draw(st.lists(st.sampled_from(sorted(fields)), unique=True)):
        s[name] = draw(fields[name])
    return s


@st.composite
def plausible_statements(draw) -> dict:
    """Statements AWS would mostly accept, so that evaluation sees many policies."""
    s = {"Effect": draw(st.sampled_from(["Allow", "Deny"])),
         draw(st.sampled_from(["Principal", "NotPrincipal"])): draw(st.sampled_from(
             ["*", {"AWS": "*"}, {"AWS": ["u1", "arn:aws:iam::u1:root"]}, {"CanonicalUser": "u1"},
              {"AWS": "arn:aws:iam::t:user/u"}])),
         draw(st.sampled_from(["Action", "NotAction"])): draw(_one_or_list(
             ["s3:GetObject", "s3:*", "*", "s3:Get*", "S3:putobject", "s3:?etObject", "s3:[a]*"]).filter(bool)),
         draw(st.sampled_from(["Resource", "NotResource"])): draw(_one_or_list(RESOURCES[:6]).filter(bool))}
    if draw(st.booleans()):
        s["Condition"] = draw(st.dictionaries(st.sampled_from(OPERATORS[:-2]), st.dictionaries(
            st.sampled_from(CONDITION_KEYS), st.lists(st.sampled_from(CONDITION_VALUES), min_size=1, max_size=3)
            | st.sampled_from(CONDITION_VALUES) | st.booleans() | st.integers(), min_size=1, max_size=2),
            max_size=3))
    return s


policy_documents = st.builds(
    lambda version, stmts, extra: {**({"Version": version} if version else {}), "Statement": stmts, **extra},
    st.sampled_from([None, "2012-10-17", "2008-10-17", "2020-01-01"]),
    st.lists(plausible_statements(), min_size=1, max_size=3) | st.lists(statements(), max_size=3) | statements()
    | json_values,
    st.dictionaries(st.sampled_from(["Id", "Extra"]), json_values, max_size=1))

DEEP_JSON = ["[" * 20000, '{"Statement":' + "[" * 5000, '{"Statement":' + '{"a":' * 3000]


@fuzz_settings(400)
@given(policy_documents.map(json.dumps) | json_values.map(json.dumps) | st.text(max_size=80)
       | st.sampled_from(DEEP_JSON), st.sampled_from([None, "b"]), st.booleans(),
       st.sampled_from([policy.Principal(None), policy.Principal("u1", "AK", "alice"), policy.Principal("t$u")]),
       st.sampled_from(ACTIONS), st.sampled_from(RESOURCES),
       st.dictionaries(st.sampled_from([k.lower() for k in CONDITION_KEYS]),
                       st.lists(st.sampled_from(CONDITION_VALUES) | any_text, max_size=2), max_size=3))
@example('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":[1]}]}',
         None, True, policy.Principal(None), "s3:GetObject", "*", {})
@example('{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*",'
         '"Condition":{"Null":{"s3:prefix":[]}}}]}', None, True, policy.Principal(None), "s3:GetObject", "*", {})
@example("[" * 20000, None, True, policy.Principal(None), "s3:GetObject", "*", {})
def test_policy_parse_and_evaluate(text, bucket, as_bytes, who, action, resource, context):
    try:
        parsed = policy.parse(text.encode() if as_bytes else text, bucket=bucket)
    except S3Error as exc:
        assert exc.code == "MalformedPolicy", exc
        event("refused")
        return
    event("accepted")
    assert isinstance(parsed, policy.Policy)
    assert policy.evaluate(parsed, who, action, resource, context) in ("Allow", "Deny", None)
    assert isinstance(policy.is_public(parsed), bool)


# -- POST (browser form) policies -----------------------------------------------------------------------------

post_conditions = st.lists(
    st.sampled_from([{"bucket": "b"}, ["starts-with", "$key", ""], ["eq", "$acl", "public-read"],
                     ["content-length-range", 0, 10], ["content-length-range", "5", "1"], ["eq", "key", "x"],
                     ["starts-with", "$Content-Type", "image/"], {"a": 1}, {}, [], ["bogus", "$x", "y"],
                     ["content-length-range", 1e400, True], {"x-amz-credential": "AK/20300101/us-east-1/s3/x"}])
    | json_values, max_size=5)


@fuzz_settings(300)
@given(st.builds(lambda e, c, drop: {k: v for k, v in {"expiration": e, "conditions": c}.items() if k not in drop},
                 st.sampled_from(["2030-01-01T00:00:00Z", "2030-01-01T00:00:00.123Z", "2030-13-01T00:00:00Z",
                                  "9999-12-31T23:59:60Z", "yesterday"]) | json_values,
                 post_conditions | json_values, st.sets(st.sampled_from(["expiration", "conditions"]), max_size=1))
       .map(json.dumps).map(str.encode) | st.binary(max_size=60) | st.sampled_from([s.encode() for s in DEEP_JSON]),
       st.sampled_from(["b64", "raw", "spaced"]))
@example(('{"expiration":"2030-01-01T00:00:00Z","conditions":[' + "[" * 3000 + "]" * 3000 + "]}").encode(), "b64")
def test_post_policy_parse(document, encoding):
    encoded = base64.b64encode(document).decode()
    if encoding == "raw":
        encoded = document.decode("latin-1")
    elif encoding == "spaced":
        encoded = " \n".join(encoded[i:i + 7] for i in range(0, len(encoded), 7))
    try:
        parsed = post_policy.parse(encoded)
    except S3Error as exc:
        assert exc.code == "InvalidPolicyDocument", exc
        event("refused")
        return
    event("accepted")
    fields = {"bucket": "b", "key": "k", "content-type": "image/png, text/plain"}
    for check in (lambda: parsed.check_fields(fields), lambda: parsed.check_size(5, True),
                  lambda: parsed.check_expiration(time.time())):
        try:
            check()
        except S3Error as exc:
            assert exc.code in ("AccessDenied", "EntityTooLarge", "EntityTooSmall")


# == through the server ========================================================================================

FUZZ_BUCKET = "fuzzbucket"


class _Sock:
    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, *args, **kwargs):
        return self._file


@dataclass
class Outcome:
    status: int | None
    headers: dict[str, str]
    body: bytes
    raw: bytes


def exchange(port: int, data: bytes, method: str, timeout: float = 15.0, half_close: bool = False) -> Outcome:
    """Send one request's bytes (``Connection: close``), read until the server closes; parse what came back.
    ``half_close``: shut our side once sent, for a request whose body is shorter than it says (the server then
    sees a client that went away, and may close without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse (and close) before it has read everything
        raw = read_until_closed(s)
    final = raw
    while final.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        final = final[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    if not final:
        # Nothing, or only the interim 100 (sent before the client was seen gone): no answer.
        return Outcome(None, {}, b"", raw)
    response = http.client.HTTPResponse(_Sock(raw), method=method)  # type: ignore[arg-type]
    response.begin()
    try:
        body = response.read()
    except http.client.IncompleteRead:
        raise AssertionError(f"response shorter than its Content-Length: {raw[:600]!r}") from None
    return Outcome(response.status, {k.lower(): v for k, v in response.getheaders()}, body, raw)


def request_bytes(method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n".encode("utf-8", "surrogateescape")
    for name, value in headers:
        head += name.encode("utf-8", "surrogateescape") + b": " + value.encode("utf-8", "surrogateescape") + b"\r\n"
    return head + b"\r\n" + body


class FuzzServer:
    """A server of its own, in a directory whose surroundings are watched."""

    def __init__(self, base: str) -> None:
        from conftest import ServerProcess, free_port

        self.base = base
        self.data_dir = os.path.join(base, "data")
        self.proc = ServerProcess(self.data_dir, free_port()).start()
        self.port = self.proc.port
        self.internal_errors: list[str] = []
        self.sent = 0
        self.statuses: dict[int | None, int] = {}

    def outside_data_dir(self) -> set[str]:
        """Every path under the base directory but outside the data directory (the log is expected)."""
        found = set()
        for dirpath, dirnames, filenames in os.walk(self.base):
            if os.path.abspath(dirpath).startswith(os.path.abspath(self.data_dir)):
                dirnames[:] = []
                continue
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if path != self.data_dir and not name.startswith("server-"):
                    found.add(path)
        return found


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    import boto3
    from botocore.config import Config

    from conftest import ROOT

    base = str(tmp_path_factory.mktemp("fuzz"))
    cwd_before = set(os.listdir("."))
    srv = FuzzServer(base)
    s3 = boto3.client("s3", endpoint_url=srv.proc.endpoint, aws_access_key_id=ROOT[0],
                      aws_secret_access_key=ROOT[1], region_name="us-east-1",
                      config=Config(retries={"max_attempts": 1}))
    s3.create_bucket(Bucket=FUZZ_BUCKET, ObjectLockEnabledForBucket=True)
    for key, size in (("k", 10), ("dir/k", 100), ("big", 200_000)):
        s3.put_object(Bucket=FUZZ_BUCKET, Key=key, Body=os.urandom(size))
    srv.s3 = s3  # type: ignore[attr-defined]
    yield srv
    try:
        assert srv.proc.proc is not None and srv.proc.proc.poll() is None, "the server died: " + srv.proc.log()
        assert not srv.outside_data_dir(), srv.outside_data_dir()
        assert set(os.listdir(".")) <= cwd_before, set(os.listdir(".")) - cwd_before
        print(f"\nserver fuzzing: {srv.sent} requests, statuses {dict(sorted(srv.statuses.items(), key=str))}")
    finally:
        srv.proc.stop()


def check_outcome(srv: FuzzServer, method: str, outcome: Outcome, may_be_silent: bool) -> None:
    srv.sent += 1
    srv.statuses[outcome.status] = srv.statuses.get(outcome.status, 0) + 1
    if outcome.status is None:
        assert may_be_silent, "the server closed the connection without an answer"
        return
    if outcome.status >= 500 and outcome.status != 503 and outcome.status != 501:
        srv.internal_errors.append(outcome.raw[:2000].decode("latin-1"))
    assert outcome.status < 500 or outcome.status in (501, 503), (outcome.raw[:2000], srv.proc.log()[-3000:])
    if outcome.status >= 300 and outcome.status != 304 and method.upper() != "HEAD":
        assert outcome.headers.get("content-type", "").startswith("application/xml"), outcome.raw[:1000]
        root = ET.fromstring(outcome.body)
        assert root.tag == "Error" and root.findtext("Code"), outcome.body[:500]


# Header names and values that reach parsers.
HEADER_CHOICES = {
    "Content-Type": ["text/plain", "multipart/form-data; boundary=x", "application/xml", "\x00", "é"],
    "x-amz-meta-a": ["v", "x" * 3000, "é\x01", " "],
    "x-amz-copy-source": [f"/{FUZZ_BUCKET}/k", f"{FUZZ_BUCKET}/k?versionId=zz", "/%ff", "/b", "", "//",
                          f"/{FUZZ_BUCKET}/../k", f"/{FUZZ_BUCKET}/k?versionId="],
    "x-amz-copy-source-range": ["bytes=0-1", "bytes=9-1", "bytes=-", "x"],
    "Range": ["bytes=0-0", "bytes=-1", "bytes=5-", "bytes=99999999999999999999-", "bytes=1-0", "bytes=0-1,3-4",
              "items=0-1", ""],
    "If-Match": ["*", '"x"', "", "\x7f"], "If-None-Match": ["*", '"x"'],
    "If-Modified-Since": ["Tue, 15 Nov 1994 08:12:31 GMT", "garbage", "Sun, 31 Dec 99999 00:00:00 GMT"],
    "x-amz-content-sha256": ["UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                             "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                             "abc", "0" * 64],
    "x-amz-decoded-content-length": ["0", "-1", "5", "99999999999999999999999", "x"],
    "Content-Encoding": ["aws-chunked", "gzip", "aws-chunked,gzip"],
    "x-amz-trailer": ["x-amz-checksum-crc32", "x-amz-checksum-bogus", ""],
    "x-amz-tagging": ["a=b", "a=b&a=c", "%ff=1", "=" * 50, "k=" + "v" * 300],
    "x-amz-acl": ["private", "public-read", "bogus", "bucket-owner-full-control"],
    "x-amz-grant-read": ['id="x"', 'uri="http://acs.amazonaws.com/groups/global/AllUsers"', "garbage", 'id='],
    "x-amz-server-side-encryption": ["AES256", "aws:kms", "bogus"],
    "x-amz-server-side-encryption-customer-algorithm": ["AES256", "x"],
    "x-amz-server-side-encryption-customer-key": [base64.b64encode(b"k" * 32).decode(), "!!", ""],
    "x-amz-server-side-encryption-customer-key-MD5": ["x", ""],
    "x-amz-checksum-crc32": ["AAAAAA==", "!!", ""], "x-amz-checksum-sha256": ["x"],
    "x-amz-sdk-checksum-algorithm": ["CRC32", "MD5", "bogus"], "x-amz-checksum-algorithm": ["SHA1", "x"],
    "x-amz-object-lock-mode": ["GOVERNANCE", "COMPLIANCE", "x"],
    "x-amz-object-lock-retain-until-date": ["2000-01-01T00:00:00Z", "garbage", "2030-01-01T00:00:00Z"],
    "x-amz-object-lock-legal-hold": ["ON", "OFF", "x"],
    "x-amz-bypass-governance-retention": ["true", "x"],
    "x-amz-storage-class": ["STANDARD", "GLACIER", "x"],
    "x-amz-metadata-directive": ["COPY", "REPLACE", "x"],
    "x-amz-expected-bucket-owner": ["123", ""],
    "Content-MD5": ["1B2M2Y8AsgTpgAmY7PhCfg==", "!", "AAAA"],
    "Expect": ["100-continue", "x"],
    "Origin": ["http://a.example", "null", ""], "Access-Control-Request-Method": ["GET", "X"],
    "Authorization": ["AWS4-HMAC-SHA256 Credential=x", "AWS a:b", "Bearer x", "AWS4-HMAC-SHA256 " + "," * 100, ""],
    "x-amz-date": ["20300101T000000Z", "garbage", ""], "Date": ["garbage"],
    "x-amz-security-token": ["x"],
}
# Headers that break HTTP itself (the front end refuses them before the S3 layer sees the request): drawn less often.
BREAKERS = [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "identity"),
            ("X-Oversize", "a" * 20000), ("x-amz-meta-big", "b" * 9000), ("X-Nul", "a\x00b"),
            ("X-Bad-UTF8", "\udcff\udcfe"), ("X-CR", "a\rb"), ("Content-Length", "-1"), ("Content-Length", "1x")]
GARBAGE_CHUNKED = [b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\nhello\r\n0\r\n\r\n", b"5;chunk-signature=00\r\nhello\r\n",
                   b"ffffffffffffffffffff\r\n", b"-5\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n",
                   b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", b"0\r\n" + b"x" * 20000 + b"\r\n\r\n",
                   b"3\r\nabc\r\n0\r\nno-colon\r\n\r\n", b"\r\n" * 10]


@st.composite
def fuzz_requests(draw):
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH", "GET", "PUT"]))
    bucket = draw(st.sampled_from([FUZZ_BUCKET] * 4 + ["", "nosuchbucket", "..", "a", "UPPER", "%ff", "%2e%2e",
                                                       "fuzz%00bucket", "x" * 70]))
    ordinary = ["k", "dir", "big", "mp", "new", "a%20b", "%E2%98%83", "~", "%25", "x" * 600]
    odd = ["..", ".", "", "%2e%2e", "%2F", "%00", "%ff", "%c3%28", "é", "..%2f..%2f..%2fetc", "\\..\\", "?"]
    key_parts = draw(st.lists(st.sampled_from(ordinary * 3 + odd), max_size=4))
    key = "/".join(key_parts)
    path = f"/{bucket}" + (f"/{key}" if key or draw(st.booleans()) else "")
    query_items = draw(st.lists(st.tuples(st.sampled_from(SUBRESOURCES), st.sampled_from(
        ["", "", "1", "0", "-1", "10001", "99999999999999999999", "x", "2", "url", "a%00b", "null", "%ff"])),
        max_size=3))
    query = "&".join(f"{n}={v}" if v or draw(st.booleans()) else n for n, v in query_items)
    if draw(st.integers(0, 9)) == 0:
        query += draw(st.sampled_from(["&%ff", "&=", "&&", "&a=%", "&x-id=%G0"]))
    target = path + ("?" + query if query else "")
    headers: list[tuple[str, str]] = []
    for name in draw(st.lists(st.sampled_from(sorted(HEADER_CHOICES)), max_size=5, unique=True)):
        headers.append((name, draw(st.sampled_from(HEADER_CHOICES[name]))))
    if draw(st.integers(0, 9)) == 0:
        headers.append(draw(st.sampled_from(BREAKERS)))
    kind = draw(st.sampled_from(["none", "bytes", "xml", "chunked", "short"]))
    body = {"none": b"", "bytes": draw(st.binary(max_size=300)), "xml": draw(documents() | hostile_xml),
            "chunked": draw(st.sampled_from(GARBAGE_CHUNKED)), "short": draw(st.binary(max_size=20))}[kind]
    declared = len(body)
    if kind == "short":
        declared = draw(st.sampled_from([len(body) + 1, 1 << 20, 6 * 1024**3, 10**30]))
    if not any(n.lower() in ("transfer-encoding", "content-length") for n, _ in headers) and (
            body or method in ("PUT", "POST") or kind == "short"):
        headers.append(("Content-Length", str(declared)))
    sign = draw(st.sampled_from(["none", "v4", "v4", "v4-unsigned-payload"]))
    # A body whose end the server cannot know (chunked framing we may not have closed): we close our side.
    short = kind == "short" or any(n == "Transfer-Encoding" for n, _ in headers)
    return method, target, headers, body, sign, short


UNSIGNABLE = ("X-Oversize", "X-Nul", "X-Bad-UTF8", "X-CR", "Content-Length", "Transfer-Encoding")


def _sign(port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes, how: str):
    from rawhttp import sign_v4

    if how == "none":
        return [*headers, ("Host", f"127.0.0.1:{port}")]
    plain = dict(headers)
    payload = "UNSIGNED-PAYLOAD" if how == "v4-unsigned-payload" else plain.get("x-amz-content-sha256")
    try:
        signed = sign_v4(method, f"http://127.0.0.1:{port}{target}", body,
                         {k: v for k, v in plain.items() if k not in UNSIGNABLE and k != "Authorization"},
                         payload=payload)
    except Exception:
        return [*headers, ("Host", f"127.0.0.1:{port}")]
    extra = [(k, v) for k, v in headers if k in UNSIGNABLE]
    return list(signed.items()) + extra


@fuzz_settings(500)
@given(fuzz_requests())
def test_server_answers_any_request_with_an_s3_response(fuzz_server, req):
    method, target, headers, body, sign, short = req
    headers = [*_sign(fuzz_server.port, method, target, headers, body, sign), ("Connection", "close")]
    outcome = exchange(fuzz_server.port, request_bytes(method, target, headers, body), method, half_close=short)
    check_outcome(fuzz_server, method, outcome, may_be_silent=short)
    event(f"{outcome.status}{' (short body)' if short else ''}")


SIGNED_OPERATIONS = [  # (method, target): requests that succeed as they are, before the fuzzer's headers
    ("PUT", "/fuzzbucket/new"), ("PUT", "/fuzzbucket/dir/new2"), ("GET", "/fuzzbucket/big"),
    ("GET", "/fuzzbucket/k"), ("HEAD", "/fuzzbucket/dir/k"), ("GET", "/fuzzbucket?list-type=2"),
    ("GET", "/fuzzbucket"), ("GET", "/fuzzbucket?versions"), ("GET", "/fuzzbucket?uploads"),
    ("DELETE", "/fuzzbucket/new"), ("PUT", "/fuzzbucket/copy"), ("POST", "/fuzzbucket/mp?uploads"),
    ("GET", "/fuzzbucket/k?tagging"), ("GET", "/fuzzbucket/k?attributes"), ("GET", "/fuzzbucket/big?partNumber=1"),
    ("PUT", "/fuzzbucket/k?tagging"), ("GET", "/"), ("HEAD", "/fuzzbucket"), ("GET", "/fuzzbucket?location"),
]
LISTING_PARAMS = ["prefix=dir/", "delimiter=/", "max-keys=1", "max-keys=-1", "max-keys=x", "start-after=k",
                  "continuation-token=!!", "continuation-token=", "encoding-type=url", "encoding-type=x",
                  "fetch-owner=true", "marker=%E2%98%83", "key-marker=k", "version-id-marker=zz", "max-parts=0",
                  "versionId=null", "versionId=x", "partNumber=0", "partNumber=10001", "response-content-type=a",
                  "response-expires=%0d%0a", "x-id=GetObject", "attributes", "object-attributes"]
SIGNED_HEADERS = {k: v for k, v in HEADER_CHOICES.items() if k not in ("Authorization", "x-amz-date", "Date")}
SIGNED_HEADERS["x-amz-object-attributes"] = ["ETag,Checksum,ObjectParts", "x", ""]


@st.composite
def signed_requests(draw):
    method, target = draw(st.sampled_from(SIGNED_OPERATIONS))
    params = draw(st.lists(st.sampled_from(LISTING_PARAMS), max_size=2))
    if params:
        target += ("&" if "?" in target else "?") + "&".join(params)
    headers = {}
    for name in draw(st.lists(st.sampled_from(sorted(SIGNED_HEADERS)), max_size=3, unique=True)):
        headers[name] = draw(st.sampled_from(SIGNED_HEADERS[name]))
    if target.startswith("/fuzzbucket/copy"):
        headers.setdefault("x-amz-copy-source", draw(st.sampled_from(["/fuzzbucket/k", "/fuzzbucket/big"])))
    body = b""
    if method == "PUT":
        size = draw(st.sampled_from([0, 1, 100, 65536, 65537, 200_000]))
        body = random.Random(draw(st.integers(0, 1000))).randbytes(size)
        if target.endswith("?tagging"):
            body = draw(documents("Tagging"))
    framing = draw(st.sampled_from(["plain", "plain", "streaming", "unsigned-trailer", "streaming-trailer"]))
    return method, target, headers, body, framing, draw(st.none() | st.integers(0, 400))


@fuzz_settings(300)
@given(signed_requests())
def test_signed_requests_with_hostile_headers_and_framing(fuzz_server, req):
    """Requests that reach the handlers: well signed (aws-chunked bodies included), with odd headers and
    sometimes one flipped byte in the framing."""
    from rawhttp import aws_chunked, sign_v4

    method, target, headers, body, framing, flip = req
    url = f"http://127.0.0.1:{fuzz_server.port}{target}"
    wire = body
    if framing == "plain" or method != "PUT":
        headers.pop("Content-Encoding", None)
        signed = sign_v4(method, url, body, {k: v for k, v in headers.items() if k != "x-amz-content-sha256"})
    else:
        payload = {"streaming": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                   "unsigned-trailer": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                   "streaming-trailer": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"}[framing]
        headers.update({"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(body))})
        trailer = None
        if framing != "streaming":
            headers["x-amz-trailer"] = "x-amz-checksum-crc32"
            trailer = ("x-amz-checksum-crc32", base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode())
        signed = sign_v4(method, url, b"", {k: v for k, v in headers.items() if k != "x-amz-content-sha256"},
                         payload=payload)
        wire = aws_chunked(body, 8192, signed, trailer=trailer, signed=framing != "unsigned-trailer")
    short = False
    if flip is not None and wire:
        position = flip % len(wire)
        wire = wire[:position] + bytes([wire[position] ^ 0x20]) + wire[position + 1:]
        short = True  # a flipped length digit can promise more than is sent
    outcome = exchange(fuzz_server.port, request_bytes(method, target, [*signed.items(), (
        "Content-Length", str(len(wire))), ("Connection", "close")], wire), method, half_close=short)
    check_outcome(fuzz_server, method, outcome, may_be_silent=short)
    event(f"{method} {outcome.status}")


XML_OPERATIONS = [  # (method, bucket-or-object path, query, root element)
    ("PUT", "", "", "CreateBucketConfiguration"), ("POST", "", "delete", "Delete"),
    ("POST", "/mp", "uploadId=UPLOAD", "CompleteMultipartUpload"), ("PUT", "", "tagging", "Tagging"),
    ("PUT", "/k", "tagging", "Tagging"), ("PUT", "", "versioning", "VersioningConfiguration"),
    ("PUT", "", "lifecycle", "LifecycleConfiguration"), ("PUT", "", "cors", "CORSConfiguration"),
    ("PUT", "", "object-lock", "ObjectLockConfiguration"), ("PUT", "/k", "retention", "Retention"),
    ("PUT", "/k", "legal-hold", "LegalHold"), ("PUT", "", "acl", "AccessControlPolicy"),
    ("PUT", "/k", "acl", "AccessControlPolicy"), ("PUT", "", "ownershipControls", "OwnershipControls"),
    ("PUT", "", "publicAccessBlock", "PublicAccessBlockConfiguration"),
    ("PUT", "", "encryption", "ServerSideEncryptionConfiguration"),
]


@fuzz_settings(400)
@given(st.sampled_from(XML_OPERATIONS), st.data())
def test_every_xml_body_is_refused_cleanly_or_applied(fuzz_server, operation, data):
    from rawhttp import sign_v4

    method, suffix, query, root = operation
    bucket = FUZZ_BUCKET if root != "CreateBucketConfiguration" else f"fuzz-new-{fuzz_server.sent}"
    if "UPLOAD" in query:
        upload = fuzz_server.s3.create_multipart_upload(Bucket=FUZZ_BUCKET, Key="mp")["UploadId"]
        query = query.replace("UPLOAD", quote(upload, safe=""))
    if root == "LifecycleConfiguration":
        body = data.draw(lifecycle_documents | documents(root) | hostile_xml)
    else:
        body = data.draw(documents(root) | documents() | hostile_xml)
    target = f"/{bucket}{suffix}?{query}"
    headers = sign_v4(method, f"http://127.0.0.1:{fuzz_server.port}{target}", body,
                      {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()})
    outcome = exchange(fuzz_server.port, request_bytes(method, target, [*headers.items(), (
        "Content-Length", str(len(body))), ("Connection", "close")], body), method)
    check_outcome(fuzz_server, method, outcome, may_be_silent=False)
    event(f"{root}: {outcome.status}")


def test_server_survived_and_stayed_inside_its_data_dir(fuzz_server):
    """Runs after the fuzzers in this module: health, stray files, and the server log."""
    with urllib.request.urlopen(f"{fuzz_server.proc.endpoint}/minio/health/ready", timeout=5) as r:
        assert r.status == 200
    assert not fuzz_server.internal_errors
    assert not fuzz_server.outside_data_dir()
    log = fuzz_server.proc.log()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
