"""The memory of verified presigned URLs (shoal.http.authenticate._v4_query) stays bounded whatever a key holder
signs: URLs whose target and signed header values are large are verified every time instead."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict, CIMultiDictProxy

from shoal.auth.identities import Identity, IdentityStore
from shoal.http import authenticate
from shoal.http.app import parse_query
from shoal.http.routing import decode_path


class _Request:
    """What _v4_query reads of a request."""

    def __init__(self, target: str, headers: CIMultiDictProxy[str]) -> None:
        self.method = "GET"
        self.raw_path = target
        self.headers = headers
        self.body_exists = False
        self.content = None
        self.protocol = None
        self.version = (1, 1)


def _use(store: IdentityStore, key: str, signed: dict[str, str]) -> None:
    request = AWSRequest(method="GET", url=f"http://h/b/{key}", headers=dict(signed, host="h"))
    S3SigV4QueryAuth(Credentials("AKMEMO", "secret"), "s3", "us-east-1", expires=600).add_auth(request)
    url = urlsplit(request.prepare().url)
    headers = CIMultiDictProxy(CIMultiDict([("Host", "h"), *signed.items()]))
    view = authenticate.RequestView("GET", url.path, decode_path(url.path), parse_query(url.query),
                                    authenticate.HeaderLists(headers), None)
    identity, _ = authenticate._v4_query(_Request(f"{url.path}?{url.query}", headers), view, store,
                                         dict(view.query_pairs), time.time(), authenticate._NO_CONTINUE)
    assert identity.access_key == "AKMEMO"


def test_only_urls_with_small_signed_parts_are_remembered():
    store = IdentityStore()
    store.add(Identity("AKMEMO", "secret", "u", "u"))
    authenticate._presigned.clear()
    _use(store, "small", {"x-amz-meta-a": "1"})
    assert len(authenticate._presigned) == 1
    _use(store, "small", {"x-amz-meta-a": "1"})  # again: the same entry
    assert len(authenticate._presigned) == 1
    big = {f"x-amz-meta-p{i}": "v" * 1000 for i in range(8)}  # 8 KB of signed values: verified, not kept
    _use(store, "big", big)
    _use(store, "big", big)
    assert len(authenticate._presigned) == 1
    sizes = [len(repr(key)) for key in authenticate._presigned]
    assert max(sizes) < 2 * authenticate._PRESIGNED_MAX_KEY
