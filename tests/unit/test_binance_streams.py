"""Binance stream names: classification, validation and payload classification."""
from __future__ import annotations

import msgspec
import pytest

from exchanges.binance import streams
from exchanges.binance.messages import (
    AggTrade,
    BookTicker,
    DepthUpdate,
    Kline,
    MiniTicker,
    PartialDepth,
    Ticker24h,
    Trade,
    WindowTicker,
)
from exchanges.binance.streams import (
    KLINE_INTERVALS,
    StreamKind,
    decode_type,
    is_valid_stream,
    payload_kind,
    payload_type,
    stream_kind,
    stream_type,
    symbol_of,
    validate_streams,
)
from fastws.types import StreamType
from tests.unit.test_binance_messages import SAMPLES

K = StreamKind

VALID = [
    ("btcusdt@depth", K.DEPTH_UPDATE),
    ("btcusdt@depth@100ms", K.DEPTH_UPDATE),
    ("btcusdt@depth@1000ms", K.DEPTH_UPDATE),
    ("btcusdt@depth5", K.PARTIAL_DEPTH),
    ("ethbtc@depth10", K.PARTIAL_DEPTH),
    ("bnbusdt@depth20", K.PARTIAL_DEPTH),
    ("btcusdt@depth5@100ms", K.PARTIAL_DEPTH),
    ("btcusdt@depth10@1000ms", K.PARTIAL_DEPTH),
    ("btcusdt@depth20@100ms", K.PARTIAL_DEPTH),
    ("btcusdt@trade", K.TRADE),
    ("1000satsusdt@trade", K.TRADE),
    ("btcusdt@aggTrade", K.AGG_TRADE),
    ("btcusdt@bookTicker", K.BOOK_TICKER),
    ("!bookTicker", K.BOOK_TICKER),
    ("btcusdt@ticker", K.TICKER),
    ("btcusdt@ticker_1h", K.TICKER),
    ("btcusdt@ticker_4h", K.TICKER),
    ("btcusdt@ticker_1d", K.TICKER),
    ("!ticker@arr", K.TICKER),
    ("!ticker_1h@arr", K.TICKER),
    ("btcusdt@miniTicker", K.MINI_TICKER),
    ("!miniTicker@arr", K.MINI_TICKER),
    *[(f"btcusdt@kline_{i}", K.KLINE) for i in KLINE_INTERVALS],
    *[(f"btcusdt@kline_{i}@+08:00", K.KLINE) for i in KLINE_INTERVALS],
]

# Names of no known form: stream_kind says OTHER and is_valid_stream says no.
UNKNOWN = [
    "",
    "btcusdt",
    "btcusdt@",
    "@trade",
    "btcusdt@trades",
    "btcusdt@aggtrade",
    "btcusdt@depth7",
    "btcusdt@depth5@10ms",
    "btcusdt@depth@500ms",
    "btcusdt@kline_2m",
    "btcusdt@kline_1M@+09:00",
    "btcusdt@kline_",
    "btcusdt@ticker_2h",
    "btcusdt@ticker@arr",
    "btcusdt@avgPrice",
    "!ticker",
    "!trade@arr",
    "!bookTicker@arr",
    "!serverShutdown",
    "btcusdt@trade ",
]

# Known suffix, bad symbol: stream_kind classifies by the suffix, is_valid_stream says no.
BAD_SYMBOL = [
    ("BTCUSDT@trade", K.TRADE),
    ("BtcUsdt@depth", K.DEPTH_UPDATE),
    ("btc-usdt@trade", K.TRADE),
    ("btc_usdt@kline_1m", K.KLINE),
    ("btc usdt@ticker", K.TICKER),
    ("btcusdté@trade", K.TRADE),
]

TYPES = {
    K.DEPTH_UPDATE: StreamType.ORDERBOOK,
    K.PARTIAL_DEPTH: StreamType.ORDERBOOK,
    K.TRADE: StreamType.TRADES,
    K.AGG_TRADE: StreamType.TRADES,
    K.BOOK_TICKER: StreamType.TICKER,
    K.TICKER: StreamType.TICKER,
    K.MINI_TICKER: StreamType.TICKER,
    K.KLINE: StreamType.KLINE,
    K.OTHER: StreamType.OTHER,
}


@pytest.mark.parametrize("name, kind", VALID)
def test_valid_names(name: str, kind: StreamKind) -> None:
    assert stream_kind(name) is kind
    assert stream_type(name) is TYPES[kind]
    assert is_valid_stream(name)


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_names(name: str) -> None:
    assert stream_kind(name) is K.OTHER
    assert stream_type(name) is StreamType.OTHER
    assert not is_valid_stream(name)


@pytest.mark.parametrize("name, kind", BAD_SYMBOL)
def test_bad_symbols(name: str, kind: StreamKind) -> None:
    assert stream_kind(name) is kind
    assert not is_valid_stream(name)


def test_validate_streams_returns_the_invalid_ones_in_order() -> None:
    names = ["btcusdt@trade", "BTCUSDT@trade", "ethbtc@depth@100ms", "", "btcusdt@depth7", "!ticker@arr"]
    assert validate_streams(names) == ["BTCUSDT@trade", "", "btcusdt@depth7"]
    assert validate_streams(name for name, _ in VALID) == []
    assert validate_streams([]) == []


