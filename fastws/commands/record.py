"""``fastws record EXCHANGE STREAM... --out FILE``: capture an exchange's raw frames.

The frames come through the real adapter (it connects, subscribes, gets its
acks, reconnects) and are written, byte for byte with their receive times,
by a ``fastws.recording.CaptureWriter``; a lost connection is written as a
``KIND_FEED_LOST`` marker and its recovery as ``KIND_FEED_BACK``. An existing
capture is appended to. The recording ends after ``--duration`` seconds,
``--max-messages`` data messages, or at Ctrl-C (SIGINT/SIGTERM), always with
the file flushed and closed; ``fastws replay FILE`` serves it again.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional, TextIO

import uvloop

from fastws.commands import CommandError, configure_logging, require_positive
from fastws.commands.adapters import exchange_names, make_client, start_client
from fastws.commands.liveview import write_progress
from fastws.commands.signals import until_signalled
from fastws.errors import ExchangeAPIError
from fastws.recording import KIND_FEED_BACK, KIND_FEED_LOST, CaptureError, CaptureWriter
from fastws.types import ConnectionState

__all__ = ["RecordResult", "record", "register", "run"]

_PROGRESS_INTERVAL = 0.5     # seconds between progress refreshes on a terminal
_PIPE_PROGRESS_INTERVAL = 10.0   # ... and between progress lines when stderr is not one


@dataclass
class RecordResult:
    """What a recording wrote.

    Attributes:
        path: The capture file.
        messages: Data messages recorded: those the adapter delivered to
            its handler before the limit (``--max-messages``).
        frames: Records written (data messages, control replies and markers).
        bytes: Bytes of those records.
        seconds: Length of the recording.
        gaps: Times the feed was lost.
        appended: Whether an existing capture was appended to.
        repaired: A damaged tail cut off before appending, if any.
        interrupted: Ended by a signal (Ctrl-C).
    """

    path: str
    messages: int = 0
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    gaps: int = 0
    appended: bool = False
    repaired: Optional[str] = None
    interrupted: bool = False


class _Recorder:
    """The adapter's message handler, error handler and state listener during a recording."""

    def __init__(self, max_messages: Optional[int], done: asyncio.Event) -> None:
        self.writer: Optional[CaptureWriter] = None
        self.max_messages = max_messages
        self.done = done
        self.ws: Any = None
        self.messages = 0
        self.errors = 0
        self.last_error = ""
        self.gaps = 0
        self.failed: Optional[str] = None
        self.limit_reached = False
        self._feed_lost = False

    def on_message(self, *message: Any) -> None:
        """Count a data message; at the limit, stop recording at once (nothing more is written).

        The tap writes each message before the core hands it here, so the
        file holds exactly the messages counted: those the adapter
        delivers between the limit and the client's stop are neither
        written nor counted.
        """
        if self.limit_reached:
            return
        self.messages += 1
        if self.max_messages is not None and self.messages >= self.max_messages:
            self.ws.set_frame_tap(None)
            self.limit_reached = True
            self.done.set()

    def on_error(self, error: ExchangeAPIError) -> None:
        """Keep count of the adapter's errors (the progress line shows the last one)."""
        self.errors += 1
        self.last_error = str(error).splitlines()[0][:120] if str(error) else type(error).__name__

    def on_state(self, old: ConnectionState, new: ConnectionState, reason: Optional[str]) -> None:
        """Write the feed's gaps as markers; a failed connection ends the recording."""
        writer = self.writer
        if writer is None or writer.closed:
            return
        if old is ConnectionState.CONNECTED and new in (ConnectionState.RECONNECTING, ConnectionState.FAILED):
            self._feed_lost = True
            self.gaps += 1
            writer.write_marker(KIND_FEED_LOST, reason or new.value)
        elif new is ConnectionState.CONNECTED and self._feed_lost:
            self._feed_lost = False
            writer.write_marker(KIND_FEED_BACK, reason or "connected")
        if new is ConnectionState.FAILED:
            self.failed = reason or "connection failed"
            self.done.set()


def _human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


