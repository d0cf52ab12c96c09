"""The live round trip against the simulator an adapter's profile names."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Mapping, Optional, Union

from fastws.base import BaseWebSocketInterface
from fastws.config import WebSocketConfig, create_websocket_config
from fastws.errors import ExchangeAPIError
from fastws.types import ConnectionState, ExchangeName, SubscriptionAction
from fastws.verify.loading import _resolve
from fastws.verify.profile import HEALTH_CHECK_KEYS, ComplianceProfile, _LIVE_CONFIG, _POLL
from fastws.verify.report import Status, VerificationReport


_LIVE_CHECKS = ("live connect", "live subscribe (ack)", "live receive", "live drop and recovery",
                "live health_check keys", "live metrics counting")


class _LiveFailure(Exception):
    """A live step failed; its check is recorded, the rest are skipped."""


def _describe(exc: BaseException) -> str:
    """``Type: message``, or the type alone when the message is empty (a bare timeout)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} (no message)"


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
        except asyncio.TimeoutError:
            self.record("live connect", False, f"not CONNECTED within {timeout:g} s (state {client.state.value}"
                        f"{self._last_error()})")
        except ExchangeAPIError as exc:
            self.record("live connect", False, _describe(exc))
        self.record("live connect", client.is_connected, f"state {client.state.value}")

        started = time.monotonic()
        try:
            await asyncio.wait_for(client.subscribe(self.streams), timeout)
        except asyncio.TimeoutError:
            self.record("live subscribe (ack)", False,
                        f"subscribe({self.streams!r:.80}) did not return within {timeout:g} s "
                        f"(the ack awaited by _send_subscription_message never came{self._last_error()})")
        except ExchangeAPIError as exc:
            self.record("live subscribe (ack)", False, _describe(exc))
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

    def _last_error(self) -> str:
        """``; last error: ...`` from the client's error handler, or nothing."""
        return f"; last error: {_describe(self.errors[-1])}"[:200] if self.errors else ""

    async def _server_subscribed(self, simulator: Any, check: str) -> None:
        wait = getattr(simulator, "wait_subscribed", None)
        if callable(wait):
            try:
                await wait(self.streams, timeout=self.timeout)
            except (TimeoutError, asyncio.TimeoutError) as exc:
                self.record(check, False, f"the simulator does not see the subscription within "
                                          f"{self.timeout:g} s" + (f": {exc}" if str(exc) else ""))

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
            report.add(first, Status.FAILED, _describe(exc)[:200])
    done = {c.name for c in report.checks[before:]}
    failed = next((c.name for c in report.checks[before:] if c.status is Status.FAILED), None)
    for name in _LIVE_CHECKS:
        if name not in done:
            report.add(name, Status.SKIPPED, f"not run: {failed!r} failed")
