"""The client: ``BaseWebSocketInterface`` and the concerns it is made of.

One module per concern: ``connection`` (socket, upgrade, deflate negotiation,
building the frame core, closing), ``subscriptions`` (tracked set, pending
queue, batches, acks), ``health`` (state, gaps, error reporting, the health
check), ``supervisor`` (the one connection attempt, watching, reconnecting as
``fastws.backoff.Reconnection`` says), ``rotation`` (make before break) and
``interface`` (the class adapters subclass, with its four abstract methods).
"""
from fastws.client._fields import ErrorHandler, MessageHandler, StateListener
from fastws.client.health import ConnectionGap, SequenceGap
from fastws.client.interface import BaseWebSocketInterface

__all__ = ["BaseWebSocketInterface", "ConnectionGap", "ErrorHandler", "MessageHandler", "SequenceGap",
           "StateListener"]
