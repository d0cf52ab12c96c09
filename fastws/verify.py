"""Compliance verifier: does an adapter follow the interface standard?

``verify_adapter(cls)`` checks any ``BaseWebSocketInterface`` subclass, a
user's own adapter included, and returns a ``VerificationReport``:

- static: the class is a subclass, the four abstract methods are implemented
  with the standard's signatures (``async def _connect(self)``,
  ``async def _send_subscription_message(self, streams, action)``,
  ``_parse_message(self, raw_message)`` as ``def`` or ``async def``,
  ``def _extract_stream_info(self, message)``), and it can be built;
- frames: ``_parse_message`` is driven by a real ``FrameHandler`` on a
  loopback connection (so it gets a read-only ``memoryview`` and the frame's
  opcode exactly as in production, the fast route left out): each sample
  frame gives a dict (data) or ``None`` (control), each malformed frame
  gives a dict, ``None`` or an ``ExchangeAPIError``, never another
  exception; ``_extract_stream_info`` gives ``(str, StreamType)`` or ``None``;
- live, when the adapter names a simulator: connect, subscribe with its ack,
  receive through the message handler, a forced drop, recovery
  (CONNECTED again, subscriptions restored, a message after), the standard
  health-check keys, metrics counting.

An adapter declares what the verifier needs as a class attribute
``compliance = ComplianceProfile(...)``. Without one, the static checks and
the generic malformed frames run; the sample and live checks are reported as
skipped, never as passed. ``format_report`` prints the pass/fail table.
"""
from __future__ import annotations

import asyncio
import enum
import importlib
import inspect
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from picows import WSMsgType, WSTransport, WSListener, ws_connect, ws_create_server

from fastws._core import FrameHandler
from fastws.base import BaseWebSocketInterface
from fastws.config import WebSocketConfig, create_websocket_config
from fastws.errors import ExchangeAPIError
from fastws.types import ConnectionState, ExchangeName, StreamType, SubscriptionAction

__all__ = ["AdapterLoadError", "BINARY", "Check", "ComplianceProfile", "GENERIC_MALFORMED", "HEALTH_CHECK_KEYS", "SampleFrame", "TEXT",
           "Status", "VerificationReport", "format_report", "load_adapter", "profile_of", "verify_adapter"]

TEXT = 1
"""Opcode of a text frame."""
BINARY = 2
"""Opcode of a binary frame."""

HEALTH_CHECK_KEYS = ("exchange", "state", "is_connected", "subscriptions", "reconnect_attempts",
                     "last_message_age", "metrics")
"""The keys every ``health_check()`` returns (the interface standard)."""

# Seconds each live step may take; the drop and recovery gets twice this.
_STEP_TIMEOUT = 5.0
# Seconds between two polls (and two simulator steps) while waiting.
_POLL = 0.01
# Settings of the live client: no stale reconnects while the simulator is
# stepped by hand, a quick retry after the forced drop.
_LIVE_CONFIG = {"timeout": _STEP_TIMEOUT, "subscription_timeout": _STEP_TIMEOUT, "stale_timeout": None,
                "reconnect_delay": 0.05, "max_reconnect_delay": 0.5, "max_reconnect_attempts": 20}


@dataclass(frozen=True)
class SampleFrame:
    """One frame for ``_parse_message``, as the exchange sends it.

    Attributes:
        payload: The frame's payload.
        opcode: ``1`` text or ``2`` binary.
        control: True when the adapter must return ``None`` (an ack, a pong).
        stream: The stream id ``_extract_stream_info`` must give, if known.
    """

    payload: bytes
    opcode: int = TEXT
    control: bool = False
    stream: Optional[str] = None


def _text(*payloads: bytes) -> tuple[SampleFrame, ...]:
    return tuple(SampleFrame(p, TEXT) for p in payloads)


def _binary(*payloads: bytes) -> tuple[SampleFrame, ...]:
    return tuple(SampleFrame(p, BINARY) for p in payloads)


GENERIC_MALFORMED: tuple[SampleFrame, ...] = (
    _text(b"", b"{", b"not json", b"[1, 2, 3]", b"null", b'"text"', b"{}", b'{"stream": 5, "data": []}',
          b'{"id": null, "result": 1}', b'{"code": "x"}', b"\xef\xbb\xbf{}")
    + _binary(b"", b"\x00", b"\xff\xfe\xfd", b"\x0a\x2fspot", b"\x08\x96",
              bytes(random.Random(6).getrandbits(8) for _ in range(64))))
