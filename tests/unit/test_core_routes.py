"""The core's typed fast route and the fields it reads from raw bytes, fed with built frames."""
from __future__ import annotations

import time
from typing import Any, Optional

import msgspec
import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from fastws import FrameHandler, StreamType
from fastws._core import RouteTable, latency_bucket_bounds

ORDERBOOK = StreamType.ORDERBOOK
TRADES = StreamType.TRADES


class Depth(msgspec.Struct):
    e: str
    E: int
    U: int
    u: int


def depth(stream: str, first: int, last: int, event_ms: Optional[int] = None) -> bytes:
    event_ms = int(time.time() * 1000) if event_ms is None else event_ms
    return msgspec.json.encode({"stream": stream, "data": {"e": "depthUpdate", "E": event_ms,
                                                          "U": first, "u": last}})


def frame(payload: bytes) -> Any:
    return _make_test_ws_frame(WSMsgType.TEXT, payload, True, False)


class Sink:
    """Handlers and an error reporter that remember what they got."""

    def __init__(self) -> None:
        self.generic: list[Any] = []
        self.routed: list[tuple[str, Any]] = []
        self.errors: list[tuple[str, BaseException]] = []
        self.gaps: list[tuple[str, int, int, int]] = []

    def parse(self, view: memoryview) -> Any:
        return msgspec.json.decode(view)

    def extract(self, message: Any) -> Optional[tuple[str, StreamType]]:
        return (message["stream"], ORDERBOOK) if "stream" in message else None

    def handle(self, message: Any) -> None:
        self.generic.append(message)

    def handle_routed(self, stream: str, message: Any) -> None:
        self.routed.append((stream, message))

    def report(self, kind: str, exc: BaseException, payload: Optional[bytes]) -> None:
        self.errors.append((kind, exc))

    def on_gap(self, stream: str, expected: int, first: int, last: int) -> None:
        self.gaps.append((stream, expected, first, last))


def make(sink: Sink, routes: Optional[RouteTable] = None, **kwargs: Any) -> FrameHandler:
    return FrameHandler(sink.parse, sink.extract, sink.handle, sink.report, routes=routes,
                        on_sequence_gap=sink.on_gap, **kwargs)


def test_a_routed_stream_skips_the_generic_parser_and_gets_its_decoder() -> None:
    sink = Sink()
    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, sink.handle_routed, ORDERBOOK)
    core = make(sink, routes)
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 2, 5)))
    core.on_ws_frame(None, frame(depth("ethusdt@depth", 1, 2, 5)))     # not routed
    core.on_ws_frame(None, frame(b'{"result":null,"id":1}'))           # an ack: generic
    assert sink.routed == [("btcusdt@depth", Depth("depthUpdate", 5, 1, 2))]
    assert [m.get("stream") for m in sink.generic] == ["ethusdt@depth", None]
    assert core.messages_delivered == 3
    assert core.stream_stats()["btcusdt@depth"].messages == 1
    assert core.stream_stats()["btcusdt@depth"].stream_type is ORDERBOOK


def test_routes_survive_many_streams_and_removal() -> None:
    sink = Sink()
    routes = RouteTable()
    decode = msgspec.json.Decoder(Depth).decode
    names = [f"sym{i}usdt@depth" for i in range(300)]
    for name in names:
        routes.add(name, decode, sink.handle_routed, ORDERBOOK)
    routes.remove(names[7])
    assert len(routes) == 299 and names[7] not in routes and names[8] in routes
    core = make(sink, routes)
    for name in names:
        core.on_ws_frame(None, frame(depth(name, 1, 1)))
    assert [s for s, _ in sink.routed] == [n for n in names if n != names[7]]
    assert [m["stream"] for m in sink.generic] == [names[7]]


@pytest.mark.parametrize("payload", [
    b'{"stream":"btcusdt@depth","data":{"e":"x"}',           # no closing brace
    b'{"stream":"btcusdt@depth"}',                          # no data
    b'{"stream":"btcusdt@depth",  "data":{}}',               # other layout
    b'{"stream":"btcusdt@dep',                              # truncated key
    b'{"data":{},"stream":"btcusdt@depth"}',                 # other key order
])
def test_frames_not_in_the_envelope_layout_take_the_generic_route(payload: bytes) -> None:
    sink = Sink()
    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, sink.handle_routed, ORDERBOOK)
    core = make(sink, routes)
    core.on_ws_frame(None, frame(payload))
    assert sink.routed == []
    assert len(sink.generic) + core.parse_errors == 1