async def record(exchange: str, streams: list[str], out: str, *, url: Optional[str] = None,
                 duration: Optional[float] = None, max_messages: Optional[int] = None,
                 progress: Optional[TextIO] = None, stop: Optional[asyncio.Event] = None,
                 connect_timeout: float = 30.0) -> RecordResult:
    """Record ``streams`` of ``exchange`` to the capture ``out``.

    Args:
        exchange: A registered exchange (``fastws.registry``).
        streams: Stream or channel names, as the exchange spells them; one connection's worth.
        out: The capture file (appended to if it exists).
        url: The endpoint; default the exchange's public one.
        duration: Seconds to record (None: until another limit or ``stop``).
        max_messages: Data messages to record.
        progress: Where the progress line goes (None: nowhere).
        stop: Set it to end the recording (the command sets it on Ctrl-C); the
            recording also sets it when it ends by itself.
        connect_timeout: Seconds allowed for the first connection.

    Returns:
        What was written.

    Raises:
        CommandError: unknown exchange, too many streams, no connection, the
            connection failed for good, a file that is not a capture.
        ExchangeAPIError: a subscription was rejected.
    """
    if not streams:
        raise CommandError("no stream to record")
    done = stop if stop is not None else asyncio.Event()
    recorder = _Recorder(max_messages, done)
    # One copy of every message: no overlap of two connections at a rotation.
    ws = make_client(exchange, url, recorder.on_message, recorder.on_error, make_before_break=False)
    endpoint: str = ws.config.url
    # A pooled client states its per-connection cap; a plain one has none.
    limit = getattr(ws, "max_streams_per_connection", None)
    if limit is not None and len(streams) > limit:
        raise CommandError(f"{len(streams)} streams: a recording holds one {exchange} connection, "
                           f"at most {limit} streams")
    try:
        writer = CaptureWriter(out, {"exchange": exchange, "url": endpoint, "streams": list(streams),
                                     "recorder": "fastws record"})
    except CaptureError as exc:
        raise CommandError(str(exc)) from None
    result = RecordResult(path=out, appended=writer.appended, repaired=writer.repaired)
    recorder.writer = writer
    recorder.ws = ws
    ws.set_frame_tap(writer.write_frame)
    ws.add_state_listener(recorder.on_state)
    started = time.monotonic()
    try:
        await start_client(ws, connect_timeout)
        await ws.subscribe(streams)
        await _wait(recorder, writer, done, started, duration, progress, exchange, out)
    finally:
        ws.set_frame_tap(None)
        await ws.stop()
        writer.close()
        result.seconds = time.monotonic() - started
        result.messages = recorder.messages
        result.frames = writer.records
        result.bytes = writer.bytes_written
        result.gaps = recorder.gaps
        result.interrupted = done.is_set() and not recorder.limit_reached and recorder.failed is None
        if progress is not None:
            _progress(progress, recorder, writer, started, exchange, out, final=True)
    if recorder.failed is not None:
        raise CommandError(f"{exchange}: connection failed: {recorder.failed} "
                           f"({result.messages} messages recorded to {out})")
    return result


async def _wait(recorder: _Recorder, writer: CaptureWriter, done: asyncio.Event, started: float,
                duration: Optional[float],
                progress: Optional[TextIO], exchange: str, out: str) -> None:
    """Wait for the end of the recording, flushing and showing progress meanwhile."""
    tty = progress is not None and progress.isatty()
    interval = _PROGRESS_INTERVAL if tty else _PIPE_PROGRESS_INTERVAL
    deadline = None if duration is None else started + duration
    while not done.is_set():     # one pass per interval until a limit, a signal or a failure
        timeout = interval if deadline is None else min(interval, deadline - time.monotonic())
        if timeout <= 0:
            return
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        writer.flush()
        if progress is not None and not done.is_set():
            _progress(progress, recorder, writer, started, exchange, out, final=False)


def _progress(stream: TextIO, recorder: _Recorder, writer: CaptureWriter, started: float, exchange: str,
              out: str, final: bool) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    line = (f"recording {exchange} to {out}: {recorder.messages} msgs, {_human_bytes(writer.bytes_written)}, "
            f"{recorder.messages / elapsed:.0f} msg/s, {elapsed:.0f} s")
    if recorder.gaps:
        line += f", {recorder.gaps} gap(s)"
    if recorder.errors:
        line += f", {recorder.errors} error(s), last: {recorder.last_error}"
    write_progress(stream, line, final)


def register(commands: Any) -> None:
    """Add the ``record`` sub-command."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "record", help="capture an exchange's raw frames to a file",
        description="Record the raw frames of STREAMs, with their receive times, through the exchange's "
                    "adapter into a capture FILE (appended to if it exists). Ends after --duration, "
                    "--max-messages or at Ctrl-C, with the file complete. Serve it again with "
                    "'fastws replay FILE'.")
    parser.add_argument("exchange", choices=exchange_names(), help="the exchange (a registered one)")
    parser.add_argument("streams", nargs="+", metavar="STREAM",
                        help="stream or channel names, as the exchange spells them")
    parser.add_argument("--out", required=True, metavar="FILE", help="the capture file")
    parser.add_argument("--url", help="the endpoint (default: the exchange's public one)")
    parser.add_argument("--duration", type=float, metavar="S", help="seconds to record")
    parser.add_argument("--max-messages", type=int, metavar="N", help="data messages to record")
    parser.add_argument("--connect-timeout", type=float, default=30.0, metavar="S",
                        help="seconds the first connection may take, retries included (default 30)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Record; print what was written. 0 on success (Ctrl-C included)."""
    require_positive("--duration", args.duration)
    require_positive("--max-messages", args.max_messages)
    require_positive("--connect-timeout", args.connect_timeout)
    # Reconnections and errors show on the progress line, not as log lines.
    configure_logging(args.debug)
    if args.duration is None and args.max_messages is None and sys.stderr.isatty():
        print("recording until Ctrl-C", file=sys.stderr)
    result = uvloop.run(_main(args))
    print(f"recorded {result.messages} data messages ({result.frames} records with the control replies "
          f"and markers, {_human_bytes(result.bytes)}) "
          f"in {result.seconds:.1f} s to {result.path}"
          + (" (appended)" if result.appended else "")
          + (f", {result.gaps} feed gap(s)" if result.gaps else "")
          + (", interrupted" if result.interrupted else ""))
    if result.repaired:
        print(f"note: cut a damaged tail off the existing capture first: {result.repaired}", file=sys.stderr)
    return 0


async def _main(args: argparse.Namespace) -> RecordResult:
    return await until_signalled(lambda stop: record(
        args.exchange, args.streams, args.out, url=args.url, duration=args.duration,
        max_messages=args.max_messages, progress=sys.stderr, stop=stop, connect_timeout=args.connect_timeout))
