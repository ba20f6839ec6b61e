"""The FUSE side's reading of home's answers: reply frames, however the bytes are cut by the network."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mosix.agent.homefs import stream, wire

Reply = tuple[int, int, int, bytes]
replies_st = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(-2**31, 2**31 - 1), st.integers(0, 2**64 - 1),
                                st.binary(max_size=300)), max_size=8)


@given(replies_st, st.lists(st.integers(1, 4000), max_size=10))
def test_replies_come_out_whole_and_in_order(replies: list[Reply], feed_cuts: list[int]) -> None:
    raw = b"".join(wire.reply(rid, err, value, len(payload)) + payload for rid, err, value, payload in replies)
    decoder = stream._Replies()
    got: list[Reply] = []
    start = 0
    for end in [*sorted(set(feed_cuts)), len(raw)]:
        piece = raw[start:end]  # what one recv brought, at most as much as `space` had room for
        while piece:
            space = decoder.space()
            n = min(len(space), len(piece))
            space[:n] = piece[:n]
            piece = piece[n:]
            if (reply := decoder.received(n)) is not None:
                got.append(reply)
        start = max(start, end)
    assert got == replies
    assert decoder.answer is None and decoder.got == 0  # nothing left over, nothing made up
