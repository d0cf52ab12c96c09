"""Generic pytest fixtures of fastws (a pytest plugin).

Installing fastws registers this module as a pytest plugin (entry point
``pytest11``: ``fastws``), so any test can ask for:

- ``fault_proxy``: an async factory of started ``FaultProxy``:
  ``await fault_proxy(host, port)``; every proxy it started is stopped after the test.
- ``nats_server``: a started JetStream ``NatsServer`` (``fastws.testing.nats``) on a
  free loopback port, storage in the test's temporary directory, stopped after the test;
  ``nats_cluster``: a started 3-node ``NatsCluster`` likewise (needs the ``nats`` extra's
  ``nats-server`` binary).
- ``adapter_compliance``: ``await adapter_compliance(MyAdapter)`` runs the
  compliance checks of ``fastws verify`` on an adapter class (live against
  its exchange's simulator) and fails the test with the pass/fail table when
  a check fails; returns the ``VerificationReport``.

Each exchange package registers its own simulator fixtures as a ``pytest11``
entry point of its own, built with ``simulator_fixtures`` from here. Example
(``myexchange/fixtures.py``)::

    my_simulator, my_simulator_factory = simulator_fixtures(MySimulator, "my_simulator")

The fixtures are ``pytest_asyncio`` fixtures, so they work with pytest-asyncio
in strict mode as well as in auto mode (the tests themselves still need
``@pytest.mark.asyncio`` in strict mode).
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Optional, TypeVar

import pytest

from fastws.testing.fault_proxy import FaultProxy
from fastws.verify import ComplianceProfile, VerificationReport, format_report, verify_adapter

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:     # pytest-asyncio missing: the fixtures fail only when used
    async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = ["adapter_compliance", "nats_cluster", "nats_server", "async_fixture", "fault_proxy", "simulator_factory", "simulator_fixtures"]

S = TypeVar("S")


async def simulator_factory(cls: Callable[..., S]) -> AsyncIterator[Callable[..., Awaitable[S]]]:
    """Yield an async factory of started ``cls`` simulators; stop them all when resumed.

    The factory takes ``cls``'s keyword arguments; ``rate`` defaults to 0 (nothing
    is published until the test calls ``step(n)``). For an exchange's
    ``<name>_simulator_factory`` fixture: ``async for start in simulator_factory(cls): yield start``.
    """
    started: list[Any] = []

    async def start(**kwargs: Any) -> S:
        kwargs.setdefault("rate", 0.0)
        sim = cls(**kwargs)
        await sim.start()       # type: ignore[attr-defined]
        started.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in reversed(started):
            await sim.stop()


def simulator_fixtures(cls: Callable[..., Any], name: str) -> tuple[Any, Any]:
    """The two fixtures of an exchange's simulator ``cls``: ``name`` and ``<name>_factory``.

    - ``name``: a started ``cls(rate=0)`` on 127.0.0.1 (nothing is published
      until the test calls ``sim.step(n)``), stopped after the test.
    - ``<name>_factory``: an async factory taking ``cls``'s keyword arguments
      (``rate`` defaults to 0); every simulator it started is stopped after the test.

    Assign both in the module registered as the exchange's ``pytest11`` plugin.
    """
    @async_fixture(name=name)
    async def simulator() -> AsyncIterator[Any]:
        async with cls(rate=0) as sim:
            yield sim

    @async_fixture(name=f"{name}_factory")
    async def factory() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
        async for start in simulator_factory(cls):
            yield start

    simulator.__doc__ = f"A started ``{getattr(cls, '__name__', cls)}(rate=0)`` on 127.0.0.1, stopped after the test."
    factory.__doc__ = "An async factory of started simulators: ``await factory(**kwargs)``; all stopped after the test."
    return simulator, factory


@async_fixture
async def fault_proxy() -> AsyncIterator[Callable[[str, int], Awaitable[FaultProxy]]]:
    """An async factory of started ``FaultProxy``: ``await fault_proxy(host, port)``; all stopped after the test.

    Example::

        async def test_blackhole(fault_proxy):
            async with FeedServer() as server:
                proxy = await fault_proxy("127.0.0.1", server.port)
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


@pytest.fixture
def nats_server(tmp_path: Any) -> Any:
    """A started JetStream ``NatsServer`` on loopback, stopped after the test."""
    from fastws.testing.nats import NatsServer
    with NatsServer.started(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def nats_cluster(tmp_path: Any) -> Any:
    """A started 3-node JetStream ``NatsCluster`` on loopback, stopped after the test."""
    from fastws.testing.nats import NatsCluster
    with NatsCluster.started(tmp_path / "nats-cluster", size=3) as cluster:
        yield cluster
