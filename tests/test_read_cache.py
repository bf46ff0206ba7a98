"""The metadata store's per-thread caches of object and bucket rows (sqlite_meta): a read never returns what was
replaced before it began, whichever process replaced it (see shoal.storage.changes)."""

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
    assert body_of(here, "k") == b"one"
    assert body_of(here, "k") == b"one"  # cached now
    asyncio.run(there.put_object(record("k", b"two")))
    assert body_of(here, "k") == b"two"
    assert body_of(here, "k") == b"two"
    asyncio.run(there.put_object(record("k", b"three")))
    assert body_of(here, "k") == b"three"
    # A key that was missing, then created elsewhere; and one deleted elsewhere.
    assert body_of(here, "new") is None
    asyncio.run(there.put_object(record("new", b"made")))
    asyncio.run(there.delete_version("bkt", "k", "null"))
    assert body_of(here, "new") == b"made"
    assert body_of(here, "k") is None


def test_a_request_reads_its_own_writes(stores):
    here, _ = stores

    async def request() -> list[bytes | None]:
        seen = [body_of(here, "k")]
        await here.put_object(record("k", b"mine"))
        seen.append(body_of(here, "k"))
        await here.delete_version("bkt", "k", "null")
        seen.append(body_of(here, "k"))
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
    assert [body_of(here, "k", version_id=v) for v in (old, new, None)] == [b"v1", b"v2", b"v2"]
    asyncio.run(there.delete_version("bkt", "k", new))
    assert [body_of(here, "k", version_id=v) for v in (old, new, None)] == [b"v1", None, b"v1"]
    asyncio.run(there.update_object_meta("bkt", "k", old, {"tags": [["a", "b"]]}))
    assert here.get_object("bkt", "k", old).meta["tags"] == [["a", "b"]]


def test_callers_get_records_of_their_own(stores):
    """The cache keeps rows, not records: a caller that changes the record it got changes nothing for the next."""
    here, _ = stores
    asyncio.run(here.put_object(record("k", b"x")))
    got = here.get_object("bkt", "k")
    got.meta["user"]["n"] = "changed"
    got.meta["extra"] = 1
    got.segments.append(None)
    again = here.get_object("bkt", "k")
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
    for i in range(400):
        assert body_of(here, f"big{i}") == big
        assert here._local.object_cache_bytes <= sqlite_meta._OBJECT_CACHE_BYTES
    assert 0 < len(here._local.object_cache) < 400


def test_bucket_records_follow_changes_made_elsewhere(stores):
    """Bucket records stay cached across object writes, and are read again after a bucket change, wherever it
    was committed."""
    here, there = stores
    cached = here.get_bucket("bkt")
    assert cached.config == {}
    asyncio.run(there.put_object(record("k", b"x")))
    assert body_of(here, "k") == b"x"  # the object cache was emptied...
    assert here.get_bucket("bkt") is cached  # ...and the bucket's record kept
    asyncio.run(there.set_bucket_config("bkt", "versioning", "Enabled"))
    assert here.get_bucket("bkt").config == {"versioning": "Enabled"}
    asyncio.run(there.delete_version("bkt", "k", "null"))
    asyncio.run(there.delete_bucket("bkt"))
    assert here.get_bucket("bkt") is None
    there.create_bucket_sync(Bucket("bkt", "someone-else", time.time()))
    assert here.get_bucket("bkt").owner == "someone-else"


def test_a_row_read_just_before_a_commit_is_not_kept(stores):
    """A reader may fill its cache between a writer's begin() and its COMMIT, with the row as it was: that row is
    not kept past the read."""
    import threading

    here, there = stores
    asyncio.run(there.put_object(record("k", b"old")))
    begin = there._changes.begin
    committing, read = threading.Event(), threading.Event()

    def begin_then_wait(buckets: bool) -> None:
        begin(buckets)
        committing.set()  # hold the COMMIT while this thread reads
        read.wait(10)

    there._changes.begin = begin_then_wait
    writer = threading.Thread(target=asyncio.run, args=(there.put_object(record("k", b"new")),))
    writer.start()
    try:
        assert committing.wait(10)
        assert body_of(here, "k") == b"old"  # read, and cached, before the COMMIT
    finally:
        read.set()
        writer.join(10)
    assert body_of(here, "k") == b"new"


def test_a_commit_cut_short_leaves_no_stale_cache(stores):
    """A writer killed after its COMMIT, before the counters' end(): other readers cache nothing that outlives a
    read until the next commit moves the counters on. Seen with rows changed under the counters' back, as that
    COMMIT's would be."""
    import sqlite3

    here, there = stores
    asyncio.run(there.put_object(record("k", b"old")))
    assert body_of(here, "k") == b"old" and here.get_bucket("bkt").owner == "owner"
    there._changes.begin(buckets=True)  # and no end(): the writer is gone
    behind = sqlite3.connect(there._path, isolation_level=None)
    for body, owner in ((b"new", "changed"), (b"newer", "changed again")):
        behind.execute("UPDATE versions SET inline=? WHERE key='k'", (body,))
        behind.execute("UPDATE buckets SET owner=?", (owner,))
        assert body_of(here, "k") == body and here.get_bucket("bkt").owner == owner
    behind.close()
    asyncio.run(there.put_object(record("k2", b"x")))  # the next commit ends the odd count
    assert there._changes.values[0] % 2 == 0 and there._changes.values[1] % 2 == 0
    assert body_of(here, "k") == b"newer" and here.get_bucket("bkt").owner == "changed again"
    assert here._local.object_cache and here._local.bucket_cache  # caching again


def test_opening_a_store_empties_the_others_caches(tmp_path):
    """A process that opens the store bumps the counters: a worker killed between its commit and the bump after
    it cannot leave the others' caches stale past its restart. Seen here with rows changed under the counters'
    back (straight through SQLite), which only the bump at open can reveal."""
    import sqlite3

    path = str(tmp_path / "meta.sqlite3")
    here = SqliteMetadataStore(path)
    try:
        here.create_bucket_sync(Bucket("bkt", "owner", time.time()))
        asyncio.run(here.put_object(record("k", b"old")))
        assert body_of(here, "k") == b"old" and here.get_bucket("bkt").owner == "owner"
        behind = sqlite3.connect(path, isolation_level=None)
        behind.execute("UPDATE versions SET inline=? WHERE key='k'", (b"new",))
        behind.execute("UPDATE buckets SET owner='changed'")
        behind.close()
        assert body_of(here, "k") == b"old"  # cached: nothing told this store
        SqliteMetadataStore(path).close()
        assert body_of(here, "k") == b"new" and here.get_bucket("bkt").owner == "changed"
    finally:
        here.close()


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
