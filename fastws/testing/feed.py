"""A loopback market-data feed server and a client adapter for it.

``FeedServer`` is a scripted picows server on 127.0.0.1: it pushes one message
per subscribed stream and step (``publish``), with per-stream sequence numbers,
and answers the client's TEXT frames through a pluggable control handler.
Faults are injected by calling its methods. Tests and the benchmarks use it, and
an exchange's own simulator can be built on it (a control handler for its
requests, a message builder for its pushes).

The default control handler, ``SubscribeControl``, speaks the loopback feed
protocol: ``{"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params": [...], "id": N}``,
acked with ``{"result": null, "id": N}`` or refused with ``{"error": {"code": C,
"msg": "..."}, "id": N}``; the default message is a ~250-byte depth update
(``depth_message``) wrapped as ``{"stream": ..., "data": ...}``.

``LoopbackFeedClient`` is the adapter for that protocol, written the way the
interface standard writes adapters (``async`` parse, msgspec decode).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Iterable, Optional, Protocol

import msgspec
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from fastws.base import BaseWebSocketInterface
from fastws.errors import SubscriptionRejectedError
from fastws.types import StreamType, SubscriptionAction

__all__ = ["ControlHandler", "FeedConnection", "FeedServer", "LoopbackFeedClient", "SubscribeControl",
           "depth_message", "text_request"]

_decode_request = msgspec.json.Decoder().decode
# Enum member lookups cost ~85 ns each on CPython 3.11: hoisted off the hot path.
_ORDERBOOK = StreamType.ORDERBOOK
_OTHER = StreamType.OTHER
_encode = msgspec.json.Encoder().encode


def depth_message(stream: str, sequence: int, event_time_ms: Optional[int] = None) -> bytes:
    """Build one combined-stream depth update (about 250 bytes) as JSON bytes."""
    symbol = stream.split("@", 1)[0].upper()
    price = 65000 + sequence % 100
    return _encode({
        "stream": stream,
        "data": {
            "e": "depthUpdate",
            "E": event_time_ms if event_time_ms is not None else int(time.time() * 1000),
            "s": symbol,
            "U": sequence,
            "u": sequence,
            "b": [[f"{price}.10", "0.512"], [f"{price - 1}.00", "1.250"]],
            "a": [[f"{price + 1}.20", "0.300"], [f"{price + 2}.50", "2.000"]],
        },
    })


def text_request(transport: WSTransport, frame: WSFrame) -> Optional[bytes]:
    """Server side: echo a CLOSE and disconnect; return a TEXT frame's payload, else None."""
    if frame.msg_type == WSMsgType.CLOSE:
        transport.send_close(frame.get_close_code())
        transport.disconnect()
        return None
    if frame.msg_type != WSMsgType.TEXT:
        return None
    return frame.get_payload_as_bytes()


