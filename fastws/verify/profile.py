"""What an adapter declares for the verifier: its sample frames, simulator and config."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from fastws.config import WebSocketConfig


TEXT = 1
"""Opcode of a text frame."""
BINARY = 2
"""Opcode of a binary frame."""

HEALTH_CHECK_KEYS = ("exchange", "state", "is_connected", "subscriptions", "reconnect_attempts",
                     "last_message_age", "metrics")
"""The keys every ``health_check()`` returns (the interface standard)."""

# Seconds each live step may take; the drop and recovery gets twice this.
_STEP_TIMEOUT = 5.0
# Seconds between two polls (and two simulator steps) while waiting.
_POLL = 0.01
# Settings of the live client: no stale reconnects while the simulator is
# stepped by hand, a quick retry after the forced drop.
_LIVE_CONFIG = {"timeout": _STEP_TIMEOUT, "subscription_timeout": _STEP_TIMEOUT, "stale_timeout": None,
                "reconnect_delay": 0.05, "max_reconnect_delay": 0.5, "max_reconnect_attempts": 20}


@dataclass(frozen=True)
class SampleFrame:
    """One frame for ``_parse_message``, as the exchange sends it.

    Attributes:
        payload: The frame's payload.
        opcode: ``1`` text or ``2`` binary.
        control: True when the adapter must return ``None`` (an ack, a pong).
        stream: The stream id ``_extract_stream_info`` must give, if known.
    """

    payload: bytes
    opcode: int = TEXT
    control: bool = False
    stream: Optional[str] = None


def _text(*payloads: bytes) -> tuple[SampleFrame, ...]:
    return tuple(SampleFrame(p, TEXT) for p in payloads)


def _binary(*payloads: bytes) -> tuple[SampleFrame, ...]:
    return tuple(SampleFrame(p, BINARY) for p in payloads)


GENERIC_MALFORMED: tuple[SampleFrame, ...] = (
    _text(b"", b"{", b"not json", b"[1, 2, 3]", b"null", b'"text"', b"{}", b'{"stream": 5, "data": []}',
          b'{"id": null, "result": 1}', b'{"code": "x"}', b"\xef\xbb\xbf{}")
    + _binary(b"", b"\x00", b"\xff\xfe\xfd", b"\x0a\x2fspot", b"\x08\x96",
              bytes(random.Random(6).getrandbits(8) for _ in range(64))))
"""Frames no exchange sends whole: sent to every adapter (its profile may add more)."""


@dataclass(frozen=True)
class ComplianceProfile:
    """What an adapter gives the verifier; set it as the class attribute ``compliance``.

    Attributes:
        exchange: The name the adapter is built with (default: the class name).
        samples: Frames the exchange sends: each must parse to a dict, or to
            ``None`` for a ``control`` frame.
        malformed: Bad frames of this exchange, sent after ``GENERIC_MALFORMED``.
        decode_errors: Exception types of the adapter's decoder that mean
            "these bytes do not decode" (e.g. ``msgspec.DecodeError``); the
            core reports them as ``InvalidMessageError`` (400). Accepted on
            malformed frames and named in the report; empty by default.
        streams: Streams to subscribe to in the live round trip.
        simulator: A loopback server of the exchange: ``"module:Class"`` (built
            with ``simulator_options``) or a factory; an async context manager
            with ``drop()``, and optionally ``step(n)`` and
            ``wait_subscribed(names, timeout)``. None: the simulator of the
            adapter's registered exchange (``fastws.registry``), if any; else no
            live round trip.
        simulator_options: Keyword arguments of a ``"module:Class"`` simulator
            (and of the registered exchange's).
        simulator_url: The simulator's attribute (called if it is a method)
            or a function giving the URL the config is built with.
        config: ``config(url, **overrides) -> WebSocketConfig`` (a function or
            ``"module:function"``); default ``create_websocket_config``.
        expects_ack: The exchange acknowledges subscriptions, so
            ``_send_subscription_message`` must return an awaitable.
    """

    exchange: Optional[str] = None
    samples: Sequence[SampleFrame] = ()
    malformed: Sequence[SampleFrame] = ()
    decode_errors: tuple[type[BaseException], ...] = ()
    streams: Sequence[str] = ()
    simulator: Union[str, Callable[[], Any], None] = None
    simulator_options: Mapping[str, Any] = field(default_factory=dict)
    simulator_url: Union[str, Callable[[Any], str]] = "url"
    config: Union[str, Callable[..., WebSocketConfig], None] = None
    expects_ack: bool = True
