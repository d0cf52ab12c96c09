"""``fastws book EXCHANGE SYMBOL...``: local order books, as a live view or one JSON line per update.

The books are the client's own (``subscribe_books``: the diff stream, the
REST snapshot, the sync). Without ``--url`` the exchange's public endpoints
serve both the stream and the snapshots, as ``fastws stream`` does; with
``--url`` (a simulator, a local relay) ``--rest-url`` must be given too, so a
local stream never sends its snapshot requests to the public REST endpoint.

With ``--json`` each applied update is one line::

    {"exchange": "binance", "symbol": "BTCUSDT", "update_id": 1027024, "valid": true,
     "bids": [["60000.01000000", "0.50000000"], ...], "asks": [...]}

prices and quantities as the book's exact decimal strings, best first,
``--depth`` levels per side. When a book becomes invalid (a gap, a lost
connection, a crossed book, a failed snapshot) one line says so with
``"valid": false``; it resyncs by itself and the updates go on.

The command ends after ``--duration`` seconds, ``--max-updates`` applied
updates (over every book), or at Ctrl-C. It fails with one line (exit
status 1) when a book is not synced within ``--sync-timeout`` seconds (an
unreachable REST endpoint, a snapshot refused) or when the exchange bans the
IP (HTTP 418: no request is sent again).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, Optional, TextIO
from urllib.parse import urlsplit

import msgspec
import uvloop

from fastws.book import BannedError, OrderBook
from fastws.commands import CommandError, UsageError, configure_logging, require_positive
from fastws.commands.adapters import exchange_names, load_exchange, make_client, start_client
from fastws.commands.liveview import LiveView, book_lines
from fastws.commands.signals import until_signalled
from fastws.errors import ExchangeAPIError
from fastws.registry import load_exchanges

__all__ = ["BookPrinter", "register", "run", "run_book"]

_VIEW_INTERVAL = 0.5         # seconds between two refreshes of the live view


def register(commands: Any) -> None:
    """Add the ``book`` sub-command."""
    parser = commands.add_parser(
        "book", help="local order books of an exchange (its public endpoints, or --url and --rest-url)",
        description="Keep the order books of SYMBOL... (diff stream + REST snapshot) and show them: "
                    "a live view, or one JSON line per applied update (--json).")
    parser.add_argument("exchange", choices=exchange_names(), help="the exchange (a registered one)")
    parser.add_argument("symbols", nargs="+", metavar="SYMBOL", help="symbols, e.g. BTCUSDT")
    parser.add_argument("--url", help="WebSocket endpoint (default: the exchange's public one)")
    parser.add_argument("--rest-url", help="REST base URL of the snapshots (default: the exchange's public "
                                           "one; required with --url)")
    parser.add_argument("--depth", type=int, default=10, help="levels shown per side (default 10)")
    parser.add_argument("--json", action="store_true", help="one JSON line per applied update")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--max-updates", type=int, help="stop after this many applied updates")
    parser.add_argument("--connect-timeout", type=float, default=15.0,
                        help="give up if not connected within this many seconds (default 15)")
    parser.add_argument("--sync-timeout", type=float, default=15.0,
                        help="give up if a book is not synced within this many seconds (default 15)")
    parser.set_defaults(run=run)


class BookPrinter:
    """The book handler: counts applied updates, prints them as JSON lines, stops at ``max_updates``.

    Args:
        exchange: Name written in each line.
        out: Where the lines go (None: nothing is printed, as for the live view).
        depth: Levels per side in a line.
        max_updates: Applied updates after which ``done`` is set (None: no limit).

    Attributes:
        updates: Applied updates (valid books) seen, over every symbol.
        per_symbol: Applied updates per symbol.
        synced: Symbols whose book has been valid at least once.
        done: Set at ``max_updates``.
    """

    def __init__(self, exchange: str, out: Optional[TextIO], depth: int, max_updates: Optional[int]) -> None:
        self.exchange = exchange
        self.out = out
        self.depth = depth
        self.max_updates = max_updates
        self.updates = 0
        self.per_symbol: dict[str, int] = {}
        self.synced: set[str] = set()
        self.done = asyncio.Event()
        self._encode = msgspec.json.Encoder().encode

    def on_book(self, book: OrderBook) -> None:
        """``subscribe_books``'s handler: after each applied update, and when a book becomes invalid."""
        if self.done.is_set():
            return          # updates between the limit and the client's stop
        valid = bool(book.valid)
        if valid:
            symbol = book.symbol
            self.synced.add(symbol)
            self.updates += 1
            self.per_symbol[symbol] = self.per_symbol.get(symbol, 0) + 1
        if self.out is not None:
            line = {"exchange": self.exchange, "symbol": book.symbol, "update_id": book.update_id, "valid": valid,
                    "bids": book.bids_exact(self.depth), "asks": book.asks_exact(self.depth)}
            self.out.write(self._encode(line).decode() + "\n")
        if self.max_updates is not None and self.updates >= self.max_updates:
            self.done.set()


