"""MEXC's replay profile: how ``fastws replay`` speaks MEXC to a client.

Each channel of a ``SUBSCRIPTION``/``UNSUBSCRIPTION`` is acked with ``{"id": N,
"code": 0, "msg": "<channel>"}``, ``PING`` with ``PONG``. MEXC's text frames are all
control replies (pushes are binary); a push's stream is its ``channel``, protobuf
field 1, read here without decoding the push.
"""
from __future__ import annotations

from typing import Optional

import msgspec

from exchanges.mexc.channels import PONG_MSG
from fastws.recording import KIND_TEXT
from fastws.testing.replay import ReplayConnection, ReplayProfile

__all__ = ["MexcReplayProfile", "REPLAY_PROFILE", "protobuf_string_field_1"]

_decode = msgspec.json.Decoder().decode


class MexcReplayProfile(ReplayProfile):
    """MEXC's control protocol for the replay server (see the module docstring)."""

    name = "mexc"
    client_path = "/ws"

    def is_control(self, kind: int, payload: bytes) -> bool:
        return kind == KIND_TEXT

    def stream_of(self, kind: int, payload: bytes) -> Optional[str]:
        return protobuf_string_field_1(payload)

    def on_request(self, connection: ReplayConnection, text: bytes) -> None:
        try:
            request = _decode(text)
        except msgspec.DecodeError:
            connection.reply({"id": 0, "code": 0, "msg": "Invalid JSON"})
            return
        method = request.get("method") if isinstance(request, dict) else None
        request_id = request.get("id") if isinstance(request, dict) else 0
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            request_id = 0
        params = request.get("params") if isinstance(request, dict) else None
        names = [p for p in params if isinstance(p, str)] if isinstance(params, list) else []
        if method == "PING":
            connection.reply({"id": request_id, "code": 0, "msg": PONG_MSG})
        elif method in ("SUBSCRIPTION", "UNSUBSCRIPTION"):
            # One ack per channel, then the subscription takes effect.
            for name in dict.fromkeys(names):
                connection.reply({"id": request_id, "code": 0, "msg": name})
            if method == "SUBSCRIPTION":
                connection.subscribe(names)
            else:
                connection.unsubscribe(names)
        else:
            connection.reply({"id": request_id, "code": 0, "msg": "Unknown method"})


def _varint(data: bytes, i: int) -> tuple[int, int]:
    """A protobuf varint at ``data[i:]``: (value, next index); index -1 if cut short."""
    value = shift = 0
    for _ in range(10):
        if i >= len(data):
            return 0, -1
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
    return 0, -1


def protobuf_string_field_1(data: bytes) -> Optional[str]:
    """Field 1 of a serialized protobuf message as a string (a push's channel), or None."""
    i = 0
    for _ in range(64):        # the channel comes first; a few fields at most before it
        if i >= len(data):
            return None
        key, i = _varint(data, i)
        if i < 0:
            return None
        field, wire = key >> 3, key & 7
        if wire == 2:
            length, i = _varint(data, i)
            if i < 0 or i + length > len(data):
                return None
            if field == 1:
                return data[i:i + length].decode("utf-8", "replace")
            i += length
        elif wire == 0:
            _, i = _varint(data, i)
            if i < 0:
                return None
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            return None
    return None


REPLAY_PROFILE = MexcReplayProfile()
"""The profile ``exchanges.mexc``'s registry entry gives."""
