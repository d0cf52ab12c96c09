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

from fastws.book import OrderBook
from fastws.commands import CommandError
from fastws.commands.adapters import make_client
from fastws.commands.liveview import LiveView, book_lines, format_number
from fastws.commands.metrics_port import add_metrics_option, serving_metrics
from fastws.errors import ExchangeAPIError
from fastws.registry import ExchangeEntry, RegistryError, load_exchanges

__all__ = ["BOOK_RESYNC_GRACE", "register", "run_demo"]

BOOK_RESYNC_GRACE = 10.0
"""Seconds the demo waits after its duration for books still resyncing."""


def demo_exchanges() -> list[ExchangeEntry]:
    """The registered exchanges that give a simulator and demo streams, by name."""
    try:
        entries = load_exchanges()
    except RegistryError as exc:
        raise CommandError(str(exc)) from None
    return [e for e in entries if e.simulator is not None and e.demo_streams]


class _Feed:
    """One exchange of the demo: its simulator, streams, client and order books.

    Attributes:
        book_symbols: Symbols whose books the client keeps (empty: the
            exchange has no books, or no demo symbols for them).
        books: The client's ``OrderBook`` per symbol, once subscribed.
        updates: Applied updates per symbol (the book handler counts them).
        invalidations: Times each book was reported invalid (a drop, a gap).
        events: Lines for the live view: a book became invalid, a book resynced.
    """

    def __init__(self, name: str, sim: Any, streams: list[str], book_symbols: list[str]) -> None:
        self.name = name
        self.sim = sim
        self.streams = streams
        self.book_symbols = book_symbols
        self.ws: Any = None
        self.books: dict[str, OrderBook] = {}
        self.updates: dict[str, int] = dict.fromkeys(book_symbols, 0)
        self.invalidations: dict[str, int] = dict.fromkeys(book_symbols, 0)
        self.events: list[str] = []
        self._rates: dict[str, tuple[float, int]] = {}
        self._invalid_since: dict[str, float] = {}

    def on_book(self, book: OrderBook) -> None:
        """The demo's book strategy: count what the client applied; note when a book goes and comes back."""
        symbol = book.symbol
        if book.valid:
            self.updates[symbol] = self.updates.get(symbol, 0) + 1
            since = self._invalid_since.pop(symbol, None)
            if since is not None:
                self.events.append(f"  -> {self.name} {symbol} book synced again from a new snapshot, "
                                   f"{(time.monotonic() - since) * 1000:.0f} ms after it became invalid")
        elif symbol not in self._invalid_since:
            self.invalidations[symbol] = self.invalidations.get(symbol, 0) + 1
            self._invalid_since[symbol] = time.monotonic()
            if self.updates.get(symbol):
                self.events.append(f"  -> {self.name} {symbol} book invalid (updates lost): resyncing")

    def book_view(self, health: dict[str, Any]) -> list[str]:
        """The live view's lines of this exchange's books (a status line each)."""
        lines = []
        now = time.monotonic()
        for symbol, book in self.books.items():
            count = self.updates.get(symbol, 0)
            last = self._rates.get(symbol)
            self._rates[symbol] = (now, count)
            rate = (count - last[1]) / (now - last[0]) if last is not None and now > last[0] else None
            lines.append(book_lines(self.name, book, health.get("books", {}).get(symbol), 0, rate)[0])
        return lines

    def path_view(self, health: dict[str, Any]) -> list[str]:
        """The live view's lines of this exchange's redundant connections (a line per path)."""
        return [f"{self.name} shard {group['shard']} path {path['path']}: {path['state']}, "
                f"first arrivals {path['first_share'] * 100:5.1f} % ({path['first_arrivals']}), "
                f"copies behind the first p50 {format_number(path['lag_p50_us'], 6)} us "
                f"p99 {format_number(path['lag_p99_us'], 6)} us, replaced {path['replaced']}"
                for group in health.get("redundancy", []) for path in group["paths"]]

    def books_valid(self) -> bool:
        """True when every book of this exchange is valid."""
        return all(book.valid for book in self.books.values())


def _on_message(message: Any) -> None:
    """The demo's strategy: nothing; the live view reads the counts from ``health_check()``."""


