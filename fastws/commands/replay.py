"""``fastws replay FILE``: serve a capture through a local server until it has been played.

Prints the URL to point a strategy's adapter at (``--port`` fixes the port),
then a progress line on stderr; playback starts when a client has subscribed
(see ``fastws.testing.replay.ReplayServer``) and the command ends when the
capture has been played and sent, or at Ctrl-C. A capture cut short by a
crash is served up to its last complete record, with a note.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from typing import Any, Optional, TextIO

import uvloop

from fastws.commands import CommandError, UsageError, configure_logging
from fastws.commands.liveview import write_progress
from fastws.commands.signals import until_signalled
from fastws.recording import CaptureError
from fastws.registry import exchange_names
from fastws.testing.replay import ReplayServer

__all__ = ["register", "run", "serve"]

_PROGRESS_INTERVAL = 0.5       # seconds between progress refreshes on a terminal
_PIPE_PROGRESS_INTERVAL = 10.0  # ... and between progress lines when stderr is not one
_DRAIN_TIMEOUT = 10.0          # seconds the clients get to read the last frames


async def serve(path: str, *, speed: float, port: int, exchange: Optional[str], out: TextIO,
                progress: Optional[TextIO], stop: asyncio.Event, wait_client: Optional[float]) -> ReplayServer:
    """Serve ``path`` until it has been played (and sent) or ``stop`` is set; return the stopped server.

    Raises:
        CommandError: not a capture, no profile for its exchange, no client
            within ``wait_client`` seconds.
    """
    try:
        server = ReplayServer(path, exchange=exchange, speed=speed, port=port)
        frames, span, damage = server.scan()
    except CaptureError as exc:
        raise CommandError(str(exc)) from None
    paced = 0 < speed < math.inf
    length = f"{span / speed:.1f} s at speed {speed:g}" if paced else "as fast as the client reads"
    if damage is not None and progress is not None:
        print(f"note: {path}: {damage}; serving the {frames} complete frames before it", file=progress)
    async with server:
        print(f"replaying {path} ({server.exchange}, {frames} data frames over {span:.1f} s; {length})", file=out)
        print(f"connect to: {server.ws_url()}", file=out)
        out.flush()
        await _wait(server, frames, stop, progress, wait_client)
        if server.finished.done() and not stop.is_set():
            await _drain(server, stop)
        if progress is not None:
            _progress(progress, server, frames, final=True)
    return server


async def _wait(server: ReplayServer, frames: int, stop: asyncio.Event, progress: Optional[TextIO],
                wait_client: Optional[float]) -> None:
    """Until the playback ends or ``stop``, refreshing the progress line."""
    tty = progress is not None and progress.isatty()
    interval = _PROGRESS_INTERVAL if tty else _PIPE_PROGRESS_INTERVAL
    opened = time.monotonic()
    finished = server.finished
    while not finished.done() and not stop.is_set():    # one pass per interval
        waiter = asyncio.ensure_future(stop.wait())
        either: list[asyncio.Future[Any]] = [finished, waiter]
        try:
            await asyncio.wait(either, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        if not server.started and wait_client is not None and time.monotonic() - opened > wait_client:
            raise CommandError(f"no client subscribed within {wait_client:g} s")
        if progress is not None and tty and not finished.done():
            _progress(progress, server, frames, final=False)


async def _drain(server: ReplayServer, stop: asyncio.Event) -> None:
    """Give the clients a bounded time to read what was sent."""
    deadline = time.monotonic() + _DRAIN_TIMEOUT
    while time.monotonic() < deadline and not stop.is_set():
        if all(c.write_buffer_size() == 0 for c in server.connections):
            return
        await asyncio.sleep(0.01)


def _progress(stream: TextIO, server: ReplayServer, frames: int, final: bool) -> None:
    state = "done" if server.finished.done() else "playing" if server.started else "waiting for a client"
    share = f" ({100 * server.frames_played / frames:.0f}%)" if frames else ""
    line = (f"replay: {state}: {server.frames_played}/{frames} frames{share}, {server.frames_sent} sent to "
            f"{len(server.connections)} client(s)")
    write_progress(stream, line, final)


def register(commands: Any) -> None:
    """Add the ``replay`` sub-command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "replay", help="serve a capture through a local server",
        description="Serve a capture written by 'fastws record' on 127.0.0.1: point the adapter at the "
                    "printed URL and subscribe; the recorded frames come with their recorded gaps "
                    "divided by --speed. Ends when the capture has been played, or at Ctrl-C.")
    parser.add_argument("file", metavar="FILE", help="the capture")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="divides the recorded gaps (default 1; 0: as fast as possible)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    parser.add_argument("--exchange", choices=exchange_names(),
                        help="the registered exchange whose control protocol to speak (default: the capture's)")
    parser.add_argument("--wait-client", type=float, default=600.0, metavar="S",
                        help="give up when no client subscribed within S seconds (default 600)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve the capture; 0 when it was played to its end (or interrupted by Ctrl-C)."""
    if args.speed < 0 or math.isnan(args.speed):
        raise UsageError("--speed must be >= 0")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be within 0..65535")
    # A damaged tail is noted on stderr by serve(): no log line on top.
    configure_logging(args.debug)
    server = uvloop.run(_main(args))
    done = server.finished.done() and not server.finished.cancelled()
    print(f"replayed {server.frames_played} frames ({server.frames_sent} sent, {server.bytes_sent} bytes)"
          + ("" if done else ", interrupted"))
    return 0


async def _main(args: argparse.Namespace) -> ReplayServer:
    return await until_signalled(lambda stop: serve(
        args.file, speed=args.speed, port=args.port, exchange=args.exchange, out=sys.stdout,
        progress=sys.stderr, stop=stop, wait_client=args.wait_client))
