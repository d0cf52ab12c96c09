"""The event-loop lag monitor beside its peers, and the cost of the cadence watchdog.

Run: ``python bench/looplag_bench.py [--rounds 5]``. Peers measured when
installed (``pip install aiodebug loopmon``): ``aiodebug.monitor_loop_lag``
and ``loopmon`` (both a Task that sleeps and compares ``loop.time()``).

- overhead: CPU time per wake-up of a monitor waking every 10 ms on an idle
  uvloop, less the same loop without a monitor;
- accuracy: the largest lag each monitor reports for the loop blocked 300 ms
  in a callback run soon (``call_soon``) and in a timer callback
  (``call_later``, due with the monitor's own wake-up);
- cadence: time of one cadence check (``CadenceWatch.check``) and of one
  ``health_check()["cadence"]``-sized snapshot over 1000 streams.

Rounds interleave the monitors in a new order each time; medians are printed.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastws.client.cadence import CadenceWatch  # noqa: E402
from fastws.looplag import LoopLagMonitor  # noqa: E402

INTERVAL = 0.01
IDLE = 1.0
BLOCK = 0.3


class Recorder:
    """What a peer reports, in seconds."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    def timing(self, metric: str, value: float) -> None:     # aiodebug's statsd client
        self.lags.append(value / 1e3)

    async def __call__(self, lag: float, tasks: int, data_at: Any) -> None:   # a loopmon callback
        self.lags.append(lag)


def start_fastws(loop: asyncio.AbstractEventLoop, interval: float) -> Callable[[], float]:
    monitor = LoopLagMonitor(loop, interval, window=60.0)
    monitor.start()

    def worst() -> float:
        monitor.stop()
        return monitor.snapshot()["max_ms"] / 1e3
    return worst


def start_peer(name: str, loop: asyncio.AbstractEventLoop, interval: float) -> Optional[Callable[[], float]]:
    """Start peer ``name`` (None when it is not installed); return what stops it and gives its largest lag."""
    recorder = Recorder()
    stop: Callable[[], Any]
    try:
        if name == "aiodebug":
            from aiodebug import monitor_loop_lag
            monitor_loop_lag.enable(recorder, interval, loop)
            stop = next(t for t in asyncio.all_tasks(loop) if t.get_name() == "aiodebug.monitor_loop_lag").cancel
        else:
            import loopmon
            monitor = loopmon.create(loop, interval=interval, callbacks=[recorder])
            stop = lambda: loop.create_task(monitor.stop())     # a coroutine in loopmon  # noqa: E731
    except ImportError:
        return None

    def worst() -> float:
        stop()
        return max(recorder.lags, default=0.0)
    return worst


MONITORS: dict[str, Callable[[asyncio.AbstractEventLoop, float], Optional[Callable[[], float]]]] = {
    "none": lambda loop, interval: (lambda: 0.0),
    "fastws": start_fastws,
    "aiodebug": lambda loop, interval: start_peer("aiodebug", loop, interval),
    "loopmon": lambda loop, interval: start_peer("loopmon", loop, interval),
}


async def overhead(name: str) -> Optional[float]:
    """CPU seconds the process used over ``IDLE`` seconds of an idle loop with the monitor."""
    loop = asyncio.get_running_loop()
    stop = MONITORS[name](loop, INTERVAL)
    if stop is None:
        return None
    await asyncio.sleep(0.05)
    cpu = time.process_time()
    await asyncio.sleep(IDLE)
    used = time.process_time() - cpu
    stop()
    await asyncio.sleep(0.02)
    return used


async def accuracy(name: str, how: str) -> Optional[float]:
    """The largest lag the monitor reports for one ``BLOCK``-second block of the loop."""
    loop = asyncio.get_running_loop()
    stop = MONITORS[name](loop, INTERVAL)
    if stop is None:
        return None
    await asyncio.sleep(0.1)
    if how == "call_soon":
        loop.call_soon(time.sleep, BLOCK)
    else:
        loop.call_later(INTERVAL, time.sleep, BLOCK)
    await asyncio.sleep(INTERVAL + BLOCK + 0.1)
    return stop()


def cadence_costs(streams: int = 1000, repeat: int = 200) -> tuple[float, float]:
    """Seconds per ``CadenceWatch.check`` and per ``snapshot`` over ``streams`` streams."""
    class Stat:
        def __init__(self, n: int) -> None:
            self.messages, self.first_receive_ns, self.last_receive_ns = n, 0, n * 100_000_000

    class Core:
        connected_ns = 0
        last_receive_ns = 10**12

    names = [f"s{i}@depth@100ms" for i in range(streams)]
    stats = {n: Stat(100) for n in names}
    watch = CadenceWatch(10.0, 10.0, 20, lambda s: 0.1)
    core = Core()
    now = 10**12
    start = time.perf_counter()
    for i in range(repeat):
        for stat in stats.values():
            stat.messages += 1
        watch.check(core, stats, names, now + i)
    check = (time.perf_counter() - start) / repeat
    start = time.perf_counter()
    for i in range(repeat):
        watch.snapshot(names, now + i, stats)
    return check, (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    names = list(MONITORS)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    seen: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        order = names[:]
        random.shuffle(order)
        for name in order:
            used = uvloop.run(overhead(name))
            if used is not None:
                cpu[name].append(used)
            for how in ("call_soon", "call_later"):
                lag = uvloop.run(accuracy(name, how)) if name != "none" else None
                if lag is not None:
                    seen.setdefault((name, how), []).append(lag)
    base = statistics.median(cpu["none"])
    wakeups = IDLE / INTERVAL
    print(f"event-loop lag monitors, uvloop, wake-up every {INTERVAL * 1e3:.0f} ms, "
          f"median of {args.rounds} interleaved rounds")
    print(f"{'monitor':<10} {'CPU us/wake-up':>15} {'300 ms block, call_soon':>25} {'in a timer':>12}")
    fastws_cost = None
    for name in names[1:]:
        if not cpu[name]:
            print(f"{name:<10} not installed")
            continue
        cost = (statistics.median(cpu[name]) - base) / wakeups * 1e6
        if name == "fastws":
            fastws_cost = cost
        soon = statistics.median(seen[(name, "call_soon")]) * 1e3
        timer = statistics.median(seen[(name, "call_later")]) * 1e3
        ratio = f" ({cost / fastws_cost:.2f}x fastws)" if fastws_cost and name != "fastws" else ""
        print(f"{name:<10} {cost:>15.1f} {soon:>22.0f} ms {timer:>9.0f} ms{ratio}")
    check, snapshot = cadence_costs()
    print(f"cadence watchdog, 1000 streams: check {check * 1e3:.2f} ms, snapshot {snapshot * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
