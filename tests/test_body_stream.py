"""shoal.http.stream.BodyStream: whatever the pieces the connection feeds and the sizes the reader asks for, the
reader gets the body's bytes in order, once; the connection pauses and resumes at the limits; errors reach the
reader."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.http.stream import BodyStream

LIMIT = 64


class Connection:
    def __init__(self) -> None:
        self._reading_paused = False
        self.pauses = self.resumes = 0

    def pause_reading(self) -> None:
        self._reading_paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self._reading_paused = False
        self.resumes += 1


def run(coro):
    return asyncio.run(coro)


pieces = st.lists(st.binary(min_size=0, max_size=300), max_size=12)
sizes = st.lists(st.integers(min_value=-1, max_value=400), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(pieces=pieces, sizes=sizes, how=st.sampled_from(["read", "read_nowait", "readany", "readline"]),
       early=st.booleans())
def test_the_reader_gets_every_byte_in_order(pieces, sizes, how, early):
    """Fed before the reads (early) or while the reader waits, read by any of the methods."""
    body = b"".join(pieces)

    async def go() -> bytes:
        stream = BodyStream(Connection(), LIMIT, asyncio.get_running_loop())

        async def feed() -> None:
            for piece in pieces:
                if not early:
                    await asyncio.sleep(0)
                stream.feed_data(piece)
            stream.feed_eof()

        feeder = asyncio.ensure_future(feed())
        if early:
            await feeder
        got = []
        i = 0
        while True:
            n = sizes[i % len(sizes)]
            i += 1
            if n == 0:  # asks for nothing, gets nothing; then one byte, so that the reads move on
                assert await stream.read(0) == b"" and stream.read_nowait(0) == b""
                n = 1
            if how == "read":
                data = await stream.read(n)
                if n > 0:
                    assert len(data) <= n
            elif how == "read_nowait":
                data = stream.read_nowait(n)
                if n >= 0:
                    assert len(data) <= n
                if not data:
                    if stream.at_eof():
                        break
                    await asyncio.sleep(0)
                    continue
            elif how == "readany":
                data = await stream.readany()
            else:
                data = await stream.readline()
                assert b"\n" not in data[:-1]
                if data and not data.endswith(b"\n"):
                    assert stream.at_eof()
            if not data:
                break
            got.append(data)
        await feeder
        assert stream.at_eof() and stream.total_bytes == len(body)
        return b"".join(got)

    assert run(go()) == body


def test_the_connection_pauses_beyond_twice_the_limit_and_resumes_below_it():
    async def go() -> None:
        conn = Connection()
        stream = BodyStream(conn, LIMIT, asyncio.get_running_loop())
        stream.feed_data(b"a" * (2 * LIMIT))
        assert conn.pauses == 0
        stream.feed_data(b"b")
        assert conn.pauses == 1 and conn._reading_paused
        stream.feed_data(b"c")  # already paused: not asked again
        assert conn.pauses == 1
        assert stream.read_nowait(LIMIT) == b"a" * LIMIT
        assert conn.resumes == 0  # LIMIT + 2 still held
        assert stream.read_nowait(3) == b"aaa"
        assert conn.resumes == 1 and not conn._reading_paused

    run(go())


def test_the_end_of_a_body_left_unread_resumes_the_connection():
    """A body received whole past the limit and never read (a refused upload) must not leave the connection
    paused: its next request would not be read."""

    async def go() -> None:
        conn = Connection()
        stream = BodyStream(conn, LIMIT, asyncio.get_running_loop())
        stream.feed_data(b"a" * (3 * LIMIT))
        assert conn._reading_paused
        stream.feed_eof()
        assert conn.resumes == 1 and not conn._reading_paused

    run(go())


def test_an_error_reaches_a_waiting_reader_and_later_reads():
    async def go() -> None:
        stream = BodyStream(Connection(), LIMIT, asyncio.get_running_loop())
        reader = asyncio.ensure_future(stream.read(10))
        await asyncio.sleep(0)
        stream.set_exception(ConnectionResetError("gone"))
        with pytest.raises(ConnectionResetError):
            await reader
        assert isinstance(stream.exception(), ConnectionResetError)
        with pytest.raises(ConnectionResetError):
            stream.read_nowait()
        with pytest.raises(ConnectionResetError):
            await stream.readany()

    run(go())


def test_unread_data_comes_back_first_and_a_second_reader_is_refused():
    async def go() -> None:
        stream = BodyStream(Connection(), LIMIT, asyncio.get_running_loop())
        stream.feed_data(b"line one\nrest")
        assert await stream.readline() == b"line one\n"
        stream.unread_data(b"line one\n")
        assert await stream.readline() == b"line one\n"
        assert stream.read_nowait() == b"rest"
        first = asyncio.ensure_future(stream.read(1))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await stream.read(1)
        stream.feed_eof()
        assert await first == b""

    run(go())


def test_a_line_longer_than_twice_the_limit_is_refused():
    async def go() -> None:
        stream = BodyStream(Connection(), LIMIT, asyncio.get_running_loop())
        stream.feed_data(b"x" * (2 * LIMIT + 1) + b"\n" + b"y" * 11 + b"\n")
        stream.feed_eof()
        with pytest.raises(ValueError):
            await stream.readline()
        with pytest.raises(ValueError):
            await stream.readline(max_line_length=10)  # as aiohttp's multipart reader asks
        assert await stream.readline() == b""

    run(go())