"""Frames no exchange sends whole: sent to every adapter (its profile may add more)."""


@dataclass(frozen=True)
class ComplianceProfile:
    """What an adapter gives the verifier; set it as the class attribute ``compliance``.

    Attributes:
        exchange: The name the adapter is built with (default: the class name).
        samples: Frames the exchange sends: each must parse to a dict, or to
            ``None`` for a ``control`` frame.
        malformed: Bad frames of this exchange, sent after ``GENERIC_MALFORMED``.
        decode_errors: Exception types of the adapter's decoder that mean
            "these bytes do not decode" (e.g. ``msgspec.DecodeError``); the
            core reports them as ``InvalidMessageError`` (400). Accepted on
            malformed frames and named in the report; empty by default.
        streams: Streams to subscribe to in the live round trip.
        simulator: A loopback server of the exchange: ``"module:Class"`` (built
            with ``simulator_options``) or a factory; an async context manager
            with ``drop()``, and optionally ``step(n)`` and
            ``wait_subscribed(names, timeout)``. None: no live round trip.
        simulator_options: Keyword arguments of a ``"module:Class"`` simulator.
        simulator_url: The simulator's attribute (called if it is a method)
            or a function giving the URL the config is built with.
        config: ``config(url, **overrides) -> WebSocketConfig`` (a function or
            ``"module:function"``); default ``create_websocket_config``.
        expects_ack: The exchange acknowledges subscriptions, so
            ``_send_subscription_message`` must return an awaitable.
    """

    exchange: Optional[str] = None
    samples: Sequence[SampleFrame] = ()
    malformed: Sequence[SampleFrame] = ()
    decode_errors: tuple[type[BaseException], ...] = ()
    streams: Sequence[str] = ()
    simulator: Union[str, Callable[[], Any], None] = None
    simulator_options: Mapping[str, Any] = field(default_factory=dict)
    simulator_url: Union[str, Callable[[Any], str]] = "url"
    config: Union[str, Callable[..., WebSocketConfig], None] = None
    expects_ack: bool = True


class Status(str, enum.Enum):
    """The outcome of one check."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Check:
    """One row of the report: a check's name, its status and what was seen."""

    name: str
    status: Status
    detail: str = ""


@dataclass
class VerificationReport:
    """The checks of one adapter, in the order they ran."""

    adapter: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped ones do not count as failures)."""
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        """The failed checks."""
        return [c for c in self.checks if c.status is Status.FAILED]

    def status_of(self, name: str) -> Optional[Status]:
        """The status of the check called ``name``, None if there is none."""
        for check in self.checks:
            if check.name == name:
                return check.status
        return None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON)."""
        return {"adapter": self.adapter, "passed": self.passed,
                "checks": [{"name": c.name, "status": c.status.value, "detail": c.detail} for c in self.checks]}

    def add(self, name: str, status: Status, detail: str = "") -> bool:
        """Append a check; return True when it passed."""
        self.checks.append(Check(name, status, detail))
        return status is Status.PASSED


class AdapterLoadError(Exception):
    """``MODULE:CLASS`` does not name an importable class."""


def _resolve(target: str) -> Any:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise AdapterLoadError("expected MODULE:CLASS, e.g. exchanges.binance:BinanceWebSocket")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:   # an import error, or any error the module raised while importing
        raise AdapterLoadError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    value = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise AdapterLoadError(f"{module_name!r} has no attribute {attribute!r}") from None
    return value


def load_adapter(target: str) -> type:
    """The class named by ``"module:Class"``.

    Raises:
        AdapterLoadError: the module does not import or has no such class.
    """
    value = _resolve(target)
    if not isinstance(value, type):
        raise AdapterLoadError(f"{target} is not a class ({type(value).__name__})")
    return value


def profile_of(cls: type) -> Optional[ComplianceProfile]:
    """The adapter's ``compliance`` profile, None when it declares none."""
    profile = getattr(cls, "compliance", None)
    return profile if isinstance(profile, ComplianceProfile) else None


# ---------------------------------------------------------------------- static

# The four methods of the standard: positional arguments after self, and
# whether they must be ``async def`` (True), plain ``def`` (False) or either.
_STANDARD: dict[str, tuple[int, Optional[bool], str]] = {
    "_connect": (0, True, "async def _connect(self) -> None"),
    "_send_subscription_message": (2, True, "async def _send_subscription_message(self, streams, action)"),
    "_parse_message": (1, None, "[async] def _parse_message(self, raw_message)"),
    "_extract_stream_info": (1, False, "def _extract_stream_info(self, message)"),
}


