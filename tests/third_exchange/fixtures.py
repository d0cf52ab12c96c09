"""The third exchange's pytest fixtures (entry point ``pytest11``: ``fastws-third``):
``third_simulator`` and ``third_simulator_factory``."""
from __future__ import annotations

from fastws.testing.fixtures import simulator_fixtures

from tests.third_exchange.simulator import ThirdSimulator

__all__ = ["third_simulator", "third_simulator_factory"]

third_simulator, third_simulator_factory = simulator_fixtures(ThirdSimulator, "third_simulator")
