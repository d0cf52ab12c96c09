"""BinanceWebSocket through a FaultProxy to a BinanceSimulator: every network fault, recovered.

For the faults that drop the connection, the client must reach CONNECTED again
with every subscription restored on the simulator's newest connection and a
``ConnectionGap`` closed behind it, detected within the issue's bounds
(blackhole: ``ping_interval`` + ``pong_timeout``; mute: ``stale_timeout``).
For the faults that only degrade it (delay, throttle, 1-byte writes) it must
keep receiving, and still recover from a cut under them. Nothing may be left
behind. Run with ``-s`` to see the measured detection and recovery times.
"""
from __future__ import annotations

import asyncio
import os
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional

import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceConnection, BinanceSimulator
from fastws import ConnectionGap, ConnectionState, ExchangeName
from fastws.errors import ConnectionFailedError, ExchangeTimeoutError
from fastws.testing import FaultProxy
from tests.conftest import open_fds, other_tasks, until
from tests.integration.test_binance import Sink

STREAMS = ["btcusdt@depth", "ethusdt@trade", "bnbusdt@bookTicker"]
KEEPALIVE = {"ping_interval": 0.3, "pong_timeout": 0.3, "stale_timeout": None}
STALE = {"ping_interval": 20.0, "pong_timeout": 10.0, "stale_timeout": 0.5}
# A detection or recovery that took longer than this (seconds) is a failure,
# whatever the load on the machine.
RECOVERY_BOUND = 8.0


@dataclass
class Run:
    """One client behind one proxy in front of one simulator."""

    sim: BinanceSimulator
    proxy: FaultProxy
    ws: BinanceWebSocket
    sink: Sink
    fault_at: float = 0.0       # time.time() of the injection

    def newest(self) -> Optional[BinanceConnection]:
        """The simulator's newest open connection (a blackholed one may linger behind it)."""
        connections = [c for c in self.sim.connections if c.is_open]
        return connections[-1] if connections else None

    def newest_has_every_stream(self) -> bool:
        """The simulator's newest open connection carries every subscription."""
        newest = self.newest()
        return newest is not None and set(newest.streams) == set(STREAMS)

    def gaps(self) -> list[ConnectionGap]:
        """The gaps opened since the fault."""
        return [g for g in self.ws.gaps if g.start >= self.fault_at]

    async def wait_recovered(self, accepted_before: int, bound: float = RECOVERY_BOUND) -> list[ConnectionGap]:
        """Wait for a new connection with every stream and every gap closed; return the gaps."""
        ws, proxy = self.ws, self.proxy
        await until(lambda: proxy.connections_accepted > accepted_before and self.newest_has_every_stream()
                    and bool(self.gaps()) and self.gaps()[-1].end is not None and ws.is_connected, bound)
        assert ws.state is ConnectionState.CONNECTED and set(ws.subscriptions) == set(STREAMS)
        return self.gaps()

    async def receives(self, steps: int = 3) -> None:
        """The market moves ``steps`` times; every update sent to the newest connection arrives."""
        newest = self.newest()
        assert newest is not None
        before, sent_before = len(self.sink.messages), sum(newest.sent_counts.values())
        self.sim.step(steps)
        sent = sum(newest.sent_counts.values()) - sent_before
        assert sent > 0
        await until(lambda: len(self.sink.messages) >= before + sent, RECOVERY_BOUND)


@contextlib.asynccontextmanager
async def nothing_left_behind(sim: BinanceSimulator) -> AsyncIterator[None]:
    """No task or fd opened inside (client, proxy) survives the block."""
    # libuv keeps one fd (/dev/null, its EMFILE reserve) from a loop's first
    # accepted connection on: one accept first, so that it is not counted.
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", sim.port), 5)
    writer.transport.abort()
    await asyncio.sleep(0.01)
    tasks, fds = other_tasks(), open_fds()
    yield
    await until(lambda: other_tasks() - tasks == set() and open_fds() <= fds, RECOVERY_BOUND,
                "every task ended and every socket closed")


async def start_run(sim: BinanceSimulator, proxy: FaultProxy, **overrides: Any) -> Run:
    overrides.setdefault("reconnect_delay", 0.05)
    overrides.setdefault("max_reconnect_delay", 0.25)
    overrides.setdefault("healthy_after", 0.05)
    overrides.setdefault("timeout", 2.0)
    sink = Sink()
    ws = BinanceWebSocket(ExchangeName("binance"), binance_config(proxy.url(), **overrides),
                          sink.on_message, sink.on_error)
    await ws.start()
    await asyncio.wait_for(ws.subscribe(STREAMS), RECOVERY_BOUND)
    assert set(sim.subscribed()) == set(STREAMS)
    return Run(sim, proxy, ws, sink)