def _check_signature(cls: type, name: str) -> tuple[Status, str]:
    positional, is_async, standard = _STANDARD[name]
    static = inspect.getattr_static(cls, name, None)
    if static is None:
        return Status.FAILED, "missing"
    if isinstance(static, (staticmethod, classmethod)):
        return Status.FAILED, f"must be an instance method: {standard}"
    method = getattr(cls, name)
    if getattr(method, "__isabstractmethod__", False):
        return Status.FAILED, f"not implemented: {standard}"
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return Status.FAILED, f"signature unreadable; the standard: {standard}"
    try:
        signature.bind(object(), *([None] * positional))
    except TypeError as exc:
        return Status.FAILED, f"{name}{signature} cannot be called as {standard} ({exc})"
    coroutine = inspect.iscoroutinefunction(method)
    if inspect.isasyncgenfunction(method):
        return Status.FAILED, f"{name} is an async generator; the standard: {standard}"
    if is_async is True and not coroutine:
        return Status.FAILED, f"must be async def: {standard}"
    if is_async is False and coroutine:
        return Status.FAILED, f"must be a plain def (the core calls it synchronously): {standard}"
    plain = signature.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                          for p in signature.parameters.values()],
                              return_annotation=inspect.Signature.empty)
    return Status.PASSED, f"{'async ' if coroutine else ''}def {name}{plain}"


def _static_checks(cls: Any, report: VerificationReport) -> bool:
    """Subclass, abstract methods, signatures; True when the class may be built."""
    if not (isinstance(cls, type) and issubclass(cls, BaseWebSocketInterface)):
        report.add("subclass of BaseWebSocketInterface", Status.FAILED, f"{cls!r} is not a subclass")
        return False
    report.add("subclass of BaseWebSocketInterface", Status.PASSED,
               " -> ".join(c.__name__ for c in cls.__mro__ if issubclass(c, BaseWebSocketInterface)))
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    report.add("abstract methods implemented", Status.FAILED if abstract else Status.PASSED,
               f"still abstract: {', '.join(abstract)}" if abstract else "none left abstract")
    signatures_ok = True
    for name in _STANDARD:
        status, detail = _check_signature(cls, name)
        signatures_ok = report.add(f"signature {name}", status, detail) and signatures_ok
    return not abstract and signatures_ok


# ---------------------------------------------------------------------- frames

