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
  the samples of the streams the adapter routes (its ``_routes``, filled by
  subscribing) also go through a core with those routes, built as the
  adapter's connections build it, and must reach the message handler as
  they do through ``_parse_message``;
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
from typing import Optional

from fastws.base import BaseWebSocketInterface
from fastws.config import create_websocket_config
from fastws.types import ExchangeName
from fastws.verify.frames import HandlerRecorder, _frame_checks
from fastws.verify.live import _LIVE_CHECKS, _config_factory, _live_checks
from fastws.verify.loading import AdapterLoadError, load_adapter, profile_of
from fastws.verify.profile import (BINARY, GENERIC_MALFORMED, HEALTH_CHECK_KEYS, TEXT, ComplianceProfile,
                                   SampleFrame, _STEP_TIMEOUT)
from fastws.verify.report import Check, Status, VerificationReport, format_report
from fastws.verify.static import _static_checks

__all__ = ["AdapterLoadError", "BINARY", "Check", "ComplianceProfile", "GENERIC_MALFORMED", "HEALTH_CHECK_KEYS",
           "SampleFrame", "TEXT", "Status", "VerificationReport", "format_report", "load_adapter", "profile_of",
           "verify_adapter"]


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
    recorder = HandlerRecorder()
    if buildable:
        try:
            url = "ws://127.0.0.1:9/"    # never connected: the frame checks run their own server
            config = _config_factory(profile)(url) if profile is not None else create_websocket_config(url)
            exchange = ExchangeName((profile.exchange if profile is not None else None) or cls.__name__)
            adapter = cls(exchange, config, recorder, lambda error: None)
            report.add("instantiate", Status.PASSED, f"{cls.__name__}({exchange!r}, config, handler, error_handler)")
        except Exception as exc:
            report.add("instantiate", Status.FAILED, f"{type(exc).__name__}: {exc}"[:200])
    else:
        report.add("instantiate", Status.SKIPPED, "the static checks failed")
    if adapter is not None:
        try:
            await _frame_checks(adapter, recorder, profile, report, timeout)
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
