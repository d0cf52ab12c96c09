"""MEXC spot v3: protobuf pushes over WebSocket.

The schema lives in ``exchanges/mexc/proto/mexc_push.proto``; its generated classes in
``exchanges.mexc.pb``.
"""
from exchanges.mexc.pb import PushDataV3ApiWrapper

__all__ = [
    "PushDataV3ApiWrapper",
]
