"""The soak: many connections across both simulators, a random fault every second or two.

``run_soak(duration)`` streams depth and trades through 10 ``BinanceWebSocket``
and 10 ``MexcWebSocket`` clients (one connection each), half of each through a
``FaultProxy``, and every 1-2 s injects a random fault: a server-side one on a
random connection (drop, reset, close 1011, mute, malformed frame) or a
network one on every connection of a proxy (cut, reset, a 1-s blackhole). At
the end it checks that:

- every client is CONNECTED again with all its streams subscribed;
- every drop left a closed ``ConnectionGap``;
- no depth update was lost outside a reported gap: per stream, the update ids
  the handler saw, plus the ids the client reported missing in its
  ``SequenceGapError``s, cover every id from the first to the last one seen;
- RSS and open file descriptors stay flat; the event loop's lag is measured.

``scripts/soak_report.py`` runs it for longer and prints the figures; the
test suite runs it for a few seconds (longer with ``--soak``).
"""
from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from exchanges.mexc import MexcWebSocket, mexc_config
from exchanges.mexc.simulator import MexcSimulator
from fastws import ConnectionState, ExchangeAPIError, ExchangeName, SequenceGapError
from fastws.testing import FaultProxy

CLIENTS_PER_EXCHANGE = 10
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"]
FAULTS = ("drop", "reset", "close 1011", "mute", "malformed", "server shutdown", "proxy cut", "proxy reset",
          "proxy blackhole")
# Each client also replaces its connection (make before break) every few seconds.
MAX_CONNECTION_AGE = (3.0, 6.0)
# Faults after which the connection is replaced (mute: once the client sees it stale).
DROPPING = {"drop", "reset", "close 1011", "mute"}


@dataclass
class Client:
    """One soak client: what its handler saw, and its errors."""

    name: str
    ws: Any = None
    depth_stream: str = ""
    trade_stream: str = ""
    updates: list[tuple[int, int]] = field(default_factory=list)
    messages: int = 0
    errors: list[ExchangeAPIError] = field(default_factory=list)

    def on_binance(self, message: dict[str, Any]) -> None:
        self.messages += 1
        data = message["data"]
        if message["stream"] == self.depth_stream:
            self.updates.append((data["U"], data["u"]))

    def on_mexc(self, message: dict[str, Any]) -> None:
        self.messages += 1
        body = message.get("publicAggreDepths")
        if body is not None and message["channel"] == self.depth_stream:
            self.updates.append((int(body["fromVersion"]), int(body["toVersion"])))

    def repeated(self) -> int:
        """Depth updates delivered twice (a message whose ids do not come after the previous one's)."""
        return sum(1 for (_, last), (first, _) in zip(self.updates, self.updates[1:]) if first <= last)

    def lost_outside_gaps(self) -> int:
        """Update ids neither seen nor reported missing, between the first and last seen."""
        seen_missing = 0
        for (_, last), (first, _) in zip(self.updates, self.updates[1:]):
            if first > last + 1:
                seen_missing += first - last - 1
        reported = sum(e.missing for e in self.errors
                       if isinstance(e, SequenceGapError) and e.stream == self.depth_stream)
        return seen_missing - reported


@dataclass
class SoakReport:
    """What a soak run measured."""

    duration: float
    connections: int
    faults: dict[str, int]
    recovery_times: list[float]
    messages: int
    lost_outside_gaps: int
    repeated: int
    rotations: int
    sequence_gaps: int
    missing_reported: int
    rss_growth_kb: int
    fd_growth: int
    loop_lag_ms: dict[str, float]
    unrecovered: list[str]

    def lines(self) -> list[str]:
        """The report as text lines."""
        times = sorted(self.recovery_times) or [0.0]
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        return [
            f"soak: {self.duration:.0f} s, {self.connections} connections (Binance and MEXC simulators)",
            f"faults injected: {sum(self.faults.values())} ({', '.join(f'{k} {v}' for k, v in self.faults.items())})",
            f"connections recovered: {len(self.recovery_times)} reconnections, "
            f"{len(self.unrecovered)} client(s) not recovered {self.unrecovered}",
            f"recovery time (gap start to resubscribed): p50 {statistics.median(times) * 1e3:.1f} ms, "
            f"p99 {p99 * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms",
            f"messages delivered: {self.messages}",
            f"sequence gaps reported: {self.sequence_gaps} ({self.missing_reported} updates missing)",
            f"depth updates lost outside reported gaps: {self.lost_outside_gaps}; delivered twice: "
            f"{self.repeated}",
            f"planned replacements (make before break, no gap): {self.rotations}",
            f"RSS growth: {self.rss_growth_kb} KB; open fds growth: {self.fd_growth}",
            f"event loop lag: p50 {self.loop_lag_ms['p50']:.2f} ms, p99 {self.loop_lag_ms['p99']:.2f} ms, "
            f"max {self.loop_lag_ms['max']:.2f} ms",
        ]


def _rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _measure_lag(lags: list[float], stop: asyncio.Event, interval: float = 0.01) -> None:
    """How late a 10 ms sleep wakes up (perf_counter: the loop's clock has 1 ms steps)."""
    while not stop.is_set():
        due = time.perf_counter() + interval
        await asyncio.sleep(interval)
        lags.append(max(0.0, time.perf_counter() - due))


