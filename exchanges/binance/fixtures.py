"""pytest fixtures of the Binance simulator (a pytest plugin, entry point ``pytest11``: ``fastws-binance``).

- ``binance_simulator``: a started ``BinanceSimulator(rate=0)`` on 127.0.0.1: nothing
  is published until the test calls ``sim.step(n)``; stopped after the test.
- ``binance_simulator_factory``: an async factory taking the ``BinanceSimulator`` keyword
  arguments (``rate`` defaults to 0 here too); every simulator it started is
  stopped after the test.

Example::

    async def test_idle_close(binance_simulator_factory):
        sim = await binance_simulator_factory(max_connection_age=0.2)
"""
from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable

from exchanges.binance.simulator import BinanceSimulator
from fastws.testing.fixtures import async_fixture, simulator_factory

__all__ = ["binance_simulator", "binance_simulator_factory"]


@async_fixture
async def binance_simulator() -> AsyncIterator[BinanceSimulator]:
    """A started ``BinanceSimulator(rate=0)`` on 127.0.0.1, stopped after the test."""
    async with BinanceSimulator(rate=0) as sim:
        yield sim


@async_fixture
async def binance_simulator_factory() -> AsyncIterator[Callable[..., Awaitable[BinanceSimulator]]]:
    """An async factory of started simulators: ``await factory(**kwargs)``; all stopped after the test."""
    async for start in simulator_factory(BinanceSimulator):
        yield start
