"""The HTTP/1.1 front end (shoal.http.protocol): connection handling that S3 tests do not reach, on the wire."""

from __future__ import annotations

import socket
import uuid
import xml.etree.ElementTree as ET

import pytest

from shoal.http.response import Response, head

from rawhttp import Raw, raw_exchange, sign_v4


@pytest.fixture(scope="module")
def raw(server) -> Raw:
    return Raw(server.port)


@pytest.fixture
def rb(raw) -> str:
    name = f"front-{uuid.uuid4().hex[:20]}"
    assert raw.signed("PUT", f"/{name}").status == 200
    return name


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n").encode() + body


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
    good = _request("GET", f"/{rb}/k", sign_v4("GET", f"{raw.endpoint}/{rb}/k"))
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
        sent = _request("GET", path, headers)[:-2] + b"x-endless: "
        with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
            s.sendall(sent)
            try:
                for _ in range(40):
                    s.sendall(b"e" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except ConnectionResetError:
                pass
        (status, _, body), = _responses(data)
        assert (status, _code(body)) == (400, "RequestHeaderSectionTooLarge")
        return
    (status, response_headers, body), = _responses(raw_exchange(raw.port, _request("GET", path, headers)))
    assert (status, _code(body)) == (400, "RequestHeaderSectionTooLarge")
    assert response_headers["content-type"] == "application/xml"


def test_a_body_the_handler_does_not_read_is_skipped_and_the_connection_goes_on(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"stored").status == 200
    url = f"{raw.endpoint}/{rb}/k"
    with_body = sign_v4("GET", url, b"ignored", {"Content-Length": "7"})
    plain = sign_v4("GET", url)
    with socket.create_connection(("127.0.0.1", raw.port), timeout=5) as s:
        s.sendall(_request("GET", f"/{rb}/k", with_body, b"ignored") + _request("GET", f"/{rb}/k", plain))
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
    follow = _request("GET", f"/{rb}/k", sign_v4("GET", f"{raw.endpoint}/{rb}/k"))
    answers = _responses(raw_exchange(raw.port, _request("GET", f"/{rb}/k", headers) + follow))
    assert [(a[0], a[2]) for a in answers] == [(200, b"up")]  # nothing after the upgrade is read


def test_a_client_that_half_closes_after_its_request_still_gets_the_answer(raw, rb):
    assert raw.signed("PUT", f"/{rb}/k", b"half").status == 200
    request = _request("GET", f"/{rb}/k", sign_v4("GET", f"{raw.endpoint}/{rb}/k"))
    (status, _, body), = _responses(raw_exchange(raw.port, request))  # raw_exchange shuts its writing side
    assert (status, body) == (200, b"half")


def test_a_body_cut_short_by_a_half_close_is_an_incomplete_body(raw, rb):
    headers = sign_v4("PUT", f"{raw.endpoint}/{rb}/cut", b"x" * 100, {"Content-Length": "100"})
    answers = _responses(raw_exchange(raw.port, _request("PUT", f"/{rb}/cut", headers, b"x" * 40)))
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