def test_a_routed_decode_error_is_counted_and_the_feed_goes_on() -> None:
    sink = Sink()
    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, sink.handle_routed, ORDERBOOK)
    core = make(sink, routes)
    core.on_ws_frame(None, frame(b'{"stream":"btcusdt@depth","data":{"e":1}}'))
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 1)))
    assert core.parse_errors == 1 and sink.errors[0][0] == "parse"
    assert isinstance(sink.errors[0][1], msgspec.ValidationError)
    assert len(sink.routed) == 1


def test_an_async_routed_handler_is_driven() -> None:
    sink = Sink()
    got: list[Any] = []

    async def handler(stream: str, message: Any) -> None:
        got.append((stream, message.u))

    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, handler, ORDERBOOK)
    core = make(sink, routes)
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 4, 9)))
    assert got == [("btcusdt@depth", 9)] and core.suspensions == 0


def test_a_stream_id_containing_the_separator_is_refused() -> None:
    with pytest.raises(ValueError):
        RouteTable().add('bad"name', len, print, ORDERBOOK)


@pytest.mark.parametrize("routed", [False, True])
def test_sequence_gaps_are_counted_and_reported_on_both_routes(routed: bool) -> None:
    sink = Sink()
    routes = None
    if routed:
        routes = RouteTable()
        routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, sink.handle_routed, ORDERBOOK)
    core = make(sink, routes, first_sequence_key=b'"U":', last_sequence_key=b'"u":')
    for first, last in [(10, 12), (13, 13), (14, 20), (25, 30), (31, 31), (28, 29), (29, 33), (34, 34)]:
        core.on_ws_frame(None, frame(depth("btcusdt@depth", first, last)))
    stats = core.stream_stats()["btcusdt@depth"]
    assert sink.gaps == [("btcusdt@depth", 21, 25, 30)]
    assert stats.sequence_gaps == 1 and stats.missing_sequences == 4
    assert stats.stale_sequences == 2          # (28, 29) is a replay, (29, 33) overlaps
    assert stats.last_sequence == 34
    assert core.counters()["sequence_gaps"] == 1 and core.counters()["missing_sequences"] == 4
    assert len(sink.routed if routed else sink.generic) == 8


def test_event_time_latency_is_recorded_per_stream() -> None:
    sink = Sink()
    core = make(sink, event_time_key=b'"E":')
    now_ms = int(time.time() * 1000)
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 1, now_ms - 250)))
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 2, 2, now_ms + 60_000)))   # exchange clock ahead
    stats = core.stream_stats()["btcusdt@depth"]
    assert stats.last_event_ns == (now_ms + 60_000) * 1_000_000
    assert stats.clock_ahead == 1
    histogram = stats.event_latency_histogram()
    assert sum(histogram) == 2 and histogram[0] == 1
    (index,) = [i for i, c in enumerate(histogram) if c and i != 0]
    low, high = latency_bucket_bounds(index)
    assert low <= 250_000 + 50_000 and high >= 250_000   # microseconds, a little time passed


def test_fields_beyond_the_scan_window_are_not_read() -> None:
    sink = Sink()
    core = make(sink, first_sequence_key=b'"U":', last_sequence_key=b'"u":', scan_window=20)
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 1)))
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 9, 9)))
    assert core.stream_stats()["btcusdt@depth"].last_sequence == -1 and sink.gaps == []


def test_scan_keys_are_checked() -> None:
    sink = Sink()
    with pytest.raises(ValueError):
        make(sink, first_sequence_key=b'"U":')
    with pytest.raises(ValueError):
        make(sink, event_time_key=b'"E":', first_sequence_key=b"U:", last_sequence_key=b"u:")
    with pytest.raises(ValueError):
        make(sink, event_time_key=b'"E":', first_sequence_key=b'"U"=', last_sequence_key=b'"u"=')


def test_a_number_starting_inside_the_window_is_read_to_its_end() -> None:
    sink = Sink()
    head = b'{"stream":"s","data":{"U":2998,"u":'
    window = len(head) + 2                  # the window ends inside the digits of u
    core = make(sink, first_sequence_key=b'"U":', last_sequence_key=b'"u":', scan_window=window)
    core.on_ws_frame(None, frame(head + b'2999}}'))
    core.on_ws_frame(None, frame(head.replace(b"2998", b"3000") + b'3001}}'))
    stats = core.stream_stats()["s"]
    assert stats.last_sequence == 3001 and stats.sequence_gaps == 0 and sink.gaps == []


def test_oversized_numbers_are_not_read() -> None:
    sink = Sink()
    core = make(sink, event_time_key=b'"E":', first_sequence_key=b'"U":', last_sequence_key=b'"u":')
    core.on_ws_frame(None, frame(b'{"stream":"s","data":{"E":999999999999999999,"U":1,"u":1234567890123456789}}'))
    stats = core.stream_stats()["s"]
    assert stats.last_event_ns == 0 and stats.clock_ahead == 0     # would overflow int64 ns
    assert stats.last_sequence == -1                               # 19 digits: not a sequence number


