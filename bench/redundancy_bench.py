"""Redundant connections: what R=2 costs per message, and what it buys when a path is slow.

Two measurements, each in one run with its baseline, rounds interleaved, medians:

1. **Cost per delivered message, R=2 vs R=1.** A ``BinanceSimulator`` runs in a
   child process (so its CPU is not the client's) and publishes bursts of market
   steps to every connection subscribed; the client (this process) subscribes
   ``STREAMS``. The figure is this process's CPU time (``time.process_time``)
   from the burst's start until the handler has every message, divided by the
   messages delivered. With R=2 every message arrives twice: the second copy costs
   its receive, a payload digest, the route match and a ring lookup, and is not
   decoded.
2. **Delivered latency with one path delayed.** Simulator, FaultProxies and client
   in one process; the simulator steps at a steady pace and each message's
   latency is the handler's time minus the time its step was published. Three
   cases through the same proxies: R=1 on the fast path alone; R=2 with the other
   path delayed 20 ms (jitter 10 ms); R=2 with both paths undelayed.

Usage: python bench/redundancy_bench.py [--rounds N] [--steps N] [--quick]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import uvloop  # noqa: E402

from exchanges.binance import BinanceWebSocket, binance_config  # noqa: E402
from exchanges.binance.simulator import BinanceSimulator  # noqa: E402
from fastws import ExchangeName  # noqa: E402
from fastws.testing import FaultProxy  # noqa: E402

STREAMS = ["btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@trade", "ethusdt@bookTicker"]

_CHILD = """
import asyncio, sys
import uvloop
from exchanges.binance.simulator import BinanceSimulator

async def main():
    async with BinanceSimulator(rate=0, max_incoming_per_second=1000) as sim:
        print(sim.port, flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            steps = int(line)
            sent = 0
            for _ in range(steps // 20):
                sent += sim.step(20)
                await asyncio.sleep(0)
            print(sent, flush=True)

uvloop.run(main())
"""


class Counter:
    """A handler that counts, and stamps each message's delivery time."""

    def __init__(self) -> None:
        self.count = 0
        self.stamps: list[int] = []
        self.keep = False

    def on_message(self, message: Any) -> None:
        self.count += 1
        if self.keep:
            self.stamps.append(time.perf_counter_ns())


async def _settle(counter: Counter, quiet: float = 0.2, bound: float = 30.0) -> None:
    """Wait until the count has not moved for ``quiet`` seconds."""
    deadline = time.monotonic() + bound
    last, since = counter.count, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        if counter.count != last:
            last, since = counter.count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


async def cost_round(port: int, child: "subprocess.Popen[str]", redundancy: int, steps: int) -> float:
    """CPU ns per delivered message for one burst of ``steps`` market steps."""
    assert child.stdin is not None and child.stdout is not None
    url = f"ws://127.0.0.1:{port}"
    counter = Counter()
    config = binance_config(url, urls=[url], redundancy=redundancy, ping_interval=60.0, pong_timeout=30.0,
                            stale_timeout=None)
    ws = BinanceWebSocket(ExchangeName("binance"), config, counter.on_message)
    await ws.start()
    try:
        await ws.subscribe(STREAMS)
        await asyncio.sleep(0.2)
        counter.count = 0
        cpu = time.process_time_ns()
        child.stdin.write(f"{steps}\n")
        child.stdin.flush()
        await _settle(counter)
        used = time.process_time_ns() - cpu
        sent = int(await asyncio.get_running_loop().run_in_executor(None, child.stdout.readline))
        expected = sent // redundancy
        if counter.count != expected:
            raise RuntimeError(f"R={redundancy}: delivered {counter.count}, the server sent {expected} per path")
        return used / counter.count
    finally:
        await ws.stop()


async def latency_case(delay: Optional[float], redundancy: int, steps: int, rate: float) -> list[float]:
    """Publish-to-handler latencies (us) of ``steps`` paced steps."""
    async with BinanceSimulator(rate=0, max_incoming_per_second=1000) as sim, \
            FaultProxy("127.0.0.1", sim.port) as fast, FaultProxy("127.0.0.1", sim.port) as slow:
        counter = Counter()
        config = binance_config(fast.url(), urls=[slow.url()], redundancy=redundancy)
        ws = BinanceWebSocket(ExchangeName("binance"), config, counter.on_message)
        await ws.start()
        try:
            await ws.subscribe(STREAMS[:2])     # depth streams: one message per stream per step
            if delay is not None:
                slow.delay(delay, jitter=delay / 2)
            await asyncio.sleep(0.3)
            counter.keep = True
            published: list[tuple[int, int]] = []      # (perf ns, messages sent before it)
            delivered_before = counter.count
            for index in range(steps):
                published.append((time.perf_counter_ns(), index * 2))
                sim.step(1)
                await asyncio.sleep(1 / rate)
            await _settle(counter)
            stamps = counter.stamps
            if len(stamps) != 2 * steps or counter.count - delivered_before != 2 * steps:
                raise RuntimeError(f"R={redundancy}: {len(stamps)} delivered of {2 * steps}")
            return [(stamps[i] - published[i // 2][0]) / 1e3 for i in range(len(stamps))]
        finally:
            await ws.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(rounds: int, steps: int, latency_steps: int) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        costs: dict[int, list[float]] = {1: [], 2: []}
        for index in range(rounds):
            for redundancy in ((1, 2) if index % 2 == 0 else (2, 1)):
                costs[redundancy].append(await cost_round(port, child, redundancy, steps))
    finally:
        child.kill()
        child.wait()
    one, two = statistics.median(costs[1]), statistics.median(costs[2])
    print(f"cost per delivered message ({rounds} rounds of {steps} steps, {len(STREAMS)} streams; median):")
    print("| redundancy | CPU ns / message | ratio |\n| --- | ---: | ---: |")
    print(f"| R=1 | {one:,.0f} | 1.00 |\n| R=2 | {two:,.0f} | {two / one:.2f} |")
    print(f"  rounds R=1: {[round(c) for c in costs[1]]}\n  rounds R=2: {[round(c) for c in costs[2]]}")

    cases = [("R=1, fast path alone", None, 1), ("R=2, other path +20 ms (jitter 10 ms)", 0.02, 2),
             ("R=2, both paths undelayed", None, 2)]
    results: dict[str, list[list[float]]] = {name: [] for name, _, _ in cases}
    for index in range(max(1, rounds // 2)):
        order = cases if index % 2 == 0 else list(reversed(cases))
        for name, delay, redundancy in order:
            results[name].append(await latency_case(delay, redundancy, latency_steps, rate=200.0))
    print(f"\npublish-to-handler latency ({latency_steps} steps at 200/s, 2 depth streams; "
          "median over rounds of each round's p50/p99, us):")
    print("| case | p50 | p99 |\n| --- | ---: | ---: |")
    for name, _, _ in cases:
        p50 = statistics.median(_percentile(r, 0.5) for r in results[name])
        p99 = statistics.median(_percentile(r, 0.99) for r in results[name])
        print(f"| {name} | {p50:,.0f} | {p99:,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--latency-steps", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 400 steps")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.latency_steps = 2, 400, 100
    uvloop.run(main(args.rounds, args.steps, args.latency_steps))
