"""The metadata store's per-thread cache of object rows (sqlite_meta.get_object): a read never returns what
was replaced before its request began, whoever replaced it (this worker, another worker, another program)."""

from __future__ import annotations

import asyncio
import time

import pytest
from botocore.exceptions import ClientError

from shoal.storage.records import NEW_VERSION, Bucket, ObjectRecord
from shoal.storage.sqlite_meta import SqliteMetadataStore

from conftest import client, status_of


def record(key: str, body: bytes, version_id: str = "null") -> ObjectRecord:
    return ObjectRecord(bucket="bkt", key=key, version_id=version_id, size=len(body), etag=body.hex()[:32],
                        last_modified=time.time(), meta={"user": {"n": body.decode()}}, inline=body)


@pytest.fixture
def stores(tmp_path):
    """Two stores on one database, as two worker processes have: each has its own writer and readers."""
    path = str(tmp_path / "meta.sqlite3")
    here, there = SqliteMetadataStore(path), SqliteMetadataStore(path)
    here.create_bucket_sync(Bucket("bkt", "owner", time.time()))
    yield here, there
    here.close()
    there.close()


def body_of(store: SqliteMetadataStore, key: str, **kwargs) -> bytes | None:
    found = store.get_object("bkt", key, **kwargs)
    return None if found is None or found.delete_marker else found.inline


def test_a_new_request_sees_what_another_process_committed(stores):
    here, there = stores
    asyncio.run(there.put_object(record("k", b"one")))
    first, second, third = object(), object(), object()  # three requests' epochs
    assert body_of(here, "k", epoch=first) == b"one"
    assert body_of(here, "k", epoch=first) == b"one"  # cached now
    asyncio.run(there.put_object(record("k", b"two")))
    assert body_of(here, "k", epoch=second) == b"two"
    assert body_of(here, "k") == b"two"  # no epoch: checked at the read itself
    asyncio.run(there.put_object(record("k", b"three")))
    assert body_of(here, "k") == b"three"
    # A key that was missing, then created elsewhere; and one deleted elsewhere.
    assert body_of(here, "new", epoch=third) is None
    asyncio.run(there.put_object(record("new", b"made")))
    asyncio.run(there.delete_version("bkt", "k", "null"))
    assert body_of(here, "new", epoch=object()) == b"made"
    assert body_of(here, "k", epoch=object()) is None


def test_a_request_reads_its_own_writes(stores):
    """A write ends the request's epoch: the next read checks again, even with the same epoch."""
    here, _ = stores
    epoch = object()

    async def request() -> list[bytes | None]:
        seen = [body_of(here, "k", epoch=epoch)]
        await here.put_object(record("k", b"mine"))
        seen.append(body_of(here, "k", epoch=epoch))
        await here.delete_version("bkt", "k", "null")
        seen.append(body_of(here, "k", epoch=epoch))
        return seen

    assert asyncio.run(request()) == [None, b"mine", None]


def test_named_versions_are_cached_apart_and_follow_changes(stores):
    here, there = stores

    async def versions() -> list[str]:
        made = []
        for body in (b"v1", b"v2"):
            rec = record("k", body, NEW_VERSION)
            await there.put_object(rec)
            made.append(rec.version_id)
        return made

    old, new = asyncio.run(versions())
    assert (old, new) != ("null", "null") and old != new
    assert [body_of(here, "k", version_id=v, epoch=object()) for v in (old, new, None)] == [b"v1", b"v2", b"v2"]
    asyncio.run(there.delete_version("bkt", "k", new))
    epoch = object()
    assert [body_of(here, "k", version_id=v, epoch=epoch) for v in (old, new, None)] == [b"v1", None, b"v1"]
    asyncio.run(there.update_object_meta("bkt", "k", old, {"tags": [["a", "b"]]}))
    assert here.get_object("bkt", "k", old, epoch=object()).meta["tags"] == [["a", "b"]]