class _Rates:
    """Applied updates per second per symbol, between two refreshes of the view."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def rate(self, symbol: str, count: int) -> Optional[float]:
        now = time.monotonic()
        previous = self._last.get(symbol)
        self._last[symbol] = (now, count)
        if previous is None or now <= previous[0]:
            return None
        return (count - previous[1]) / (now - previous[0])


def _check_rest_url(url: Optional[str], rest_url: Optional[str]) -> None:
    """Refuse a ``--rest-url`` that is not HTTP(S), and ``--url`` without ``--rest-url``."""
    if rest_url is not None:
        parts = urlsplit(rest_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--rest-url {rest_url}: must be an http:// or https:// base URL")
    elif url is not None:
        raise UsageError(f"--url {url} needs --rest-url too (the snapshots would otherwise come from the "
                         "exchange's public REST endpoint)")


def _book_exchange(name: str) -> None:
    """Refuse an exchange whose client keeps no order books."""
    entry = load_exchange(name)
    if not entry.has_books:
        with_books = ", ".join(e.name for e in load_exchanges() if e.has_books) or "none"
        raise CommandError(f"{entry.name} keeps no order books (its client has no subscribe_books; "
                           f"exchanges with books: {with_books})")


async def run_book(exchange: str, symbols: list[str], *, url: Optional[str] = None,
                   rest_url: Optional[str] = None, depth: int = 10, as_json: bool = False,
                   duration: Optional[float] = None, max_updates: Optional[int] = None,
                   connect_timeout: float = 15.0, sync_timeout: float = 15.0,
                   stop: Optional[asyncio.Event] = None, out: TextIO = sys.stdout,
                   err: TextIO = sys.stderr) -> int:
    """Keep the books of ``symbols`` until ``duration``, ``max_updates`` or ``stop``; the applied updates.

    Errors the client reports (a gap, a failed snapshot) are printed on ``err``
    as one line each; the books resync by themselves.

    Raises:
        UsageError: a bad ``--rest-url``, or ``--url`` without it.
        CommandError: an exchange without books, no connection within
            ``connect_timeout``, a book not synced within ``sync_timeout``,
            or a ban (HTTP 418).
    """
    _check_rest_url(url, rest_url)
    _book_exchange(exchange)
    printer = BookPrinter(exchange, out if as_json else None, depth, max_updates)
    errors: list[ExchangeAPIError] = []
    failed = asyncio.Event()

    def on_error(error: ExchangeAPIError) -> None:
        errors.append(error)
        err.write(f"fastws book: {error}\n")
        if isinstance(error, BannedError):
            failed.set()

    overrides: dict[str, Any] = {"rest_url": rest_url} if rest_url is not None else {}
    client = make_client(exchange, url, lambda *message: None, on_error, **overrides)
    rest = getattr(client.config, "rest_url", rest_url)
    err.write(f"fastws book: {exchange} {client.config.url} (snapshots {rest}): {', '.join(symbols)}\n")
    stop = stop or asyncio.Event()
    live = None if as_json else LiveView(out)
    rates = _Rates()
    started = time.monotonic()
    await start_client(client, connect_timeout, errors)
    async with client:
        books: dict[str, OrderBook] = await client.subscribe_books(symbols, printer.on_book)
        sync_deadline = time.monotonic() + sync_timeout
        while not (printer.done.is_set() or stop.is_set() or failed.is_set()):
            now = time.monotonic()
            left = None if duration is None else duration - (now - started)
            if left is not None and left <= 0.01:
                break
            if now > sync_deadline and len(printer.synced) < len(books):
                raise CommandError(_not_synced(books, printer.synced, sync_timeout, errors))
            wait = min(_VIEW_INTERVAL, left) if left is not None else _VIEW_INTERVAL
            await _first_of(wait, printer.done, stop, failed)
            if live is not None:
                health = (await client.health_check()).get("books", {})
                lines: list[str] = []
                for symbol, book in books.items():
                    lines.extend(book_lines(exchange, book, health.get(symbol), depth,
                                            rates.rate(symbol, printer.per_symbol.get(symbol, 0))))
                live.show(time.monotonic() - started, lines)
    if failed.is_set():
        banned = next(e for e in errors if isinstance(e, BannedError))
        raise CommandError(f"stopped: {banned.message}")
    err.write(f"fastws book: {printer.updates} update(s) applied in {time.monotonic() - started:.1f} s\n")
    return printer.updates


async def _first_of(timeout: float, *events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set, ``timeout`` seconds at most."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def _not_synced(books: dict[str, OrderBook], synced: set[str], timeout: float,
                errors: list[ExchangeAPIError]) -> str:
    missing = ", ".join(symbol for symbol in books if symbol not in synced)
    last = f": {errors[-1].message}" if errors else ""
    return f"no synced book of {missing} within {timeout:g} s{last}"


def run(args: argparse.Namespace) -> int:
    """Run ``fastws book``; 0 once an update has been applied."""
    require_positive("--duration", args.duration)
    require_positive("--max-updates", args.max_updates)
    require_positive("--connect-timeout", args.connect_timeout)
    require_positive("--sync-timeout", args.sync_timeout)
    if args.depth < 1:
        raise UsageError(f"--depth must be >= 1, got {args.depth}")
    # Each error reaches the error handler, which prints it: no log line on top.
    configure_logging(args.debug)

    async def work(stop: asyncio.Event) -> int:
        return await run_book(args.exchange, args.symbols, url=args.url, rest_url=args.rest_url,
                              depth=args.depth, as_json=args.json, duration=args.duration,
                              max_updates=args.max_updates, connect_timeout=args.connect_timeout,
                              sync_timeout=args.sync_timeout, stop=stop)

    updates = uvloop.run(until_signalled(work))
    return 0 if updates else 1
