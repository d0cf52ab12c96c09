"""FrameHandler.feed: messages from elsewhere than a socket (the bus) take the socket's path."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fastws import FrameHandler
from tests.unit.test_core import Recorder, frame, make

DEPTH = [b'{"stream":"btcusdt@depth","data":{"U":%d,"u":%d}}' % (n, n) for n in range(1, 6)]


def sequenced(rec: Recorder, gaps: list[tuple[Any, ...]], **kwargs: Any) -> FrameHandler:
    return FrameHandler(rec.parse, rec.extract, kwargs.get("handle", rec.handle), rec.report,
                        first_sequence_key=b'"U":', last_sequence_key=b'"u":',
                        on_sequence_gap=lambda *gap: gaps.append(gap))


async def test_a_fed_message_is_handled_and_counted_as_one_read_from_the_socket() -> None:
    fed, read = Recorder(), Recorder()
    fed_core, read_core = make(fed), make(read)
    fed_core.on_ws_connected(None)
    for payload in DEPTH:
        assert fed_core.feed(payload) is True
        read_core.on_ws_frame(None, frame(payload))
    assert fed.handled == read.handled and len(fed.handled) == 5
    keys = ("messages_received", "bytes_received", "messages_delivered", "parse_errors")
    assert {k: fed_core.counters()[k] for k in keys} == {k: read_core.counters()[k] for k in keys}
    assert fed_core.stream_stats()["btcusdt@depth"].messages == 5
    assert fed_core.frame_type == 1
    assert fed_core.feed(b'\x08\x01', 2) and fed_core.frame_type == 2 and fed.errors   # not JSON: reported


async def test_a_copy_under_the_same_key_is_dropped_before_routing_and_counted() -> None:
    rec, gaps = Recorder(), []
    core = sequenced(rec, gaps)
    core.on_ws_connected(None)
    # Two publishers, the second two messages behind: each message once, in order.
    order = [DEPTH[0], DEPTH[1], DEPTH[0], DEPTH[2], DEPTH[1], DEPTH[3], DEPTH[2], DEPTH[4], DEPTH[3], DEPTH[4]]
    results = [core.feed(payload, 1, "btcusdt@depth") for payload in order]
    assert results == [True, True, False, True, False, True, False, True, False, False]
    assert [m["data"]["u"] for m in rec.handled] == [1, 2, 3, 4, 5]
    assert core.overlap_dropped == 5 and core.messages_received == 10
    assert core.stream_stats()["btcusdt@depth"].messages == 5 and gaps == []
    # Without a key (or under another) nothing is dropped.
    assert core.feed(DEPTH[4]) and core.feed(DEPTH[4], 1, "other")
    assert len(rec.handled) == 7


async def test_a_missing_message_is_a_sequence_gap() -> None:
    rec, gaps = Recorder(), []
    core = sequenced(rec, gaps)
    core.on_ws_connected(None)
    for payload in (DEPTH[0], DEPTH[3], DEPTH[4]):
        core.feed(payload, 1, "btcusdt@depth")
    assert gaps == [("btcusdt@depth", 2, 4, 4)] and core.sequence_gaps == 1


async def test_fed_messages_wait_in_order_behind_a_suspended_handler() -> None:
    rec = Recorder()
    release = asyncio.Event()
    handled: list[int] = []

    async def slow(message: Any) -> None:
        if message["data"]["u"] == 1:
            await release.wait()
        handled.append(message["data"]["u"])

    core = make(rec, handle=slow)
    core.on_ws_connected(None)
    for payload in DEPTH:
        core.feed(payload)
    assert handled == [] and core.backlog_size == 4
    release.set()
    # The stream's handler finishes in a task of its own (per-stream backlogs).
    await asyncio.wait_for(asyncio.gather(*core.pending_tasks()), 2)
    assert handled == [1, 2, 3, 4, 5] and core.backlog_size == 0


async def test_an_opcode_other_than_text_or_binary_is_refused() -> None:
    core = make(Recorder())
    core.on_ws_connected(None)
    with pytest.raises(ValueError, match="opcode"):
        core.feed(DEPTH[0], 8)
    with pytest.raises(TypeError):
        core.feed(bytearray(DEPTH[0]))      # type: ignore[arg-type]
    assert core.messages_received == 0
