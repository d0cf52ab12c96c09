"""The reference codec of MEXC pushes: protobuf's own parser and ``json_format``.

``decode_reference`` defines the standard dict of a push (PROTOCOLS.md, "The standard
dict for a MEXC push"): what any faster decoder must return, key for key. It is slow
(tens of µs per push) and meant for tests, differential checks and the simulator, not
for the hot path. ``encode_push`` is its inverse, used by the simulator and the tests.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from exchanges.mexc.pb import PushDataV3ApiWrapper

__all__ = ["BODY_FIELDS", "decode_reference", "encode_push"]

BODY_FIELDS: tuple[str, ...] = tuple(f.name for f in PushDataV3ApiWrapper.DESCRIPTOR.oneofs_by_name["body"].fields)
"""The oneof ``body`` field names of the wrapper, in field-number order (301-315)."""

_BODY_FIELD_SET = frozenset(BODY_FIELDS)


def decode_reference(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode one serialized ``PushDataV3ApiWrapper`` into the standard dict.

    The dict is ``json_format.MessageToDict(msg, preserving_proto_field_name=True)``:
    int64 values as decimal strings, default values left out (except optional fields
    that are set), unknown fields ignored, the body under its oneof field name.

    Args:
        data: The payload of one binary frame.

    Returns:
        The standard dict of the push.

    Raises:
        google.protobuf.message.DecodeError: The bytes are not a valid wrapper
            (truncation, bad varint or length, wrong wire type; with the upb backend
            also invalid UTF-8 in a string field).
        UnicodeDecodeError: Invalid UTF-8 in a string field (pure-Python backend).
        ValueError: The wrapper parsed but has no body (empty bytes, and some random
            bytes, parse as such): "push without a body".
    """
    msg = PushDataV3ApiWrapper.FromString(bytes(data))
    if msg.WhichOneof("body") is None:
        raise ValueError("push without a body")
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def encode_push(channel: str, body_field: str, body: dict[str, Any], *, symbol: str | None = None,
                symbol_id: str | None = None, create_time: int | None = None,
                send_time: int | None = None) -> bytes:
    """Serialize one push.

    Args:
        channel: The wrapper's ``channel``.
        body_field: The oneof field to set, e.g. ``"publicAggreDeals"``.
        body: The body message as a dict in the standard dict's form (``json_format``
            accepts int64 values as ints or decimal strings). An empty dict still sets
            the body (an empty message of that type).
        symbol, symbol_id, create_time, send_time: The optional wrapper fields; None
            leaves a field unset (any other value, zero included, sets it).

    Returns:
        The serialized ``PushDataV3ApiWrapper``.

    Raises:
        ValueError: ``body_field`` is not a field of the oneof ``body``.
        google.protobuf.json_format.ParseError: ``body`` does not fit the message.
    """
    if body_field not in _BODY_FIELD_SET:
        raise ValueError(f"not a body field of PushDataV3ApiWrapper: {body_field!r}")
    msg = PushDataV3ApiWrapper(channel=channel)
    if symbol is not None:
        msg.symbol = symbol
    if symbol_id is not None:
        msg.symbolId = symbol_id
    if create_time is not None:
        msg.createTime = create_time
    if send_time is not None:
        msg.sendTime = send_time
    target = getattr(msg, body_field)
    target.SetInParent()    # an empty body still selects the oneof field
    json_format.ParseDict(body, target)
    return msg.SerializeToString()
