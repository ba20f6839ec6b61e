"""The FUSE side's reading of home's answers: reply frames inside a chunked HTTP body, however the
bytes are cut by the network and by aiohttp's chunks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mosix.agent.homefs import stream, wire

Reply = tuple[int, int, int, bytes]
replies_st = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(-2**31, 2**31 - 1), st.integers(0, 2**64 - 1),
                                st.binary(max_size=300)), max_size=8)


def chunked(body: bytes, cuts: list[int]) -> bytes:
    """`body` as HTTP/1.1 chunks cut at `cuts`, then the last chunk."""
    out, start = b"", 0
    for end in [*sorted({c for c in cuts if 0 < c < len(body)}), len(body)]:
        if end > start:
            out += b"%x\r\n" % (end - start) + body[start:end] + b"\r\n"
        start = end
    return out + b"0\r\n\r\n"


@given(replies_st, st.lists(st.integers(0, 4000), max_size=10), st.lists(st.integers(1, 4000), max_size=10))
def test_replies_come_out_whole_and_in_order(replies: list[Reply], chunk_cuts: list[int], feed_cuts: list[int]) -> None:
    body = b"".join(wire.reply(rid, err, value, len(payload)) + payload for rid, err, value, payload in replies)
    raw = chunked(body, chunk_cuts)
    decoder = stream._Body()
    got: list[Reply] = []
    start = 0
    for end in [*sorted(set(feed_cuts)), len(raw)]:
        got += decoder.feed(raw[start:end])
        start = max(start, end)
    assert got == replies
    assert decoder.ended  # the last chunk: home ended the stream


def test_a_garbled_chunk_header_is_refused() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (int() says why)
        stream._Body().feed(b"zz\r\n")
    with pytest.raises(ValueError, match="too long"):
        stream._Body().feed(b"1" * (stream.HEAD_MAX + 1))
