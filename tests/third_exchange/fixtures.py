"""The third exchange's pytest fixtures (entry point ``pytest11``: ``fastws-third``)."""
from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable

from fastws.testing.fixtures import async_fixture, simulator_factory

from tests.third_exchange.simulator import ThirdSimulator

__all__ = ["third_simulator", "third_simulator_factory"]


@async_fixture
async def third_simulator() -> AsyncIterator[ThirdSimulator]:
    """A started ``ThirdSimulator(rate=0)``, stopped after the test."""
    async with ThirdSimulator(rate=0) as sim:
        yield sim


@async_fixture
async def third_simulator_factory() -> AsyncIterator[Callable[..., Awaitable[ThirdSimulator]]]:
    """An async factory of started simulators; all stopped after the test."""
    async for start in simulator_factory(ThirdSimulator):
        yield start
