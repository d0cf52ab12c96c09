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

from fastws.errors import ExchangeAPIError
from fastws.testing.binance_sim import BinanceSimulator
from fastws.testing.mexc_sim import MexcSimulator
from fastws.types import ExchangeName

__all__ = ["main"]

BINANCE_STREAMS = ["btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@trade", "ethusdt@trade"]
MEXC_CHANNELS = ["spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT",
                 "spot@public.aggre.depth.v3.api.pb@100ms@ETHUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@ETHUSDT"]
# The command line finds adapters by name: fastws never imports one directly.
BINANCE_ADAPTER = "exchanges.binance"
MEXC_ADAPTER = "exchanges.mexc"


def _load_adapter(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(f"fastws: cannot import the adapter {module!r}: {exc}") from None


class _Feed:
    """One exchange of the demo: its simulator, adapter and message count."""

    def __init__(self, name: str, sim: Any, ws: Any, streams: list[str]) -> None:
        self.name = name
        self.sim = sim
        self.ws = ws
        self.streams = streams
        self.received = 0
        self.last_count = 0

    def on_message(self, message: Any) -> None:
        self.received += 1


async def run_demo(duration: float, rate: float, out: Any = sys.stdout) -> dict[str, dict[str, Any]]:
    """Stream Binance (JSON) and MEXC (protobuf) from the embedded simulators.

    Prints a live view each second; halfway through, both simulators drop
    their connections, so the recovery shows; ends with a summary per exchange.

    Args:
        duration: Seconds to run.
        rate: Market steps per second (each gives a depth update per depth
            stream and 0-3 trades per trade stream).

    Returns:
        The final health check of each exchange, by name.
    """
    binance = _load_adapter(BINANCE_ADAPTER)
    mexc = _load_adapter(MEXC_ADAPTER)
    errors: list[ExchangeAPIError] = []
    async with BinanceSimulator(rate=rate) as binance_sim, MexcSimulator(rate=rate) as mexc_sim:
        feeds = [_Feed("binance", binance_sim, None, BINANCE_STREAMS), _Feed("mexc", mexc_sim, None, MEXC_CHANNELS)]
        feeds[0].ws = binance.BinanceWebSocket(
            ExchangeName("binance"), binance.binance_config(binance_sim.url, stale_timeout=5.0, reconnect_delay=0.1),
            feeds[0].on_message, errors.append)
        feeds[1].ws = mexc.MexcWebSocket(
            ExchangeName("mexc"), mexc.mexc_config(mexc_sim.ws_url(), stale_timeout=5.0, reconnect_delay=0.1),
            feeds[1].on_message, errors.append)
        async with feeds[0].ws, feeds[1].ws:
            await asyncio.gather(*(feed.ws.subscribe(feed.streams) for feed in feeds))
            print(f"fastws demo: {rate:.0f} market steps/s for {duration:.0f} s, no network", file=out)
            for feed in feeds:
                print(f"  {feed.name:<8} simulator at {feed.sim.url}: {', '.join(feed.streams)}", file=out)
            print(f"{'t (s)':>6} {'exchange':>8} {'msg/s':>8} {'core p50 us':>11} {'core p99 us':>11} "
                  f"{'event p50 ms':>12} {'state':>12} {'reconnects':>10} {'seq gaps':>8}", file=out)
            start = time.monotonic()
            last_time = start
            ticks = max(1, math.ceil(duration))
            for tick in range(1, ticks + 1):
                await asyncio.sleep(max(0.0, start + min(tick, duration) - time.monotonic()))
                if tick == ticks // 2 + (ticks == 1):
                    print("  -> injecting a server-side drop on both exchanges (close 1001)", file=out)
                    for feed in feeds:
                        feed.sim.drop(1001)
                now = time.monotonic()
                for feed in feeds:
                    health = await feed.ws.health_check()
                    metrics = health["metrics"]
                    event_p50 = [s["event_latency_ms"]["p50"] for s in health["streams"].values()
                                 if s.get("event_latency_ms")]
                    rate_now = (feed.received - feed.last_count) / max(1e-9, now - last_time)
                    feed.last_count = feed.received
                    print(f"{now - start:6.1f} {feed.name:>8} {rate_now:8.0f} "
                          f"{_fmt(metrics['latency_us']['p50'], 11)} {_fmt(metrics['latency_us']['p99'], 11)} "
                          f"{_fmt(max(event_p50) if event_p50 else None, 12)} {health['state']:>12} "
                          f"{metrics['reconnections']:>10} {metrics['sequence_gaps']:>8}", file=out)
                last_time = now
            final: dict[str, dict[str, Any]] = {feed.name: await feed.ws.health_check() for feed in feeds}
    for name, health in final.items():
        _print_summary(name, health, out)
    return final


def _print_summary(name: str, health: dict[str, Any], out: Any) -> None:
    metrics = health["metrics"]
    print(f"\nsummary: {name}", file=out)
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
    for stream_name, stream in health["streams"].items():
        event = stream.get("event_latency_ms") or {}
        print(f"    {stream_name:<48} {stream['type']:<10} {stream['messages']:>7} msgs "
              f"{stream['messages_per_second'] or 0:8.0f} msg/s  event->receive p50 {_fmt(event.get('p50'), 6)} ms "
              f"p99 {_fmt(event.get('p99'), 6)} ms", file=out)


def _fmt(value: Optional[float], width: int = 8) -> str:
    return f"{value:{width}.1f}" if value is not None else f"{'-':>{width}}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``fastws`` and ``python -m fastws``."""
    parser = argparse.ArgumentParser(prog="fastws", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser("demo", help="stream Binance and MEXC from the embedded simulators (no network)")
    demo.add_argument("--duration", type=float, default=6.0, help="seconds to run (default 6)")
    demo.add_argument("--rate", type=float, default=500.0, help="market steps per second (default 500)")
    demo.add_argument("--verbose", action="store_true", help="log state changes")
    args = parser.parse_args(argv)
    command = args.command or "demo"
    if command == "demo":
        logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.ERROR)
        healths = uvloop.run(run_demo(getattr(args, "duration", 6.0), getattr(args, "rate", 500.0)))
        return 0 if all(h["metrics"]["messages_delivered"] > 0 for h in healths.values()) else 1
    parser.print_help()
    return 2
