"""Binance combined-stream payloads for the Binance benchmarks, built once.

Every payload is what ``BinanceSimulator`` sends on a ``/stream`` connection,
``{"stream":"<name>","data":{...}}``, built by the simulator's own event
builders from a seeded ``SyntheticMarket``. Only the diff depth differs in how
it is fed: one simulator step changes 1 to 4 levels, while a real
``@depth@100ms`` event carries everything that changed in 100 ms, 10 to 20
levels per side on a busy book; so each depth event here merges as many market
steps as it takes to reach that (``U`` of the first step, ``u`` of the last,
the last quantity of each price), and the other streams see those steps too.

Messages are interleaved over ``SYMBOLS`` (and, in the ``mix``, over kinds):
consecutive frames belong to different streams, as on a multi-symbol feed.
"""
from __future__ import annotations

import random

from exchanges.binance.simulator import _parse_stream, _StepEvents, _wrap
from fastws.testing.market import StepResult, SymbolMarket, SyntheticMarket

__all__ = ["KINDS", "MIX", "STREAM_KINDS", "SYMBOLS", "build_payloads", "stream_names"]

STREAM_KINDS: dict[str, str] = {
    "depthUpdate": "depth@100ms",
    "depth20": "depth20@100ms",
    "trade": "trade",
    "aggTrade": "aggTrade",
    "bookTicker": "bookTicker",
    "24hrTicker": "ticker",
    "kline": "kline_1m",
}
"""Kind of message (the benchmark's row) -> stream name suffix."""

MIX = "mix"
"""Every kind in turn, one message of each."""

KINDS = (*STREAM_KINDS, MIX)

SYMBOLS = ("btcusdt", "ethusdt", "bnbusdt", "solusdt", "xrpusdt", "adausdt", "dogeusdt", "ltcusdt")

# Levels per side of a diff depth event (the busier side often has a few more).
_DEPTH_LEVELS = (10, 18)


def stream_names() -> list[str]:
    """Every stream the payloads come from (what a client subscribes to)."""
    return [f"{symbol}@{suffix}" for suffix in STREAM_KINDS.values() for symbol in SYMBOLS]


def _diff_depth_step(market: SymbolMarket, levels: int) -> StepResult:
    """Market steps merged until both sides changed at least ``levels`` levels."""
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    steps = []
    while min(len(bids), len(asks)) < levels:
        step = market.step()
        steps.append(step)
        bids.update(step.bids)
        asks.update(step.asks)
    last = steps[-1]
    return StepResult(
        last.symbol, steps[0].first_update_id, last.last_update_id,
        sorted(bids.items(), key=lambda level: float(level[0]), reverse=True),
        sorted(asks.items(), key=lambda level: float(level[0])),
        [trade for step in steps for trade in step.trades], last.time_ms,
        [kline for step in steps for kline in step.closed_klines])


def build_payloads(per_stream: int = 64, seed: int = 1) -> dict[str, list[bytes]]:
    """``per_stream`` payloads of each stream of every kind, plus the ``mix``.

    Returns:
        Kind -> payloads, symbols interleaved; ``MIX`` interleaves the kinds too.
    """
    market = SyntheticMarket(seed=seed)
    rng = random.Random(seed)
    names = stream_names()
    parsed = {name: _parse_stream(name) for name in names}
    by_stream: dict[str, list[bytes]] = {name: [] for name in names}
    while any(len(payloads) < per_stream for payloads in by_stream.values()):
        for symbol in SYMBOLS:
            step = _diff_depth_step(market.symbol(symbol), rng.randint(*_DEPTH_LEVELS))
            events = _StepEvents(market, [step], set())
            for suffix in STREAM_KINDS.values():
                name = f"{symbol}@{suffix}"
                by_stream[name].extend(_wrap(name, event) for event in events.payloads(parsed[name]))
    rings = {kind: [by_stream[f"{symbol}@{suffix}"][i] for i in range(per_stream) for symbol in SYMBOLS]
             for kind, suffix in STREAM_KINDS.items()}
    rings[MIX] = [rings[kind][i] for i in range(per_stream * len(SYMBOLS)) for kind in STREAM_KINDS]
    return rings