async def run_demo(duration: float, rate: float, out: Any = sys.stdout,
                   redundancy: int = 1, metrics_port: Optional[int] = None) -> dict[str, dict[str, Any]]:
    """Stream every registered exchange that has demo streams from its simulator.

    Shows a live view (per stream: messages/s, event latency p50/p99, the
    core's p99, state, reconnections, sequence gaps; per order book of an
    exchange that keeps them: valid or not, update id and rate, resyncs,
    best bid and ask, spread), refreshed in place on a terminal; halfway
    through, every simulator drops its connections so the recovery shows
    (the books become invalid and resync from a new snapshot); ends with a
    summary per exchange.

    Args:
        duration: Seconds to run.
        rate: Market steps per second (each gives a depth update per depth
            stream and 0-3 trades per trade stream).
        redundancy: Live connections per exchange connection over the same
            streams, first arrival wins (``WebSocketConfig.redundancy``); with
            more than one, the drop closes one of them only, and the feed and
            the books go on without a gap. The live view and the summary show
            each connection's share of first arrivals.
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
            symbols = list(entry.book_symbols) if entry.has_books else []
            feed = _Feed(entry.name, sim, list(entry.demo_streams), symbols)
            # An exchange with books takes its simulator's REST snapshots.
            books_config: dict[str, Any] = {"rest_url": entry.simulator_rest_url(sim)} if symbols else {}
            url = entry.simulator_url(sim)
            paths: dict[str, Any] = {"redundancy": redundancy, "urls": [url]} if redundancy > 1 else {}
            feed.ws = make_client(entry.name, url, _on_message, errors.append,
                                  stale_timeout=5.0, reconnect_delay=0.1, **books_config, **paths)
            feeds.append(feed)
        for feed in feeds:
            await stack.enter_async_context(feed.ws)
        await asyncio.gather(*(feed.ws.subscribe(feed.streams) for feed in feeds))
        for feed in feeds:
            if feed.book_symbols:
                feed.books = await feed.ws.subscribe_books(feed.book_symbols, feed.on_book)
        await stack.enter_async_context(serving_metrics(metrics_port, [feed.ws for feed in feeds], out))
        print(f"fastws demo: {rate:.0f} market steps/s for {duration:.0f} s, no network", file=out)
        for feed in feeds:
            books = f"; order books of {', '.join(feed.book_symbols)}" if feed.book_symbols else ""
            print(f"  {feed.name:<8} simulator at {feed.sim.url}: {', '.join(feed.streams)}{books}", file=out)
        view = LiveView(out)
        start = time.monotonic()
        ticks = max(1, math.ceil(duration))
        dropped_at = ticks // 2 + (ticks == 1)
        note = None
        for tick in range(1, ticks + 1):
            await asyncio.sleep(max(0.0, start + min(tick, duration) - time.monotonic()))
            if tick == dropped_at:
                every = "both exchanges" if len(feeds) == 2 else "every exchange"
                if redundancy > 1:
                    view.event(f"  -> injecting a server-side drop of one of the {redundancy} connections "
                               f"on {every} (close 1001)")
                    for feed in feeds:
                        feed.sim.drop(1001, connection=feed.sim.connections[0])
                    note = "after the drop: the other connections deliver, no gap; the dropped one reconnects"
                else:
                    view.event(f"  -> injecting a server-side drop on {every} (close 1001)")
                    for feed in feeds:
                        feed.sim.drop(1001)
                    note = "after the drop: watch state, reconnections and the books resyncing"
            await _refresh(view, feeds, start, note)
        await _await_books(view, feeds, start)
        final: dict[str, dict[str, Any]] = {feed.name: await feed.ws.health_check() for feed in feeds}
    for feed in feeds:
        _print_summary(feed.name, final[feed.name], out)
        _print_books(feed, final[feed.name], out)
        for line in feed.path_view(final[feed.name]):
            print(f"  {line}", file=out)
    return final


async def _refresh(view: LiveView, feeds: list[_Feed], start: float, note: Optional[str]) -> None:
    """One refresh of the live view: every stream's row, then every book's line."""
    for feed in feeds:
        events, feed.events = feed.events, []
        for event in events:
            view.event(event)
    healths = {feed.name: await feed.ws.health_check() for feed in feeds}
    below = [line for feed in feeds for line in (*feed.book_view(healths[feed.name]),
                                                 *feed.path_view(healths[feed.name]))]
    view.refresh(time.monotonic() - start, healths, note, below)


async def _await_books(view: LiveView, feeds: list[_Feed], start: float) -> None:
    """Books still resyncing when the time is up get ``BOOK_RESYNC_GRACE`` seconds more, shown."""
    deadline = time.monotonic() + BOOK_RESYNC_GRACE
    while not all(feed.books_valid() for feed in feeds) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        await _refresh(view, feeds, start, "time is up: waiting for the books to resync")


def _print_books(feed: _Feed, health: dict[str, Any], out: Any) -> None:
    """The books' lines of an exchange's summary, from its final ``health_check()`` (taken before the stop)."""
    for symbol, state in health.get("books", {}).items():
        print(f"  book {symbol:<13}: {'valid' if state['valid'] else 'INVALID'}, {feed.updates.get(symbol, 0)} "
              f"updates applied, invalidated {feed.invalidations.get(symbol, 0)}x, resyncs {state['resyncs']}, "
              f"invalid {state['seconds_invalid']:.2f} s in all, snapshots {state['snapshots']}, "
              f"update {state['last_update_id']}, levels {state['bid_levels']}/{state['ask_levels']}", file=out)


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
    demo.add_argument("--redundancy", type=int, default=1,
                      help="live connections per exchange connection, first arrival wins (default 1)")
    add_metrics_option(demo)
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every exchange delivered messages and every book ended valid."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    if not 1 <= args.redundancy <= 8:
        raise CommandError(f"--redundancy must be 1 to 8, got {args.redundancy}")
    healths = uvloop.run(run_demo(args.duration, args.rate, redundancy=args.redundancy,
                                  metrics_port=args.metrics_port))
    delivered = all(h["metrics"]["messages_delivered"] > 0 for h in healths.values())
    books_valid = all(book["valid"] for h in healths.values() for book in h.get("books", {}).values())
    return 0 if delivered and books_valid else 1
