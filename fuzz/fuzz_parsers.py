"""Coverage-guided fuzzing of Shoal's request parsers with atheris (libFuzzer for Python). Not run in CI.

    pip install atheris
    python fuzz/fuzz_parsers.py -max_total_time=600 -max_len=4096 fuzz/corpus     # from the repository root
    python fuzz/fuzz_parsers.py -runs=100000                                       # a quick check

Each input's first byte picks a target; the rest is that target's input. A target may answer with a value or an
S3Error; any other exception is a finding (libFuzzer stops and writes ``crash-<sha1>``, which reproduces with
``python fuzz/fuzz_parsers.py crash-<sha1>``). The hypothesis tests in tests/test_fuzz.py cover the same
functions with structured inputs; this harness explores by coverage instead.
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

with atheris.instrument_imports():
    from shoal.errors import S3Error
    from shoal.http import xml
    from shoal.http.app import parse_query
    from shoal.http.handlers.tagging import parse_tagging
    from shoal.http.routing import resolve, split_target
    from shoal.s3 import lifecycle, policy, post_policy, tagging
    from shoal.s3.objects import parse_copy_source, parse_range

WHO = policy.Principal("u1", "AKEXAMPLE", "alice")


def _route(fdp: atheris.FuzzedDataProvider) -> None:
    method = fdp.PickValueInList(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"])
    domain = fdp.PickValueInList([None, "example.com"])
    host = fdp.ConsumeUnicodeNoSurrogates(20)
    raw = fdp.ConsumeUnicodeNoSurrogates(200)
    path, _, query = raw.partition("?")
    bucket, key = split_target(path, host, domain)
    resolve(method, bucket, key, dict(parse_query(query)), {})


def _policy(fdp: atheris.FuzzedDataProvider) -> None:
    parsed = policy.parse(fdp.ConsumeBytes(max(0, fdp.remaining_bytes() - 8)), bucket="b")
    policy.evaluate(parsed, WHO, "s3:GetObject", "arn:aws:s3:::b/k",
                    {"aws:sourceip": ["10.1.2.3"], "s3:prefix": [fdp.ConsumeUnicodeNoSurrogates(8)]})
    policy.is_public(parsed)


def _post_policy(fdp: atheris.FuzzedDataProvider) -> None:
    import base64

    parsed = post_policy.parse(base64.b64encode(fdp.ConsumeBytes(fdp.remaining_bytes())).decode())
    try:
        parsed.check_fields({"bucket": "b", "key": "k", "content-type": "image/png"})
        parsed.check_size(10, True)
    except S3Error:
        pass


def _range(fdp: atheris.FuzzedDataProvider) -> None:
    size = fdp.ConsumeIntInRange(0, 1 << 40)
    parse_range(fdp.ConsumeUnicodeNoSurrogates(60), size)


TARGETS = [
    lambda fdp: xml.parse(fdp.ConsumeBytes(fdp.remaining_bytes())),
    lambda fdp: lifecycle.parse_configuration(fdp.ConsumeBytes(fdp.remaining_bytes())),
    lambda fdp: tagging.validate(parse_tagging(fdp.ConsumeBytes(fdp.remaining_bytes())), 50),
    lambda fdp: tagging.parse_header(fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())),
    lambda fdp: parse_copy_source(fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())),
    _route, _policy, _post_policy, _range,
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    fdp = atheris.FuzzedDataProvider(data[1:])
    try:
        TARGETS[data[0] % len(TARGETS)](fdp)
    except S3Error:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
