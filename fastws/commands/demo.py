"""``fastws demo``: Binance and MEXC streamed from the embedded simulators (no network)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from typing import Any

import uvloop

from fastws.commands.adapters import make_client
from fastws.commands.liveview import LiveView, format_number
from fastws.errors import ExchangeAPIError
from fastws.testing.binance_sim import BinanceSimulator
from fastws.testing.mexc_sim import MexcSimulator

__all__ = ["register", "run_demo"]

BINANCE_STREAMS = ["btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@trade", "ethusdt@trade"]
MEXC_CHANNELS = ["spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT",
                 "spot@public.aggre.depth.v3.api.pb@100ms@ETHUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@ETHUSDT"]


class _Feed:
    """One exchange of the demo: its simulator, streams and client."""

    def __init__(self, name: str, sim: Any, streams: list[str]) -> None:
        self.name = name
        self.sim = sim
        self.streams = streams
        self.ws: Any = None


def _on_message(message: Any) -> None:
    """The demo's strategy: nothing; the live view reads the counts from ``health_check()``."""


async def run_demo(duration: float, rate: float, out: Any = sys.stdout) -> dict[str, dict[str, Any]]:
    """Stream Binance (JSON) and MEXC (protobuf) from the embedded simulators.

    Shows a live view (per stream: messages/s, event latency p50/p99, the
    core's p99, state, reconnections, sequence gaps), refreshed in place on
    a terminal; halfway through, both simulators drop their connections so
    the recovery shows; ends with a summary per exchange.

    Args:
        duration: Seconds to run.
        rate: Market steps per second (each gives a depth update per depth
            stream and 0-3 trades per trade stream).

    Returns:
        The final health check of each exchange, by name.
    """
    errors: list[ExchangeAPIError] = []
    async with BinanceSimulator(rate=rate) as binance_sim, MexcSimulator(rate=rate) as mexc_sim:
        feeds = [_Feed("binance", binance_sim, BINANCE_STREAMS), _Feed("mexc", mexc_sim, MEXC_CHANNELS)]
        for feed, url in zip(feeds, (binance_sim.url, mexc_sim.ws_url())):
            feed.ws = make_client(feed.name, url, _on_message, errors.append,
                                  stale_timeout=5.0, reconnect_delay=0.1)
        async with feeds[0].ws, feeds[1].ws:
            await asyncio.gather(*(feed.ws.subscribe(feed.streams) for feed in feeds))
            print(f"fastws demo: {rate:.0f} market steps/s for {duration:.0f} s, no network", file=out)
            for feed in feeds:
                print(f"  {feed.name:<8} simulator at {feed.sim.url}: {', '.join(feed.streams)}", file=out)
            view = LiveView(out)
            start = time.monotonic()
            ticks = max(1, math.ceil(duration))
            dropped_at = ticks // 2 + (ticks == 1)
            note = None
            for tick in range(1, ticks + 1):
                await asyncio.sleep(max(0.0, start + min(tick, duration) - time.monotonic()))
                if tick == dropped_at:
                    view.event("  -> injecting a server-side drop on both exchanges (close 1001)")
                    for feed in feeds:
                        feed.sim.drop(1001)
                    note = "after the drop: watch state and reconnections"
                healths = {feed.name: await feed.ws.health_check() for feed in feeds}
                view.refresh(time.monotonic() - start, healths, note)
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
              f"{stream['messages_per_second'] or 0:8.0f} msg/s  "
              f"event->receive p50 {format_number(event.get('p50'), 6)} ms "
              f"p99 {format_number(event.get('p99'), 6)} ms", file=out)


def register(commands: Any) -> None:
    """Add the ``demo`` sub-command."""
    demo = commands.add_parser("demo", help="stream Binance and MEXC from the embedded simulators (no network)")
    demo.add_argument("--duration", type=float, default=6.0, help="seconds to run (default 6)")
    demo.add_argument("--rate", type=float, default=500.0, help="market steps per second (default 500)")
    demo.add_argument("--verbose", action="store_true", help="log state changes")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when both exchanges delivered messages."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    healths = uvloop.run(run_demo(args.duration, args.rate))
    return 0 if all(h["metrics"]["messages_delivered"] > 0 for h in healths.values()) else 1
