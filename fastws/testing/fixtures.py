"""pytest fixtures for the exchange simulators (a pytest plugin).

Installing fastws registers this module as a pytest plugin (entry point
``pytest11``: ``fastws``), so any test can ask for:

- ``binance_simulator``: a started ``BinanceSimulator(rate=0)``: nothing is
  published until the test calls ``sim.step(n)``; stopped after the test.
- ``binance_simulator_factory``: an async factory taking the
  ``BinanceSimulator`` keyword arguments (``rate`` defaults to 0 here too);
  every simulator it started is stopped after the test.

Example::

    async def test_depth(binance_simulator):
        url = binance_simulator.combined_url(["btcusdt@depth"])
        ...  # connect a client to url
        binance_simulator.step(100)

    async def test_keepalive(binance_simulator_factory):
        sim = await binance_simulator_factory(ping_interval=0.1, pong_timeout=0.3)

The fixtures are ``pytest_asyncio`` fixtures, so they work with pytest-asyncio
in strict mode as well as in auto mode (the tests themselves still need
``@pytest.mark.asyncio`` in strict mode).
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from fastws.testing.binance_sim import BinanceSimulator

try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:     # pytest-asyncio missing: the fixtures fail only when used
    _async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = ["binance_simulator", "binance_simulator_factory"]


@_async_fixture
async def binance_simulator() -> AsyncIterator[BinanceSimulator]:
    """A started ``BinanceSimulator(rate=0)`` on 127.0.0.1, stopped after the test."""
    async with BinanceSimulator(rate=0) as sim:
        yield sim


@_async_fixture
async def binance_simulator_factory() -> AsyncIterator[Callable[..., Awaitable[BinanceSimulator]]]:
    """An async factory of started simulators: ``await factory(**kwargs)``; all stopped after the test."""
    started: list[BinanceSimulator] = []

    async def start(**kwargs: Any) -> BinanceSimulator:
        kwargs.setdefault("rate", 0.0)
        sim = BinanceSimulator(**kwargs)
        await sim.start()
        started.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in reversed(started):
            await sim.stop()
