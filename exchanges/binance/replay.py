"""Binance's replay profile: how ``fastws replay`` speaks Binance to a client.

Control requests go through ``BinanceControl`` (acks ``{"result": null, "id": N}``,
``LIST_SUBSCRIPTIONS``, the ``combined`` property) without stream-name checks: the
server plays whatever was recorded. A recorded ack or error reply is a control
frame; a data frame's stream is its combined envelope's ``stream``.
"""
from __future__ import annotations

from typing import Optional

import msgspec

from exchanges.binance.control import BinanceControl, StreamSet
from exchanges.binance.simulator import stream_paths
from fastws.recording import KIND_TEXT
from fastws.testing.replay import ReplayConnection, ReplayProfile

__all__ = ["BinanceReplayProfile", "REPLAY_PROFILE"]

_decode = msgspec.json.Decoder().decode
_STREAM_PREFIX = b'{"stream":"'
_CONTROL = BinanceControl(validate=False)


class _Session(StreamSet):
    """A replay connection seen as a ``ControlSession``: its subscriptions are the connection's."""

    def __init__(self, connection: ReplayConnection) -> None:
        super().__init__()
        self.connection = connection
        self.subscriptions = connection.subscriptions

    def subscribe(self, names: list[str]) -> None:
        self.connection.subscribe(names)

    def unsubscribe(self, names: list[str]) -> None:
        self.connection.unsubscribe(names)


class BinanceReplayProfile(ReplayProfile):
    """Binance's control protocol for the replay server (see the module docstring)."""

    name = "binance"
    client_path = ""      # the adapter adds /stream itself

    def initial_streams(self, path: str) -> list[str]:
        found = stream_paths(path)
        return found[0] if found is not None else []

    def is_control(self, kind: int, payload: bytes) -> bool:
        if kind != KIND_TEXT or payload.startswith(_STREAM_PREFIX):
            return False
        try:
            message = _decode(payload)
        except msgspec.DecodeError:
            return False
        return type(message) is dict and "id" in message and ("result" in message or "error" in message)

    def stream_of(self, kind: int, payload: bytes) -> Optional[str]:
        if not payload.startswith(_STREAM_PREFIX):
            return None
        end = payload.find(b'"', len(_STREAM_PREFIX))
        return payload[len(_STREAM_PREFIX):end].decode("utf-8", "replace") if end > 0 else None

    def on_request(self, connection: ReplayConnection, text: bytes) -> None:
        connection.reply(_CONTROL.handle(_Session(connection), text))


REPLAY_PROFILE = BinanceReplayProfile()
"""The profile ``exchanges.binance``'s registry entry gives."""
