"""The HTTP/1.1 front end (shoal.http.protocol): connection handling that S3 tests do not reach, on the wire."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

import pytest

from shoal.http.response import Response, head

from rawhttp import raw_exchange, read_until_closed, request_bytes, sign_v4


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split what a connection received into (status, headers, body), by Content-Length."""
    out = []
    while data:
        head_bytes, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data[:300]
        lines = head_bytes.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        out.append((int(lines[0].split(" ")[1]), headers, rest[:length]))
        data = rest[length:]
    return out


def _code(body: bytes) -> str | None:
    return ET.fromstring(body).findtext("Code")


def test_a_malformed_request_after_a_good_one_is_answered_after_it_then_the_connection_closes(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"first").status == 200
    good = request_bytes("GET", f"/{rb}/k", sign_v4("GET", f"{raw.endpoint}/{rb}/k"))
    answers = _responses(raw_exchange(raw.port, good + b"NOT A REQUEST\r\n\r\n"))
    assert [a[0] for a in answers] == [200, 400]
    assert answers[0][2] == b"first"
    assert _code(answers[1][2]) == "BadRequest" and "x-amz-request-id" in answers[1][1]
    assert answers[1][1]["connection"] == "close"


@pytest.mark.parametrize("what", ["many-headers", "long-target", "long-header", "endless-header"])
def test_request_heads_over_the_limits_are_s3_errors(raw, rb, what):
    headers = {"Host": f"127.0.0.1:{raw.port}"}
    path = f"/{rb}/k"
    if what == "many-headers":
        headers.update({f"x-h-{i}": "v" for i in range(300)})
    elif what == "long-target":
        path += "?x=" + "a" * 20_000
    elif what == "long-header":
        headers["x-big"] = "b" * 17_000
    else:  # a header that never ends: refused once the head passes 1 MiB, without waiting for its end
        sent = request_bytes("GET", path, headers)[:-2] + b"x-endless: "
        with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
            s.sendall(sent)
            try:
                for _ in range(40):
                    s.sendall(b"e" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
            data = read_until_closed(s)
        (status, _, body), = _responses(data)
        assert (status, _code(body)) == (400, "RequestHeaderSectionTooLarge")
        return
    (status, response_headers, body), = _responses(raw_exchange(raw.port, request_bytes("GET", path, headers)))
    assert (status, _code(body)) == (400, "RequestHeaderSectionTooLarge")
    assert response_headers["content-type"] == "application/xml"


def test_a_body_the_handler_does_not_read_is_skipped_and_the_connection_goes_on(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"stored").status == 200
    url = f"{raw.endpoint}/{rb}/k"
    with_body = sign_v4("GET", url, b"ignored", {"Content-Length": "7"})
    plain = sign_v4("GET", url)
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        s.sendall(request_bytes("GET", f"/{rb}/k", with_body, b"ignored") + request_bytes("GET", f"/{rb}/k", plain))
        data = b""
        while data.count(b"stored") < 2:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    assert [(a[0], a[2]) for a in _responses(data)] == [(200, b"stored"), (200, b"stored")]


def test_an_upgrade_request_is_answered_then_the_connection_closes(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"up").status == 200
    headers = sign_v4("GET", f"{raw.endpoint}/{rb}/k")
    headers.update({"Connection": "Upgrade", "Upgrade": "websocket"})
    follow = request_bytes("GET", f"/{rb}/k", sign_v4("GET", f"{raw.endpoint}/{rb}/k"))
    answers = _responses(raw_exchange(raw.port, request_bytes("GET", f"/{rb}/k", headers) + follow))
    assert [(a[0], a[2]) for a in answers] == [(200, b"up")]  # nothing after the upgrade is read


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"half").status == 200
    request = request_bytes("GET", f"/{rb}/k", sign_v4("GET", f"{raw.endpoint}/{rb}/k"))
    (status, _, body), = _responses(raw_exchange(raw.port, request))  # raw_exchange shuts its writing side
    assert (status, body) == (200, b"half")


def test_a_body_cut_short_by_a_half_close_is_an_incomplete_body(raw, rb):
    headers = sign_v4("PUT", f"{raw.endpoint}/{rb}/cut", b"x" * 100, {"Content-Length": "100"})
    answers = _responses(raw_exchange(raw.port, request_bytes("PUT", f"/{rb}/cut", headers, b"x" * 40)))
    assert [a[0] for a in answers] in ([], [400])  # answered, or the connection simply closed
    if answers:
        assert _code(answers[0][2]) == "IncompleteBody"
    assert raw.signed("GET", f"/{rb}/cut").status == 404


class _Request:
    method = "GET"
    version = (1, 1)
    keep_alive = True


