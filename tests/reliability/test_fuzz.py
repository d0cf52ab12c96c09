"""Fuzzing of the frame core and the adapters' parsers with random and mutated frames.

Random bytes, realistic Binance payloads (as ``BinanceSimulator`` sends them) after JSON
and byte mutations, MEXC pushes after wire-level mutations (``tests/mexc_strategies``)
and MEXC control messages go, as TEXT or BINARY frames, whole or in CONTINUATION
fragments, to a bare ``FrameHandler`` and to the cores that ``BinanceWebSocket`` (dict
and typed) and ``MexcWebSocket`` connections run (``bench.detached``). For every frame:
nothing escapes ``on_ws_frame``, exactly the outcomes the framing calls for are counted
(a message delivered, a control message or a parse error), every error reaches the
error handler as an ``ExchangeAPIError`` (parse and classify errors as
``InvalidMessageError``, 400); after the garbage a valid message is still delivered, and
what the handlers kept is still readable.
"""
from __future__ import annotations

import gc
import os
import random
from collections import Counter
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastws import FrameHandler
from fastws.errors import ExchangeAPIError, InvalidMessageError
from tests.reliability.fuzz_support import (
    BARE_ROUTES, BINARY, CONTINUATION, EXPECTED_PUSH, PING, TEXT, VALID_PUSH, VALID_TRADE, BareOracle, Depth, Frame,
    FrameModel, Harness, Sink, Unraisable, bare_core, binance_core, binance_oracle, binance_payloads, binance_seeds,
    expected_trade, fast_route, frame_plans, make_frame, mexc_core, mexc_oracle, mexc_payloads, mutated_numbers,
)

