"""How the pooled prober reads a status answer off the wire (`orchestrator.engine.client._read_response`): every
way an HTTP/1.x server may frame a body, whether the connection may carry the next round's probe, and the answers
it refuses rather than buffer or misread. Bytes in, no network: the framing is what is under test."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.engine.client import MAX_STATUS_BYTES, _read_response, _Refused

BODY = b'{"replica": "p", "role": "primary"}'


def read(raw: bytes, *, eof: bool = True, later: bytes = b"") -> tuple[int, bytes, bool]:
    """What `_read_response` makes of `raw`, then `later` arriving in a second segment, then the close (`eof`)."""
    async def go() -> tuple[int, bytes, bool]:
        reader = asyncio.StreamReader(limit=MAX_STATUS_BYTES)
        reader.feed_data(raw)

        def rest() -> None:
            reader.feed_data(later)
            if eof:
                reader.feed_eof()
        asyncio.get_running_loop().call_later(0.01, rest) if later else rest()
        return await _read_response(reader)

    return asyncio.run(go())


def test_a_length_delimited_answer_keeps_the_connection() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    assert read(raw, eof=False) == (200, BODY, True)


def test_a_chunked_answer_is_joined_and_keeps_the_connection() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"a;ext=1\r\n" + BODY[:10] + b"\r\n" + b"%x\r\n" % (len(BODY) - 10) + BODY[10:] + b"\r\n0\r\nX-T: 1\r\n\r\n")
    assert read(raw, eof=False) == (200, BODY, True)


def test_an_answer_delimited_by_the_close_is_read_to_the_end_and_not_kept() -> None:
    assert read(b"HTTP/1.0 200 OK\r\n\r\n" + BODY[:10], later=BODY[10:]) == (200, BODY, False)


def test_connection_close_and_http_1_0_are_not_kept_unless_asked() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    old_kept = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}"
    assert [read(raw)[2] for raw in (close, old, old_kept)] == [False, False, True]


def test_an_interim_answer_is_skipped_and_a_5xx_is_returned_for_the_caller_to_retry() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}"
    assert read(raw) == (503, b"{}", True)


@pytest.mark.parametrize("raw", [
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",  # not HTTP at all
    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_STATUS_BYTES + 1),  # more than a status can be
])
def test_what_is_not_a_status_answer_is_refused_before_it_is_buffered(raw: bytes) -> None:
    with pytest.raises(_Refused):
        read(raw)


def test_an_answer_cut_short_is_an_incomplete_read() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}")
