"""The third exchange's wire format, shared by its client, simulator and replay profile."""
from __future__ import annotations

import time
from typing import Any

import msgspec

__all__ = ["PATH", "ack", "decode", "encode", "is_valid_stream", "push"]

PATH = "/feed"
"""The endpoint's path."""

encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder().decode


def is_valid_stream(name: object) -> bool:
    """``trades.<SYMBOL>`` with an upper-case alphanumeric symbol."""
    if not isinstance(name, str) or not name.startswith("trades."):
        return False
    symbol = name[7:]
    return symbol.isascii() and symbol.isalnum() and symbol == symbol.upper()


def ack(request_id: Any, error: str = "") -> dict[str, Any]:
    """The reply to request ``request_id``: ok, or refused with ``error``."""
    return {"req": request_id, "ok": False, "err": error} if error else {"req": request_id, "ok": True}


def push(stream: str, sequence: int) -> bytes:
    """One trade push of ``stream``."""
    return encode({"ch": stream, "seq": sequence, "ts": int(time.time() * 1000),
                   "px": f"{100 + sequence % 7}.5", "qty": "0.25"})
