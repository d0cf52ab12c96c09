"""pytest fixtures for the exchange simulators (a pytest plugin).

Installing fastws registers this module as a pytest plugin (entry point
``pytest11``: ``fastws``), so any test can ask for:

- ``binance_simulator``: a started ``BinanceSimulator(rate=0)``: nothing is
  published until the test calls ``sim.step(n)``; stopped after the test.
- ``binance_simulator_factory``: an async factory taking the
  ``BinanceSimulator`` keyword arguments (``rate`` defaults to 0 here too);
  every simulator it started is stopped after the test.
- ``mexc_simulator``, ``mexc_simulator_factory``: the same for ``MexcSimulator``
  (connect to ``sim.ws_url()``).
- ``fault_proxy``: an async factory of started ``FaultProxy``:
  ``await fault_proxy(host, port)``; every proxy it started is stopped after the test.
- ``adapter_compliance``: ``await adapter_compliance(MyAdapter)`` runs the
  compliance checks of ``fastws verify`` on an adapter class (live against
  the simulator its ``compliance`` profile names) and fails the test with the
  pass/fail table when a check fails; returns the ``VerificationReport``.

Example::

    async def test_depth(binance_simulator):
        url = binance_simulator.combined_url(["btcusdt@depth"])
        ...  # connect a client to url
        binance_simulator.step(100)

    async def test_keepalive(binance_simulator_factory):
        sim = await binance_simulator_factory(ping_interval=0.1, pong_timeout=0.3)

    async def test_idle_close(mexc_simulator_factory):
        sim = await mexc_simulator_factory(idle_timeout=0.2)

The fixtures are ``pytest_asyncio`` fixtures, so they work with pytest-asyncio
in strict mode as well as in auto mode (the tests themselves still need
``@pytest.mark.asyncio`` in strict mode).
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Optional, TypeVar

import pytest

from fastws.testing._simbase import Simulator
from fastws.testing.binance_sim import BinanceSimulator
from fastws.testing.fault_proxy import FaultProxy
from fastws.testing.mexc_sim import MexcSimulator
from fastws.verify import ComplianceProfile, VerificationReport, format_report, verify_adapter

try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:     # pytest-asyncio missing: the fixtures fail only when used
    _async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = ["binance_simulator", "binance_simulator_factory", "mexc_simulator", "mexc_simulator_factory"]

S = TypeVar("S", bound=Simulator[Any])


@_async_fixture
async def binance_simulator() -> AsyncIterator[BinanceSimulator]:
    """A started ``BinanceSimulator(rate=0)`` on 127.0.0.1, stopped after the test."""
    async with BinanceSimulator(rate=0) as sim:
        yield sim


async def _factory(cls: type[S]) -> AsyncIterator[Callable[..., Awaitable[S]]]:
    """An async factory of started ``cls`` simulators (``rate`` 0 by default); all stopped at the end."""
    started: list[S] = []

    async def start(**kwargs: Any) -> S:
        kwargs.setdefault("rate", 0.0)
        sim = cls(**kwargs)
        await sim.start()
        started.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in reversed(started):
            await sim.stop()


@_async_fixture
async def binance_simulator_factory() -> AsyncIterator[Callable[..., Awaitable[BinanceSimulator]]]:
    """An async factory of started simulators: ``await factory(**kwargs)``; all stopped after the test."""
    async for start in _factory(BinanceSimulator):
        yield start


@_async_fixture
async def mexc_simulator() -> AsyncIterator[MexcSimulator]:
    """A started ``MexcSimulator(rate=0)`` on 127.0.0.1, stopped after the test."""
    async with MexcSimulator(rate=0) as sim:
        yield sim


@_async_fixture
async def mexc_simulator_factory() -> AsyncIterator[Callable[..., Awaitable[MexcSimulator]]]:
    """An async factory of started MEXC simulators: ``await factory(**kwargs)``; all stopped after the test."""
    async for start in _factory(MexcSimulator):
        yield start


__all__ += ["fault_proxy"]


@_async_fixture
async def fault_proxy() -> AsyncIterator[Callable[[str, int], Awaitable[FaultProxy]]]:
    """An async factory of started ``FaultProxy``: ``await fault_proxy(host, port)``; all stopped after the test.

    Example::

        async def test_blackhole(binance_simulator, fault_proxy):
            proxy = await fault_proxy("127.0.0.1", binance_simulator.port)
            ...  # connect a client to proxy.url()
            proxy.blackhole()
    """
    started: list[FaultProxy] = []

    async def start(upstream_host: str, upstream_port: int) -> FaultProxy:
        proxy = FaultProxy(upstream_host, upstream_port)
        await proxy.start()
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in reversed(started):
            await proxy.stop()


__all__ += ["adapter_compliance"]


@pytest.fixture
def adapter_compliance() -> Callable[..., Awaitable[VerificationReport]]:
    """An async checker: ``await adapter_compliance(cls, live=True, profile=None)``.

    Runs ``fastws.verify.verify_adapter`` and fails the test with the table
    when any check failed; returns the report (skipped checks do not fail).

    Example::

        async def test_my_adapter(adapter_compliance):
            report = await adapter_compliance(MyAdapter)
    """
    async def check(cls: type, *, live: bool = True, profile: Optional[ComplianceProfile] = None,
                    timeout: float = 5.0) -> VerificationReport:
        report = await verify_adapter(cls, profile=profile, live=live, timeout=timeout)
        if not report.passed:
            pytest.fail(format_report(report), pytrace=False)
        return report

    return check
