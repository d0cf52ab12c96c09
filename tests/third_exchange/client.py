"""The third exchange's adapter, on ``BaseWebSocketInterface`` (the four methods)."""
from __future__ import annotations

from typing import Any, Awaitable, Optional

import msgspec

from fastws import BaseWebSocketInterface, StreamType, SubscriptionAction
from fastws.config import WebSocketConfig, create_websocket_config
from fastws.errors import InvalidMessageError, SubscriptionRejectedError

from tests.third_exchange.compliance import COMPLIANCE
from tests.third_exchange.protocol import PATH, decode

__all__ = ["ThirdWebSocket", "third_config"]

_TRADES = StreamType.TRADES


def third_config(url: str = f"ws://127.0.0.1:1{PATH}", **overrides: Any) -> WebSocketConfig:
    """The client's config on ``url`` (its simulator's ``url``)."""
    return create_websocket_config(url, **overrides)


class ThirdWebSocket(BaseWebSocketInterface):
    """The adapter: acks by request id, every push a trade of its ``ch``."""

    compliance = COMPLIANCE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_id = 0

    async def _connect(self) -> None:
        await self._open_websocket()

    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        self._next_id += 1
        ack = self._expect_ack(self._next_id)
        op = "sub" if action is SubscriptionAction.SUBSCRIBE else "unsub"
        await self.send_message({"op": op, "args": streams, "req": self._next_id})
        return ack

    async def _parse_message(self, raw_message: Any) -> Optional[dict[str, Any]]:
        try:
            message = decode(raw_message)
        except msgspec.DecodeError as exc:
            raise InvalidMessageError(f"{self.exchange}: not JSON: {exc}", bytes(raw_message[:256])) from None
        if type(message) is not dict:
            raise InvalidMessageError(f"{self.exchange}: expected a JSON object", bytes(raw_message[:256]))
        if "ch" in message:
            return message
        if "req" in message:
            if message.get("ok") is True:
                self._resolve_ack(message["req"])
            else:
                self._reject_ack(message["req"], SubscriptionRejectedError(
                    f"{self.exchange}: refused: {message.get('err')}", exchange_message=message.get("err")))
            return None
        return message

    def _extract_stream_info(self, message: dict[str, Any]) -> Optional[tuple[str, StreamType]]:
        stream = message.get("ch")
        return None if stream is None else (stream, _TRADES)
