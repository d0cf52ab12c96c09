"""The third exchange's replay profile."""
from __future__ import annotations

from typing import Optional

from fastws.recording import KIND_TEXT
from fastws.testing.replay import ReplayConnection, ReplayProfile

from tests.third_exchange.protocol import PATH, ack, decode

__all__ = ["REPLAY_PROFILE", "ThirdReplayProfile"]


class ThirdReplayProfile(ReplayProfile):
    """Acks every request; a recorded ``{"req": ...}`` is a control reply; a push's stream is its ``ch``."""

    name = "third"
    client_path = PATH

    def is_control(self, kind: int, payload: bytes) -> bool:
        return kind == KIND_TEXT and payload.startswith(b'{"req"')

    def stream_of(self, kind: int, payload: bytes) -> Optional[str]:
        try:
            stream = decode(payload).get("ch")
        except ValueError:
            return None
        return stream if isinstance(stream, str) else None

    def on_request(self, connection: ReplayConnection, text: bytes) -> None:
        request = decode(text)
        names = [n for n in request.get("args") or [] if isinstance(n, str)]
        if request.get("op") == "sub":
            connection.subscribe(names)
        else:
            connection.unsubscribe(names)
        connection.reply(ack(request.get("req")))


REPLAY_PROFILE = ThirdReplayProfile()
