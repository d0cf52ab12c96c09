"""``fastws stream``: messages of an exchange's streams, printed or as a live view."""
from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
import time
from typing import Any, Optional, TextIO

import msgspec
import uvloop

from fastws.bus.source import parse_since
from fastws.commands import UsageError, configure_logging, require_positive
from fastws.commands.adapters import exchange_names, make_client, start_client
from fastws.commands.liveview import LiveView
from fastws.commands.metrics_port import add_metrics_option, serving_metrics
from fastws.errors import ExchangeAPIError

__all__ = ["register", "run", "run_stream"]


def register(commands: Any) -> None:
    """Add the ``stream`` sub-command."""
    parser = commands.add_parser(
        "stream", help="stream from an exchange (its public endpoint, or --url, e.g. a simulator)",
        description="Subscribe to STREAM... and print each message (or --view for a live view).")
    parser.add_argument("exchange", choices=exchange_names(), help="the exchange (a registered one)")
    parser.add_argument("streams", nargs="+", metavar="STREAM", help="stream or channel names")
    parser.add_argument("--url", help="endpoint (default: the exchange's public one)")
    parser.add_argument("--typed", action="store_true", help="typed route (msgspec Structs; exchanges that have one)")
    parser.add_argument("--json", action="store_true", help="print each message as one JSON line")
    parser.add_argument("--view", action="store_true", help="a live view per stream instead of the messages")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--max-messages", type=int, help="stop after this many messages")
    parser.add_argument("--connect-timeout", type=float, default=15.0,
                        help="give up if not connected within this many seconds (default 15)")
    # The bus (fastws.bus.source): the frames collectors published, instead of the exchange.
    parser.add_argument("--from-bus", metavar="NATS_URL",
                        help="read the streams' frames from NATS (comma-separated URLs for a cluster)")
    parser.add_argument("--since", metavar="TIME",
                        help="with --from-bus: replay from TIME (ISO 8601, or a duration ago: 90s, 5m, 2h) "
                             "through JetStream, then go on live")
    add_metrics_option(parser)
    parser.set_defaults(run=run)


class _Printer:
    """The message handler: prints (or counts) and stops at ``max_messages``."""

    def __init__(self, out: TextIO, as_json: bool, quiet: bool, max_messages: Optional[int]) -> None:
        self.out = out
        self.as_json = as_json
        self.quiet = quiet
        self.max_messages = max_messages
        self.count = 0
        self.done = asyncio.Event()
        self._encode = msgspec.json.Encoder().encode

    def on_message(self, *args: Any) -> None:
        # Dict route: (message); typed route: (stream, struct). Messages the
        # client delivers between the limit and its stop are not printed.
        if self.done.is_set():
            return
        self.count += 1
        if not self.quiet:
            if self.as_json:
                message = args[0] if len(args) == 1 else {"stream": args[0], "data": args[1]}
                self.out.write(self._encode(message).decode() + "\n")
            else:
                self.out.write(" ".join(repr(a) if not isinstance(a, str) else a for a in args) + "\n")
        if self.max_messages is not None and self.count >= self.max_messages:
            self.done.set()


async def run_stream(exchange: str, streams: list[str], *, url: Optional[str] = None, typed: bool = False,
                     as_json: bool = False, view: bool = False, duration: Optional[float] = None,
                     max_messages: Optional[int] = None, connect_timeout: float = 15.0,
                     from_bus: Optional[str] = None, since: Optional[datetime.datetime] = None,
                     metrics_port: Optional[int] = None,
                     out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Stream until ``duration`` or ``max_messages`` (or Ctrl-C); return the messages received.

    Errors the client reports (a rejected stream, a drop) are printed on
    ``err`` as one line each; the feed goes on. With ``from_bus`` (NATS
    URLs, comma-separated) the frames come from the bus, replayed from
    ``since`` when given, and are printed as from the exchange.
    With ``metrics_port``, ``/metrics`` and ``/healthz`` are served on 127.0.0.1 meanwhile.
    """
    printer = _Printer(out, as_json, view, max_messages)
    errors: list[ExchangeAPIError] = []

    def on_error(error: ExchangeAPIError) -> None:
        errors.append(error)
        err.write(f"fastws stream: {error}\n")

    client = make_client(exchange, url, printer.on_message, on_error, typed=typed)
    if from_bus is not None:
        client.use_bus(from_bus.split(","), since=since)
    err.write(f"fastws stream: {exchange} {from_bus or client.config.url}: {', '.join(streams)}\n")
    live = LiveView(out) if view else None
    started = time.monotonic()
    await start_client(client, connect_timeout, errors)
    async with client, serving_metrics(metrics_port, [client], err):
        await client.subscribe(streams)
        while not printer.done.is_set():
            left = None if duration is None else duration - (time.monotonic() - started)
            if left is not None and left <= 0:
                break
            try:
                await asyncio.wait_for(printer.done.wait(), min(1.0, left) if left is not None else 1.0)
            except asyncio.TimeoutError:
                pass
            if live is not None:
                live.refresh(time.monotonic() - started, {exchange: await client.health_check()})
    err.write(f"fastws stream: {printer.count} message(s) {'received' if view else 'printed'} in {time.monotonic() - started:.1f} s\n")
    return printer.count


def run(args: argparse.Namespace) -> int:
    """Run ``fastws stream``; 0 once it has received a message."""
    require_positive("--duration", args.duration)
    require_positive("--max-messages", args.max_messages)
    require_positive("--connect-timeout", args.connect_timeout)
    since = _bus_start(args.from_bus, args.since)
    # Each error reaches the error handler, which prints it: no log line on top.
    configure_logging(args.debug)
    count = uvloop.run(run_stream(args.exchange, args.streams, url=args.url, typed=args.typed,
                                  as_json=args.json, view=args.view, duration=args.duration,
                                  max_messages=args.max_messages, connect_timeout=args.connect_timeout,
                                  from_bus=args.from_bus, since=since,
                                  metrics_port=args.metrics_port))
    return 0 if count else 1


def _bus_start(from_bus: Optional[str], since: Optional[str]) -> Optional[datetime.datetime]:
    """``--since`` as a time; ``UsageError`` without ``--from-bus`` or when it is not a time."""
    if since is None:
        return None
    if from_bus is None:
        raise UsageError("--since replays the bus: give --from-bus NATS_URL too")
    try:
        return parse_since(since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
