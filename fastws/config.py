"""Connection settings: ``WebSocketConfig`` and ``create_websocket_config``."""
from __future__ import annotations

import dataclasses
import math
import re
import ssl
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit

from fastws.policy import Lossless, Policy, PolicyLike, as_policy

__all__ = ["ProxyURL", "WebSocketConfig", "create_websocket_config", "limit_changes", "redact_proxy_url"]


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
        slow_consumer_policy: What waits of a stream while its async handler
            is behind (``fastws.policy``): ``Lossless()`` (the default),
            ``Latest()``, ``DropOldest(n)``, or a name (``"latest"``). A
            lossy default applies to the streams the adapter calls
            snapshot-like; the others stay lossless.
        stream_policies: Policies by stream name, over the default (names
            accepted too). A lossy one on a stream that is not snapshot-like
            is refused when the stream is subscribed (``ValueError``).
        metrics_max_streams: Streams of this client that get Prometheus
            series of their own (``fastws.metrics``); the others are summed
            under ``stream="_other"``, which keeps a scrape small.
        ssl_context: TLS settings for ``wss://`` (e.g. a private CA); by
            default ``wss://`` verifies the server's certificate and host name
            against the system's CAs, and a failure is a connection error,
            never a fallback to plain text.
        loop_lag_interval: Seconds between the event-loop lag monitor's
            wake-ups (one monitor per event loop, shared by its clients; the
            first client's settings are used).
        loop_lag_window: Seconds of lag samples ``health_check()["loop_lag"]``
            summarises.
        cadence_factor: A stream silent for this many times its expected
            interval (while the connection delivers other streams) is
            reported and resubscribed alone; ``None`` disables the per-stream
            cadence watchdog.
        cadence_floor: A stream is never judged silent for less than this
            many seconds.
        cadence_min_messages: Messages a stream must have delivered on the
            connection before its cadence is judged.
        redundancy: Live connections per shard carrying the same streams
            (1 to 8); each message is delivered once, by the first to bring
            it (fastws/client/redundancy.py). A lost connection is replaced
            while the others deliver: a gap only when every one is down.
        urls: More endpoints for the redundant connections: connection k
            uses ``[url, *urls][k % (1 + len(urls))]``.
        redundancy_max_lag: Seconds a connection may run behind the first
            arrivals (its p99 over one check) before it is replaced.
        redundancy_check_interval: Seconds between those checks.
        proxy: Connect through this proxy: ``http://host:port`` (HTTP
            CONNECT), ``https://host:port`` (CONNECT over TLS to the proxy),
            ``socks4://host:port`` or ``socks5://host:port``, with credentials
            as ``socks5://user:password@host:port`` (percent-encoded). A
            ``wss://`` URL is TLS end to end through the tunnel, the
            exchange's certificate checked as without a proxy. Stored as a
            ``ProxyURL``: its ``repr``, the logs, errors and
            ``health_check()`` show the credentials as ``***``.
        proxy_ssl_context: TLS settings for an ``https://`` proxy (e.g. a
            private CA); by default its certificate is checked against the
            system's CAs.
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
    slow_consumer_policy: PolicyLike = field(default_factory=Lossless)
    stream_policies: Optional[Mapping[str, PolicyLike]] = field(default=None, hash=False)
    metrics_max_streams: int = 50
    ssl_context: Optional[ssl.SSLContext] = field(default=None, hash=False, compare=False, repr=False)
    # Loop lag monitor and per-stream cadence watchdog (issue 15).
    loop_lag_interval: float = 0.1
    loop_lag_window: float = 60.0
    cadence_factor: Optional[float] = 10.0
    cadence_floor: float = 10.0
    cadence_min_messages: int = 20
    # Redundant connections (fastws/client/redundancy.py).
    redundancy: int = 1
    urls: tuple[str, ...] = ()
    redundancy_max_lag: float = 0.25
    redundancy_check_interval: float = 1.0
    proxy: Optional[str] = None
    proxy_ssl_context: Optional[ssl.SSLContext] = field(default=None, hash=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _validate_url(self.url)
        if self.proxy is not None:
            object.__setattr__(self, "proxy", ProxyURL(self.proxy))
        _validate_proxy_ssl_context(self.proxy, self.proxy_ssl_context)
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
        self._validate_watchdogs()
        _validate_redundancy(self)
        _normalize_policies(self)

    def _validate_watchdogs(self) -> None:
        """The loop lag monitor's and the cadence watchdog's settings."""
        for name in ("loop_lag_interval", "loop_lag_window", "cadence_floor"):
            _require_positive(name, getattr(self, name))
        if self.cadence_factor is not None:
            _require_positive("cadence_factor", self.cadence_factor)
        if self.loop_lag_window < self.loop_lag_interval:
            raise ValueError("loop_lag_window must not be shorter than loop_lag_interval "
                             f"({self.loop_lag_window} < {self.loop_lag_interval})")
        count = self.cadence_min_messages
        if isinstance(count, bool) or not isinstance(count, int) or count < 2:
            raise ValueError(f"cadence_min_messages must be an int >= 2 (an interval needs two messages), "
                             f"got {count!r}")


def _validate_redundancy(config: "WebSocketConfig") -> None:
    """Refuse a redundancy setting the core cannot carry, saying why."""
    # The core judges first arrivals between at most 8 paths (core/arrival.pxd).
    value = config.redundancy
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
        raise ValueError(f"redundancy must be an int from 1 to 8, got {value!r}")
    if isinstance(config.urls, (str, bytes)) or not isinstance(config.urls, tuple):
        raise TypeError(f"urls must be a tuple of ws:// or wss:// URLs, got {type(config.urls).__name__}")
    for url in config.urls:
        _validate_url(url)
    for name in ("redundancy_max_lag", "redundancy_check_interval"):
        _require_positive(name, getattr(config, name))


def _normalize_policies(config: WebSocketConfig) -> None:
    """Turn the policy fields' names into policies (refusing unknown ones), in place."""
    try:
        object.__setattr__(config, "slow_consumer_policy", as_policy(config.slow_consumer_policy))
        if config.stream_policies is not None:
            if not isinstance(config.stream_policies, Mapping):
                raise TypeError(f"stream_policies must be a mapping of stream names to policies, "
                                f"got {type(config.stream_policies).__name__}")
            object.__setattr__(config, "stream_policies",
                               {str(name): as_policy(value) for name, value in config.stream_policies.items()})
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"slow-consumer policy: {exc}") from None


