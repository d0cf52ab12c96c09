"""What the exchange simulators share: one connection's life cycle and one server's.

``SimConnection`` is the server side of one client connection: its timers (cancelled at
disconnect), the close handshake with a deadline, the TCP reset, the incoming-rate
window, the subscriptions and the dispatch of incoming frames to ``_on_request``.
``Simulator`` is a picows server on 127.0.0.1 (port 0) around a ``SyntheticMarket``:
the paced publisher, ``step(n)``, the observation helpers and the fault commands
every exchange has. An exchange's simulator subclasses both and adds its protocol:
``_accept`` (routing an upgrade request), ``_symbol_of`` (a subscription's symbol),
``_publish_step`` (turning a market step into frames) and its requests and replies.
"""
from __future__ import annotations

import asyncio
import ssl
import logging
import time
from collections import deque
from typing import Any, Callable, Generic, Iterable, Optional, TypeVar

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from fastws.testing.feed import text_request
from fastws.testing.market import StepResult, SyntheticMarket

__all__ = ["SimConnection", "Simulator"]

_CLOSE_TIMEOUT = 1.0    # seconds a server-initiated close waits for the client's CLOSE

C = TypeVar("C", bound="SimConnection")
S = TypeVar("S", bound="Simulator[Any]")


class SimConnection(WSListener):
    """The server side of one client connection (see the subclasses for the attributes)."""

    sim: "Simulator[Any]"

    def __init__(self, sim: "Simulator[Any]", path: str, subscriptions: Iterable[str] = ()) -> None:
        WSListener.__init__(self)
        self.sim = sim
        self.id = 0
        self.path = path
        self.requests: list[Any] = []
        self.connected_at = 0.0
        self.last_message_at = 0.0
        self.muted = False
        self.close_code: Optional[int] = None
        self.transport: Optional[WSTransport] = None
        self.max_incoming_in_window = 0
        self.sent_counts: dict[str, int] = {}
        self._subscriptions: dict[str, None] = dict.fromkeys(subscriptions)
        self._closing = False
        self._incoming: deque[float] = deque()
        self._timers: set[asyncio.TimerHandle] = set()

    @property
    def is_open(self) -> bool:
        """Connected and not closing."""
        return self.transport is not None and not self.transport.is_disconnected and not self._closing

    def __repr__(self) -> str:
        path = self.path.split("?", 1)[0]      # the query may hold a listen key
        return f"<{type(self).__name__} {self.id} {path} subscriptions={len(self._subscriptions)}>"

    # ------------------------------------------------------------------ life cycle

    def on_ws_connected(self, transport: WSTransport) -> None:
        sim = self.sim
        self.transport = transport
        self.connected_at = self.last_message_at = time.monotonic()
        sim.connection_count += 1
        self.id = sim.connection_count
        sim._connections.append(self)
        if sim.max_connection_age is not None:
            self._later(sim.max_connection_age, self.close, WSCloseCode.GOING_AWAY.value,
                        "Connection age limit reached")
        # The query may hold a listen key: never logged.
        sim.log.debug("connection %d on %s", self.id, self.path.split("?", 1)[0])

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._cancel_timers()
        if self in self.sim._connections:
            self.sim._connections.remove(self)
        self.sim.log.debug("connection %d closed", self.id)

    def _later(self, delay: float, callback: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """``call_later`` whose handle ``stop()`` and a disconnect cancel."""
        def run() -> None:
            self._timers.discard(handle)
            callback(*args)
        handle = asyncio.get_running_loop().call_later(delay, run)
        self._timers.add(handle)
        return handle

    def _cancel_timers(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start a close handshake; disconnect at the client's CLOSE or after a second."""
        transport = self.transport
        if transport is None or transport.is_disconnected or self._closing:
            return
        self._closing = True
        self._cancel_timers()
        transport.send_close(WSCloseCode(code), reason.encode())
        self._later(_CLOSE_TIMEOUT, transport.disconnect)

    def reset(self) -> None:
        """Drop the TCP connection without a close handshake."""
        if self.transport is not None:
            self._closing = True
            self.transport.disconnect(graceful=False)

    def send(self, payload: bytes, binary: bool = False) -> None:
        """Send one frame unless closing (muting does not apply: tests call this on purpose)."""
        if self.transport is not None and not self._closing:
            self.transport.send(WSMsgType.BINARY if binary else WSMsgType.TEXT, payload)

    def _frames(self, name: str, payloads: list[bytes], cache: dict[str, list[bytes]]) -> list[bytes]:
        """The frames carrying ``payloads`` of subscription ``name`` on this connection.

        ``cache`` is shared by the connections of one delivery, for a variant built once.
        """
        return payloads

    # ------------------------------------------------------------------ incoming

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            text_request(transport, frame)
            return
        if self._closing or not self._count_incoming():
            return
        if msg_type == WSMsgType.PING:
            if not self.muted:
                transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type == WSMsgType.PONG:
            self._on_pong(frame.get_payload_as_bytes())
        else:
            text = text_request(transport, frame)
            if text is not None:
                self._on_request(text)

    def _on_request(self, text: bytes) -> None:
        """A TEXT frame from the client."""

    def _on_pong(self, payload: bytes) -> None:
        """A PONG frame from the client."""

    def _on_mute(self) -> None:
        """``mute()`` was called on this connection."""

    def _incoming_limit(self) -> int:
        """Frames the client may send within any 1-s window."""
        raise NotImplementedError

    def _over_limit(self) -> bool:
        """The client sent one frame too many: react; return True to drop the frame."""
        return False

    def _count_incoming(self) -> bool:
        """Record one incoming frame; return False when it is over the limit and dropped."""
        now = self.last_message_at = time.monotonic()
        window = self._incoming
        window.append(now)
        while window[0] <= now - 1.0:
            window.popleft()
        count = len(window)
        if count > self.max_incoming_in_window:
            self.max_incoming_in_window = count
            self.sim.max_incoming_in_window = max(self.sim.max_incoming_in_window, count)
        limit = self._incoming_limit()
        if count <= limit:
            return True
        violation = f"connection {self.id} ({self.path}): {count} frames within 1 s, limit {limit}"
        self.sim.log.warning("rate limit: %s", violation)
        self.sim.violations.append(violation)
        return not self._over_limit()


class Simulator(Generic[C]):
    """A loopback exchange server on 127.0.0.1 around one ``SyntheticMarket``.

    Args:
        rate: Market steps per second of the paced publisher; 0: no publisher,
            the test calls ``step(n)``.
        max_connection_age: Seconds after which the server closes a connection with
            1001; None: never.
        seed: Seed of the synthetic market.
        depth_levels: Book levels per side.
    """

    log: logging.Logger
    _server_name = "sim"            # picows logger name
    _data_binary = False            # market data in BINARY (else TEXT) frames

    def __init__(self, *, rate: float, max_connection_age: Optional[float], seed: int,
                 depth_levels: int) -> None:
        self.rate = rate
        self.max_connection_age = max_connection_age
        self.market = SyntheticMarket(seed=seed, depth_levels=depth_levels)
        self.connection_count = 0
        self.violations: list[str] = []
        self.max_incoming_in_window = 0
        self.sent_counts: dict[str, int] = {}
        self._connections: list[C] = []
        self._skip: dict[str, int] = {}
        self._server: Optional[asyncio.AbstractServer] = None
        self._publisher: Optional[asyncio.TimerHandle] = None
        self._publish_due = 0.0
        self._timers: set[asyncio.TimerHandle] = set()
        self.port = 0
        # Set before start() to serve TLS (wss://), e.g. with a test CA's certificate.
        self.ssl_context: Optional[ssl.SSLContext] = None

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` (``wss://`` with an ``ssl_context``; no path)."""
        return f"{'wss' if self.ssl_context is not None else 'ws'}://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1; start the publisher if ``rate`` > 0."""
        extra: dict[str, Any] = {"ssl": self.ssl_context} if self.ssl_context is not None else {}
        self._server = await ws_create_server(self._accept, "127.0.0.1", 0, enable_auto_pong=False,
                                              logger_name=self._server_name, **extra)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.rate > 0:
            self._publish_due = asyncio.get_running_loop().time()
            self._publish()
        self.log.debug("listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection; cancel the publisher and every timer; close the socket."""
        if self._publisher is not None:
            self._publisher.cancel()
            self._publisher = None
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        transports = []
        for connection in list(self._connections):
            connection._cancel_timers()
            if connection.transport is not None:
                transports.append(connection.transport)
                connection.transport.disconnect(graceful=False)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if transports:
            try:
                await asyncio.wait_for(asyncio.gather(*(t.wait_disconnected() for t in transports),
                                                      return_exceptions=True), 1.0)
            except asyncio.TimeoutError:
                self.log.warning("%d connection(s) still open after stop()", len(self._connections))

    async def __aenter__(self: S) -> S:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _accept(self, request: WSUpgradeRequest) -> Optional[C]:
        """A listener for an upgrade request, or None (404)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ observation

    @property
    def connections(self) -> list[C]:
        """Open connections, oldest first."""
        return list(self._connections)

    def subscribed(self) -> set[str]:
        """Subscriptions of any open connection."""
        return {s for c in self._connections for s in c._subscriptions}

    async def _poll(self, done: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{what()} after {timeout} s")
            await asyncio.sleep(0.002)

    async def wait_subscribed(self, names: Iterable[str], timeout: float = 5.0) -> None:
        """Wait until every one of ``names`` is subscribed on an open connection."""
        wanted = set(names)
        await self._poll(lambda: wanted <= self.subscribed(), timeout,
                         lambda: f"not subscribed: {sorted(wanted - self.subscribed())}")

    async def wait_connections(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``connection_count`` (accepted so far) reaches ``count``."""
        await self._poll(lambda: self.connection_count >= count, timeout,
                         lambda: f"{self.connection_count} connection(s), wanted {count},")

    # ------------------------------------------------------------------ market data

    def _symbol_of(self, name: str) -> Optional[str]:
        """The uppercase symbol a subscription follows; None for none."""
        raise NotImplementedError

    def _publish_step(self, results: list[StepResult], skipped: set[str],
                      subscribers: dict[str, list[C]]) -> int:
        """Send the frames of one market step to ``subscribers``; return the frames sent."""
        raise NotImplementedError

    def step(self, n: int = 1) -> int:
        """Advance the market ``n`` times and publish each step; return the frames sent.

        Every symbol that an open connection subscribes to advances, muted
        connections included (they miss the updates).
        """
        sent = 0
        for _ in range(n):
            subscribers: dict[str, list[C]] = {}
            for connection in self._connections:
                for name in connection._subscriptions:
                    subscribers.setdefault(name, []).append(connection)
            symbols = list(dict.fromkeys(s for s in map(self._symbol_of, subscribers) if s))
            if not symbols:
                break
            sent += self._publish_step(self.market.step(symbols), self._take_skips(symbols), subscribers)
        return sent

    def _take_skips(self, symbols: list[str]) -> set[str]:
        skipped = set()
        for symbol in symbols:
            left = self._skip.get(symbol, 0)
            if left > 0:
                self._skip[symbol] = left - 1
                skipped.add(symbol)
        return skipped

    def _deliver(self, name: str, payloads: list[bytes], connections: list[C]) -> int:
        """Send ``payloads`` of subscription ``name`` to the open, unmuted ``connections``."""
        if not payloads:
            return 0
        sent = 0
        msg_type = WSMsgType.BINARY if self._data_binary else WSMsgType.TEXT
        cache: dict[str, list[bytes]] = {}
        for connection in connections:
            if connection.muted or not connection.is_open:
                continue
            frames = connection._frames(name, payloads, cache)
            send = connection.transport.send  # type: ignore[union-attr]
            for frame in frames:
                send(msg_type, frame)
            connection.sent_counts[name] = connection.sent_counts.get(name, 0) + len(frames)
            sent += len(frames)
        if sent:
            self.sent_counts[name] = self.sent_counts.get(name, 0) + sent
        return sent

    def _publish(self) -> None:
        """The paced publisher: one step now, the next one a period after this one was due."""
        loop = asyncio.get_running_loop()
        self._publish_due = max(self._publish_due + 1.0 / self.rate, loop.time())    # behind: no burst
        self._publisher = loop.call_at(self._publish_due, self._publish)
        self.step(1)

    # ------------------------------------------------------------------ faults

    def _targets(self, connection: Optional[C]) -> list[C]:
        return list(self._connections) if connection is None else [connection]

    def close_with(self, code: int, reason: str = "", connection: Optional[C] = None) -> None:
        """Close (all or one) connection(s) with a close handshake of ``code`` and ``reason``."""
        for target in self._targets(connection):
            target.close(code, reason)

    def drop(self, code: int = 1001, reason: str = "", connection: Optional[C] = None) -> None:
        """Close with a close handshake (default 1001 going away)."""
        self.close_with(code, reason, connection)

    def reset(self, connection: Optional[C] = None) -> None:
        """Drop the TCP connection(s) without a close handshake."""
        for target in self._targets(connection):
            target.reset()

    def mute(self, connection: Optional[C] = None) -> None:
        """Stop sending data, replies and pings on the open connection(s); the sockets stay open.

        A muted connection is not closed for missing pongs either. Connections
        opened later are not muted.
        """
        for target in self._targets(connection):
            target.muted = True
            target._on_mute()

    def unmute(self, connection: Optional[C] = None) -> None:
        """Undo ``mute``."""
        for target in self._targets(connection):
            target.muted = False

    def send_raw(self, payload: bytes, binary: bool = False, connection: Optional[C] = None) -> None:
        """Send ``payload`` unchanged as one TEXT (or BINARY) frame."""
        for target in self._targets(connection):
            target.send(payload, binary)

    def skip_sequence(self, count: int = 1) -> None:
        """Send nobody the next ``count`` depth updates of every subscribed symbol.

        The market still advances, so the next update's first id jumps past the
        previous update's last id + 1.
        """
        symbols = set(self.market.symbols)
        for name in self.subscribed():
            symbol = self._symbol_of(name)
            if symbol is not None:
                symbols.add(symbol)
        for symbol in symbols:
            self._skip[symbol] = count