def test_callers_get_records_of_their_own(stores):
    """The cache keeps rows, not records: a caller that changes the record it got changes nothing for the next."""
    here, _ = stores
    asyncio.run(here.put_object(record("k", b"x")))
    epoch = object()
    got = here.get_object("bkt", "k", epoch=epoch)
    got.meta["user"]["n"] = "changed"
    got.meta["extra"] = 1
    got.segments.append(None)
    again = here.get_object("bkt", "k", epoch=epoch)
    assert again is not got
    assert again.meta == {"user": {"n": "x"}} and again.segments == []


def test_the_cache_stays_within_its_byte_bound(stores):
    """Inline objects ride in their rows: a reader that touches many large ones keeps at most the bound."""
    import shoal.storage.sqlite_meta as sqlite_meta

    here, _ = stores
    big = b"z" * (60 << 10)

    async def fill() -> None:
        await asyncio.gather(*(here.put_object(record(f"big{i}", big)) for i in range(400)))

    asyncio.run(fill())
    epoch = object()
    for i in range(400):
        assert body_of(here, f"big{i}", epoch=epoch) == big
        assert here._local.object_cache_bytes <= sqlite_meta._OBJECT_CACHE_BYTES
    assert 0 < len(here._local.object_cache) < 400


def test_a_get_that_retries_reads_past_its_request_epoch(tmp_path):
    """A GET whose blob is gone when it opens it (the object was replaced, its old blob collected, between the
    metadata read and the open) reads the metadata again. Within the request's epoch that read would come from
    the cache, the replaced row again; the retry (recheck) reads what the store holds now."""
    import os

    from shoal.auth.identities import Identity, IdentityStore
    from shoal.s3 import context, objects
    from shoal.s3.service import S3Service
    from shoal.storage.engine import Storage

    storage = Storage.open_local(str(tmp_path))
    other = SqliteMetadataStore(os.path.join(str(tmp_path), ".shoal", "meta.sqlite3"))  # another worker's
    owner = Identity("AKOWNER", "secret", "owner", "owner")
    svc = S3Service(storage, IdentityStore())
    token = context.current.set(context.RequestContext())  # one request
    try:
        storage.meta.create_bucket_sync(Bucket("bkt", "owner", time.time()))
        asyncio.run(other.put_object(record("k", b"old")))
        assert objects.head_object(svc, owner, "bkt", "k").inline == b"old"
        asyncio.run(other.put_object(record("k", b"new")))  # committed by the other process mid-request
        assert objects.head_object(svc, owner, "bkt", "k", recheck=True).inline == b"new"
    finally:
        context.current.reset(token)
        other.close()
        storage.close()


def test_every_worker_serves_the_newest_body_at_once(make_server):
    """Through the server: clients whose kept-alive connections sit on either worker GET a key (warming that
    worker's cache), then one client replaces or deletes it; every client's next GET, on the same connection,
    sees the change."""
    srv = make_server(args=["--workers", "2"])
    writer = client(srv.endpoint)
    writer.create_bucket(Bucket="fresh")
    writer.put_object(Bucket="fresh", Key="k", Body=b"0")
    readers = [client(srv.endpoint) for _ in range(8)]
    for reader in readers:
        reader.get_object(Bucket="fresh", Key="k")["Body"].read()

    def everyone_reads(expected: bytes | None) -> None:
        for _ in range(2):
            for reader in readers:
                try:
                    got = reader.get_object(Bucket="fresh", Key="k")["Body"].read()
                except ClientError as exc:
                    assert status_of(exc) == 404, exc
                    got = None
                assert got == expected

    for round_ in range(1, 8):
        body = str(round_).encode()
        writer.put_object(Bucket="fresh", Key="k", Body=body)
        everyone_reads(body)
        if round_ % 3 == 0:
            writer.delete_object(Bucket="fresh", Key="k")
            everyone_reads(None)
