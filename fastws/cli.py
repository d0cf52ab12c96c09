"""The ``fastws`` command line (``python -m fastws``)."""
from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import math
import sys
import time
from typing import Any, Optional, Sequence

import uvloop

from fastws.config import create_websocket_config
from fastws.errors import ExchangeAPIError
from fastws.testing.binance_sim import BinanceSimulator
from fastws.types import ExchangeName

__all__ = ["main"]

DEMO_STREAMS = ["btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@trade", "ethusdt@trade"]
# The command line finds adapters by name: fastws never imports one directly.
BINANCE_ADAPTER = "exchanges.binance"


def _load_adapter(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(f"fastws: cannot import the adapter {module!r}: {exc}") from None


async def run_demo(duration: float, rate: float, out: Any = sys.stdout) -> dict[str, Any]:
    """Stream Binance depth and trades from the embedded simulator; print live figures.

    Halfway through, the simulator drops the connection, so the recovery shows.

    Args:
        duration: Seconds to run.
        rate: Market steps per second (each gives a depth update per depth
            stream and 0-3 trades per trade stream).

    Returns:
        The final health check.
    """
    binance = _load_adapter(BINANCE_ADAPTER)
    received = 0

    def on_message(message: dict[str, Any]) -> None:
        nonlocal received
        received += 1

    errors: list[ExchangeAPIError] = []
    async with BinanceSimulator(rate=rate) as sim:
        config = binance.binance_config(sim.url, stale_timeout=5.0, reconnect_delay=0.1)
        async with binance.BinanceWebSocket(ExchangeName("binance"), config, on_message, errors.append) as ws:
            await ws.subscribe(DEMO_STREAMS)
            print(f"fastws demo: Binance simulator at {sim.url}, {len(DEMO_STREAMS)} streams "
                  f"({', '.join(DEMO_STREAMS)}), {rate:.0f} market steps/s, {duration:.0f} s", file=out)
            print(f"{'t (s)':>6} {'msg/s':>8} {'core p50 us':>11} {'core p99 us':>11} "
                  f"{'event p50 ms':>12} {'state':>12} {'reconnects':>10} {'seq gaps':>8}", file=out)
            start = time.monotonic()
            last_count, last_time = 0, start
            ticks = max(1, math.ceil(duration))
            for tick in range(1, ticks + 1):
                await asyncio.sleep(max(0.0, start + min(tick, duration) - time.monotonic()))
                if tick == ticks // 2 + (ticks == 1):
                    print("  -> injecting a server-side drop (close 1001)", file=out)
                    sim.drop(1001)
                now = time.monotonic()
                health = await ws.health_check()
                metrics = health["metrics"]
                latency = metrics["latency_us"]
                event_p50 = [s["event_latency_ms"]["p50"] for s in health["streams"].values()
                             if "event_latency_ms" in s]
                rate_now = (received - last_count) / max(1e-9, now - last_time)
                last_count, last_time = received, now
                print(f"{now - start:6.1f} {rate_now:8.0f} {_fmt(latency['p50'], 11)} {_fmt(latency['p99'], 11)} "
                      f"{_fmt(max(event_p50) if event_p50 else None, 12)} {ws.state.value:>12} "
                      f"{metrics['reconnections']:>10} {metrics['sequence_gaps']:>8}", file=out)
            final: dict[str, Any] = await ws.health_check()
    _print_summary(final, out)
    return final


def _print_summary(health: dict[str, Any], out: Any) -> None:
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
    print(f"  sequence gaps      : {metrics['sequence_gaps']} ({metrics['missing_sequences']} updates missing)",
          file=out)
    print(f"  errors             : {metrics['errors']}", file=out)
    print("  per stream (since the reconnection):", file=out)
    for name, stream in health["streams"].items():
        event = stream.get("event_latency_ms") or {}
        print(f"    {name:<22} {stream['type']:<10} {stream['messages']:>7} msgs "
              f"{stream['messages_per_second'] or 0:8.0f} msg/s  event->receive p50 {_fmt(event.get('p50'), 6)} ms "
              f"p99 {_fmt(event.get('p99'), 6)} ms", file=out)


def _fmt(value: Optional[float], width: int = 8) -> str:
    return f"{value:{width}.1f}" if value is not None else f"{'-':>{width}}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``fastws`` and ``python -m fastws``."""
    parser = argparse.ArgumentParser(prog="fastws", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="stream Binance from the embedded simulator (no network)")
    demo.add_argument("--duration", type=float, default=6.0, help="seconds to run (default 6)")
    demo.add_argument("--rate", type=float, default=500.0, help="market steps per second (default 500)")
    demo.add_argument("--verbose", action="store_true", help="log state changes")
    args = parser.parse_args(argv)
    command = args.command or "demo"
    if command == "demo":
        logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.ERROR)
        health = uvloop.run(run_demo(getattr(args, "duration", 6.0), getattr(args, "rate", 500.0)))
        return 0 if health["metrics"]["messages_delivered"] > 0 else 1
    parser.print_help()
    return 2