class FeedConnection(WSListener):
    """Server side of one client connection.

    Attributes:
        server: The ``FeedServer``.
        path: The upgrade request's path.
        streams: Subscribed streams, in subscription order.
    """

    def __init__(self, server: "FeedServer", path: bytes) -> None:
        super().__init__()
        self.server = server
        self.path = path
        self.transport: Optional[WSTransport] = None
        self.streams: dict[str, None] = {}

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.server.connections.append(self)
        self.server.connection_count += 1
        self.server._connected.set()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self in self.server.connections:
            self.server.connections.remove(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.PING:
            self.server.pings_received += 1
            if self.server.answer_pings:
                transport.send_pong(frame.get_payload_as_bytes())
            return
        text = text_request(transport, frame)
        if text is not None:
            self.server.control(self, text)

    def send_text(self, payload: bytes) -> None:
        """Send one TEXT frame (after the server's ``ack_delay``, when set)."""
        if self.server.ack_delay:
            asyncio.get_running_loop().call_later(self.server.ack_delay, self._send_late, payload)
        elif self.transport is not None:
            self.transport.send(WSMsgType.TEXT, payload)

    def _send_late(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, payload)


class ControlHandler(Protocol):
    """Answers a client's TEXT frame: ``handler(connection, text)``.

    It may change ``connection.streams`` and reply with ``connection.send_text``.
    """

    def __call__(self, connection: FeedConnection, text: bytes) -> None:
        """Handle one TEXT frame of ``connection``."""


class SubscribeControl:
    """The loopback feed protocol's control handler (see the module docstring).

    It honours the server's ``reject`` (and names starting with ``bad``),
    ``ignore_requests`` and ``ack_delay``, and logs every decoded request in the
    server's ``requests``.
    """

    def __call__(self, connection: FeedConnection, text: bytes) -> None:
        server = connection.server
        transport = connection.transport
        if transport is None:
            return
        try:
            request = _decode_request(text)
        except msgspec.DecodeError:
            transport.send(WSMsgType.TEXT, _encode({"error": {"code": 3, "msg": "Invalid JSON"}, "id": None}))
            return
        server.requests.append(request)
        if not isinstance(request, dict):
            return
        method, params, request_id = request.get("method"), request.get("params") or [], request.get("id")
        if method not in ("SUBSCRIBE", "UNSUBSCRIBE"):
            transport.send(WSMsgType.TEXT, _encode({"error": {"code": 2, "msg": "Invalid request"},
                                                     "id": request_id}))
            return
        if server.ignore_requests:
            return
        bad = [s for s in params if s in server.reject or s.startswith("bad")]
        if bad:
            reply = {"error": {"code": 2, "msg": f"Invalid request: invalid stream {bad[0]}"}, "id": request_id}
        else:
            for stream in params:
                if method == "SUBSCRIBE":
                    connection.streams[stream] = None
                else:
                    connection.streams.pop(stream, None)
            connection.send_text(_encode({"result": None, "id": request_id}))
            self.applied(connection, method, params)
            return
        connection.send_text(_encode(reply))

    def applied(self, connection: FeedConnection, method: str, streams: list[str]) -> None:
        """Called once a request took effect and its ack was sent (a subclass may send more)."""


class FeedServer:
    """A scripted loopback feed on 127.0.0.1 for tests and benchmarks.

    Use ``async with FeedServer() as server:`` and connect to ``server.url``.

    Args:
        rate: Steps per second of the paced publisher (0: none; call ``publish``).
        control: Answers the clients' TEXT frames (default ``SubscribeControl()``).
        message: ``message(stream, sequence) -> bytes``: the payload of one push
            (default ``depth_message``).
        path: The path of ``url``.
        binary: Pushes are BINARY frames (default TEXT).
        backlog: The listening socket's backlog (connections waiting to be accepted).

    Attributes:
        reject: Stream names answered with an error (also any name starting
            with ``bad``).
        ack_delay: Seconds before each ack is sent (0: at once).
        ignore_requests: Never answer subscription requests.
        answer_pings: Reply to the client's pings (False simulates a peer
            whose pongs are lost).
        requests: Every decoded request received, in order.
        connection_count: Connections accepted so far.
        pings_received: PING frames received from clients so far.
    """

    def __init__(self, rate: float = 0.0, *, control: Optional[ControlHandler] = None,
                 message: Callable[[str, int], bytes] = depth_message, path: str = "/stream",
                 binary: bool = False, backlog: int = 100) -> None:
        self.rate = rate
        self.backlog = backlog
        self.control: ControlHandler = control if control is not None else SubscribeControl()
        self.message = message
        self.path = path
        self.msg_type = WSMsgType.BINARY if binary else WSMsgType.TEXT
        self.reject: set[str] = set()
        self.ack_delay = 0.0
        self.ignore_requests = False
        self.answer_pings = True
        self.pings_received = 0
        self.muted = False
        self.requests: list[Any] = []
        self.connections: list[FeedConnection] = []
        self.connection_count = 0
        self.sequences: dict[str, int] = {}
        self._server: Optional[asyncio.AbstractServer] = None
        self._publisher: Optional[asyncio.Task[None]] = None
        self._connected = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` and ``path`` (default ``/stream``)."""
        return f"ws://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        """Listen on an ephemeral port; start the paced publisher if ``rate``."""
        self._server = await ws_create_server(
            lambda request: FeedConnection(self, request.path), "127.0.0.1", 0,
            enable_auto_pong=False, logger_name="feed-server", backlog=self.backlog)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.rate > 0:
            self._publisher = asyncio.get_running_loop().create_task(self._publish_paced())

    async def stop(self) -> None:
        """Close every connection and the listening socket."""
        if self._publisher is not None:
            self._publisher.cancel()
            try:
                await self._publisher
            except asyncio.CancelledError:
                pass
            self._publisher = None
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.disconnect(graceful=False)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await asyncio.sleep(0)

    async def __aenter__(self) -> "FeedServer":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def subscribed(self) -> set[str]:
        """Streams subscribed on any open connection."""
        return {s for c in self.connections for s in c.streams}

    async def wait_subscribed(self, streams: Iterable[str], timeout: float = 5.0) -> None:
        """Wait until every stream in ``streams`` is subscribed on some connection."""
        wanted = set(streams)
        deadline = time.monotonic() + timeout
        while not wanted <= self.subscribed():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not subscribed within {timeout} s: {wanted - self.subscribed()}")
            await asyncio.sleep(0.005)

    def publish(self, count: int = 1) -> int:
        """Push ``count`` messages on every subscribed stream; return frames sent."""
        sent = 0
        if self.muted:
            return 0
        for connection in list(self.connections):
            transport = connection.transport
            if transport is None or transport.is_disconnected:
                continue
            for _ in range(count):
                for stream in connection.streams:
                    sequence = self.sequences.get(stream, 0) + 1
                    self.sequences[stream] = sequence
                    transport.send(self.msg_type, self.message(stream, sequence))
                    sent += 1
        return sent

    def send_raw(self, payload: bytes, msg_type: WSMsgType = WSMsgType.TEXT) -> None:
        """Send ``payload`` unchanged to every connection (for malformed input)."""
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.send(msg_type, payload)

    def send_fragmented(self, payload: bytes, pieces: int) -> None:
        """Send ``payload`` as one TEXT message split into ``pieces`` frames."""
        size = max(1, -(-len(payload) // pieces))
        chunks = [payload[i:i + size] for i in range(0, len(payload), size)]
        for connection in self.connections:
            transport = connection.transport
            if transport is None:
                continue
            for index, chunk in enumerate(chunks):
                transport.send(WSMsgType.TEXT if index == 0 else WSMsgType.CONTINUATION, chunk,
                               fin=index == len(chunks) - 1)

    def drop_all(self, code: Optional[int] = 1001) -> None:
        """Close every connection: with a close frame of ``code`` (default 1001), or reset if None."""
        for connection in list(self.connections):
            transport = connection.transport
            if transport is None:
                continue
            if code is None:
                transport.disconnect(graceful=False)
            else:
                transport.send_close(WSCloseCode(code))
                transport.disconnect()

    async def wait_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``connection_count`` reaches ``count``."""
        deadline = time.monotonic() + timeout
        while self.connection_count < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.connection_count} connection(s) after {timeout} s, wanted {count}")
            await asyncio.sleep(0.005)

    async def _publish_paced(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while True:
            next_at += interval
            self.publish(1)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


class LoopbackFeedClient(BaseWebSocketInterface):
    """Adapter for ``FeedServer``, in the interface standard's style.

    Messages handed to the handler are the ``{"stream": ..., "data": ...}``
    dicts; acks and errors are control messages and never reach it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_id = 0
        self._decode = msgspec.json.Decoder().decode

    async def _connect(self) -> None:
        await self._open_websocket()

    async def _send_subscription_message(self, streams: list[str],
                                         action: SubscriptionAction) -> Optional[Awaitable[Any]]:
        self._next_id += 1
        ack = self._expect_ack(self._next_id)
        method = "SUBSCRIBE" if action is SubscriptionAction.SUBSCRIBE else "UNSUBSCRIBE"
        await self.send_message({"method": method, "params": streams, "id": self._next_id})
        return ack

    async def _parse_message(self, raw_message: Any) -> Optional[dict[str, Any]]:
        message: dict[str, Any] = self._decode(raw_message)
        if "stream" in message:
            return message
        if "id" in message:
            error = message.get("error")
            if error is None:
                self._resolve_ack(message["id"])
            else:
                self._reject_ack(message["id"], SubscriptionRejectedError(
                    f"{self.exchange}: subscription rejected: {error.get('msg')}",
                    exchange_code=error.get("code"), exchange_message=error.get("msg")))
            return None
        return message

    def _extract_stream_info(self, message: dict[str, Any]) -> Optional[tuple[str, StreamType]]:
        stream = message.get("stream")
        if stream is None:
            return None
        return stream, _ORDERBOOK if "depth" in stream else _OTHER
