"""Ordered work on worker threads: a ``Lane`` applies one function to a stream of items (an upload's buffers)
strictly in order, one thread at a time, and goes straight on to the next item queued without a trip through
the event loop; ``Work`` tracks what one request started, so that a request ending early can wait until no
thread still touches its buffers. Used by uploads (shoal.s3.ingest) and by signed aws-chunked bodies
(shoal.http.body)."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

# Lanes run on this pool rather than the loop's default executor: its futures let an upload that ends early (an
# error, or its task cancelled at shutdown) wait until no worker thread still reads its buffers or writes its file.
# asyncio can cancel the wait for a thread's call, not the call itself.
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=min(32, (os.cpu_count() or 1) + 4),
                                             thread_name_prefix="lanes")


class Work:
    """The worker-thread calls one request (an upload) started."""

    def __init__(self) -> None:
        self._started: list[concurrent.futures.Future] = []

    def submit(self, fn, *args) -> concurrent.futures.Future:
        call = POOL.submit(fn, *args)
        self._started = [c for c in self._started if not c.done()] + [call]
        return call

    def wait(self) -> None:
        """Block until none of them still runs: on the way out of a failed upload, before its buffers are reused
        and its file is closed (at most the hashing and writing of the buffers in flight)."""
        concurrent.futures.wait(self._started)
        self._started = []

    async def settle(self) -> None:
        """``wait``, without holding up the event loop meanwhile (a burst of failed uploads blocked it for ~30 ms).
        Cancelled while waiting (shutdown), it blocks instead: its caller must not free what a thread still uses."""
        running = [call for call in self._started if not call.done()]
        if running:
            try:
                await asyncio.shield(asyncio.gather(*(asyncio.wrap_future(call) for call in running),
                                                    return_exceptions=True))
            except asyncio.CancelledError:
                self.wait()
                raise
        self._started = []


T = TypeVar("T")  # what a lane's function takes: an upload's buffers, or a chunked body's parsed events


class Lane(Generic[T]):
    """One function applied to an upload's buffers strictly in order, by one worker thread at a time. A buffer fed
    while the previous one is still in hand is taken by the same thread the moment it is done, with no trip
    through the event loop and no thread to wake: MD5, the slowest lane, never idles between two buffers. After
    a failure (a write's ENOSPC, say) every later buffer fails the same way without being touched."""

    def __init__(self, fn: Callable[[T], object], work: Work) -> None:
        self._fn = fn
        self._work = work
        self._lock = threading.Lock()
        self._backlog: collections.deque[tuple[T, concurrent.futures.Future]] = collections.deque()
        self._draining = False
        self._failed: BaseException | None = None

    def feed(self, data: T) -> concurrent.futures.Future:
        done: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._backlog.append((data, done))
            if self._draining:
                return done
            self._draining = True
        self._work.submit(self._drain)  # Work.wait() then also waits for what is fed while it runs
        return done

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._backlog:
                    self._draining = False
                    return
                data, done = self._backlog.popleft()
            if not done.set_running_or_notify_cancel():  # its upload's task was cancelled while waiting for it
                self._failed = self._failed or concurrent.futures.CancelledError()
                continue
            if self._failed is not None:
                done.set_exception(self._failed)
                continue
            try:
                self._fn(data)
            except BaseException as exc:
                self._failed = exc
                done.set_exception(exc)
            else:
                done.set_result(None)


async def finished(calls: tuple[concurrent.futures.Future, ...]) -> None:
    """Wait until every one of ``calls`` is done (their buffer is free again), then raise the first error."""
    for call in calls:
        if not call.done():
            try:
                await asyncio.wrap_future(call)  # woken from a worker thread only when there is something to wait for
            except Exception:
                pass  # raised below, once all are done
    for call in calls:
        call.result()