@dataclass
class _Outcome:
    """What happened to one frame inside the core."""

    error: Optional[BaseException] = None
    message: Any = None
    delivered: bool = False
    info: Any = None
    info_error: Optional[BaseException] = None


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

    The fast route is left out: every frame reaches ``_parse_message``. The
    core calls a tap before parsing each frame, which marks where the next
    frame's outcome starts.
    """
    outcomes: list[_Outcome] = []

    def tap(payload: bytes, receive_ns: int, opcode: int) -> None:
        outcomes.append(_Outcome())

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
    core.tap = tap
    server = await ws_create_server(lambda request: _SampleServer(frames), "127.0.0.1", 0)
    transport: Optional[WSTransport] = None
    try:
        port = server.sockets[0].getsockname()[1]
        connected, _ = await asyncio.wait_for(ws_connect(lambda: core, f"ws://127.0.0.1:{port}/",
                                                         enable_auto_pong=True), timeout)
        transport = connected
        deadline = time.monotonic() + timeout
        while len(outcomes) < len(frames) or core.pending_task is not None:
            if time.monotonic() >= deadline or connected.is_disconnected:
                break
            await asyncio.sleep(_POLL)
    finally:
        if transport is not None:
            transport.disconnect(graceful=False)
            try:
                await asyncio.wait_for(transport.wait_disconnected(), timeout)
            except asyncio.TimeoutError:
                pass
        server.close()
        await asyncio.wait_for(server.wait_closed(), timeout)
    return outcomes


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


def _judge_samples(frames: Sequence[SampleFrame], outcomes: list[_Outcome], report: VerificationReport) -> None:
    problems: list[str] = []
    info_problems: list[str] = []
    info_checked = 0
    for index, frame in enumerate(frames):
        if index >= len(outcomes):
            problems.append(f"{_preview(frame)}: never parsed (connection ended early)")
            continue
        outcome = outcomes[index]
        if outcome.error is not None:
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
    data = sum(not f.control for f in frames)
    report.add("_parse_message samples", Status.FAILED if problems else Status.PASSED,
               "; ".join(problems[:3]) if problems else
               f"{data} data frame(s) -> dict, {len(frames) - data} control frame(s) -> None")
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
            problems.append(f"{_preview(frame)}: never parsed (connection ended early)")
            continue
        outcome = outcomes[index]
        error = outcome.error
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


async def _frame_checks(adapter: BaseWebSocketInterface, profile: Optional[ComplianceProfile],
                        report: VerificationReport, timeout: float) -> None:
    samples = tuple(profile.samples) if profile is not None else ()
    malformed = GENERIC_MALFORMED + (tuple(profile.malformed) if profile is not None else ())
    # One connection per group: a frame that makes the core close the
    # connection cannot hide the samples' outcomes.
    if samples:
        _judge_samples(samples, await _run_frames(adapter, samples, timeout), report)
    else:
        report.add("_parse_message samples", Status.SKIPPED, "the adapter provides no sample frames")
        report.add("_extract_stream_info types", Status.SKIPPED, "no sample frames to classify")
    _judge_malformed(malformed, await _run_frames(adapter, malformed, timeout),
                     profile.decode_errors if profile is not None else (), report)


# ------------------------------------------------------------------------ live

_LIVE_CHECKS = ("live connect", "live subscribe (ack)", "live receive", "live drop and recovery",
                "live health_check keys", "live metrics counting")


class _LiveFailure(Exception):
    """A live step failed; its check is recorded, the rest are skipped."""


def _url_of(simulator: Any, how: Union[str, Callable[[Any], str]]) -> str:
    if callable(how):
        return str(how(simulator))
    value = getattr(simulator, how)
    return str(value() if callable(value) else value)


def _make_simulator(profile: ComplianceProfile) -> Any:
    source = profile.simulator
    if isinstance(source, str):
        simulator_class = _resolve(source)
        return simulator_class(**dict(profile.simulator_options))
    assert source is not None
    return source()


def _config_factory(profile: ComplianceProfile) -> Callable[..., WebSocketConfig]:
    if profile.config is None:
        return create_websocket_config
    if isinstance(profile.config, str):
        factory: Callable[..., WebSocketConfig] = _resolve(profile.config)
        return factory
    return profile.config


async def _until(done: Callable[[], bool], timeout: float, simulator: Any = None) -> bool:
    """Poll ``done`` for up to ``timeout`` s, stepping the simulator's market meanwhile."""
    step = getattr(simulator, "step", None)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        if callable(step):
            step(1)
        await asyncio.sleep(_POLL)
    return True