def test_a_response_header_with_a_line_break_is_refused():
    """Defence in depth: a value that would split the response never reaches the wire (handlers refuse control
    characters in what they copy into headers; this holds whatever a future handler does)."""
    for value in ("a\r\nSet-Cookie: x=1", "a\nb", "a\rb"):
        with pytest.raises(ValueError):
            head(_Request(), Response(headers={"x-amz-meta-a": value}))  # type: ignore[arg-type]
    sent = head(_Request(), Response(headers={"x-amz-meta-a": "fine value"}))  # type: ignore[arg-type]
    assert sent.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nx-amz-meta-a: fine value\r\n" in sent
    assert sent.endswith(b"\r\n\r\n") and b"\r\nDate: " in sent


def test_a_chunked_body_s_trailers_are_bounded(raw, rb):
    """HTTP trailers after the last chunk are dropped, and an endless trailer section is cut off (as a head
    would be) rather than buffered: the server's memory stays flat."""
    head = request_bytes("PUT", f"/{rb}/t", {"Host": f"127.0.0.1:{raw.port}", "Transfer-Encoding": "chunked"})
    sent = 0
    with socket.create_connection(("127.0.0.1", raw.port), timeout=10) as s:
        s.sendall(head + b"5\r\nhello\r\n0\r\n")
        try:
            while sent < 2 << 30:
                sent += s.send(b"X-T: " + b"a" * 65536 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 1 << 30  # cut off long before: at the head limit, plus what is dropped while closing


def test_an_upgrade_request_s_body_is_read(raw, rb):
    """curl --http2 on http:// asks for an upgrade to h2c on every request, PUTs included: the upgrade is not
    taken, and the body (which llhttp does not read for such a request) is stored whole."""
    for name, framing, body in (("chunked", {"Transfer-Encoding": "chunked"}, b"5\r\nhello\r\n0\r\n\r\n"),
                                ("length", {"Content-Length": "5"}, b"hello")):
        headers = sign_v4("PUT", f"{raw.endpoint}/{rb}/{name}", b"hello",
                          {**framing, "Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
                           "HTTP2-Settings": "AAMAAABkAAQCAAAAAAIAAAAA"}, payload="UNSIGNED-PAYLOAD")
        wire = request_bytes("PUT", f"/{rb}/{name}", headers, body)
        (status, response_headers, _), = _responses(raw_exchange(raw.port, wire))
        assert status == 200 and response_headers["connection"] == "close"
        assert raw.signed("GET", f"/{rb}/{name}").body == b"hello"


@pytest.mark.parametrize("case", ["two-hosts", "no-host"])
def test_requests_with_an_ambiguous_host_are_refused(raw, rb, case):
    headers = {"Host": f"127.0.0.1:{raw.port}"}
    wire = request_bytes("GET", f"/{rb}/k", headers)
    if case == "two-hosts":
        wire = wire.replace(b"\r\n\r\n", b"\r\nHost: elsewhere.example\r\n\r\n")
    else:
        wire = wire.replace(f"Host: 127.0.0.1:{raw.port}\r\n".encode(), b"")
    (status, _, body), = _responses(raw_exchange(raw.port, wire))
    assert (status, _code(body)) == (400, "BadRequest")


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
def test_an_upload_refused_at_once_is_answered_not_reset(raw, connection):
    """A client sends its whole body before reading: the server answers at once (no such bucket), then reads and
    drops the rest, so the client finds the answer rather than a reset connection."""
    size = 32 << 20
    headers = {"Host": f"127.0.0.1:{raw.port}", "Content-Length": str(size), "Connection": connection}
    with socket.create_connection(("127.0.0.1", raw.port), timeout=10) as s:
        s.sendall(request_bytes("PUT", "/no-such-bucket-here/k", headers))
        chunk = b"x" * (1 << 20)
        for _ in range(size // len(chunk)):
            s.sendall(chunk)
        data = b""
        while b"</Error>" not in data:
            more = s.recv(65536)
            assert more, data
            data += more
    (status, _, body), = _responses(data)
    assert (status, _code(body)) == (404, "NoSuchBucket")


def test_a_malformed_chunked_body_gets_one_answer(raw):
    wire = request_bytes("PUT", "/no-such-bucket-here/k", {"Host": f"127.0.0.1:{raw.port}",
                                                       "Transfer-Encoding": "chunked"}) + b"5\r\nhelloXX0\r\n\r\n"
    answers = _responses(raw_exchange(raw.port, wire))
    assert [(a[0], _code(a[2])) for a in answers] == [(400, "BadRequest")]


def test_a_chunked_upload_with_large_chunks_is_not_mistaken_for_trailers(raw, rb):
    """Reads that end inside a chunk's data are body, whatever the chunk's size (only the last chunk's trailer
    section counts against the head limit)."""
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB, one chunk
    headers = sign_v4("PUT", f"{raw.endpoint}/{rb}/big", data, {"Transfer-Encoding": "chunked"},
                      payload="UNSIGNED-PAYLOAD")
    wire = request_bytes("PUT", f"/{rb}/big", headers, f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", raw.port), timeout=10) as s:
        for i in range(0, len(wire), 100_000):
            s.sendall(wire[i:i + 100_000])
        got = b""
        while b"\r\n\r\n" not in got:
            more = s.recv(65536)
            assert more, got
            got += more
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    assert raw.signed("GET", f"/{rb}/big").body == data


def test_a_malformed_body_pipelined_behind_a_request_gets_one_answer(raw, rb):
    url = f"{raw.endpoint}/{rb}/missing"
    get = request_bytes("GET", f"/{rb}/missing", sign_v4("GET", url))
    put = request_bytes("PUT", "/no-such-bucket-here/k", {"Host": f"127.0.0.1:{raw.port}",
                                                      "Transfer-Encoding": "chunked"}) + b"5\r\nhelloXX0\r\n\r\n"
    answers = _responses(raw_exchange(raw.port, get + put))
    assert [(a[0], _code(a[2])) for a in answers] == [(404, "NoSuchKey"), (400, "BadRequest")]


def test_bytes_after_an_upgrade_request_s_body_are_not_read(raw, rb):
    headers = sign_v4("PUT", f"{raw.endpoint}/{rb}/up", b"hello",
                      {"Content-Length": "5", "Connection": "Upgrade", "Upgrade": "h2c"}, payload="UNSIGNED-PAYLOAD")
    wire = request_bytes("PUT", f"/{rb}/up", headers, b"hello") + b"garbage\r\n\r\n"
    answers = _responses(raw_exchange(raw.port, wire))
    assert [a[0] for a in answers] == [200]



def test_an_http_1_0_client_expecting_100_continue_gets_no_interim_answer(raw, rb):
    """HTTP/1.0 has no 1xx answers: the expectation is ignored, and the body read as it comes."""
    headers = sign_v4("PUT", f"{raw.endpoint}/{rb}/old", b"hello", {"Content-Length": "5", "Expect": "100-continue"})
    wire = request_bytes("PUT", f"/{rb}/old", headers, b"hello").replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    data = raw_exchange(raw.port, wire)
    assert data.startswith(b"HTTP/1.0 200"), data[:200]
    assert raw.signed("GET", f"/{rb}/old").body == b"hello"


def _one_response(sock: socket.socket, buf: bytes, timeout: float) -> tuple[bytes, bytes]:
    """(status line, what is left of ``buf`` after the response) for the next response on ``sock``."""
    sock.settimeout(timeout)
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1 << 20)
        assert chunk, "closed"
        buf += chunk
    head_bytes, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head_bytes.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, "closed"
        rest += chunk
    return head_bytes.split(b"\r\n")[0], rest[length:]


def test_a_body_received_whole_and_left_unread_does_not_stall_the_connection(server, s3, bucket):
    """A refused upload whose body arrives in one read, beyond the body stream's limit (so reading was paused),
    and is never read: the connection reads its next request all the same. (Found in review: the stream paused
    the connection and only a read of the body resumed it.)"""
    import threading
    import time

    s3.put_object(Bucket=bucket, Key="big", Body=b"b" * (16 << 20))
    health = request_bytes("GET", "/minio/health/ready", {"Host": "127.0.0.1"})
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        # Grow the server's receive buffer (TCP autotuning) with an 8 MiB upload on this connection.
        data = b"w" * (8 << 20)
        headers = sign_v4("PUT", f"{server.endpoint}/{bucket}/warm", payload="UNSIGNED-PAYLOAD")
        headers["Content-Length"] = str(len(data))
        s.sendall(request_bytes("PUT", f"/{bucket}/warm", headers) + data)
        status, buf = _one_response(s, b"", 20)
        assert status.endswith(b"200 OK"), status
        # A large GET left unread holds the connection (the health check waits behind it) while the refused
        # upload arrives whole in the kernel's buffer.
        headers = sign_v4("GET", f"{server.endpoint}/{bucket}/big", payload="UNSIGNED-PAYLOAD")
        s.sendall(request_bytes("GET", f"/{bucket}/big", headers) + health)
        time.sleep(0.5)
        size = 200_000
        refused = request_bytes("PUT", "/no-such-bucket-here/k", {"Host": "127.0.0.1", "Content-Length": str(size)})
        sender = threading.Thread(target=s.sendall, args=(refused + b"x" * size,))
        sender.start()
        time.sleep(0.5)
        statuses = []
        for _ in range(3):
            status, buf = _one_response(s, buf, 20)
            statuses.append(status.split(b" ")[1])
        sender.join()
        assert statuses == [b"200", b"200", b"404"]
        s.sendall(health)
        status, buf = _one_response(s, buf, 5)
        assert status.endswith(b"200 OK"), status
