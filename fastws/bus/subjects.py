"""The bus's wire format: subject names, headers and message ids.

A collector publishes each data frame's original bytes, unchanged, as the payload of
one NATS message on the subject of its stream::

    <prefix>.<exchange>.<stream token>        e.g. md.binance.btcusdt%40depth%40100ms

NATS subject tokens cannot hold ``.``, ``*``, ``>`` or whitespace, and ``@`` is mapped
too (see ``../shared/BUS.md``), so a stream name becomes a token by percent-encoding
every byte outside ``[A-Za-z0-9_-]`` (UTF-8, upper-case hex). The mapping is reversible:
:func:`stream_from_token` gives the stream name back. Exchange names are registry names
(lower-case letters, digits, ``_`` and ``-``) and go in unchanged.

Headers (values are ASCII decimal unless said otherwise):

=====================  =========================================================
``Nats-Msg-Id``        ``<exchange>.<stream token>.<digest>``: JetStream drops a
                       second message with the same id within the stream's
                       duplicate window, so two collectors of one stream publish
                       it once. ``digest`` is the frame core's 64-bit payload
                       digest (the one its handover de-duplication uses), 16
                       lower-case hex digits.
``Fastws-Recv-Ns``     the collector's receive time, ``time.time_ns()`` clock.
``Fastws-Event-Ms``    the exchange's event time in ms, when the core found one.
``Fastws-Opcode``      the WebSocket opcode of the frame (1 text, 2 binary).
=====================  =========================================================
"""
from __future__ import annotations

import re

__all__ = [
    "DEFAULT_PREFIX",
    "HEADER_EVENT_MS",
    "HEADER_MSG_ID",
    "HEADER_OPCODE",
    "HEADER_RECV_NS",
    "exchange_wildcard",
    "message_id",
    "parse_message_id",
    "parse_subject",
    "stream_from_token",
    "stream_subject",
    "stream_token",
]

DEFAULT_PREFIX = "md"
"""The first token of every market-data subject unless the config names another."""

HEADER_MSG_ID = "Nats-Msg-Id"
"""JetStream's de-duplication header."""
HEADER_RECV_NS = "Fastws-Recv-Ns"
"""The collector's receive time in ns since the epoch."""
HEADER_EVENT_MS = "Fastws-Event-Ms"
"""The exchange's event time in ms since the epoch, when known."""
HEADER_OPCODE = "Fastws-Opcode"
"""The frame's WebSocket opcode: 1 text, 2 binary."""

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_EXCHANGE = re.compile(r"^[a-z0-9_-]+$")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")


def stream_token(stream: str) -> str:
    """The subject-safe token of a stream name (reversible, see the module docstring)."""
    if not stream:
        raise ValueError("a stream name cannot be empty")
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in stream.encode("utf-8"))


def stream_from_token(token: str) -> str:
    """The stream name a token was made from; ``ValueError`` if it is not such a token."""
    if not token or any(c not in "%ABCDEF" and ord(c) not in _SAFE for c in token):
        raise ValueError(f"not a stream token: {token!r}")
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "%":
            match = _ESCAPE.match(token, i)
            if match is None:
                raise ValueError(f"bad escape in stream token {token!r} at {i}")
            raw.append(int(match.group(1), 16))
            i += 3
        else:
            raw.append(ord(token[i]))
            i += 1
    stream = raw.decode("utf-8")
    if stream_token(stream) != token:  # a token with an escape it did not need
        raise ValueError(f"not a canonical stream token: {token!r}")
    return stream


def _check_exchange(exchange: str) -> str:
    if not _EXCHANGE.match(exchange):
        raise ValueError(f"exchange name {exchange!r} is not subject-safe ([a-z0-9_-]+)")
    return exchange


def stream_subject(exchange: str, stream: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject a stream's frames are published on: ``<prefix>.<exchange>.<token>``."""
    return f"{prefix}.{_check_exchange(exchange)}.{stream_token(stream)}"


def exchange_wildcard(exchange: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The subject filter of all of an exchange's streams (a JetStream stream's subjects)."""
    return f"{prefix}.{_check_exchange(exchange)}.*"


def parse_subject(subject: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """``(exchange, stream)`` of a stream subject; ``ValueError`` if it is not one."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != prefix:
        raise ValueError(f"not a {prefix}.<exchange>.<stream> subject: {subject!r}")
    return _check_exchange(parts[1]), stream_from_token(parts[2])


def message_id(exchange: str, stream: str, digest: int) -> str:
    """The ``Nats-Msg-Id`` of a frame (stream-wide unique, see the module docstring)."""
    return f"{_check_exchange(exchange)}.{stream_token(stream)}.{digest & 0xFFFFFFFFFFFFFFFF:016x}"


def parse_message_id(msg_id: str) -> tuple[str, str, int]:
    """``(exchange, stream, digest)`` of a message id; ``ValueError`` if it is not one."""
    parts = msg_id.split(".")
    if len(parts) != 3 or len(parts[2]) != 16:
        raise ValueError(f"not a fastws message id: {msg_id!r}")
    return _check_exchange(parts[0]), stream_from_token(parts[1]), int(parts[2], 16)
