"""MEXC spot v3: protobuf pushes over WebSocket.

The schema lives in ``exchanges/mexc/proto/mexc_push.proto`` and its generated classes
in ``exchanges.mexc.pb``; ``exchanges.mexc.channels`` knows the channel names, limits
and control-message texts; ``exchanges.mexc.reference`` is the reference codec
(protobuf + ``json_format``) that defines the standard dict of a push;
``MexcWebSocket`` is the adapter, decoding pushes with the compiled
``exchanges.mexc._fastpb.PushDecoder``.

The adapter is imported on first use (``MexcWebSocket``, ``mexc_config``), and so is
``MexcSimulator`` (``exchanges.mexc.simulator``): the schema modules load without
them, so the simulator does not depend on the client or on its compiled decoder.
"""
import importlib
from typing import TYPE_CHECKING, Any

from exchanges.mexc.channels import (IDLE_TIMEOUT, MAX_CONNECTION_AGE, MAX_MESSAGES_PER_SECOND,
                                     MAX_SUBSCRIPTIONS_PER_CONNECTION, NO_SUBSCRIPTION_TIMEOUT, WS_URL,
                                     Channel, ChannelKind, body_field, channel_kind, event_type,
                                     is_valid_channel, parse_channel, stream_type, symbol_of)
from exchanges.mexc.pb import PushDataV3ApiWrapper
from exchanges.mexc.reference import decode_reference, encode_push

if TYPE_CHECKING:
    from exchanges.mexc.client import MexcConfig, MexcWebSocket, mexc_config
    from exchanges.mexc.simulator import MexcSimulator

_LAZY = {"MexcConfig": "exchanges.mexc.client", "MexcWebSocket": "exchanges.mexc.client",
         "mexc_config": "exchanges.mexc.client",
         "MexcSimulator": "exchanges.mexc.simulator"}


def __getattr__(name: str) -> Any:
    """The adapter's names, imported on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

__all__ = [
    "Channel",
    "ChannelKind",
    "IDLE_TIMEOUT",
    "MAX_CONNECTION_AGE",
    "MAX_MESSAGES_PER_SECOND",
    "MAX_SUBSCRIPTIONS_PER_CONNECTION",
    "MexcConfig",
    "MexcSimulator",
    "MexcWebSocket",
    "NO_SUBSCRIPTION_TIMEOUT",
    "PushDataV3ApiWrapper",
    "WS_URL",
    "body_field",
    "channel_kind",
    "decode_reference",
    "encode_push",
    "event_type",
    "is_valid_channel",
    "mexc_config",
    "parse_channel",
    "stream_type",
    "symbol_of",
]