def policies_of(config: WebSocketConfig) -> tuple[Policy, Mapping[str, Policy]]:
    """The config's default policy and per-stream policies, as policies (see ``_normalize_policies``)."""
    return as_policy(config.slow_consumer_policy), {
        name: as_policy(value) for name, value in (config.stream_policies or {}).items()}


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


class ProxyURL(str):
    """A validated proxy URL whose ``repr`` hides its credentials.

    The text is the URL as given, which the connection uses; ``repr()`` and
    ``redacted`` show ``scheme://***@host:port`` when it carries a user name
    or password, so a config that is printed, logged or put into an error
    message never shows them.

    Raises:
        TypeError: ``url`` is not a str.
        ValueError: ``url`` is not ``http``, ``https``, ``socks4`` or
            ``socks5`` with a host and a port (the message shows it redacted).
    """

    __slots__ = ()

    def __new__(cls, url: str) -> "ProxyURL":
        _validate_proxy(url)
        return super().__new__(cls, url)

    @property
    def redacted(self) -> str:
        """The URL with its user name and password replaced by ``***``."""
        return redact_proxy_url(self)

    def __repr__(self) -> str:
        return repr(self.redacted)


PROXY_SCHEMES = ("http", "https", "socks4", "socks5")


def redact_proxy_url(url: str) -> str:
    """``url`` with the user information (``user:password@``) replaced by ``***@``.

    Works on any text, valid URL or not, so that error messages about a
    malformed proxy URL can quote it safely.
    """
    url = str(url)      # a plain str: a ProxyURL's own repr calls this function
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = len(rest)
    for delimiter in "/?#":
        index = rest.find(delimiter)
        if index != -1:
            end = min(end, index)
    authority = rest[:end]
    if "@" not in authority:
        return url
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}***@{host}{rest[end:]}"


def _validate_proxy(url: object) -> None:
    """Refuse a proxy URL picows and python-socks could not use, saying why (credentials hidden)."""
    if not isinstance(url, str):
        raise TypeError(f"proxy must be a URL string such as 'socks5://host:1080', got {type(url).__name__}")
    shown = repr(redact_proxy_url(url))
    if any(c.isspace() for c in url):
        raise ValueError(f"proxy {shown} must not contain a space or other whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:    # "Invalid IPv6 URL", "Port out of range", ...: the text may quote the URL
        raise ValueError(f"proxy {shown}: invalid host or port") from None
    if parts.scheme not in PROXY_SCHEMES:
        raise ValueError(f"proxy {shown}: the scheme must be one of {', '.join(PROXY_SCHEMES)}")
    if not parts.hostname:
        raise ValueError(f"proxy {shown} has no host name")
    if port is None or port == 0:
        raise ValueError(f"proxy {shown} needs a port (proxies have no standard port), "
                         "e.g. http://host:3128 or socks5://host:1080")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"proxy {shown}: a proxy URL has no path, query or fragment")
    if parts.scheme.startswith("socks") and parts.username is not None and parts.password is None:
        # python-socks drops a user name that comes without a password.
        raise ValueError(f"proxy {shown}: a user name needs a password (user:password@)")


def _validate_proxy_ssl_context(proxy: Optional[str], context: object) -> None:
    """Refuse a ``proxy_ssl_context`` that would not be used, or is not a context."""
    if context is None:
        return
    if proxy is None or not proxy.startswith("https://"):
        raise ValueError("proxy_ssl_context is given but the proxy is not https://: TLS to the proxy "
                         "would not be used")
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"proxy_ssl_context must be an ssl.SSLContext, got {type(context).__name__}")


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
    if isinstance(overrides.get("urls"), list):
        overrides["urls"] = tuple(overrides["urls"])
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
