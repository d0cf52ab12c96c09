"""``fastws demo``: every registered exchange with demo streams, from its simulator (no network)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from contextlib import AsyncExitStack
from typing import Any, Optional

import uvloop

from fastws.commands import CommandError
from fastws.commands.adapters import make_client
from fastws.commands.liveview import LiveView, format_number
from fastws.commands.metrics_port import add_metrics_option, serving_metrics
from fastws.errors import ExchangeAPIError
from fastws.registry import ExchangeEntry, RegistryError, load_exchanges

__all__ = ["register", "run_demo"]


def demo_exchanges() -> list[ExchangeEntry]:
    """The registered exchanges that give a simulator and demo streams, by name."""
    try:
        entries = load_exchanges()
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    return [e for e in entries if e.simulator is not None and e.demo_streams]


class _Feed:
    """One exchange of the demo: its simulator, streams and client."""

    def __init__(self, name: str, sim: Any, streams: list[str]) -> None:
        self.name = name
        self.sim = sim
        self.streams = streams
        self.ws: Any = None


def _on_message(message: Any) -> None:
    """The demo's strategy: nothing; the live view reads the counts from ``health_check()``."""


async def run_demo(duration: float, rate: float, out: Any = sys.stdout,
                   metrics_port: Optional[int] = None) -> dict[str, dict[str, Any]]:
    """Stream every registered exchange that has demo streams from its simulator.

    Shows a live view (per stream: messages/s, event latency p50/p99, the
    core's p99, state, reconnections, sequence gaps), refreshed in place on
    a terminal; halfway through, every simulator drops its connections so
    the recovery shows; ends with a summary per exchange.

    Args:
        duration: Seconds to run.
        rate: Market steps per second (each gives a depth update per depth
            stream and 0-3 trades per trade stream).
        metrics_port: Serve ``/metrics`` and ``/healthz`` on 127.0.0.1 meanwhile.

    Returns:
        The final health check of each exchange, by name.
    """
    errors: list[ExchangeAPIError] = []
    entries = demo_exchanges()
    if not entries:
        raise CommandError("no registered exchange gives a simulator and demo streams")
    async with AsyncExitStack() as stack:
        feeds = []
        for entry in entries:
            assert entry.simulator is not None
            sim = await stack.enter_async_context(entry.simulator(rate=rate))
            feed = _Feed(entry.name, sim, list(entry.demo_streams))
            feed.ws = make_client(entry.name, entry.simulator_url(sim), _on_message, errors.append,
                                  stale_timeout=5.0, reconnect_delay=0.1)
            feeds.append(feed)
        for feed in feeds:
            await stack.enter_async_context(feed.ws)
        await asyncio.gather(*(feed.ws.subscribe(feed.streams) for feed in feeds))
        await stack.enter_async_context(serving_metrics(metrics_port, [feed.ws for feed in feeds], out))
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
                every = "both exchanges" if len(feeds) == 2 else "every exchange"
                view.event(f"  -> injecting a server-side drop on {every} (close 1001)")
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
    demo = commands.add_parser("demo", help="stream every registered exchange from its simulator (no network)")
    demo.add_argument("--duration", type=float, default=6.0, help="seconds to run (default 6)")
    demo.add_argument("--rate", type=float, default=500.0, help="market steps per second (default 500)")
    demo.add_argument("--verbose", action="store_true", help="log state changes")
    add_metrics_option(demo)
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every exchange delivered messages."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    healths = uvloop.run(run_demo(args.duration, args.rate, metrics_port=args.metrics_port))
    return 0 if all(h["metrics"]["messages_delivered"] > 0 for h in healths.values()) else 1