def report(fault: str, run: Run, gaps: list[ConnectionGap], **figures: float) -> None:
    """Print detection (first gap opened) and recovery (last gap closed) times; visible with ``pytest -s``."""
    end = gaps[-1].end
    assert end is not None
    figures = {"detected": gaps[0].start - run.fault_at, "recovered": end - run.fault_at, **figures}
    text = "  ".join(f"{name}={value * 1000:.0f}ms" for name, value in figures.items())
    print(f"\n[fault proxy] {fault:<22} {text}  gaps={len(gaps)}  reason={gaps[0].reason!r}")


# ---------------------------------------------------------------------------- faults that drop


@dataclass
class Drop:
    """A fault that ends the connection, and the reason its gap must give.

    The reason says which mechanism detected the fault: the socket's end for
    a cut (at once, no timer involved), the keepalive's ping or the stale
    check (after their configured times) for a blackhole. Detection times
    are printed (``pytest -s``), not bounded: a loaded machine delays them.
    """

    reason: str
    config: dict[str, Any] = field(default_factory=dict)
    rate: float = 0.0               # simulator steps per second (the stale check needs traffic)


LOST = "connection lost (no close frame)"
DROPS = {
    "cut": Drop(LOST),
    "reset": Drop(LOST),
    "blackhole (keepalive)": Drop("client closed (1001): peer has not replied to ping/heartbeat request "
                                  "within 0.3 second(s)", KEEPALIVE),
    "blackhole (stale)": Drop("stale: no message for 0.5 s", STALE, rate=20.0),
    "refuse on reconnect": Drop(LOST),
    "stall on reconnect": Drop(LOST, {"timeout": 0.5}),
}


@pytest.mark.parametrize("fault", list(DROPS))
async def test_recovers_from_a_dropping_fault(fault: str, binance_simulator_factory: Any) -> None:
    drop = DROPS[fault]
    sim = await binance_simulator_factory(rate=drop.rate)
    async with nothing_left_behind(sim), FaultProxy("127.0.0.1", sim.port) as proxy:
        run = await start_run(sim, proxy, **drop.config)
        try:
            if drop.rate == 0:
                await run.receives()
            accepted = proxy.connections_accepted
            run.fault_at = time.time()
            if fault == "cut":
                proxy.cut()
            elif fault == "reset":
                proxy.reset()
            elif fault.startswith("blackhole"):
                proxy.blackhole()
            elif fault == "refuse on reconnect":
                proxy.refuse(0.6)
                proxy.cut()
            else:
                proxy.stall_handshake(True)
                proxy.cut()
                # Hold the stall until an attempt has timed out on it.
                await until(lambda: any(isinstance(e, ExchangeTimeoutError) for e in run.sink.errors),
                            RECOVERY_BOUND)
                assert proxy.connections_stalled >= 1
                proxy.stall_handshake(False)
            gaps = await run.wait_recovered(accepted)
            report(fault, run, gaps)
            gap = gaps[0]
            # A loaded machine's lagging loop is named after the reason (fastws.looplag).
            assert gap.reason.split("; loop lag ")[0] == drop.reason, gap
            assert gap.start - run.fault_at <= RECOVERY_BOUND, gap
            assert len(gaps) == 1, gaps
            if fault == "refuse on reconnect":
                # Refused attempts are failed attempts inside the one gap.
                assert proxy.connections_refused >= 1
                assert any(isinstance(e, ConnectionFailedError) for e in run.sink.errors)
                assert gaps[-1].end is not None and gaps[-1].end - run.fault_at >= 0.5
            if fault == "blackhole (keepalive)":
                assert "ping" in gap.reason and "stale" not in gap.reason
            elif fault == "blackhole (stale)":
                assert "stale" in gap.reason
            if drop.rate == 0:
                await run.receives()
            else:
                count = len(run.sink.messages)
                await until(lambda: len(run.sink.messages) > count + 5, RECOVERY_BOUND)
            # A blackholed connection lingers on the server until the held
            # close reaches it; the client closed the stalled ones it gave up.
            proxy.restore()
            await until(lambda: len(sim.connections) == 1 and proxy.live_connections == 1, RECOVERY_BOUND)
            assert run.ws.metrics["reconnections"] >= 1
        finally:
            await run.ws.stop()


