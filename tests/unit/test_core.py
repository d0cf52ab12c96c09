"""The frame core fed with built frames (no socket): counting, dispatch, errors."""
from __future__ import annotations

from typing import Any, Optional

import msgspec
import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from fastws import FrameHandler, StreamType

MESSAGE = b'{"stream":"btcusdt@depth","data":{"u":1}}'


class Recorder:
    """Collects what the core hands out."""

    def __init__(self) -> None:
        self.parsed: list[Any] = []
        self.handled: list[Any] = []
        self.errors: list[tuple[str, BaseException, Optional[bytes]]] = []

    def parse(self, view: memoryview) -> Any:
        self.parsed.append(type(view))
        return msgspec.json.decode(view)

    def extract(self, message: dict) -> Optional[tuple[str, StreamType]]:
        return (message["stream"], StreamType.ORDERBOOK) if "stream" in message else None

    def handle(self, message: Any) -> None:
        self.handled.append(message)

    def report(self, kind: str, exc: BaseException, payload: Optional[bytes]) -> None:
        self.errors.append((kind, exc, payload))


def frame(payload: bytes, msg_type: WSMsgType = WSMsgType.TEXT, fin: bool = True):
    return _make_test_ws_frame(msg_type, payload, fin, False)


def make(rec: Recorder, **kwargs: Any) -> FrameHandler:
    return FrameHandler(kwargs.get("parse", rec.parse), kwargs.get("extract", rec.extract),
                        kwargs.get("handle", rec.handle), rec.report)


def test_data_frame_is_parsed_from_a_memoryview_and_dispatched() -> None:
    rec = Recorder()
    core = make(rec)
    core.on_ws_frame(None, frame(MESSAGE))
    assert rec.parsed == [memoryview]
    assert rec.handled == [{"stream": "btcusdt@depth", "data": {"u": 1}}]
    counters = core.counters()
    assert counters["messages_received"] == 1
    assert counters["bytes_received"] == len(MESSAGE)
    assert counters["messages_delivered"] == 1
    assert core.stream_stats()["btcusdt@depth"].messages == 1
    assert core.stream_stats()["btcusdt@depth"].stream_type is StreamType.ORDERBOOK
    assert sum(core.latency_histogram()) == 1


def test_receive_time_is_stamped_before_parsing() -> None:
    rec = Recorder()
    seen: list[int] = []
    core = make(rec, parse=lambda view: seen.append(core.last_receive_ns) or {"x": 1})
    from fastws._core import monotonic_time_ns
    before = monotonic_time_ns()
    core.on_ws_frame(None, frame(b"{}"))
    assert before <= seen[0] <= monotonic_time_ns()


def test_parser_returning_none_is_a_control_message() -> None:
    rec = Recorder()
    core = make(rec, parse=lambda view: None)
    core.on_ws_frame(None, frame(b'{"result":null,"id":1}'))
    assert rec.handled == []
    assert core.control_messages == 1
    assert core.messages_delivered == 0


def test_parse_error_is_counted_reported_and_the_feed_goes_on() -> None:
    rec = Recorder()
    core = make(rec)
    core.on_ws_frame(None, frame(b"{not json"))
    core.on_ws_frame(None, frame(MESSAGE))
    assert core.parse_errors == 1
    assert len(rec.handled) == 1
    kind, exc, payload = rec.errors[0]
    assert kind == "parse" and isinstance(exc, msgspec.DecodeError) and payload == b"{not json"


def test_handler_error_is_counted_and_the_feed_goes_on() -> None:
    rec = Recorder()
    calls: list[Any] = []

    def handle(message: Any) -> None:
        calls.append(message)
        if len(calls) == 1:
            raise RuntimeError("boom")

    core = make(rec, handle=handle)
    core.on_ws_frame(None, frame(MESSAGE))
    core.on_ws_frame(None, frame(MESSAGE))
    assert core.handler_errors == 1 and core.messages_delivered == 1
    assert rec.errors[0][0] == "handler" and str(rec.errors[0][1]) == "boom"


