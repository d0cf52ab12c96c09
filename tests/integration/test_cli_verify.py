"""``fastws verify``'s details when an adapter hangs: they say what did not happen, and in what time.

Each adapter here is Binance's with one step that never finishes: the
connection, the subscription's ack, or the parser on data frames.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Optional

from exchanges.binance import BinanceWebSocket
from fastws import SubscriptionAction
from fastws.verify import Status, VerificationReport, format_report, verify_adapter

TIMEOUT = 1.0


class NeverConnectsAdapter(BinanceWebSocket):
    """Its connect step waits forever."""

    async def _connect(self) -> None:
        await asyncio.Event().wait()


class AckNeverComesAdapter(BinanceWebSocket):
    """Sends the request, then waits on an ack that nothing will complete."""

    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        ack = await super()._send_subscription_message(streams, action)
        if ack is not None:
            ack.cancel()  # type: ignore[attr-defined]
        return asyncio.get_running_loop().create_future()


class ParserNeverReturnsAdapter(BinanceWebSocket):
    """An async parser that never returns on a data frame (control replies are parsed)."""

    async def _parse_message(self, raw_message: Any) -> Any:  # type: ignore[override]
        message = super()._parse_message(raw_message)
        if message is not None:
            await asyncio.Event().wait()
        return message


def detail(report: VerificationReport, check: str) -> str:
    return next(c.detail for c in report.checks if c.name == check)


async def test_an_adapter_that_never_connects() -> None:
    report = await verify_adapter(NeverConnectsAdapter, timeout=TIMEOUT)
    assert report.status_of("live connect") is Status.FAILED, format_report(report)
    assert detail(report, "live connect") == f"not CONNECTED within {TIMEOUT:g} s (state connecting)"


async def test_an_ack_that_never_comes() -> None:
    report = await verify_adapter(AckNeverComesAdapter, timeout=TIMEOUT)
    assert report.status_of("live connect") is Status.PASSED, format_report(report)
    assert report.status_of("live subscribe (ack)") is Status.FAILED
    text = detail(report, "live subscribe (ack)")
    assert text.startswith("subscribe(['btcusdt@depth") and f"did not return within {TIMEOUT:g} s" in text, text
    assert "the ack awaited by _send_subscription_message never came" in text


async def test_a_parser_that_never_returns() -> None:
    report = await verify_adapter(ParserNeverReturnsAdapter, live=False, timeout=TIMEOUT)
    assert report.status_of("_parse_message samples") is Status.FAILED, format_report(report)
    text = detail(report, "_parse_message samples")
    assert "returned None" not in text, text
    assert f"did not finish within {TIMEOUT:g} s (the parser or the message handler suspended" in text, text
    assert "never parsed (held behind an earlier frame that did not finish)" in text, text
