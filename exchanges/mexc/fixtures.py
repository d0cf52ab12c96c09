"""pytest fixtures of the MEXC simulator (a pytest plugin, entry point ``pytest11``: ``fastws-mexc``).

- ``mexc_simulator``: a started ``MexcSimulator(rate=0)`` on 127.0.0.1 (connect to ``sim.ws_url()``): nothing
  is published until the test calls ``sim.step(n)``; stopped after the test.
- ``mexc_simulator_factory``: an async factory taking the ``MexcSimulator`` keyword
  arguments (``rate`` defaults to 0 here too); every simulator it started is
  stopped after the test.

Example::

    async def test_idle_close(mexc_simulator_factory):
        sim = await mexc_simulator_factory(max_connection_age=0.2)
"""
from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable

from exchanges.mexc.simulator import MexcSimulator
from fastws.testing.fixtures import async_fixture, simulator_factory

__all__ = ["mexc_simulator", "mexc_simulator_factory"]


@async_fixture
async def mexc_simulator() -> AsyncIterator[MexcSimulator]:
    """A started ``MexcSimulator(rate=0)`` on 127.0.0.1, stopped after the test."""
    async with MexcSimulator(rate=0) as sim:
        yield sim


@async_fixture
async def mexc_simulator_factory() -> AsyncIterator[Callable[..., Awaitable[MexcSimulator]]]:
    """An async factory of started simulators: ``await factory(**kwargs)``; all stopped after the test."""
    async for start in simulator_factory(MexcSimulator):
        yield start
