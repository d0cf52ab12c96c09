"""Adapters for the verifier's tests: each breaks one rule of the interface standard.

Each broken one differs from a shipped adapter in one way, so the verifier
must fail exactly the check that rule belongs to. ``PlainAdapter`` breaks
nothing and declares no profile: its sample and live checks are skipped.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

import msgspec

from exchanges.binance import BinanceWebSocket
from exchanges.binance import streams as binance_streams
from fastws import BaseWebSocketInterface, InvalidMessageError, StreamType, SubscriptionAction

__all__ = ["AbstractAdapter", "DecodeErrorAdapter", "KeyErrorAdapter", "NoAckAdapter", "NonDictAdapter", "PlainAdapter",
           "WrongRouteAdapter", "WrongSignatureAdapter", "WrongStreamTypeAdapter"]


class KeyErrorAdapter(BinanceWebSocket):
    """Reads a field without looking: a frame without ``stream`` raises KeyError."""

    def _parse_message(self, raw_message: Any) -> Any:
        message = super()._parse_message(raw_message)
        if message is not None and "e" not in message:
            return {"stream": message["stream"], "data": message["data"]}
        return message


class DecodeErrorAdapter(BinanceWebSocket):
    """Lets the JSON decoder's own error escape on bytes that are not JSON."""

    def _parse_message(self, raw_message: Any) -> Any:
        msgspec.json.decode(raw_message)
        return super()._parse_message(raw_message)


class NonDictAdapter(BinanceWebSocket):
    """Returns the message as a list of pairs instead of a dict."""

    def _parse_message(self, raw_message: Any) -> Any:
        message = super()._parse_message(raw_message)
        return None if message is None else list(message.items())

    def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:
        return super()._extract_stream_info(dict(message))


class WrongStreamTypeAdapter(BinanceWebSocket):
    """Classifies with the enum's value (a str) instead of the ``StreamType`` member."""

    def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:
        info = super()._extract_stream_info(message)
        return None if info is None else (info[0], info[1].value)  # type: ignore[return-value]


class NoAckAdapter(BinanceWebSocket):
    """Sends the request but does not wait for Binance's ack."""

    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        ack = await super()._send_subscription_message(streams, action)
        # Nobody waits for the reply: the base class never learns of a rejection.
        if ack is not None:
            ack.cancel()  # type: ignore[attr-defined]
        return None


class WrongSignatureAdapter(BaseWebSocketInterface):
    """All four methods present, none as the standard writes them."""

    def _connect(self) -> None:  # type: ignore[override]
        """Not a coroutine: the base class awaits it."""

    async def _send_subscription_message(self, streams: list[str]) -> None:  # type: ignore[override]
        """Takes no action."""

    async def _parse_message(self) -> Optional[dict[str, Any]]:  # type: ignore[override]
        """Takes no payload."""
        return None

    async def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:  # type: ignore[override]
        """A coroutine: the core calls it synchronously."""
        return None


class AbstractAdapter(BaseWebSocketInterface):
    """Forgot ``_extract_stream_info``."""

    async def _connect(self) -> None:
        await self._open_websocket()

    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        return None

    def _parse_message(self, raw_message: Any) -> Any:
        return None


class PlainAdapter(BaseWebSocketInterface):
    """A small JSON adapter that keeps every rule and declares no compliance profile."""

    _decode = msgspec.json.Decoder().decode

    async def _connect(self) -> None:
        await self._open_websocket()

    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        await self.send_message({"op": action.value, "args": streams})
        return None

    def _parse_message(self, raw_message: Any) -> Optional[dict[str, Any]]:
        try:
            message = self._decode(raw_message)
        except msgspec.DecodeError as exc:
            raise InvalidMessageError(f"{self.exchange}: not JSON: {exc}", bytes(raw_message[:256])) from exc
        return message if isinstance(message, dict) else None

    def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:
        stream = message.get("stream")
        return (stream, StreamType.OTHER) if isinstance(stream, str) else None


class WrongRouteAdapter(BinanceWebSocket):
    """Its subscribed streams' routes hand the handler the ``data`` payload alone, not the
    combined envelope dict ``_parse_message`` gives (the route's decode reads the wrong part)."""

    def _add_routes(self, names: list[str], handler: Optional[Callable[..., Any]]) -> None:
        super()._add_routes(names, handler)
        assert self._routes is not None
        decode = msgspec.json.Decoder().decode
        for name in names:
            self._routes.add(name, decode, handler if handler is not None else self._message_handler,
                             binance_streams.stream_type(name), pass_stream=False)