class _LiveRun:
    """One live round trip of an adapter against its simulator."""

    def __init__(self, cls: type, profile: ComplianceProfile, report: VerificationReport, timeout: float) -> None:
        self.cls = cls
        self.profile = profile
        self.report = report
        self.timeout = timeout
        self.streams = list(profile.streams)
        self.messages = 0
        self.errors: list[ExchangeAPIError] = []
        self.acks: list[bool] = []
        self.left_connected = False
        self.messages_at_recovery: Optional[int] = None

    def on_message(self, *args: Any) -> None:
        self.messages += 1

    def on_state(self, old: ConnectionState, new: ConnectionState, reason: Optional[str]) -> None:
        if new is not ConnectionState.CONNECTED and old is ConnectionState.CONNECTED:
            self.left_connected = True
        elif new is ConnectionState.CONNECTED and self.left_connected and self.messages_at_recovery is None:
            self.messages_at_recovery = self.messages

    def record(self, name: str, passed: bool, detail: str) -> None:
        self.report.add(name, Status.PASSED if passed else Status.FAILED, detail)
        if not passed:
            raise _LiveFailure(name)

    async def run(self) -> None:
        simulator = _make_simulator(self.profile)
        await asyncio.wait_for(simulator.__aenter__(), self.timeout)
        try:
            url = _url_of(simulator, self.profile.simulator_url)
            config = _config_factory(self.profile)(url, **_LIVE_CONFIG)
            exchange = ExchangeName(self.profile.exchange or self.cls.__name__)
            client: BaseWebSocketInterface = self.cls(exchange, config, self.on_message, self.errors.append)
            try:
                await self.steps(client, simulator)
            finally:
                await asyncio.wait_for(client.stop(), self.timeout)
        finally:
            await asyncio.wait_for(simulator.__aexit__(None, None, None), self.timeout)

    async def steps(self, client: BaseWebSocketInterface, simulator: Any) -> None:
        timeout = self.timeout
        client.add_state_listener(self.on_state)
        send = client._send_subscription_message

        async def recording(streams: list[str], action: SubscriptionAction) -> Any:
            ack = await send(streams, action)
            self.acks.append(ack is not None)
            return ack
        # A spy on the adapter's own method: it still sends, and the ack still
        # comes from the simulator; the verifier only sees whether it waits.
        client._send_subscription_message = recording  # type: ignore[method-assign]

        try:
            await asyncio.wait_for(client.start(), timeout)
        except (ExchangeAPIError, asyncio.TimeoutError) as exc:
            self.record("live connect", False, f"{type(exc).__name__}: {exc}")
        self.record("live connect", client.is_connected, f"state {client.state.value}")

        started = time.monotonic()
        try:
            await asyncio.wait_for(client.subscribe(self.streams), timeout)
        except (ExchangeAPIError, asyncio.TimeoutError) as exc:
            self.record("live subscribe (ack)", False, f"{type(exc).__name__}: {exc}")
        if self.profile.expects_ack and not any(self.acks):
            self.record("live subscribe (ack)", False,
                        "_send_subscription_message returned None: no ack awaited (the profile expects one)")
        await self._server_subscribed(simulator, "live subscribe (ack)")
        self.record("live subscribe (ack)", True,
                    f"{len(self.streams)} stream(s) {'acked' if any(self.acks) else 'sent (no ack)'} "
                    f"in {(time.monotonic() - started) * 1000:.1f} ms")

        self.record("live receive", await _until(lambda: self.messages > 0, timeout, simulator),
                    f"{self.messages} message(s) through the message handler")

        simulator.drop()
        back = await _until(lambda: self.messages_at_recovery is not None and client.is_connected,
                            2 * timeout)
        if not back:
            self.record("live drop and recovery", False,
                        f"not CONNECTED again within {2 * timeout} s after the drop (state {client.state.value}, "
                        f"left CONNECTED: {self.left_connected})")
        await self._server_subscribed(simulator, "live drop and recovery")
        at = self.messages_at_recovery or 0
        after = await _until(lambda: self.messages > at, timeout, simulator)
        self.record("live drop and recovery", after and sorted(client.subscriptions) == sorted(self.streams),
                    f"reconnected, {len(client.subscriptions)} subscription(s) restored, "
                    f"{self.messages - at} message(s) after" if after else
                    f"reconnected but no message within {timeout} s after")

        health = await asyncio.wait_for(client.health_check(), timeout)
        missing = [k for k in HEALTH_CHECK_KEYS if k not in health]
        wrong = self._health_problems(health) if not missing else []
        self.record("live health_check keys", not missing and not wrong,
                    f"missing: {', '.join(missing)}" if missing else "; ".join(wrong) if wrong else
                    f"{len(HEALTH_CHECK_KEYS)} standard keys, state {health['state']}")

        metrics = client.metrics
        delivered = metrics.get("messages_delivered", 0)
        reconnections = metrics.get("reconnections", 0)
        self.record("live metrics counting", delivered > 0 and reconnections >= 1,
                    f"messages_delivered={delivered}, reconnections={reconnections}, "
                    f"errors={metrics.get('errors')}")

    async def _server_subscribed(self, simulator: Any, check: str) -> None:
        wait = getattr(simulator, "wait_subscribed", None)
        if callable(wait):
            try:
                await wait(self.streams, timeout=self.timeout)
            except (TimeoutError, asyncio.TimeoutError) as exc:
                self.record(check, False, f"the simulator does not see the subscription: {exc}")

    def _health_problems(self, health: Mapping[str, Any]) -> list[str]:
        problems = []
        if health["state"] != ConnectionState.CONNECTED.value:
            problems.append(f"state {health['state']!r}, expected 'connected'")
        if health["is_connected"] is not True:
            problems.append(f"is_connected {health['is_connected']!r}")
        if not set(self.streams) <= set(health["subscriptions"]):
            problems.append(f"subscriptions {health['subscriptions']!r:.80}")
        if not isinstance(health["metrics"], dict):
            problems.append(f"metrics is {type(health['metrics']).__name__}")
        age = health["last_message_age"]
        if not isinstance(age, (int, float)) or isinstance(age, bool):
            problems.append(f"last_message_age {age!r} after messages")
        if not isinstance(health["reconnect_attempts"], int):
            problems.append(f"reconnect_attempts {health['reconnect_attempts']!r}")
        return problems


