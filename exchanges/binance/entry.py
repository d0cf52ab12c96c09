"""Binance's registry entry (entry point ``fastws.exchanges``: ``binance``)."""
from __future__ import annotations

from exchanges.binance.client import BinanceWebSocket, binance_config
from exchanges.binance.compliance import COMPLIANCE
from exchanges.binance.replay import REPLAY_PROFILE
from exchanges.binance.simulator import BinanceSimulator
from fastws.registry import ExchangeEntry

__all__ = ["BOOK_SYMBOLS", "DEMO_STREAMS", "EXCHANGE"]

DEMO_STREAMS = ("btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@trade", "ethusdt@trade")
"""What ``fastws demo`` streams from the simulator."""

BOOK_SYMBOLS = ("BTCUSDT", "ETHUSDT")
"""What ``fastws demo`` keeps order books of."""

EXCHANGE = ExchangeEntry(
    name="binance",
    client=BinanceWebSocket,
    config=binance_config,
    simulator=BinanceSimulator,
    simulator_url=lambda simulator: str(simulator.url),    # the client adds /stream itself
    replay=REPLAY_PROFILE,
    compliance=COMPLIANCE,
    demo_streams=DEMO_STREAMS,
    typed=True,
    book_symbols=BOOK_SYMBOLS,
    simulator_rest_url=lambda simulator: str(simulator.rest_url),
)
"""Binance spot market streams, as ``fastws.registry.get_exchange("binance")`` gives them."""
