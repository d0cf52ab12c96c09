"""The third exchange's registry entry (``fastws.exchanges``: ``third``)."""
from __future__ import annotations

from fastws.registry import ExchangeEntry

from tests.third_exchange.client import ThirdWebSocket, third_config
from tests.third_exchange.compliance import COMPLIANCE
from tests.third_exchange.replay import REPLAY_PROFILE
from tests.third_exchange.simulator import ThirdSimulator

EXCHANGE = ExchangeEntry(
    name="third",
    client=ThirdWebSocket,
    config=third_config,
    simulator=ThirdSimulator,
    simulator_url=lambda simulator: str(simulator.url),
    replay=REPLAY_PROFILE,
    compliance=COMPLIANCE,
    demo_streams=("trades.BTC", "trades.ETH"),
)