async def _live_checks(cls: type, profile: Optional[ComplianceProfile], live: bool,
                       report: VerificationReport, timeout: float) -> None:
    reason = None
    if not live:
        reason = "live round trip not asked for (--no-live)"
    elif profile is None or profile.simulator is None:
        reason = "the adapter names no simulator"
    elif not profile.streams:
        reason = "the adapter names no stream to subscribe to"
    if reason is not None:
        for name in _LIVE_CHECKS:
            report.add(name, Status.SKIPPED, reason)
        return
    assert profile is not None
    before = len(report.checks)
    try:
        await _LiveRun(cls, profile, report, timeout).run()
    except _LiveFailure:
        pass
    except Exception as exc:   # a simulator or adapter that fails outside a step
        done = {c.name for c in report.checks[before:]}
        first = next(n for n in _LIVE_CHECKS if n not in done) if len(done) < len(_LIVE_CHECKS) else None
        if first is not None:
            report.add(first, Status.FAILED, f"{type(exc).__name__}: {exc}"[:200])
    done = {c.name for c in report.checks[before:]}
    failed = next((c.name for c in report.checks[before:] if c.status is Status.FAILED), None)
    for name in _LIVE_CHECKS:
        if name not in done:
            report.add(name, Status.SKIPPED, f"not run: {failed!r} failed")


# ------------------------------------------------------------------------ entry

async def verify_adapter(cls: type, *, profile: Optional[ComplianceProfile] = None, live: bool = True,
                         timeout: float = _STEP_TIMEOUT) -> VerificationReport:
    """Check ``cls`` against the interface standard.

    Args:
        cls: A ``BaseWebSocketInterface`` subclass.
        profile: Overrides the class's ``compliance`` attribute.
        live: Run the live round trip when the profile names a simulator.
        timeout: Seconds each step may take (the drop and recovery: twice).

    Returns:
        The report; ``report.passed`` is False when any check failed.
    """
    name = f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', repr(cls))}"
    report = VerificationReport(name)
    profile = profile if profile is not None else profile_of(cls) if isinstance(cls, type) else None
    buildable = _static_checks(cls, report)
    adapter: Optional[BaseWebSocketInterface] = None
    if buildable:
        try:
            url = "ws://127.0.0.1:9/"    # never connected: the frame checks run their own server
            config = _config_factory(profile)(url) if profile is not None else create_websocket_config(url)
            exchange = ExchangeName((profile.exchange if profile is not None else None) or cls.__name__)
            adapter = cls(exchange, config, lambda message: None, lambda error: None)
            report.add("instantiate", Status.PASSED, f"{cls.__name__}({exchange!r}, config, handler, error_handler)")
        except Exception as exc:
            report.add("instantiate", Status.FAILED, f"{type(exc).__name__}: {exc}"[:200])
    else:
        report.add("instantiate", Status.SKIPPED, "the static checks failed")
    if adapter is not None:
        try:
            await _frame_checks(adapter, profile, report, timeout)
        finally:
            await asyncio.wait_for(adapter.stop(), timeout)
    else:
        for check in ("_parse_message samples", "_extract_stream_info types", "_parse_message malformed"):
            report.add(check, Status.SKIPPED, "the adapter could not be built")
    if adapter is not None:
        await _live_checks(cls, profile, live, report, timeout)
    else:
        for check in _LIVE_CHECKS:
            report.add(check, Status.SKIPPED, "the adapter could not be built")
    return report


def format_report(report: VerificationReport) -> str:
    """The report as a table: one row per check, then a one-line verdict."""
    width = max(len(c.name) for c in report.checks) if report.checks else 10
    lines = [f"compliance of {report.adapter}", f"{'check':<{width}}  {'result':<7}  detail",
             f"{'-' * width}  {'-' * 7}  {'-' * 40}"]
    for check in report.checks:
        lines.append(f"{check.name:<{width}}  {check.status.value:<7}  {check.detail}")
    counts = {s: sum(c.status is s for c in report.checks) for s in Status}
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(f"{verdict}: {counts[Status.PASSED]} passed, {counts[Status.FAILED]} failed, "
                 f"{counts[Status.SKIPPED]} skipped")
    return "\n".join(lines)
