"""Binance's control requests, server side: written once for every loopback server.

Binance's market-stream endpoint takes JSON requests ``{"method": ..., "params":
[...], "id": N}`` in TEXT frames and answers each with ``{"result": ..., "id": N}``
or ``{"error": {"code": C, "msg": "..."}, "id": N}`` (PROTOCOLS.md, Binance).
``BinanceControl`` holds that protocol: decoding, the methods (``SUBSCRIBE``,
``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``, ``GET_PROPERTY``),
stream-name validation (``exchanges.binance.streams``), the per-connection stream
limit and the error replies. The simulator, the replay profile and the benchmark
servers each give it a ``ControlSession`` (their connection's subscriptions) and
send the reply it returns.

Example::

    control = BinanceControl()
    reply = control.handle(session, b'{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
    # reply == {"result": None, "id": 1}; session.subscribe(["btcusdt@trade"]) was called
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import msgspec

from exchanges.binance.streams import MAX_STREAMS_PER_CONNECTION, is_valid_stream

__all__ = ["BinanceControl", "ControlSession", "RequestError", "StreamSet", "encode_reply", "error_reply"]

_decode = msgspec.json.Decoder().decode
encode_reply: Callable[[Any], bytes] = msgspec.json.Encoder().encode
"""Encode a reply dict as the bytes of one TEXT frame."""


class RequestError(Exception):
    """A request answered with ``{"error": {"code": code, "msg": msg}, "id": ...}``.

    Args:
        code: Binance's error code (0 unknown property, 1 invalid value type,
            2 invalid request, 3 invalid JSON).
        msg: Binance's error text.
    """

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


class ControlSession(Protocol):
    """The server connection a ``BinanceControl`` acts on.

    Attributes:
        subscriptions: The connection's streams, in subscription order.
        combined: Payloads are wrapped as ``{"stream": ..., "data": ...}``.
        max_streams: Streams the connection may hold.
    """

    combined: bool

    @property
    def subscriptions(self) -> dict[str, None]:
        """The connection's streams, in subscription order."""

    @property
    def max_streams(self) -> int:
        """Streams the connection may hold."""

    def subscribe(self, names: list[str]) -> None:
        """Add streams not yet held; may raise ``RequestError`` to refuse them."""

    def unsubscribe(self, names: list[str]) -> None:
        """Remove streams."""


class BinanceControl:
    """Binance's control requests, server side (see the module docstring).

    Args:
        validate: Refuse stream names ``exchanges.binance.streams.is_valid_stream``
            rejects (a replay server plays whatever was recorded: False).
    """

    def __init__(self, *, validate: bool = True) -> None:
        self.validate = validate

    def parse(self, text: bytes) -> Any:
        """The decoded request.

        Raises:
            RequestError: code 3, the text is not JSON.
        """
        try:
            return _decode(text)
        except msgspec.DecodeError as exc:
            raise RequestError(3, f"Invalid JSON: {exc}") from None

    def handle(self, session: ControlSession, text: bytes) -> dict[str, Any]:
        """Decode and answer one TEXT frame; return the reply."""
        try:
            request = self.parse(text)
        except RequestError as exc:
            return error_reply(exc, None)
        return self.answer(session, request)

    def answer(self, session: ControlSession, request: Any) -> dict[str, Any]:
        """Apply one decoded request to ``session``; return the reply."""
        request_id = request.get("id") if isinstance(request, dict) else None
        try:
            if not isinstance(request, dict):
                raise RequestError(2, "Invalid request: expected a JSON object")
            method = request.get("method")
            handler = self._METHODS.get(method) if isinstance(method, str) else None
            if handler is None:
                raise RequestError(2, "Invalid request: unknown method")
            result = handler(self, session, request.get("params"))
        except RequestError as exc:
            return error_reply(exc, request_id)
        return {"result": result, "id": request_id}

    def _streams(self, params: Any) -> list[str]:
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise RequestError(2, "Invalid request: 'params' must be a list of stream names")
        if self.validate and not all(is_valid_stream(p) for p in params):
            raise RequestError(2, "Invalid request: invalid stream")
        return list(dict.fromkeys(params))

    def _subscribe(self, session: ControlSession, params: Any) -> None:
        added = [s for s in self._streams(params) if s not in session.subscriptions]
        limit = session.max_streams
        if len(session.subscriptions) + len(added) > limit:
            raise RequestError(2, f"Invalid request: too many streams, at most {limit} streams per connection")
        session.subscribe(added)

    def _unsubscribe(self, session: ControlSession, params: Any) -> None:
        session.unsubscribe(self._streams(params))

    def _list_subscriptions(self, session: ControlSession, params: Any) -> list[str]:
        return list(session.subscriptions)

    def _set_property(self, session: ControlSession, params: Any) -> None:
        _property_name(params, 2)
        if not isinstance(params[1], bool):
            raise RequestError(1, "Invalid value type: expected Boolean")
        session.combined = params[1]

    def _get_property(self, session: ControlSession, params: Any) -> bool:
        _property_name(params, 1)
        return session.combined

    _METHODS: dict[str, Callable[["BinanceControl", ControlSession, Any], Any]] = {
        "SUBSCRIBE": _subscribe, "UNSUBSCRIBE": _unsubscribe, "LIST_SUBSCRIPTIONS": _list_subscriptions,
        "SET_PROPERTY": _set_property, "GET_PROPERTY": _get_property,
    }


def error_reply(error: RequestError, request_id: Any) -> dict[str, Any]:
    """The error reply of ``error`` to the request ``request_id``."""
    return {"error": {"code": error.code, "msg": error.msg}, "id": request_id}


def _property_name(params: Any, count: int) -> None:
    if not isinstance(params, list) or len(params) != count:
        raise RequestError(2, f"Invalid request: 'params' must hold {count} value(s)")
    if params[0] != "combined":
        raise RequestError(0, "Unknown property")


class StreamSet:
    """A plain ``ControlSession``: a set of streams and the ``combined`` property.

    Args:
        max_streams: Streams it may hold (Binance: 1024).
    """

    def __init__(self, max_streams: int = MAX_STREAMS_PER_CONNECTION) -> None:
        self.subscriptions: dict[str, None] = {}
        self.combined = True
        self.max_streams = max_streams

    def subscribe(self, names: list[str]) -> None:
        """Add streams."""
        self.subscriptions.update(dict.fromkeys(names))

    def unsubscribe(self, names: list[str]) -> None:
        """Remove streams."""
        for name in names:
            self.subscriptions.pop(name, None)
