"""pytest fixtures of the MEXC simulator (a pytest plugin, entry point ``pytest11``: ``fastws-mexc``).

- ``mexc_simulator``: a started ``MexcSimulator(rate=0)`` on 127.0.0.1 (connect to ``sim.ws_url()``): nothing
  is published until the test calls ``sim.step(n)``; stopped after the test.
- ``mexc_simulator_factory``: an async factory taking the ``MexcSimulator`` keyword
  arguments (``rate`` defaults to 0 here too); every simulator it started is
  stopped after the test.

Example::

    async def test_age(mexc_simulator_factory):
        sim = await mexc_simulator_factory(max_connection_age=0.2)
"""
from __future__ import annotations

from exchanges.mexc.simulator import MexcSimulator
from fastws.testing.fixtures import simulator_fixtures

__all__ = ["mexc_simulator", "mexc_simulator_factory"]

mexc_simulator, mexc_simulator_factory = simulator_fixtures(MexcSimulator, "mexc_simulator")
