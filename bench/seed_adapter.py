"""An adapter written exactly as the interface standard shows one, and its raw peer.

``SeedWebSocket`` is what a user writes by copying the standard's example:
``async def _parse_message`` decoding the frame with ``msgspec.json``,
``_extract_stream_info`` returning ``(stream, StreamType.ORDERBOOK)`` with the
enum member written inline, and an ``async def`` handler. Nothing hoisted,
nothing compiled, no route: every message takes the base class's generic
path (parse, classify, handler). It speaks the Binance combined-stream
protocol of ``bench/binance_server.py`` (``SUBSCRIBE`` acked by
``{"result": null, "id": N}``, frames ``{"stream": ..., "data": ...}``).

``RawSeedListener`` is the floor it is measured against: a picows
``WSListener`` in Python doing the same ``msgspec.json.decode`` per message
and calling a trivial handler.
"""
from __future__ import annotations

from typing import Any, Optional

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from bench.binance_peers import FastwsPeer, RawPeer, StreamCounter
from fastws import ExchangeName, StreamType, create_websocket_config
from fastws.testing import LoopbackFeedClient

__all__ = ["SEED_PEERS", "RawSeedListener", "RawSeedPeer", "SeedPeer", "SeedWebSocket", "seed_client"]

# The raw listener at its best: its one enum lookup hoisted (picows's
# WSMsgType is an IntEnum, as slow to reach inline on 3.11 as StreamType was).
_TEXT = WSMsgType.TEXT


class SeedWebSocket(LoopbackFeedClient):
    """A Binance-style adapter whose per-message methods are the interface standard's own words.

    Connecting and subscribing (Binance's ``SUBSCRIBE`` with ids, acked by id)
    come from ``LoopbackFeedClient``, an adapter on ``BaseWebSocketInterface``
    for the same protocol; they are not on the per-message path.
    """

    async def _parse_message(self, raw_message: Any) -> Optional[dict[str, Any]]:
        message: dict[str, Any] = msgspec.json.decode(raw_message)
        if "result" in message:
            self._resolve_ack(message["id"])
            return None
        return message

    def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:
        stream = message.get("stream")
        if stream is None:
            return None
        if "@depth" in stream:
            return stream, StreamType.ORDERBOOK
        if "@trade" in stream:
            return stream, StreamType.TRADES
        return stream, StreamType.OTHER


def seed_client(url: str, sink: StreamCounter) -> SeedWebSocket:
    """The seed-style adapter for ``bench/binance_server.py`` at ``url``, its async handler counting into ``sink``."""
    config = create_websocket_config(url + "/stream", stale_timeout=None)
    return SeedWebSocket(ExchangeName("seed"), config, sink.on_message_async)


class SeedPeer(FastwsPeer):
    """``SeedWebSocket`` as a loopback peer (``bench.binance_peers``'s interface)."""

    def __init__(self, url: str, sink: Optional[StreamCounter] = None) -> None:
        self.name = "seed adapter"
        self.counter = sink if sink is not None else StreamCounter()
        # FastwsPeer's methods use only the base class's API.
        self.ws = seed_client(url, self.counter)  # type: ignore[assignment]


class RawSeedListener(WSListener):
    """Raw picows: the same ``msgspec.json.decode`` per message, then a trivial handler."""

    def __init__(self, sink: StreamCounter) -> None:
        super().__init__()
        self.handler = sink.on_message

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _TEXT:
            self.handler(msgspec.json.decode(frame.get_payload_as_memoryview()))


class RawSeedPeer(RawPeer):
    """``RawSeedListener`` as a loopback peer."""

    def __init__(self, url: str, sink: Optional[StreamCounter] = None) -> None:
        super().__init__(url, RawSeedListener, sink)  # type: ignore[arg-type]
        self.name = "raw picows"


SEED_PEERS = {"seed adapter": SeedPeer, "raw picows": RawSeedPeer}
"""Peer name -> loopback peer factory ``(url, sink=None)``, the seed first."""