# ----------------------------------------------------------------------- faults that degrade


DEGRADES: dict[str, Callable[[FaultProxy], None]] = {
    "delay 100 ms": lambda proxy: proxy.delay(0.1),
    "throttle 20 kB/s": lambda proxy: proxy.throttle(20_000),
    "1-byte writes": lambda proxy: proxy.split_writes(True),
}


@pytest.mark.parametrize("fault", list(DEGRADES))
async def test_keeps_receiving_and_recovers_under_a_degrading_fault(
        fault: str, binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    async with nothing_left_behind(sim), FaultProxy("127.0.0.1", sim.port) as proxy:
        # Keepalive on, with room for the delay: a ping's round trip is 0.2 s.
        run = await start_run(sim, proxy, ping_interval=1.0, pong_timeout=1.0, stale_timeout=None)
        try:
            DEGRADES[fault](proxy)
            sent_before = proxy.bytes_to_client
            started = time.monotonic()
            await run.receives(steps=20)
            took = time.monotonic() - started
            rate = (proxy.bytes_to_client - sent_before) / took
            # Unsubscribe and subscribe again: requests and acks through the fault.
            await asyncio.wait_for(run.ws.unsubscribe(STREAMS[:1]), RECOVERY_BOUND)
            await asyncio.wait_for(run.ws.subscribe(STREAMS[:1]), RECOVERY_BOUND)
            assert set(run.ws.subscriptions) == set(STREAMS) and run.newest_has_every_stream()
            assert run.ws.gaps == [] and run.ws.metrics["reconnections"] == 0
            assert run.sink.errors == [] and run.ws.metrics["parse_errors"] == 0
            if fault.startswith("delay"):
                assert took >= 0.09
            elif fault.startswith("throttle"):
                assert rate <= 20_000 * 1.5, rate
            # A cut under the fault: the reconnection goes through it too (the
            # handshake in 1-byte pieces, delayed, throttled).
            accepted = proxy.connections_accepted
            run.fault_at = time.time()
            proxy.cut()
            gaps = await run.wait_recovered(accepted)
            assert len(gaps) == 1, gaps
            report(fault, run, gaps, first_20_steps=took)
            await run.receives()
        finally:
            await run.ws.stop()


# ----------------------------------------------------------------------- lost in the handshake


async def test_a_connection_lost_in_the_handshake_is_a_failed_attempt(binance_simulator: BinanceSimulator) -> None:
    sim = binance_simulator
    async with nothing_left_behind(sim), FaultProxy("127.0.0.1", sim.port) as proxy:
        run = await start_run(sim, proxy, stale_timeout=None)
        try:
            accepted = proxy.connections_accepted
            run.fault_at = time.time()
            proxy.refuse(0.3)
            proxy.cut()
            gaps = await run.wait_recovered(accepted, bound=3.0)
            # One gap, from the cut until the first connection after the refusal.
            assert len(gaps) == 1 and gaps[0].end is not None and gaps[0].end - run.fault_at >= 0.25, gaps
            assert run.ws.metrics["reconnections"] == 1
        finally:
            await run.ws.stop()


# ------------------------------------------------------------------ the proxy's own back-pressure


async def test_a_client_that_stops_reading_holds_the_proxy_at_its_high_water() -> None:
    """The proxy queues at most about its high-water mark for a client that does not
    read (it stops reading the server instead), and loses nothing once it reads again."""
    from fastws.testing import fault_proxy
    from tests.reliability.test_fault_proxy import EchoServer
    payload = os.urandom(32 * 1024 * 1024)      # more than the sockets' buffers hold
    async with EchoServer() as echo, FaultProxy("127.0.0.1", echo.port) as proxy:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy.port), 5)
        writer.transport.pause_reading()
        writer.write(payload)
        await until(lambda: len(proxy._connections) == 1, RECOVERY_BOUND, "the proxied connection")
        (connection,) = proxy._connections
        down = connection.down                  # server -> client
        await until(lambda: down.src.reading_paused, RECOVERY_BOUND, "the proxy to stop reading the server")
        # One read (at most 256 kB) may land after the mark was passed.
        assert down.queued_bytes <= fault_proxy._HIGH_WATER + 256 * 1024
        writer.transport.resume_reading()
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 60)
        assert echoed == payload
        assert not down.src.reading_paused and down.queued_bytes == 0
        writer.transport.abort()