def test_bad_stream_info_is_a_classify_error_but_the_message_is_delivered() -> None:
    rec = Recorder()
    core = make(rec, extract=lambda message: "not a tuple")
    core.on_ws_frame(None, frame(MESSAGE))
    assert core.classify_errors == 1
    assert len(rec.handled) == 1


def test_extract_none_still_delivers() -> None:
    rec = Recorder()
    core = make(rec)
    core.on_ws_frame(None, frame(b'{"other":1}'))
    assert rec.handled == [{"other": 1}] and core.stream_stats() == {}


def test_a_view_kept_past_the_call_is_released() -> None:
    rec = Recorder()
    kept: list[memoryview] = []
    core = make(rec, parse=lambda view: kept.append(view) or {"ok": 1})
    core.on_ws_frame(None, frame(MESSAGE))
    with pytest.raises(ValueError):
        bytes(kept[0])


def test_fragments_are_reassembled_in_order() -> None:
    rec = Recorder()
    core = make(rec)
    core.on_ws_frame(None, frame(MESSAGE[:10], WSMsgType.TEXT, fin=False))
    core.on_ws_frame(None, frame(MESSAGE[10:20], WSMsgType.CONTINUATION, fin=False))
    assert rec.handled == []
    core.on_ws_frame(None, frame(MESSAGE[20:], WSMsgType.CONTINUATION, fin=True))
    assert rec.handled == [msgspec.json.decode(MESSAGE)]
    assert core.messages_received == 1 and core.frames_received == 3


def test_stray_continuation_is_a_counted_error() -> None:
    rec = Recorder()
    core = make(rec)
    core.on_ws_frame(None, frame(b"xx", WSMsgType.CONTINUATION, fin=True))
    assert core.parse_errors == 1 and rec.handled == []


def test_pong_frames_never_reach_python() -> None:
    rec = Recorder()
    core = make(rec)
    core.on_ws_frame(None, frame(b"", WSMsgType.PONG))
    assert rec.parsed == [] and core.messages_received == 0


def test_sync_and_async_kinds_are_decided_once() -> None:
    rec = Recorder()

    async def parse(view: memoryview) -> Any:
        return msgspec.json.decode(view)

    async def handle(message: Any) -> None:
        rec.handled.append(message)

    core = make(rec, parse=parse, handle=handle)
    core.on_ws_frame(None, frame(MESSAGE))
    assert rec.handled == [msgspec.json.decode(MESSAGE)]
    assert core.suspensions == 0


def test_async_parse_error_is_counted() -> None:
    rec = Recorder()

    async def parse(view: memoryview) -> Any:
        raise KeyError("missing")

    core = make(rec, parse=parse)
    core.on_ws_frame(None, frame(MESSAGE))
    assert core.parse_errors == 1 and isinstance(rec.errors[0][1], KeyError)


def test_object_with_async_call_is_driven_not_dropped() -> None:
    rec = Recorder()

    class AsyncHandler:
        async def __call__(self, message: Any) -> None:
            rec.handled.append(message)

    core = make(rec, handle=AsyncHandler())
    core.on_ws_frame(None, frame(MESSAGE))
    assert rec.handled == [msgspec.json.decode(MESSAGE)] and core.messages_delivered == 1


def test_every_counter_of_the_core_is_summed_over_connections() -> None:
    from fastws.metrics import ConnectionMetrics

    rec = Recorder()
    metrics = ConnectionMetrics()
    for _ in range(2):
        core = make(rec)
        core.on_ws_frame(None, frame(MESSAGE[:10], fin=False))
        core.on_ws_frame(None, frame(MESSAGE[10:], WSMsgType.CONTINUATION))
        metrics.fold(core)
    snapshot = metrics.snapshot(None)
    assert snapshot["frames_received"] == 4 and snapshot["messages_received"] == 2
    summed = {name for name, value in core.counters().items() if name != "backlog"}
    assert summed <= set(snapshot), summed - set(snapshot)
