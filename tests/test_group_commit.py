"""Metadata commits (shoal.storage.sqlite_meta): writes from concurrent requests share a commit on the writer
thread (group commit), and a request that is alone commits its write on the event loop's own thread, without
ever waiting there for a lock.

The store-level tests drive a SqliteMetadataStore directly, playing the other process's writer or a program
outside Shoal's locks; the server-level tests read the commit counters from /metrics.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
import time

import pytest

from shoal.storage import sqlite_meta
from shoal.storage.errors import PreconditionError
from shoal.storage.records import Bucket, ObjectRecord
from shoal.storage.sqlite_meta import SqliteMetadataStore

from conftest import client
from rawhttp import Raw
from s3util import metric, scrape


@pytest.fixture
def store(tmp_path, monkeypatch):
    # A commit slower than _HERE_SLOW pauses the loop's commits: not what these tests are about (a loaded CI
    # machine's fsync can take tens of milliseconds), except the one that sets its own.
    monkeypatch.setattr(sqlite_meta, "_HERE_SLOW", 60.0)
    store = SqliteMetadataStore(str(tmp_path / "meta.sqlite3"))
    store.create_bucket_sync(Bucket("bkt", "owner", time.time()))
    store.quiet = lambda: True  # as the server says while a request is alone
    yield store
    store.close()


def put(store: SqliteMetadataStore, key: str):
    return store.put_object(ObjectRecord("bkt", key, "null", 1, "e", time.time(), inline=b"x"))


def committed_keys(store: SqliteMetadataStore) -> set[str]:
    with sqlite3.connect(store._path) as other:  # another connection: what is committed, not what is cached
        return {row[0] for row in other.execute("SELECT key FROM versions")}


def counts(store: SqliteMetadataStore) -> tuple[int, int, int]:
    return store.writes, store.commits_by_writer, store.commits_here


def commits_made_by(store: SqliteMetadataStore, writes: int) -> tuple[int, int]:
    """Make ``writes`` writes, one after another on one event loop: (commits by the writer thread, commits on the
    loop's thread)."""
    before = counts(store)

    async def main():
        for i in range(writes):
            await put(store, f"k{i}")

    asyncio.run(main())
    return store.commits_by_writer - before[1], store.commits_here - before[2]


def test_a_quiet_write_commits_on_the_callers_thread(store):
    before = counts(store)

    async def writes():
        for i in range(3):
            await put(store, f"k{i}")
            assert f"k{i}" in committed_keys(store)  # committed when the await returns

    asyncio.run(writes())
    writes_, by_writer, here = (a - b for a, b in zip(counts(store), before, strict=True))
    assert (writes_, by_writer, here) == (3, 0, 3)


def test_without_quiet_every_write_goes_to_the_writer_thread(store):
    store.quiet = None
    assert commits_made_by(store, 3) == (3, 0)
    assert committed_keys(store) == {"k0", "k1", "k2"}


def largest_stall_while(store: SqliteMetadataStore, release, held_for: float = 0.4) -> float:
    """Write with the database held by someone else, released by ``release`` after ``held_for`` seconds from
    another thread. Returns the longest the event loop went without running (a write that waited for the lock
    on the loop would stall it until the release)."""

    async def main() -> float:
        write = asyncio.create_task(put(store, "waited"))
        largest = 0.0
        last = time.monotonic()
        while not write.done():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            largest = max(largest, now - last)
            last = now
        await write
        return largest

    timer = threading.Timer(held_for, release)
    timer.start()
    try:
        return asyncio.run(main())
    finally:
        timer.cancel()
        timer.join()


def test_a_quiet_write_does_not_wait_on_the_loop_for_another_writer(store):
    lock = os.open(store._path + ".writer-lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process's writer is committing
        before = counts(store)
        stall = largest_stall_while(store, lambda: fcntl.flock(lock, fcntl.LOCK_UN))
    finally:
        os.close(lock)
    assert stall < 0.2, f"the event loop stood still for {stall:.3f} s"
    assert (store.commits_by_writer - before[1], store.commits_here - before[2]) == (1, 0)
    assert "waited" in committed_keys(store)


def test_a_quiet_write_does_not_wait_on_the_loop_for_a_program_outside_the_lock(store):
    foreign = sqlite3.connect(store._path, isolation_level=None, check_same_thread=False)
    try:
        foreign.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock without Shoal's lock file
        before = counts(store)
        stall = largest_stall_while(store, lambda: foreign.execute("ROLLBACK"))
    finally:
        foreign.close()
    assert stall < 0.2, f"the event loop stood still for {stall:.3f} s"
    assert (store.commits_by_writer - before[1], store.commits_here - before[2]) == (1, 0)
    assert "waited" in committed_keys(store)


def test_the_writer_thread_commits_every_so_often_for_the_checkpoints(store, monkeypatch):
    monkeypatch.setattr(sqlite_meta, "_HERE_STREAK", 3)
    # Three on the loop's thread, one by the writer thread (whose connection runs the WAL checkpoints), again...
    assert commits_made_by(store, 9) == (2, 7)
    assert committed_keys(store) == {f"k{i}" for i in range(9)}


def test_after_a_slow_commit_the_loop_stays_out_of_fsyncs(store, monkeypatch):
    monkeypatch.setattr(sqlite_meta, "_HERE_SLOW", 0.0)  # every commit counts as slow
    monkeypatch.setattr(sqlite_meta, "_HERE_PAUSE", 60.0)
    assert commits_made_by(store, 3) == (2, 1)


def test_a_failing_write_on_the_loop_leaves_nothing_behind(store):
    before = counts(store)

    async def writes():
        await put(store, "k")
        # A conditional write whose condition fails: its transaction is rolled back, the next one works.
        with pytest.raises(PreconditionError):
            await store.put_object(ObjectRecord("bkt", "k", "null", 2, "e2", time.time(), inline=b"yy"),
                                   if_match="not-the-etag")
        await put(store, "after")

    asyncio.run(writes())
    with sqlite3.connect(store._path) as other:
        assert other.execute("SELECT size FROM versions WHERE key='k'").fetchone() == (1,)
        assert other.execute("SELECT count(*) FROM versions WHERE key='after'").fetchone() == (1,)
    assert not store._here_conn.in_transaction
    # All three ran on the loop's thread; the failed one committed nothing and is not counted.
    assert tuple(a - b for a, b in zip(counts(store), before, strict=True)) == (2, 0, 2)


# -- through the server -----------------------------------------------------------------------------------------


def commit_counts(endpoint: str) -> tuple[float, float, float]:
    samples = scrape(endpoint)
    return (metric(samples, "shoal_metadata_writes_total"),
            metric(samples, "shoal_metadata_commits_total", thread="writer"),
            metric(samples, "shoal_metadata_commits_total", thread="loop"))


def test_a_client_alone_commits_on_the_loop_and_many_clients_in_groups(make_server):
    srv = make_server()
    raw = Raw(srv.port)
    assert raw.signed("PUT", "/grouped").status == 200
    time.sleep(0.2)  # the connections of the start-up checks are gone
    before = commit_counts(srv.endpoint)
    # The scrape's connection is gone too, and so is any pause after a slow commit (a loaded machine's fsync).
    time.sleep(1.2)
    conn = raw.connection()
    for i in range(5):
        assert raw.signed("PUT", f"/grouped/alone{i}", b"x" * 100, conn=conn).status == 200
    after_alone = commit_counts(srv.endpoint)
    assert after_alone[0] - before[0] == 5
    assert after_alone[2] - before[2] >= 1, (before, after_alone)  # one client, one connection: on the loop

    # Sixteen clients at once, each on its own kept-alive connection: never on the loop (its commits would
    # hold back the other clients' requests), and their writes share commits.
    conns = [raw.connection() for _ in range(16)]
    barrier = threading.Barrier(16)
    failures: list[object] = []

    def client(n: int) -> None:
        for round_ in range(10):
            barrier.wait(timeout=20)
            resp = raw.signed("PUT", f"/grouped/c{n}-{round_}", b"y" * 100, conn=conns[n])
            if resp.status != 200:
                failures.append(resp)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures[:3]
    final = commit_counts(srv.endpoint)
    writes, by_writer, here = (a - b for a, b in zip(final, after_alone, strict=True))
    assert writes == 160
    assert here == 0, f"{here} commits on the loop while 16 clients were connected"
    assert by_writer < writes, "no write shared a commit"
    for c in [*conns, conn]:
        c.close()


def test_the_writes_a_request_starts_together_share_commits(make_server):
    """DeleteObjects deletes its keys at once: only a request's first write may commit on the loop, or a lone
    client's DeleteObjects of 1000 keys would pay 1000 fsyncs one after another, the loop blocked throughout."""
    srv = make_server()
    s3 = client(srv.endpoint)
    s3.create_bucket(Bucket="together")
    keys = [f"k{i}" for i in range(60)]
    for key in keys:
        s3.put_object(Bucket="together", Key=key, Body=b"z")
    time.sleep(1.2)  # the scrape's connection (below) is the only other one, and gone before the request
    before = commit_counts(srv.endpoint)
    time.sleep(0.2)
    deleted = s3.delete_objects(Bucket="together", Delete={"Objects": [{"Key": k} for k in keys]})
    assert len(deleted["Deleted"]) == 60
    writes, by_writer, here = (a - b for a, b in zip(commit_counts(srv.endpoint), before, strict=True))
    assert writes == 60
    assert here <= 1, f"{here} of one request's writes committed on the loop"
    assert by_writer < 59, "the deletes did not share commits"
    assert "Contents" not in s3.list_objects_v2(Bucket="together")


def test_a_write_interrupted_on_the_loop_leaves_no_transaction_open(store):
    """Even what is not an Exception (an interrupt arriving mid-write) must not leave the loop's connection in its
    transaction: it would hold SQLite's write lock, and every later write would wait for it."""

    class Interrupted(BaseException):
        pass

    def interrupted(conn):
        conn.execute("DELETE FROM versions")
        raise Interrupted

    async def writes():
        await put(store, "before")
        with pytest.raises(Interrupted):
            await store.write(interrupted)
        await asyncio.wait_for(put(store, "after"), 5)  # on the loop's thread again
        store.quiet = None
        await asyncio.wait_for(put(store, "by-writer"), 5)  # and by the writer thread

    asyncio.run(writes())
    assert committed_keys(store) == {"before", "after", "by-writer"}