# FASTWS_FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the file near 15 s.
FUZZ = settings(max_examples=int(os.environ.get("FASTWS_FUZZ_EXAMPLES", "400")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

VALID_DEPTH = (b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000123,"s":"BTCUSDT",'
               b'"U":10,"u":12,"b":[["65000.01","1.5"]],"a":[]}}')
ROUTED_DEPTH = ("btcusdt@depth@100ms", msgspec.convert(msgspec.json.decode(VALID_DEPTH)["data"], Depth))
"""What the bare core's depth route hands over for ``VALID_DEPTH``."""


def run(harness: Harness, frames: list[Frame], valid: tuple[Any, bytes], expected: Any) -> None:
    """Feed ``frames``, then a valid message: it must be delivered; then check that
    everything the handlers kept is intact and that no exception was swallowed."""
    with Unraisable() as unraisable:
        for frame in frames:
            harness.feed(*frame)
        d = harness.feed(valid[0], valid[1], True)
        assert d["messages_delivered"] == 1, "the feed does not go on after the garbage"
        assert harness.sink.delivered[-1][0] == expected
        harness.check_kept()
    assert unraisable.seen == [], unraisable.seen


@FUZZ
@given(frames=frame_plans(binance_payloads().map(lambda p: (p, TEXT))),
       scan_window=st.sampled_from([0, 1, 3, 4, 5, 8, 13, 40, 192, 256, 1 << 20]),
       unit=st.sampled_from([1, 1000, 1_000_000, 1_000_000_000]), raising=st.booleans())
def test_bare_core_with_routes_and_scan_keys(frames: list[Frame], scan_window: int, unit: int,
                                             raising: bool) -> None:
    sink = Sink(raise_on_error=raising)
    oracle = BareOracle(scan_window, unit)
    harness = Harness(bare_core(sink, scan_window, unit), sink, adapter=False, oracle=oracle)
    oracle.core = harness.core
    run(harness, frames, (TEXT, VALID_DEPTH), ROUTED_DEPTH)


@FUZZ
@given(data=st.data())
def test_bare_core_scan_window_edges(data: st.DataObject) -> None:
    """Windows that end just before, at and just after a key's end: a key counts only
    when its ``:`` is inside; event times and sequence state match the model."""
    seeds = binance_seeds()
    payloads = data.draw(st.lists(st.one_of(st.sampled_from(seeds), mutated_numbers(seeds)), min_size=1,
                                  max_size=5))
    routed = fast_route(payloads[0], tuple(BARE_ROUTES))
    region = routed[1] if routed is not None else payloads[0]       # what the core scans
    ends = [at + 4 for key in (b'"E":', b'"U":', b'"u":') if (at := region.find(key)) >= 0]
    edges = sorted({max(0, end + delta) for end in ends or [0] for delta in (-1, 0, 1)})
    scan_window = data.draw(st.one_of(st.sampled_from(edges), st.integers(0, len(region) + 2)))
    unit = data.draw(st.sampled_from([1, 1000, 1_000_000, 1_000_000_000]))
    sink = Sink()
    oracle = BareOracle(scan_window, unit)
    harness = Harness(bare_core(sink, scan_window, unit), sink, adapter=False, oracle=oracle)
    oracle.core = harness.core
    run(harness, [(TEXT, payload, True) for payload in payloads], (TEXT, VALID_DEPTH), ROUTED_DEPTH)


@pytest.mark.parametrize("typed", [False, True], ids=["dict", "typed"])
@FUZZ
@given(frames=frame_plans(binance_payloads().map(lambda p: (p, TEXT))), raising=st.booleans())
def test_binance_core(typed: bool, frames: list[Frame], raising: bool) -> None:
    sink = Sink(raise_on_error=raising)
    harness = Harness(binance_core(sink, typed), sink, adapter=True, oracle=binance_oracle(typed))
    run(harness, frames, (TEXT, VALID_TRADE), expected_trade(typed))


@FUZZ
@given(frames=frame_plans(mexc_payloads(), max_messages=4), raising=st.booleans())
def test_mexc_core(frames: list[Frame], raising: bool) -> None:
    sink = Sink(raise_on_error=raising)
    harness = Harness(mexc_core(sink), sink, adapter=True, oracle=mexc_oracle)
    run(harness, frames, (BINARY, VALID_PUSH), EXPECTED_PUSH)


def test_fragmented_garbage_then_a_fragmented_valid_message() -> None:
    """Reassembly recovers: a cut-short message, a stray continuation, then a valid
    message in three fragments is delivered whole."""
    sink = Sink()
    harness = Harness(binance_core(sink, typed=False), sink, adapter=True)
    harness.feed(TEXT, VALID_TRADE[:20], False)
    harness.feed(CONTINUATION, b"\xff\xfe", False)
    harness.feed(BINARY, b"\x00garbage", True)          # interrupts (a parse error), and is no JSON (another)
    harness.feed(CONTINUATION, b"stray", True)
    harness.feed(PING, b"", True)
    for opcode, piece, fin in ((TEXT, VALID_TRADE[:7], False), (CONTINUATION, VALID_TRADE[7:50], False),
                               (CONTINUATION, VALID_TRADE[50:], True)):
        harness.feed(opcode, piece, fin)
    assert sink.delivered[-1][0] == expected_trade(False)
    assert harness.core.parse_errors == 3
    assert all(isinstance(e, InvalidMessageError) and e.code == 400 for e in sink.errors)


def test_typed_bad_payload_off_the_fast_route_is_a_400() -> None:
    """A subscribed stream's frame that misses the fast route (spaces in the envelope)
    and whose data does not fit the stream's struct: ``_parse_message`` accepts the
    dict, ``_deliver_untyped`` (the message handler) fails in ``msgspec.convert``."""
    sink = Sink()
    harness = Harness(binance_core(sink, typed=True), sink, adapter=True)
    harness.feed(TEXT, b'{"stream": "btcusdt@trade", "data": {"e": "trade"}}', True)
    assert [e.code for e in sink.errors] == [400]


def test_a_negative_scan_window_is_refused() -> None:
    """``FrameHandler(scan_window=-1)`` must refuse the value: the scan takes
    ``min(size, scan_window)`` bytes, and ``memchr`` gets ``(size_t)-1`` (a
    ``{"stream":"s"}`` frame then crashes the process)."""
    with pytest.raises(ValueError):
        FrameHandler(lambda view: None, lambda message: None, lambda message: None,
                     lambda kind, exc, payload: None, event_time_key=b'"E":', scan_window=-1)


# ------------------------------------------------------------------ a long plain run

def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Counting(Sink):
    """Counts instead of keeping, so that memory measures the cores alone."""

    def __init__(self) -> None:
        super().__init__()
        self.messages = 0
        self.kinds: Counter[str] = Counter()
        self.errors = self        # type: ignore[assignment]   # the error handler is .append

    def keep(self, message: Any) -> None:
        self.messages += 1

    def keep_input(self, buffer: Any) -> None:
        pass

    def append(self, error: Any) -> None:
        if isinstance(error, tuple):      # the bare core's (kind, exc, payload)
            self.kinds[error[0]] += 1
        else:
            assert isinstance(error, ExchangeAPIError), error
            self.kinds[f"{type(error).__name__}:{error.code}"] += 1


def _random_frames(rng: random.Random, count: int) -> list[Frame]:
    """``count`` frames: random bytes, realistic payloads damaged or not, MEXC pushes;
    whole, fragmented, cut short or stray."""
    seeds = list(binance_seeds()) + [VALID_PUSH, VALID_TRADE, VALID_DEPTH]
    frames: list[Frame] = []
    while len(frames) < count:
        roll = rng.random()
        if roll < 0.3:
            payload = rng.randbytes(rng.randrange(0, 300))
        else:
            payload = bytearray(rng.choice(seeds))
            for _ in range(rng.choice((0, 0, 1, 2, 4))):
                if payload:
                    payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
            if rng.random() < 0.2:
                del payload[rng.randrange(len(payload) + 1):]
            payload = bytes(payload)
        opcode = TEXT if (payload[:1] == b"{") ^ (rng.random() < 0.1) else BINARY
        shape = rng.random()
        if shape < 0.75:
            frames.append((opcode, payload, True))
        elif shape < 0.92:
            cut = rng.randrange(len(payload) + 1)
            frames += [(opcode, payload[:cut], False), (CONTINUATION, payload[cut:], True)]
        elif shape < 0.96:
            frames.append((opcode, payload, False))                   # cut short
        else:
            frames.append((CONTINUATION, payload, rng.random() < 0.5))  # stray
    return frames[:count]


def test_ten_thousand_random_frames_keep_memory_flat_and_counters_add_up() -> None:
    rng = random.Random(20240611)
    warmup, frames = _random_frames(rng, 2_000), _random_frames(rng, 10_000)
    kinds = ("bare", "dict", "typed", "mexc")
    sinks = [_Counting() for _ in kinds]
    cores = [bare_core(sinks[0], 192), binance_core(sinks[1], typed=False), binance_core(sinks[2], typed=True),
             mexc_core(sinks[3])]
    models = [FrameModel() for _ in kinds]
    outcomes = [0] * len(kinds)
    completed = [0] * len(kinds)

    def feed_all(batch: list[Frame]) -> None:
        # Each core gets every fourth frame: its own mix of all the kinds of frames.
        for i, (opcode, payload, fin) in enumerate(batch):
            index = i % len(kinds)
            count, message = models[index].expect(opcode, payload, fin)
            outcomes[index] += count
            completed[index] += message is not None
            cores[index].on_ws_frame(None, make_frame(opcode, payload, fin))

    with Unraisable() as unraisable:
        feed_all(warmup)
        gc.collect()
        before = _rss_bytes()
        feed_all(frames)
        gc.collect()
        grown = _rss_bytes() - before
    assert unraisable.seen == []
    assert grown < 4 * 1024 * 1024, f"RSS grew by {grown / 1024:.0f} KiB over 10^4 frames"
    for kind, sink, core, expected, messages in zip(kinds, sinks, cores, outcomes, completed):
        c = core.counters()
        assert c["frames_received"] == (len(warmup) + len(frames)) // len(kinds), kind
        assert c["messages_received"] == messages, kind
        assert c["messages_delivered"] + c["control_messages"] + c["parse_errors"] == expected, (kind, c)
        assert c["handler_errors"] == 0, (kind, c, sink.kinds)
        assert sink.messages == c["messages_delivered"], kind
        if kind == "bare":
            assert (sink.kinds["parse"], sink.kinds["classify"]) == (c["parse_errors"], c["classify_errors"])
        else:
            assert sink.kinds["InvalidMessageError:400"] == c["parse_errors"] + c["classify_errors"], (kind, sink.kinds)
        assert c["parse_errors"] > 0 and c["messages_delivered"] > 0, (kind, c)
