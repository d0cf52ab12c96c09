"""MEXC's registry entry (entry point ``fastws.exchanges``: ``mexc``)."""
from __future__ import annotations

from exchanges.mexc.client import MexcWebSocket, mexc_config
from exchanges.mexc.compliance import COMPLIANCE
from exchanges.mexc.replay import REPLAY_PROFILE
from exchanges.mexc.simulator import MexcSimulator
from fastws.registry import ExchangeEntry

__all__ = ["BOOK_SYMBOLS", "DEMO_STREAMS", "EXCHANGE"]

DEMO_STREAMS = ("spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT",
                "spot@public.aggre.depth.v3.api.pb@100ms@ETHUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@ETHUSDT")
"""What ``fastws demo`` streams from the simulator."""

BOOK_SYMBOLS = ("BTCUSDT", "ETHUSDT")
"""The symbols ``fastws demo`` keeps order books of."""

EXCHANGE = ExchangeEntry(
    name="mexc",
    client=MexcWebSocket,
    config=mexc_config,
    simulator=MexcSimulator,
    simulator_url=lambda simulator: str(simulator.ws_url()),
    replay=REPLAY_PROFILE,
    compliance=COMPLIANCE,
    demo_streams=DEMO_STREAMS,
    book_symbols=BOOK_SYMBOLS,
)
"""MEXC spot v3, as ``fastws.registry.get_exchange("mexc")`` gives it."""
