"""``BaseWebSocketInterface`` and its companions, from their home in ``fastws.client``.

Kept so that ``from fastws.base import BaseWebSocketInterface`` goes on working.
"""
from fastws.client import BaseWebSocketInterface, ConnectionGap, ErrorHandler, MessageHandler, SequenceGap

__all__ = ["BaseWebSocketInterface", "ConnectionGap", "SequenceGap", "MessageHandler", "ErrorHandler"]