def test_a_buffer_kept_past_the_decode_call_fails_loudly_later() -> None:
    sink = Sink()
    kept: list[Any] = []

    def keep(buffer: Any) -> Any:
        kept.append(buffer)
        return msgspec.json.decode(buffer)

    routes = RouteTable()
    routes.add("btcusdt@depth", keep, sink.handle_routed, ORDERBOOK)
    core = make(sink, routes)
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 1)))
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 2, 2)))
    assert [m["u"] for _, m in sink.routed] == [1, 2]
    assert kept[0] is not kept[1]          # the kept buffer was retired, a new one used
    for buffer in kept:
        with pytest.raises(ValueError):
            bytes(buffer)


def test_whole_frame_route_hands_the_envelope_to_a_one_argument_handler() -> None:
    sink = Sink()
    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder().decode, sink.handle, ORDERBOOK,
               whole_frame=True, pass_stream=False)
    core = make(sink, routes)
    payload = depth("btcusdt@depth", 1, 1, 5)
    core.on_ws_frame(None, frame(payload))
    assert sink.generic == [msgspec.json.decode(payload)]
    assert core.stream_stats()["btcusdt@depth"].messages == 1


def test_sequence_keys_are_read_only_for_sequenced_routes() -> None:
    sink = Sink()
    routes = RouteTable()
    decode = msgspec.json.Decoder(Depth).decode
    routes.add("btcusdt@depth", decode, sink.handle_routed, ORDERBOOK)
    routes.add("btcusdt@bookTicker", decode, sink.handle_routed, TRADES, sequenced=False)
    core = make(sink, routes, event_time_key=b'"E":', first_sequence_key=b'"U":', last_sequence_key=b'"u":')
    for first in (1, 5):
        core.on_ws_frame(None, frame(depth("btcusdt@depth", first, first)))
        core.on_ws_frame(None, frame(depth("btcusdt@bookTicker", first, first)))
    stats = core.stream_stats()
    assert stats["btcusdt@depth"].sequence_gaps == 1 and stats["btcusdt@depth"].last_sequence == 5
    assert stats["btcusdt@bookTicker"].sequence_gaps == 0 and stats["btcusdt@bookTicker"].last_sequence == -1
    assert stats["btcusdt@bookTicker"].last_event_ns > 0      # the event time is read all the same


def test_route_stats_follow_forget_and_a_new_connection() -> None:
    sink = Sink()
    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, sink.handle_routed, ORDERBOOK)
    first, second = make(sink, routes), make(sink, routes)
    first.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 1)))
    second.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 1)))
    first.on_ws_frame(None, frame(depth("btcusdt@depth", 2, 2)))
    assert first.stream_stats()["btcusdt@depth"].messages == 2
    assert second.stream_stats()["btcusdt@depth"].messages == 1
    first.forget_stream("btcusdt@depth")
    first.on_ws_frame(None, frame(depth("btcusdt@depth", 3, 3)))
    assert first.stream_stats()["btcusdt@depth"].messages == 1


# ------------------------------------------- the default route continues into a route

def _adapt_depth(message: Any) -> Depth:
    return msgspec.convert(message["data"], Depth)


def test_an_off_layout_frame_of_a_stream_with_adapt_continues_into_its_route() -> None:
    sink = Sink()
    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, sink.handle_routed, ORDERBOOK,
               adapt=_adapt_depth)
    core = make(sink, routes, first_sequence_key=b'"U":', last_sequence_key=b'"u":')
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 2)))
    # Spaces in the envelope: the fast route misses, the default route parses
    # and classifies, then the stream's route takes it in its decoder's form.
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 5, 6).replace(b'"data":', b' "data": ')))
    assert sink.generic == []
    assert [(s, m.U) for s, m in sink.routed] == [("btcusdt@depth", 1), ("btcusdt@depth", 5)]
    # One stream, one set of stats and sequence state, whichever way it came.
    assert core.stream_stats()["btcusdt@depth"].messages == 2
    assert sink.gaps == [("btcusdt@depth", 3, 5, 6)]


def test_a_message_its_route_cannot_adapt_is_a_parse_error_and_not_counted() -> None:
    sink = Sink()
    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, sink.handle_routed, ORDERBOOK,
               adapt=_adapt_depth)
    core = make(sink, routes)
    core.on_ws_frame(None, frame(b'{"stream": "btcusdt@depth", "data": {"e": 1}}'))
    assert sink.routed == [] and sink.generic == []
    assert core.parse_errors == 1 and sink.errors[0][0] == "parse"
    assert "btcusdt@depth" not in core.stream_stats()


