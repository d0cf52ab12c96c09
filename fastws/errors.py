"""The one error type users catch: ``ExchangeAPIError`` and its subclasses."""
from __future__ import annotations

__all__ = [
    "ExchangeAPIError",
    "SlowConsumerError",
    "InvalidMessageError",
    "RateLimitError",
    "SubscriptionRejectedError",
    "ConnectionFailedError",
    "ProxyFailedError",
    "ExchangeTimeoutError",
    "MessageHandlerError",
    "SequenceGapError",
]


class ExchangeAPIError(Exception):
    """An error from an exchange connection, with an HTTP-style code.

    Args:
        code: 400 invalid message, 403 rejected subscription, 408 timeout,
            429 rate limit, 500 connection or handler failure.
        message: What went wrong, in words a user can act on.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ConnectionFailedError(ExchangeAPIError):
    """The connection could not be opened or kept (code 500)."""

    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(code, message)


class ProxyFailedError(ConnectionFailedError):
    """A connection through the configured proxy failed (code 500).

    The message names the proxy with its credentials hidden and says what
    failed: reaching the proxy, the tunnel it was asked for (refused, wrong
    credentials), or what went through it (TLS, the WebSocket upgrade).

    Attributes:
        proxy: The proxy URL, credentials replaced by ``***``.
        stage: ``"connect"`` (the proxy could not be reached), ``"tunnel"``
            (it did not open the tunnel) or ``"through"`` (TLS or the upgrade
            through the tunnel failed).
        status: The proxy's answer where it gave one: the HTTP status of the
            CONNECT (407 or 401: wrong credentials; 403: refused) or the SOCKS reply
            code; ``None`` otherwise.
        retryable: Whether another attempt may succeed: ``False`` for
            refused credentials and for refusals that repeat the same way
            (the client then fails at once instead of retrying).
    """

    def __init__(self, message: str, proxy: str, stage: str, status: int | None = None,
                 retryable: bool = True) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.stage = stage
        self.status = status
        self.retryable = retryable


class InvalidMessageError(ExchangeAPIError):
    """A message could not be parsed or classified (code 400)."""

    def __init__(self, message: str, payload: bytes | None = None) -> None:
        super().__init__(400, message)
        self.payload = payload


class SubscriptionRejectedError(ExchangeAPIError):
    """The exchange rejected a subscription (code 403).

    ``exchange_code`` and ``exchange_message`` carry the exchange's own words;
    ``rejected_streams`` names the refused streams when the exchange refuses
    only part of a request (``None``: the whole request).
    """

    def __init__(self, message: str, exchange_code: int | None = None,
                 exchange_message: str | None = None,
                 rejected_streams: list[str] | None = None) -> None:
        super().__init__(403, message)
        self.exchange_code = exchange_code
        self.exchange_message = exchange_message
        self.rejected_streams = rejected_streams


class ExchangeTimeoutError(ExchangeAPIError):
    """An acknowledgement or a connection did not come in time (code 408)."""

    def __init__(self, message: str) -> None:
        super().__init__(408, message)


class RateLimitError(ExchangeAPIError):
    """A limit of the exchange would be or was exceeded (code 429)."""

    def __init__(self, message: str) -> None:
        super().__init__(429, message)


class MessageHandlerError(ExchangeAPIError):
    """The user's message handler raised (code 500); the cause is chained."""

    def __init__(self, message: str) -> None:
        super().__init__(500, message)



class SequenceGapError(ExchangeAPIError):
    """Messages of a stream were missed: its sequence numbers skipped (code 409).

    The feed goes on; a strategy that keeps a book from this stream must
    resynchronise it.

    Attributes:
        stream: The stream with the gap.
        expected: The sequence number that should have come next.
        received: The first sequence number that came instead.
        missing: How many sequence numbers were skipped.
    """

    def __init__(self, message: str, stream: str, expected: int, received: int) -> None:
        super().__init__(409, message)
        self.stream = stream
        self.expected = expected
        self.received = received
        self.missing = received - expected


class SlowConsumerError(ExchangeAPIError):
    """Messages already received were dropped: the handler fell too far behind (code 503).

    The backlog of messages waiting for a handler slower than the feed passed
    ``max_backlog`` (or ``max_backlog_bytes``) and was abandoned; the gap is
    in ``health_check()["gaps"]`` with the exact count.

    Attributes:
        dropped: How many messages were dropped.
    """

    def __init__(self, message: str, dropped: int) -> None:
        super().__init__(503, message)
        self.dropped = dropped
