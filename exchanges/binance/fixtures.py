"""pytest fixtures of the Binance simulator (a pytest plugin, entry point ``pytest11``: ``fastws-binance``).

- ``binance_simulator``: a started ``BinanceSimulator(rate=0)`` on 127.0.0.1: nothing
  is published until the test calls ``sim.step(n)``; stopped after the test.
- ``binance_simulator_factory``: an async factory taking the ``BinanceSimulator`` keyword
  arguments (``rate`` defaults to 0 here too); every simulator it started is
  stopped after the test.

Example::

    async def test_age(binance_simulator_factory):
        sim = await binance_simulator_factory(max_connection_age=0.2)
"""
from __future__ import annotations

from exchanges.binance.simulator import BinanceSimulator
from fastws.testing.fixtures import simulator_fixtures

__all__ = ["binance_simulator", "binance_simulator_factory"]

binance_simulator, binance_simulator_factory = simulator_fixtures(BinanceSimulator, "binance_simulator")