@pytest.mark.parametrize(
    "name, symbol",
    [
        ("btcusdt@trade", "btcusdt"),
        ("ethbtc@kline_1m@+08:00", "ethbtc"),
        ("BTCUSDT@depth", "btcusdt"),
        ("!ticker@arr", None),
        ("!bookTicker", None),
        ("btcusdt", None),
        ("@trade", None),
        ("", None),
    ],
)
def test_symbol_of(name: str, symbol: str | None) -> None:
    assert symbol_of(name) == symbol


PAYLOAD_KINDS = {
    DepthUpdate: K.DEPTH_UPDATE,
    PartialDepth: K.PARTIAL_DEPTH,
    Trade: K.TRADE,
    AggTrade: K.AGG_TRADE,
    BookTicker: K.BOOK_TICKER,
    Ticker24h: K.TICKER,
    WindowTicker: K.TICKER,
    MiniTicker: K.MINI_TICKER,
    Kline: K.KLINE,
}


@pytest.mark.parametrize(
    "struct_type, payload",
    [
        pytest.param(t, payload, id=f"{t.__name__}-{i}")
        for t, payloads in SAMPLES.items()
        for i, payload in enumerate(payloads)
    ],
)
def test_payload_kind_of_samples(struct_type: type, payload: bytes) -> None:
    kind = payload_kind(msgspec.json.decode(payload))
    assert kind is PAYLOAD_KINDS[struct_type]
    # Rolling-window tickers share the TICKER kind but not the 24h layout.
    assert payload_type(kind) is (Ticker24h if struct_type is WindowTicker else struct_type)


@pytest.mark.parametrize(
    "data, kind",
    [
        ({"e": "serverShutdown", "E": 1718035200123}, K.OTHER),
        ({"e": "somethingNew", "E": 1, "s": "BTCUSDT"}, K.OTHER),
        ({"e": ["trade"]}, K.OTHER),
        ({"result": None, "id": 1}, K.OTHER),
        ({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 2}, K.OTHER),
        ({"code": 3, "msg": "Invalid JSON"}, K.OTHER),
        ({"stream": "btcusdt@trade", "data": {"e": "trade"}}, K.OTHER),
        ({"u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2"}, K.OTHER),
        ({"u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1", "new": 0}, K.BOOK_TICKER),
        ({"lastUpdateId": 1, "bids": [], "asks": []}, K.PARTIAL_DEPTH),
        ({}, K.OTHER),
    ],
)
def test_payload_kind_edge_cases(data: dict[str, object], kind: StreamKind) -> None:
    assert payload_kind(data) is kind


def test_payload_type_per_kind() -> None:
    assert {k: payload_type(k) for k in StreamKind} == {
        K.DEPTH_UPDATE: DepthUpdate,
        K.PARTIAL_DEPTH: PartialDepth,
        K.TRADE: Trade,
        K.AGG_TRADE: AggTrade,
        K.BOOK_TICKER: BookTicker,
        K.TICKER: Ticker24h,
        K.MINI_TICKER: MiniTicker,
        K.KLINE: Kline,
        K.OTHER: None,
    }


@pytest.mark.parametrize(
    "name, expected",
    [
        ("btcusdt@depth@100ms", DepthUpdate),
        ("btcusdt@depth5", PartialDepth),
        ("btcusdt@bookTicker", BookTicker),
        ("!bookTicker", BookTicker),
        ("btcusdt@ticker", Ticker24h),
        ("btcusdt@ticker_4h", WindowTicker),
        ("!ticker@arr", list[Ticker24h]),
        ("!ticker_1d@arr", list[WindowTicker]),
        ("!miniTicker@arr", list[MiniTicker]),
        ("btcusdt@kline_1M@+08:00", Kline),
        ("btcusdt@avgPrice", None),
    ],
)
def test_decode_type(name: str, expected: object) -> None:
    assert decode_type(name) == expected


def test_decode_type_decodes_an_all_market_array() -> None:
    array = b"[" + b",".join(SAMPLES[MiniTicker]) + b"]"
    decoded = msgspec.json.decode(array, type=decode_type("!miniTicker@arr"))
    assert [m.symbol for m in decoded] == ["BTCUSDT", "BNBBTC"]


def test_limits_and_endpoints() -> None:
    assert streams.SPOT_URL == "wss://stream.binance.com:9443"
    assert streams.DATA_ONLY_URL == "wss://data-stream.binance.vision"
    assert streams.MAX_STREAMS_PER_CONNECTION == 1024
    assert streams.MAX_INCOMING_MESSAGES_PER_SECOND == 5
    assert (streams.MAX_CONNECTION_ATTEMPTS, streams.CONNECTION_ATTEMPT_WINDOW) == (300, 300.0)
    assert streams.MAX_CONNECTION_AGE == 86400.0
    assert (streams.SERVER_PING_INTERVAL, streams.PONG_DEADLINE) == (20.0, 60.0)
    assert len(KLINE_INTERVALS) == 16 and len(set(KLINE_INTERVALS)) == 16


def test_public_names_are_exported() -> None:
    for name in streams.__all__:
        assert hasattr(streams, name)
