"""Frame checks: ``_parse_message`` and ``_extract_stream_info`` driven by a real frame core.

The sample frames also go through the adapter's own routes (``_routes``, the
fast path its subscribed streams take, built by subscribing the samples'
streams): a core built as the adapter's connections build it must hand its
message handler what the same core without routes hands it.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from picows import WSMsgType, WSTransport, WSListener, ws_connect, ws_create_server

from fastws._core import FrameHandler, RouteTable
from fastws.base import BaseWebSocketInterface
from fastws.errors import ExchangeAPIError
from fastws.types import StreamType
from fastws.verify.profile import BINARY, GENERIC_MALFORMED, ComplianceProfile, SampleFrame, _POLL
from fastws.verify.report import Status, VerificationReport


@dataclass
class _Outcome:
    """What happened to one frame inside the core."""

    error: Optional[BaseException] = None
    message: Any = None
    delivered: bool = False
    info: Any = None
    info_error: Optional[BaseException] = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    #: Seconds waited for a parser or handler that suspended and never finished (None: it finished).
    unfinished: Optional[float] = None


class HandlerRecorder:
    """The message handler the verifier builds adapters with.

    Each call's arguments go to the outcome of the frame the core is on.
    """

    def __init__(self) -> None:
        self.outcomes: list[_Outcome] = []

    def __call__(self, *args: Any) -> None:
        """Record one delivery."""
        if self.outcomes:
            self.outcomes[-1].calls.append(args)


class _SampleServer(WSListener):
    """The server side of the sample connection: sends the frames, in order, on connect."""

    def __init__(self, frames: Sequence[SampleFrame]) -> None:
        super().__init__()
        self.frames = frames

    def on_ws_connected(self, transport: WSTransport) -> None:
        for frame in self.frames:
            transport.send(WSMsgType.BINARY if frame.opcode == BINARY else WSMsgType.TEXT, frame.payload)

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.disconnect()


async def _run_frames(adapter: BaseWebSocketInterface, frames: Sequence[SampleFrame],
                      timeout: float) -> list[_Outcome]:
    """Send ``frames`` to a FrameHandler built as the adapter's connections build it.

    The fast route is left out: every frame reaches ``_parse_message``.
    """
    outcomes: list[_Outcome] = []

    def extract(message: Any) -> Any:
        outcome = outcomes[-1]
        outcome.message = message
        try:
            outcome.info = adapter._extract_stream_info(message)
        except Exception as exc:
            outcome.info_error = exc
            raise
        return outcome.info

    def deliver(message: Any) -> None:
        outcomes[-1].message = message
        outcomes[-1].delivered = True

    def report_error(kind: str, exc: BaseException, payload: Optional[bytes]) -> None:
        if kind == "parse" and outcomes:
            outcomes[-1].error = exc

    core = FrameHandler(adapter._parse_message, extract, deliver, report_error,
                        max_message_size=adapter.config.max_frame_size, **adapter._frame_handler_options())
    await _serve(core, frames, outcomes, timeout)
    return outcomes


async def _run_adapter_core(adapter: BaseWebSocketInterface, recorder: HandlerRecorder,
                            routes: Optional[RouteTable], frames: Sequence[SampleFrame],
                            timeout: float) -> list[_Outcome]:
    """Send ``frames`` to a core built as the adapter builds its own: its parser, classifier,
    message handler (the recorder) and options, with ``routes`` or without; each frame's
    handler calls and first error."""
    outcomes: list[_Outcome] = []
    recorder.outcomes = outcomes

    def report_error(kind: str, exc: BaseException, payload: Optional[bytes]) -> None:
        if outcomes and outcomes[-1].error is None:
            outcomes[-1].error = exc

    core = FrameHandler(adapter._parse_message, adapter._extract_stream_info, adapter._message_handler,
                        report_error, max_message_size=adapter.config.max_frame_size, routes=routes,
                        **adapter._frame_handler_options())
    try:
        await _serve(core, frames, outcomes, timeout)
    finally:
        recorder.outcomes = []
    return outcomes


async def _serve(core: FrameHandler, frames: Sequence[SampleFrame], outcomes: list[_Outcome],
                 timeout: float) -> None:
    """Serve ``frames`` to ``core`` over loopback until each has its outcome (or ``timeout``).

    The core calls a tap before parsing or routing each frame, which marks
    where the next frame's outcome starts.
    """

    def tap(payload: bytes, receive_ns: int, opcode: int) -> None:
        outcomes.append(_Outcome())

    core.tap = tap
    server = await ws_create_server(lambda request: _SampleServer(frames), "127.0.0.1", 0)
    transport: Optional[WSTransport] = None
    try:
        port = server.sockets[0].getsockname()[1]
        connected, _ = await asyncio.wait_for(ws_connect(lambda: core, f"ws://127.0.0.1:{port}/",
                                                         enable_auto_pong=True), timeout)
        transport = connected
        deadline = time.monotonic() + timeout
        while len(outcomes) < len(frames) or core.pending_tasks():
            if connected.is_disconnected:
                break
            if time.monotonic() >= deadline:
                if core.pending_tasks() and outcomes:
                    # The frame the core is on suspended and has not finished.
                    outcomes[-1].unfinished = timeout
                break
            await asyncio.sleep(_POLL)
    finally:
        pending = core.pending_tasks()
        if pending:
            # A parser or handler that never finished: end it, as the client does on close.
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if transport is not None:
            transport.disconnect(graceful=False)
            try:
                await asyncio.wait_for(transport.wait_disconnected(), timeout)
            except asyncio.TimeoutError:
                pass
        server.close()
        await asyncio.wait_for(server.wait_closed(), timeout)


async def _route_problems(adapter: BaseWebSocketInterface, recorder: HandlerRecorder,
                          samples: Sequence[SampleFrame], timeout: float) -> tuple[int, list[str]]:
    """The samples through the adapter's routes against the same core without them.

    Subscribes the samples' streams (not connected: the adapter only queues
    them and adds their routes). Returns how many samples belong to a routed
    stream and, per sample where the two differ, what differs.
    """
    routes = adapter._routes
    streams = list(dict.fromkeys(f.stream for f in samples if f.stream is not None and not f.control))
    if routes is None or not streams:
        return 0, []
    try:
        await adapter.subscribe(streams)
    except Exception as exc:
        return 0, [f"subscribe({streams!r:.80}) before connecting raised {type(exc).__name__}: {exc}"]
    routed = sum(f.stream in routes for f in samples)
    if routed == 0:
        return 0, []
    through_routes = await _run_adapter_core(adapter, recorder, routes, samples, timeout)
    through_parse = await _run_adapter_core(adapter, recorder, None, samples, timeout)
    problems = []
    for index, frame in enumerate(samples):
        got = _delivery(through_routes, index)
        expected = _delivery(through_parse, index)
        if got != expected:
            problems.append(f"{_preview(frame)}: through its subscribed route the handler gets {_describe(got)}, "
                            f"through _parse_message {_describe(expected)}"[:300])
    return routed, problems


def _delivery(outcomes: list[_Outcome], index: int) -> tuple[str, Any]:
    """What the handler got for frame ``index``: its calls, or why it got nothing."""
    if index >= len(outcomes):
        return "ended", _why_not_reached(outcomes)
    outcome = outcomes[index]
    if outcome.unfinished is not None:
        return "unfinished", f"did not finish within {outcome.unfinished:g} s"
    if outcome.error is not None:
        return "error", type(outcome.error).__name__
    return "calls", outcome.calls


def _describe(delivery: tuple[str, Any]) -> str:
    kind, what = delivery
    if kind != "calls":
        return f"nothing ({what})"
    return ", ".join(f"({', '.join(repr(a) for a in call)})" for call in what) or "nothing"


def _why_not_reached(outcomes: list[_Outcome]) -> str:
    """Why a frame never reached the parser: held behind an unfinished one, or the connection ended."""
    if outcomes and outcomes[-1].unfinished is not None:
        return "held behind an earlier frame that did not finish"
    return "connection ended early"


def _unfinished(outcome: _Outcome) -> str:
    return (f"did not finish within {outcome.unfinished:g} s (the parser or the message handler "
            "suspended and never returned)")


def _preview(frame: SampleFrame) -> str:
    text = repr(frame.payload[:40]) + ("..." if len(frame.payload) > 40 else "")
    return f"{'binary' if frame.opcode == BINARY else 'text'} {text}"


def _info_problem(info: Any, expected_stream: Optional[str]) -> Optional[str]:
    """Why ``info`` is not ``(str, StreamType)`` or None (None when it is fine)."""
    if info is None:
        return "None for a data frame of a known stream" if expected_stream is not None else None
    if not (isinstance(info, tuple) and len(info) == 2):
        return f"returned {type(info).__name__} {info!r:.60}, not a (stream_id, StreamType) tuple"
    if not isinstance(info[0], str):
        return f"stream_id is {type(info[0]).__name__}, not str"
    if not isinstance(info[1], StreamType):
        return f"stream type is {type(info[1]).__name__} {info[1]!r:.40}, not a StreamType"
    if expected_stream is not None and info[0] != expected_stream:
        return f"stream_id {info[0]!r}, expected {expected_stream!r}"
    return None


def _judge_samples(frames: Sequence[SampleFrame], outcomes: list[_Outcome], routed: int, route_problems: list[str],
                   report: VerificationReport) -> None:
    problems: list[str] = []
    info_problems: list[str] = []
    info_checked = 0
    for index, frame in enumerate(frames):
        if index >= len(outcomes):
            problems.append(f"{_preview(frame)}: never parsed ({_why_not_reached(outcomes)})")
            continue
        outcome = outcomes[index]
        if outcome.unfinished is not None:
            problems.append(f"{_preview(frame)}: {_unfinished(outcome)}")
        elif outcome.error is not None:
            problems.append(f"{_preview(frame)}: raised {type(outcome.error).__name__}: {outcome.error}")
        elif frame.control and outcome.delivered:
            problems.append(f"{_preview(frame)}: control frame returned {type(outcome.message).__name__}, not None")
        elif not frame.control and not outcome.delivered:
            problems.append(f"{_preview(frame)}: data frame returned None")
        elif outcome.delivered and not isinstance(outcome.message, dict):
            problems.append(f"{_preview(frame)}: returned {type(outcome.message).__name__}, not a dict")
        if outcome.delivered:
            info_checked += 1
            if outcome.info_error is not None:
                info_problems.append(f"{_preview(frame)}: raised {type(outcome.info_error).__name__}: "
                                     f"{outcome.info_error}")
            else:
                problem = _info_problem(outcome.info, None if frame.control else frame.stream)
                if problem is not None:
                    info_problems.append(f"{_preview(frame)}: {problem}")
    problems.extend(route_problems)
    data = sum(not f.control for f in frames)
    routes = f"; {routed} through its subscribed route, delivered as through _parse_message" if routed else ""
    report.add("_parse_message samples", Status.FAILED if problems else Status.PASSED,
               "; ".join(problems[:3]) if problems else
               f"{data} data frame(s) -> dict, {len(frames) - data} control frame(s) -> None{routes}")
    if info_checked == 0:
        report.add("_extract_stream_info types", Status.SKIPPED, "no parsed message to classify")
        return
    report.add("_extract_stream_info types", Status.FAILED if info_problems else Status.PASSED,
               "; ".join(info_problems[:3]) if info_problems else
               f"{info_checked} message(s) -> (str, StreamType) or None")


def _judge_malformed(frames: Sequence[SampleFrame], outcomes: list[_Outcome],
                     decode_errors: tuple[type[BaseException], ...], report: VerificationReport) -> None:
    problems: list[str] = []
    counts = {"dict": 0, "None": 0}
    for index, frame in enumerate(frames):
        if index >= len(outcomes):
            problems.append(f"{_preview(frame)}: never parsed ({_why_not_reached(outcomes)})")
            continue
        outcome = outcomes[index]
        error = outcome.error
        if outcome.unfinished is not None:
            problems.append(f"{_preview(frame)}: {_unfinished(outcome)}")
            continue
        if error is None:
            if outcome.delivered and not isinstance(outcome.message, dict):
                problems.append(f"{_preview(frame)}: returned {type(outcome.message).__name__}, not a dict")
                continue
            kind = "dict" if outcome.delivered else "None"
        elif isinstance(error, ExchangeAPIError):
            kind = type(error).__name__
        elif decode_errors and isinstance(error, decode_errors):
            kind = f"{type(error).__module__}.{type(error).__name__} (declared decode error)"
        else:
            problems.append(f"{_preview(frame)}: raised {type(error).__name__}: {error}"[:200])
            continue
        counts[kind] = counts.get(kind, 0) + 1
    seen = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    report.add("_parse_message malformed", Status.FAILED if problems else Status.PASSED,
               "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
               if problems else f"{len(frames)} frame(s): {seen}")


async def _frame_checks(adapter: BaseWebSocketInterface, recorder: HandlerRecorder,
                        profile: Optional[ComplianceProfile], report: VerificationReport, timeout: float) -> None:
    samples = tuple(profile.samples) if profile is not None else ()
    malformed = GENERIC_MALFORMED + (tuple(profile.malformed) if profile is not None else ())
    # One connection per group: a frame that makes the core close the
    # connection cannot hide the samples' outcomes.
    if samples:
        outcomes = await _run_frames(adapter, samples, timeout)
        _judge_samples(samples, outcomes, *await _route_problems(adapter, recorder, samples, timeout), report)
    else:
        report.add("_parse_message samples", Status.SKIPPED, "the adapter provides no sample frames")
        report.add("_extract_stream_info types", Status.SKIPPED, "no sample frames to classify")
    _judge_malformed(malformed, await _run_frames(adapter, malformed, timeout),
                     profile.decode_errors if profile is not None else (), report)