def test_without_adapt_an_off_layout_frame_goes_to_the_default_handler() -> None:
    sink = Sink()
    routes = RouteTable()
    routes.add("btcusdt@depth", msgspec.json.Decoder(Depth).decode, sink.handle_routed, ORDERBOOK)
    core = make(sink, routes)
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 2).replace(b'"data":', b' "data": ')))
    assert sink.routed == [] and len(sink.generic) == 1


def test_a_default_handler_that_takes_the_stream_gets_it() -> None:
    sink = Sink()
    core = FrameHandler(sink.parse, sink.extract, sink.handle_routed, sink.report, handler_takes_stream=True)
    core.on_ws_frame(None, frame(b'{"stream":"ethusdt@trade","data":{}}'))
    core.on_ws_frame(None, frame(b'{"data":{}}'))        # not classified: ""
    assert sink.routed == [("ethusdt@trade", {"stream": "ethusdt@trade", "data": {}}), ("", {"data": {}})]


# ----------------------------------------------------------------- error counters

def test_a_raising_gap_callback_is_counted_as_a_sequence_gap_error() -> None:
    sink = Sink()

    def on_gap(*gap: Any) -> None:
        raise RuntimeError("the gap reporter broke")

    core = FrameHandler(sink.parse, sink.extract, sink.handle, sink.report, on_sequence_gap=on_gap,
                        first_sequence_key=b'"U":', last_sequence_key=b'"u":')
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 1, 2)))
    core.on_ws_frame(None, frame(depth("btcusdt@depth", 9, 9)))
    assert [kind for kind, _ in sink.errors] == ["sequence_gap"]
    counters = core.counters()
    assert counters["sequence_gap_errors"] == 1 and counters["classify_errors"] == 0
    assert len(sink.generic) == 2


def test_an_oversized_message_is_counted_as_an_oversize_error() -> None:
    sink = Sink()
    core = make(sink, max_message_size=16)
    core.on_ws_frame(None, _make_test_ws_frame(WSMsgType.TEXT, b"x" * 10, False, False))
    core.on_ws_frame(None, _make_test_ws_frame(WSMsgType.CONTINUATION, b"x" * 10, True, False))
    assert [kind for kind, _ in sink.errors] == ["oversize"]
    assert core.counters()["oversize_errors"] == 1


# ------------------------------------------------------- the compiled-parser interface

def test_a_compiled_parser_reads_in_place_and_sets_the_frame_fields() -> None:
    from exchanges.mexc import encode_push
    from exchanges.mexc._fastpb import PushDecoder, PushParser
    from exchanges.mexc.pb import PushDataV3ApiWrapper

    sink = Sink()
    controls: list[bytes] = []

    def on_control(view: memoryview) -> None:
        controls.append(bytes(view))

    def malformed(reason: Optional[str], payload: bytes) -> Exception:
        return ValueError(reason)

    parser = PushParser(PushDecoder(PushDataV3ApiWrapper.DESCRIPTOR), on_control, malformed)
    channel = "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"

    def push(first: int, last: int) -> Any:
        payload = encode_push(channel, "publicAggreDepths",
                              {"asks": [{"price": "1.0", "quantity": "2.0"}], "bids": [],
                               "eventType": "spot@public.aggre.depth.v3.api.pb@100ms",
                               "fromVersion": str(first), "toVersion": str(last)},
                              symbol="BTCUSDT", send_time=1_736_411_507_010)
        return _make_test_ws_frame(WSMsgType.BINARY, payload, True, False)

    core = FrameHandler(lambda view: pytest.fail("the Python parser was called"),
                        lambda message: (message["channel"], ORDERBOOK), sink.handle, sink.report,
                        on_sequence_gap=sink.on_gap, compiled_parser=parser)
    core.on_ws_frame(None, push(10, 12))
    core.on_ws_frame(None, push(20, 21))
    core.on_ws_frame(None, frame(b'{"msg":"PONG"}'))
    core.on_ws_frame(None, _make_test_ws_frame(WSMsgType.BINARY, b"\xff\xff", True, False))
    assert [m["channel"] for m in sink.generic] == [channel, channel]
    assert controls == [b'{"msg":"PONG"}'] and core.control_messages == 1
    stats = core.stream_stats()[channel]
    assert stats.last_event_ns == 1_736_411_507_010 * 1_000_000 and stats.last_sequence == 21
    assert sink.gaps == [(channel, 13, 20, 21)]
    assert core.parse_errors == 1 and isinstance(sink.errors[0][1], ValueError)
