"""The ``fastws`` command line (``python -m fastws``)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from typing import Any, Optional, Sequence

import uvloop

from fastws.config import create_websocket_config
from fastws.errors import ExchangeAPIError
from fastws.testing.feed import FeedServer, LoopbackFeedClient
from fastws.types import ExchangeName

__all__ = ["main"]

DEMO_STREAMS = ["btcusdt@depth", "ethusdt@depth", "solusdt@depth", "bnbusdt@depth"]


async def run_demo(duration: float, rate: float, out: Any = sys.stdout) -> dict[str, Any]:
    """Stream from an in-process loopback feed through the core; print live figures.

    Halfway through, the server drops the connection, so the recovery shows.

    Returns:
        The final health check.
    """
    received = 0

    def on_message(message: dict[str, Any]) -> None:
        nonlocal received
        received += 1

    errors: list[ExchangeAPIError] = []
    async with FeedServer(rate=rate / len(DEMO_STREAMS)) as server:
        config = create_websocket_config(server.url, max_messages_per_second=10.0, stale_timeout=5.0)
        async with LoopbackFeedClient(ExchangeName("loopback"), config, on_message, errors.append) as ws:
            await ws.subscribe(DEMO_STREAMS)
            print(f"fastws demo: {len(DEMO_STREAMS)} streams at {rate:.0f} msg/s from {server.url}, "
                  f"{duration:.0f} s", file=out)
            print(f"{'t (s)':>6} {'msg/s':>9} {'p50 us':>8} {'p99 us':>8} {'state':>12} {'reconnects':>10}",
                  file=out)
            start = time.monotonic()
            last_count, last_time = 0, start
            ticks = max(1, math.ceil(duration))
            for tick in range(1, ticks + 1):
                await asyncio.sleep(max(0.0, start + min(tick, duration) - time.monotonic()))
                if tick == ticks // 2 + (ticks == 1):
                    print("  -> injecting a server-side drop (close 1001)", file=out)
                    server.drop_all(1001)
                now = time.monotonic()
                metrics = ws.metrics
                latency = metrics["latency_us"]
                rate_now = (received - last_count) / max(1e-9, now - last_time)
                last_count, last_time = received, now
                print(f"{now - start:6.1f} {rate_now:9.0f} {_fmt(latency['p50'])} {_fmt(latency['p99'])} "
                      f"{ws.state.value:>12} {metrics['reconnections']:>10}", file=out)
            health = await ws.health_check()
    metrics = health["metrics"]
    print("\nsummary", file=out)
    print(f"  messages delivered : {metrics['messages_delivered']}", file=out)
    print(f"  latency p50/p99/p99.9 (us, receive to handler done): "
          f"{metrics['latency_us']['p50']} / {metrics['latency_us']['p99']} / {metrics['latency_us']['p99.9']}",
          file=out)
    print(f"  reconnections      : {metrics['reconnections']}", file=out)
    for gap in health["gaps"]:
        duration_ms = (gap["end"] - gap["start"]) * 1000 if gap["end"] else float("nan")
        print(f"  gap                : {duration_ms:.1f} ms ({gap['reason']})", file=out)
    print(f"  errors             : {metrics['errors']}", file=out)
    return health


def _fmt(value: Optional[float]) -> str:
    return f"{value:8.1f}" if value is not None else f"{'-':>8}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``fastws`` and ``python -m fastws``."""
    parser = argparse.ArgumentParser(prog="fastws", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="stream from an embedded loopback feed (no network)")
    demo.add_argument("--duration", type=float, default=6.0, help="seconds to run (default 6)")
    demo.add_argument("--rate", type=float, default=2000.0, help="messages per second (default 2000)")
    demo.add_argument("--verbose", action="store_true", help="log state changes")
    args = parser.parse_args(argv)
    command = args.command or "demo"
    if command == "demo":
        logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.ERROR)
        health = uvloop.run(run_demo(getattr(args, "duration", 6.0), getattr(args, "rate", 2000.0)))
        return 0 if health["metrics"]["messages_delivered"] > 0 else 1
    parser.print_help()
    return 2