async def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def run_soak(duration: float, rate: float = 50.0, seed: int = 7) -> SoakReport:
    """Run the soak for ``duration`` seconds of faults; return what it measured."""
    rng = random.Random(seed)
    faults = dict.fromkeys(FAULTS, 0)
    async with BinanceSimulator(rate=rate, seed=seed) as binance_sim, \
            MexcSimulator(rate=rate, seed=seed) as mexc_sim, \
            FaultProxy("127.0.0.1", binance_sim.port) as binance_proxy, \
            FaultProxy("127.0.0.1", mexc_sim.port) as mexc_proxy:
        proxies = [binance_proxy, mexc_proxy]
        clients: list[Client] = []
        settings = dict(reconnect_delay=0.05, max_reconnect_delay=0.5, healthy_after=0.2, stale_timeout=0.5,
                        max_reconnect_attempts=0)
        for index in range(CLIENTS_PER_EXCHANGE):
            symbol = SYMBOLS[index % len(SYMBOLS)]
            settings["max_connection_age"] = rng.uniform(*MAX_CONNECTION_AGE)
            binance = Client(f"binance-{index}", depth_stream=f"{symbol.lower()}@depth@100ms",
                             trade_stream=f"{symbol.lower()}@trade")
            # Half the clients go through the proxies, half straight to the simulators.
            via_proxy = index % 2 == 1
            binance_url = binance_proxy.url() if via_proxy else binance_sim.url
            mexc_url = mexc_proxy.url("/ws") if via_proxy else mexc_sim.ws_url()
            binance.ws = BinanceWebSocket(ExchangeName(binance.name), binance_config(binance_url, **settings),
                                          binance.on_binance, binance.errors.append)
            mexc = Client(f"mexc-{index}", depth_stream=f"spot@public.aggre.depth.v3.api.pb@100ms@{symbol}",
                          trade_stream=f"spot@public.aggre.deals.v3.api.pb@100ms@{symbol}")
            mexc.ws = MexcWebSocket(ExchangeName(mexc.name), mexc_config(mexc_url, **settings),
                                    mexc.on_mexc, mexc.errors.append)
            clients += [binance, mexc]
        await asyncio.gather(*(c.ws.start() for c in clients))
        await asyncio.gather(*(c.ws.subscribe([c.depth_stream, c.trade_stream]) for c in clients))
        await asyncio.sleep(0.5)
        rss0, fds0 = _rss_kb(), _fds()
        lags: list[float] = []
        stop = asyncio.Event()
        lag_task = asyncio.get_running_loop().create_task(_measure_lag(lags, stop))
        started = time.monotonic()
        while time.monotonic() - started < duration:
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            for proxy in proxies:
                proxy.restore()            # a blackhole lasts until the next fault
            fault = rng.choice(FAULTS)
            if fault.startswith("proxy"):
                faults[fault] += 1
                proxy = rng.choice(proxies)
                if fault == "proxy cut":
                    proxy.cut()
                elif fault == "proxy reset":
                    proxy.reset()
                else:
                    proxy.blackhole()      # the clients find it stale and replace it
                continue
            sim = rng.choice([binance_sim, mexc_sim])
            open_connections = [c for c in sim.connections if c.is_open]
            if not open_connections:
                continue
            target = rng.choice(open_connections)
            faults[fault] += 1
            if fault == "drop":
                sim.drop(1001, connection=target)
            elif fault == "reset":
                sim.reset(connection=target)
            elif fault == "close 1011":
                sim.close_with(1011, "internal error", connection=target)
            elif fault == "mute":
                sim.mute(connection=target)     # the client finds it stale and replaces it
            elif fault == "server shutdown":
                if sim is binance_sim:
                    binance_sim.server_shutdown(delay=1.0, connection=target)   # replaced without a gap
                else:
                    sim.drop(1001, connection=target)     # MEXC sends no notice: a plain drop            else:
                sim.send_malformed(connection=target)
        for proxy in proxies:
            proxy.restore()
        # Let the last fault take effect (a drop's close frame in flight, a mute
        # not yet stale: 0.5 s) before waiting for every client to heal.
        await asyncio.sleep(1.5)
        await _wait(lambda: all(c.ws.state is ConnectionState.CONNECTED and
                                all(g.end is not None for g in c.ws.gaps) for c in clients), 10.0)
        await _wait(lambda: binance_sim.subscribed() >= {s for c in clients if c.name.startswith("binance")
                                                         for s in c.ws.subscriptions}
                    and mexc_sim.subscribed() >= {s for c in clients if c.name.startswith("mexc")
                                                  for s in c.ws.subscriptions}, 10.0)
        elapsed = time.monotonic() - started
        stop.set()
        await lag_task
        rss1, fds1 = _rss_kb(), _fds()
        unrecovered = [f"{c.name} ({c.ws.state.value}, gaps {[(g.reason, g.end) for g in c.ws.gaps]}, "
                       f"errors {[str(e) for e in c.errors[-3:]]})"
                       for c in clients if c.ws.state is not ConnectionState.CONNECTED
                       or any(g.end is None for g in c.ws.gaps)]
        recovery = [g.end - g.start for c in clients for g in c.ws.gaps if g.end is not None]
        sequence_errors = [e for c in clients for e in c.errors if isinstance(e, SequenceGapError)]
        report = SoakReport(
            duration=elapsed, connections=len(clients), faults=faults, recovery_times=recovery,
            messages=sum(c.messages for c in clients),
            lost_outside_gaps=sum(c.lost_outside_gaps() for c in clients),
            repeated=sum(c.repeated() for c in clients),
            rotations=sum(c.ws.metrics["rotations"] for c in clients),
            sequence_gaps=len(sequence_errors), missing_reported=sum(e.missing for e in sequence_errors),
            rss_growth_kb=rss1 - rss0, fd_growth=fds1 - fds0,
            loop_lag_ms={"p50": statistics.median(lags) * 1e3 if lags else 0.0,
                         "p99": sorted(lags)[int(len(lags) * 0.99)] * 1e3 if lags else 0.0,
                         "max": max(lags) * 1e3 if lags else 0.0},
            unrecovered=unrecovered)
        await asyncio.gather(*(c.ws.stop() for c in clients))
    return report
