"""Connection settings: ``WebSocketConfig`` and ``create_websocket_config``."""
from __future__ import annotations

import dataclasses
import math
import re
import ssl
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

__all__ = ["WebSocketConfig", "create_websocket_config", "limit_changes"]


@dataclass(frozen=True)
class WebSocketConfig:
    """Settings for one exchange connection, validated on construction.

    The first seven fields are the interface standard's; the rest tune the
    reconnection policy, liveness checks and the exchange's limits.

    Attributes:
        url: ``ws://`` or ``wss://`` endpoint.
        timeout: Seconds allowed to open a connection (TCP, TLS and upgrade).
        ping_interval: Seconds of silence after which the client pings.
        max_reconnect_attempts: Consecutive failed attempts before the state
            becomes FAILED; 0 retries forever.
        reconnect_delay: Delay before the second attempt after a drop (the
            first is immediate).
        reconnect_backoff: Factor by which the delay grows per attempt.
        enable_compression: Offer permessage-deflate (RFC 7692) in the
            upgrade. A server that accepts sends compressed frames, which the
            core inflates; one that declines gives a normal uncompressed
            connection. An answer that breaks the standard fails the
            connection (``CompressionNegotiationError``).
        max_reconnect_delay: Cap on the reconnect delay.
        reconnect_jitter: Random spread of each delay, as a fraction of it.
        pong_timeout: Seconds to wait for a pong before the connection is
            declared dead; at most ``ping_interval``.
        stale_timeout: Seconds without any message before reconnecting;
            ``None`` disables the check.
        max_connection_age: Replace the connection when it is this old
            (seconds); ``None`` never rotates.
        make_before_break: Replace a connection that reached
            ``max_connection_age`` or was announced to close (a shutdown
            notice) by opening and subscribing the new one first, delivering
            from both without repeating a message, then closing the old one:
            no gap. ``False``: close, then reconnect.
        overlap_timeout: Seconds the two connections may overlap before the
            old one is closed even if the new one has not caught up on every
            stream (such streams are reported as a gap).
        healthy_after: Seconds a connection must stay up before the attempt
            counter resets.
        max_messages_per_second: Outgoing control message rate (token bucket).
        max_frame_size: Largest frame or reassembled message, in bytes.
        subscription_timeout: Seconds to wait for a subscription ack.
        subscription_batch_size: Streams per subscription message.
        max_pending_subscriptions: Bound on streams queued while disconnected.
        extra_headers: HTTP headers added to the upgrade request.
        compression_client_window_bits: The client's LZ77 window, 8 to 15,
            offered as ``client_max_window_bits=N``; ``None`` offers the
            parameter without a value (the server picks, 15 otherwise).
        compression_server_window_bits: Ask the server for a window of at
            most 2**N bytes (``server_max_window_bits=N``, 8 to 15), which
            bounds the inflater's memory; ``None`` leaves it to the server.
        compression_threshold: Outgoing messages shorter than this many
            bytes are sent uncompressed (allowed by the standard, and
            cheaper for tiny control messages); 0 compresses all.
        max_backlog: Messages that may wait behind a handler slower than the
            feed (the socket keeps being read meanwhile). Past it the waiting
            messages are dropped, counted, and reported as a gap ("slow
            consumer") with an error to the error handler.
        max_backlog_bytes: Bytes that may wait, likewise.
        backlog_warning_age: Seconds the oldest waiting message may wait
            before a WARNING is logged (with the backlog's size and age).
        handler_time_slice: Seconds of message handling after which the core
            yields to the event loop (the rest of a read waits in the
            backlog), so that timers, pings and other tasks run even under a
            handler slower than the feed.
        metrics_max_streams: Streams of this client that get Prometheus
            series of their own (``fastws.metrics``); the others are summed
            under ``stream="_other"``, which keeps a scrape small.
        ssl_context: TLS settings for ``wss://`` (e.g. a private CA); by
            default ``wss://`` verifies the server's certificate and host name
            against the system's CAs, and a failure is a connection error,
            never a fallback to plain text.
    """

    url: str
    timeout: float = 10.0
    ping_interval: float = 20.0
    max_reconnect_attempts: int = 10
    reconnect_delay: float = 1.0
    reconnect_backoff: float = 2.0
    enable_compression: bool = False
    max_reconnect_delay: float = 60.0
    reconnect_jitter: float = 0.1
    pong_timeout: float = 10.0
    stale_timeout: Optional[float] = 60.0
    max_connection_age: Optional[float] = None
    make_before_break: bool = True
    overlap_timeout: float = 5.0
    healthy_after: float = 30.0
    max_messages_per_second: float = 5.0
    max_frame_size: int = 10 * 1024 * 1024
    subscription_timeout: float = 10.0
    subscription_batch_size: int = 100
    max_pending_subscriptions: int = 10_000
    extra_headers: Optional[Mapping[str, str]] = field(default=None, hash=False)
    compression_client_window_bits: Optional[int] = None
    compression_server_window_bits: Optional[int] = None
    compression_threshold: int = 64
    max_backlog: int = 100_000
    max_backlog_bytes: int = 128 * 1024 * 1024
    backlog_warning_age: float = 1.0
    handler_time_slice: float = 0.02
    metrics_max_streams: int = 50
    ssl_context: Optional[ssl.SSLContext] = field(default=None, hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _validate_url(self.url)
        _validate_headers(self.extra_headers)
        for name in ("timeout", "ping_interval", "reconnect_delay", "max_reconnect_delay",
                     "pong_timeout", "healthy_after", "max_messages_per_second",
                     "subscription_timeout", "overlap_timeout", "backlog_warning_age",
                     "handler_time_slice"):
            _require_positive(name, getattr(self, name))
        for name in ("stale_timeout", "max_connection_age"):
            value = getattr(self, name)
            if value is not None:
                _require_positive(name, value)
        if self.reconnect_delay > self.max_reconnect_delay:
            raise ValueError("reconnect_delay must not exceed max_reconnect_delay "
                             f"({self.reconnect_delay} > {self.max_reconnect_delay})")
        if self.reconnect_backoff < 1.0 or not math.isfinite(self.reconnect_backoff):
            raise ValueError(f"reconnect_backoff must be a finite number >= 1, got {self.reconnect_backoff!r}")
        if not 0.0 <= self.reconnect_jitter <= 1.0:
            raise ValueError(f"reconnect_jitter must be within [0, 1], got {self.reconnect_jitter!r}")
        if self.pong_timeout > self.ping_interval:
            raise ValueError("pong_timeout must not exceed ping_interval "
                             f"({self.pong_timeout} > {self.ping_interval})")
        for name in ("max_reconnect_attempts",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0 (0 retries forever), got {value!r}")
        for name in ("max_frame_size", "subscription_batch_size", "max_pending_subscriptions", "max_backlog",
                     "max_backlog_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.metrics_max_streams, bool) or not isinstance(self.metrics_max_streams, int) \
                or self.metrics_max_streams < 0:
            raise ValueError(f"metrics_max_streams must be an int >= 0, got {self.metrics_max_streams!r}")
        if self.ssl_context is not None and not self.url.startswith("wss://"):
            raise ValueError("ssl_context is given but the url is not wss://: TLS would not be used")
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise TypeError(f"ssl_context must be an ssl.SSLContext, got {type(self.ssl_context).__name__}")
        if not isinstance(self.enable_compression, bool):
            raise ValueError(f"enable_compression must be a bool, got {self.enable_compression!r}")
        for name in ("compression_client_window_bits", "compression_server_window_bits"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 8 <= value <= 15):
                raise ValueError(f"{name} must be None or an int from 8 to 15, got {value!r}")
        threshold = self.compression_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ValueError(f"compression_threshold must be an int >= 0, got {threshold!r}")


# An HTTP header name is a token (RFC 9110, section 5.6.2).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _validate_url(url: object) -> None:
    """Refuse a URL that cannot name a WebSocket endpoint, saying why."""
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        raise ValueError(f"url must start with ws:// or wss://, got {url!r}")
    if any(c.isspace() for c in url):
        raise ValueError(f"url must not contain a space or other whitespace: {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:    # "Invalid IPv6 URL", "Port out of range", ...
        text = str(exc)
        what = "port" if "port" in text.lower() else "url"
        raise ValueError(f"url {url!r}: invalid {what}: {text}") from None
    if not parts.hostname:
        raise ValueError(f"url {url!r} has no host name")
    if port == 0:
        raise ValueError(f"url {url!r}: port 0 is not a port to connect to")


def _validate_headers(headers: object) -> None:
    """Refuse extra headers that are not a mapping of valid names to single-line strings."""
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        raise TypeError(f"extra_headers must be a mapping of header names to values, "
                        f"got {type(headers).__name__}")
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"extra_headers: {name!r} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise ValueError(f"extra_headers: the value of {name!r} must be a str, got {type(value).__name__}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"extra_headers: the value of {name!r} must not contain a line break")


def _require_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def create_websocket_config(url: str, **overrides: Any) -> WebSocketConfig:
    """Build a validated ``WebSocketConfig`` for ``url`` with field overrides.

    Raises:
        TypeError: an override names no field.
        ValueError: a value is out of range.
    """
    known = {f.name for f in dataclasses.fields(WebSocketConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown WebSocketConfig field(s): {', '.join(unknown)}")
    return WebSocketConfig(url=url, **overrides)


def limit_changes(config: WebSocketConfig, *, max_messages_per_second: float, connection_lifetime: float,
                  rotate_after: float) -> dict[str, Any]:
    """The changes that bring ``config`` within an exchange's limits (for an adapter).

    Args:
        config: The user's settings.
        max_messages_per_second: The fastest the adapter may send.
        connection_lifetime: Seconds after which the exchange cuts a connection.
        rotate_after: The ``max_connection_age`` to use when the user's is
            missing or not below ``connection_lifetime``.

    Returns:
        Field -> value for ``dataclasses.replace``; empty when ``config`` is
        already within the limits.

    Raises:
        TypeError: ``config`` is not a ``WebSocketConfig``.
    """
    if not isinstance(config, WebSocketConfig):
        raise TypeError(f"config must be a WebSocketConfig (e.g. from create_websocket_config() or the "
                        f"exchange's config factory), got {type(config).__name__}")
    changes: dict[str, Any] = {}
    if config.max_messages_per_second > max_messages_per_second:
        changes["max_messages_per_second"] = max_messages_per_second
    if config.max_connection_age is None or config.max_connection_age >= connection_lifetime:
        changes["max_connection_age"] = rotate_after
    return changes
