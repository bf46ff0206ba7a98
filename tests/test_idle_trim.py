"""After a burst of concurrent uploads the server gives back the heap memory it no longer uses once it is idle
(shoal.server._IdleTrim): the uploads' shares of the buffer budgets are small enough to come from the heap,
which otherwise keeps them mapped."""

from __future__ import annotations

import os
import threading
import time
import uuid

from rawhttp import Raw, aws_chunked, sign_v4
from s3util import rss

MiB = 1 << 20


def test_idle_server_gives_back_the_memory_of_a_burst(make_server):
    srv = make_server()
    raw = Raw(srv.port)
    bucket = f"trim-{uuid.uuid4().hex[:12]}"
    assert raw.signed("PUT", f"/{bucket}").status == 200
    data = os.urandom(16 * MiB)
    mode = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    body = aws_chunked(data, 65536, {}, signed=False)  # unsigned chunks: the same body for every key
    statuses: list[int] = []
    start = threading.Barrier(48)

    def upload(i: int) -> None:
        path = f"/{bucket}/k{i}"
        headers = sign_v4("PUT", raw.endpoint + path, b"", {
            "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
            "x-amz-content-sha256": mode}, payload=mode)
        start.wait()
        statuses.append(raw.send("PUT", path, body, headers).status)

    # 48 at once: each body's fills are 8 MiB / 48 (under glibc's mmap threshold, so from the heap).
    threads = [threading.Thread(target=upload, args=(i,)) for i in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 48
    assert srv.proc is not None
    busy = rss(srv.proc.pid)
    deadline = time.monotonic() + 20  # trimmed after 5-10 s without requests
    while time.monotonic() < deadline and rss(srv.proc.pid) > busy - 8 * MiB:
        # A load balancer's health checks keep coming: they are not the requests that make a server busy.
        assert raw.send("GET", "/minio/health/live").status == 200
        time.sleep(0.5)
    assert rss(srv.proc.pid) <= busy - 8 * MiB, (busy / MiB, rss(srv.proc.pid) / MiB)
