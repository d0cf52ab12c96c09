"""A TCP proxy on 127.0.0.1 that injects network faults between a client and a server.

``FaultProxy`` listens on an ephemeral port of 127.0.0.1, opens one upstream
connection per accepted client connection and forwards bytes both ways. On
command from the test it breaks the connections the way real networks do:

- ``cut()``: close both sides cleanly (FIN);
- ``reset()``: abort both sides (RST);
- ``blackhole()`` / ``restore()``: keep both sockets open, forward nothing
  (the half-open "connected but mute" connection). What arrives meanwhile is
  held, EOF and resets included, and delivered in order on ``restore()``, as
  TCP would once a partition heals;
- ``delay(seconds)``: forward each chunk that much later (latency, not a
  throughput cap: chunks in flight overlap);
- ``throttle(bytes_per_second)``: cap the bandwidth of each direction;
- ``split_writes(True)``: forward one byte per event-loop iteration, so the
  peer reads 1-byte pieces;
- ``refuse(seconds)``: accept new connections and reset them at once;
- ``stall_handshake(True)``: accept new connections and never forward
  anything on them (a WebSocket handshake through them never completes).

``cut``, ``reset`` and ``blackhole`` act on the live connections only (a
client that reconnects gets a working connection); ``delay``, ``throttle``
and ``split_writes`` act on every connection, live and future, until undone;
``refuse`` and ``stall_handshake`` act on future connections.

Example::

    async with FeedServer() as server, FaultProxy("127.0.0.1", server.port) as proxy:
        ws = LoopbackFeedClient(ExchangeName("feed"), create_websocket_config(proxy.url("/stream")), on_message)
        ...
        proxy.blackhole()
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
from collections import deque
from typing import Optional, Union, cast

__all__ = ["FaultProxy"]

log = logging.getLogger("fastws.testing.proxy")

# Bytes held for one direction before the proxy stops reading its source
# (the source's kernel buffers fill, and its sender feels the backpressure).
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
# A throttled direction writes slices of this many seconds' worth of bytes.
_THROTTLE_SLICE = 0.01
# Seconds stop() waits for the aborted sockets to report their closing.
_STOP_TIMEOUT = 2.0
_LINGER_ZERO = struct.pack("ii", 1, 0)


class _Marker:
    """An end of stream queued behind the data: EOF, close or reset."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_EOF = _Marker("EOF")
_CLOSE = _Marker("CLOSE")
_ABORT = _Marker("ABORT")

_Item = Union[bytes, _Marker]


def _abort_with_rst(transport: Optional[asyncio.Transport]) -> None:
    """Abort ``transport`` so that the peer gets a RST (SO_LINGER 0), not a FIN."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except (OSError, ValueError):    # already closed
            pass
    transport.abort()


class _Side(asyncio.Protocol):
    """One socket of a proxied connection: the client's or the upstream's."""

    def __init__(self, connection: "_Connection", name: str) -> None:
        self.connection = connection
        self.name = name
        self.transport: Optional[asyncio.Transport] = None
        self.lost = False
        self.write_paused = False
        self.reading_paused = False
        # Set by _Connection: the direction reading from / writing to this side.
        self.outgoing: "_Direction"
        self.incoming: "_Direction"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.connection.side_made(self)

    def data_received(self, data: bytes) -> None:
        self.outgoing.feed(data)

    def eof_received(self) -> bool:
        self.outgoing.feed(_EOF)
        return True     # half-closed: the other direction may still carry data

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = True
        self.connection.side_lost(self, exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.incoming.pump()

    def set_reading(self, paused: bool) -> None:
        """Pause or resume reading from this socket (no-op when unchanged or closing)."""
        transport = self.transport
        if paused == self.reading_paused or transport is None or transport.is_closing():
            return
        self.reading_paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class _Direction:
    """Bytes from one side to the other: the queue the faults act on."""

    def __init__(self, connection: "_Connection", src: _Side, dst: _Side, upstream: bool) -> None:
        self.connection = connection
        self.proxy = connection.proxy
        self.src = src
        self.dst = dst
        self.upstream = upstream       # client -> server
        self.queue: deque[tuple[float, _Item]] = deque()
        self.queued_bytes = 0
        self.offset = 0                # bytes of the head chunk already written
        self.next_free = 0.0           # throttle: when the next byte may go
        self.eof_sent = False
        self.handle: Optional[Union[asyncio.TimerHandle, asyncio.Handle]] = None

    def feed(self, item: _Item) -> None:
        """Queue data or an end of stream from ``src``; forward what may go now."""
        proxy = self.proxy
        if self.connection.stalled or self.dst.lost:
            if isinstance(item, _Marker):
                self.connection.close()
            return
        if item is _ABORT:
            # A reset discards what was in flight.
            self.clear()
            if not self.connection.blackholed and self.dst.transport is not None:
                _abort_with_rst(self.dst.transport)
                return
        elif (not isinstance(item, _Marker) and not self.queue and not self.connection.blackholed
                and proxy._delay == 0.0 and proxy._jitter == 0.0 and proxy._throttle is None and not proxy._split
                and self.dst.transport is not None and not self.dst.write_paused):
            self.dst.transport.write(item)      # the fast path: nothing to do but forward
            self._count(len(item))
            return
        due = proxy._loop.time() + proxy._delay
        if proxy._jitter:
            # A random extra delay per chunk, never overtaking the chunk before (TCP keeps order).
            due += proxy._random.uniform(0.0, proxy._jitter)
            if self.queue and due < self.queue[-1][0]:
                due = self.queue[-1][0]
        self.queue.append((due, item))
        if not isinstance(item, _Marker):
            self.queued_bytes += len(item)
            if self.queued_bytes > _HIGH_WATER:
                self.src.set_reading(paused=True)
        self.pump()

    def clear(self) -> None:
        """Drop everything queued and any pending timer."""
        self.cancel()
        self.queue.clear()
        self.queued_bytes = self.offset = 0

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _count(self, size: int) -> None:
        if self.upstream:
            self.proxy.bytes_to_upstream += size
        else:
            self.proxy.bytes_to_client += size

    def _later(self, when: Optional[float]) -> None:
        """Pump again at ``when`` (loop time), or at the next loop iteration for None."""
        self.cancel()
        loop = self.proxy._loop
        self.handle = loop.call_soon(self._run) if when is None else loop.call_at(when, self._run)

    def _run(self) -> None:
        self.handle = None
        self.pump()

    def pump(self) -> None:
        """Forward what the faults let through now; schedule the rest."""
        dst = self.dst.transport
        if self.handle is not None or self.connection.blackholed or dst is None or self.dst.lost:
            return
        proxy = self.proxy
        loop = proxy._loop
        queue = self.queue
        while queue and not self.dst.write_paused:
            due, item = queue[0]
            now = loop.time()
            if due > now:
                self._later(due)
                return
            if isinstance(item, _Marker):
                queue.popleft()
                self._deliver(item)
                continue
            rate = proxy._throttle
            if rate is not None and self.next_free > now:
                self._later(self.next_free)
                return
            size = len(item) - self.offset
            if proxy._split:
                size = 1
            if rate is not None:
                size = min(size, max(1, int(rate * _THROTTLE_SLICE)))
                self.next_free = max(self.next_free, now) + size / rate
            end = self.offset + size
            dst.write(item[self.offset:end] if size < len(item) else item)
            self._count(size)
            self.queued_bytes -= size
            if end >= len(item):
                queue.popleft()
                self.offset = 0
            else:
                self.offset = end
            if self.queued_bytes < _LOW_WATER:
                self.src.set_reading(paused=False)
            if proxy._split and queue:
                self._later(None)     # one byte per loop iteration: the peer reads it alone
                return

    def _deliver(self, marker: _Marker) -> None:
        dst = self.dst
        if marker is _ABORT:
            self.clear()
            _abort_with_rst(dst.transport)
        elif marker is _CLOSE:
            dst.close()
        else:
            self.eof_sent = True
            transport = dst.transport
            if transport is not None and not transport.is_closing() and transport.can_write_eof():
                transport.write_eof()
            if self.connection.other(self).eof_sent:
                self.connection.close()     # both ways ended: nothing more can flow


class _Connection:
    """One accepted client connection and its upstream connection."""

    def __init__(self, proxy: "FaultProxy", stalled: bool) -> None:
        self.proxy = proxy
        self.id = proxy.connections_accepted
        self.stalled = stalled
        self.blackholed = False
        self.client = _Side(self, "client")
        self.server = _Side(self, "upstream")
        self.up = _Direction(self, self.client, self.server, upstream=True)
        self.down = _Direction(self, self.server, self.client, upstream=False)
        self.client.outgoing = self.server.incoming = self.up
        self.server.outgoing = self.client.incoming = self.down
        self.connecting: Optional[asyncio.Task[None]] = None

    def __repr__(self) -> str:
        return f"<proxied connection {self.id}>"

    def other(self, direction: _Direction) -> _Direction:
        return self.down if direction is self.up else self.up

    def side_made(self, side: _Side) -> None:
        if side is self.client:
            if not self.stalled:
                self.connecting = self.proxy._loop.create_task(self._connect_upstream(),
                                                               name=f"fault-proxy-connect-{self.id}")
        else:
            self.up.pump()      # what the client sent meanwhile (or its close)

    async def _connect_upstream(self) -> None:
        proxy = self.proxy
        try:
            await proxy._loop.create_connection(lambda: self.server, proxy.upstream_host, proxy.upstream_port)
        except OSError as exc:
            log.warning("connection %d: upstream %s:%d unreachable: %s", self.id, proxy.upstream_host,
                        proxy.upstream_port, exc)
            self.client.close()
        finally:
            self.connecting = None
        self._maybe_done()

    def side_lost(self, side: _Side, exc: Optional[Exception]) -> None:
        side.incoming.clear()
        if not side.outgoing.dst.lost:
            side.outgoing.feed(_CLOSE if exc is None else _ABORT)
        self._maybe_done()

    def _maybe_done(self) -> None:
        """Forget the connection once no socket of it is open or opening."""
        if self.client.lost and self.connecting is None and (self.server.transport is None or self.server.lost):
            self.proxy._forget(self)

    def close(self) -> None:
        """Close both sides cleanly (FIN), dropping what is queued."""
        self.up.clear()
        self.down.clear()
        self.client.close()
        self.server.close()

    def reset(self) -> None:
        """Abort both sides with a RST."""
        self.up.clear()
        self.down.clear()
        _abort_with_rst(self.client.transport)
        _abort_with_rst(self.server.transport)

    def set_blackholed(self, blackholed: bool) -> None:
        self.blackholed = blackholed
        if not blackholed:
            self.up.pump()
            self.down.pump()

    def abort(self) -> None:
        """Close both sockets at once, whatever they still had to write (``stop()``)."""
        self.up.clear()
        self.down.clear()
        for side in (self.client, self.server):
            if side.transport is not None and not side.lost:
                side.transport.abort()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that forwards to ``upstream`` and injects faults.

    Use ``async with FaultProxy(host, port) as proxy:`` (or ``start()`` /
    ``stop()``) and connect the client to ``proxy.url()``.

    Args:
        upstream_host: Host of the server connections are forwarded to.
        upstream_port: Its port.

    Attributes:
        upstream_host, upstream_port: Where connections are forwarded.
        port: The proxy's listening port (0 before ``start()``).
        connections_accepted: Connections accepted and forwarded (or stalled)
            so far; refused ones are not counted here.
        connections_refused: Connections reset at once by ``refuse()``.
        connections_stalled: Connections accepted under ``stall_handshake(True)``.
        bytes_to_upstream: Bytes forwarded from clients to the upstream.
        bytes_to_client: Bytes forwarded from the upstream to clients.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.connections_accepted = 0
        self.connections_refused = 0
        self.connections_stalled = 0
        self.bytes_to_upstream = 0
        self.bytes_to_client = 0
        self._loop: asyncio.AbstractEventLoop
        self._server: Optional[asyncio.AbstractServer] = None
        self._connections: set[_Connection] = set()
        self._closed: Optional[asyncio.Future[None]] = None
        self._delay = 0.0
        self._jitter = 0.0
        self._random = random.Random(0x5EED)
        self._throttle: Optional[float] = None
        self._split = False
        self._stall = False
        self._refusal: Optional[asyncio.TimerHandle] = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Listen on an ephemeral port of 127.0.0.1."""
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        log.debug("proxy 127.0.0.1:%d -> %s:%d", self.port, self.upstream_host, self.upstream_port)

    async def stop(self) -> None:
        """Stop listening, abort every connection and cancel every timer and task.

        Returns when every socket has closed (or after 2 s, with a warning).
        Safe to call twice.
        """
        if self._refusal is not None:
            self._refusal.cancel()
            self._refusal = None
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Upstream connections still opening first, so that none opens after the aborts.
        tasks = [c.connecting for c in self._connections if c.connecting is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for connection in list(self._connections):
            connection.abort()
            connection._maybe_done()
        if self._connections:
            self._closed = self._loop.create_future()
            try:
                await asyncio.wait_for(self._closed, _STOP_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning("%d connection(s) still open after stop()", len(self._connections))
            finally:
                self._closed = None
        if server is not None:
            try:
                # uvloop's wait_closed() also waits for the accepted connections.
                await asyncio.wait_for(server.wait_closed(), _STOP_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning("listening socket not closed after stop()")

    async def __aenter__(self) -> "FaultProxy":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _accept(self) -> asyncio.Protocol:
        if self._refusal is not None:
            return _Refused(self)
        self.connections_accepted += 1
        if self._stall:
            self.connections_stalled += 1
        connection = _Connection(self, stalled=self._stall)
        self._connections.add(connection)
        log.debug("connection %d accepted%s", connection.id, " (stalled)" if self._stall else "")
        return connection.client

    def _forget(self, connection: _Connection) -> None:
        if connection not in self._connections:
            return
        connection.up.clear()
        connection.down.clear()
        self._connections.discard(connection)
        log.debug("connection %d closed", connection.id)
        if not self._connections and self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    # ------------------------------------------------------------------ observation

    @property
    def live_connections(self) -> int:
        """Connections with at least one side still open."""
        return len(self._connections)

    @property
    def refusing(self) -> bool:
        """True while ``refuse()`` is in force."""
        return self._refusal is not None

    def url(self, path: str = "", scheme: str = "ws") -> str:
        """``<scheme>://127.0.0.1:<port><path>``: the address clients connect to."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    # ------------------------------------------------------------------ faults

    def cut(self) -> None:
        """Close both sides of every live connection cleanly (FIN); queued bytes are dropped."""
        log.info("cut %d connection(s)", len(self._connections))
        for connection in list(self._connections):
            connection.close()

    def reset(self) -> None:
        """Abort both sides of every live connection: each peer gets a RST."""
        log.info("reset %d connection(s)", len(self._connections))
        for connection in list(self._connections):
            connection.reset()

    def blackhole(self) -> None:
        """Forward nothing on the live connections, in either direction; keep the sockets open.

        What arrives meanwhile (data, EOF, a reset) is held for ``restore()``.
        Connections accepted later are not affected.
        """
        log.info("blackhole %d connection(s)", len(self._connections))
        for connection in self._connections:
            connection.set_blackholed(True)

    def restore(self) -> None:
        """End ``blackhole()``: deliver what was held, in order, and forward again."""
        log.info("restore")
        for connection in list(self._connections):
            connection.set_blackholed(False)

    def delay(self, seconds: float, jitter: float = 0.0) -> None:
        """Forward every chunk, both ways, ``seconds`` after it arrived (0: no delay), plus a
        random ``0..jitter`` seconds per chunk (seeded; a chunk never overtakes the one before).

        Applies to the chunks that arrive from now on; the queue stays in order.
        """
        if seconds < 0 or jitter < 0:
            raise ValueError(f"delay and jitter must be >= 0, got {seconds!r}, {jitter!r}")
        log.info("delay %.3f s (jitter %.3f s)", seconds, jitter)
        self._delay = float(seconds)
        self._jitter = float(jitter)

    def throttle(self, bytes_per_second: Optional[float]) -> None:
        """Forward at most ``bytes_per_second`` in each direction of each connection (None: unlimited)."""
        if bytes_per_second is not None and not bytes_per_second > 0:
            raise ValueError(f"bytes_per_second must be > 0 or None, got {bytes_per_second!r}")
        log.info("throttle %s B/s", bytes_per_second)
        self._throttle = None if bytes_per_second is None else float(bytes_per_second)
        self._pump_all()

    def split_writes(self, enabled: bool) -> None:
        """Forward one byte per event-loop iteration (True), or whole chunks again (False)."""
        log.info("split writes %s", "on" if enabled else "off")
        self._split = bool(enabled)
        self._pump_all()

    def refuse(self, seconds: float) -> None:
        """Reset new connections at once for ``seconds`` (0: stop refusing now).

        The TCP handshake completes, then the client's first read sees a RST:
        a client reports a failed connection attempt.
        """
        if self._refusal is not None:
            self._refusal.cancel()
            self._refusal = None
        if seconds > 0:
            log.info("refuse new connections for %.3f s", seconds)
            self._refusal = self._loop.call_later(seconds, self._end_refusal)

    def _end_refusal(self) -> None:
        self._refusal = None
        log.info("accepting new connections again")

    def stall_handshake(self, enabled: bool) -> None:
        """Accept new connections and never forward anything on them (True), or forward again (False).

        Connections stalled so far stay stalled until their client closes them.
        """
        log.info("stall new connections %s", "on" if enabled else "off")
        self._stall = bool(enabled)

    def _pump_all(self) -> None:
        for connection in self._connections:
            for direction in (connection.up, connection.down):
                direction.cancel()    # a wait computed under the old settings
                direction.pump()


class _Refused(asyncio.Protocol):
    """A connection accepted under ``refuse()``: reset at once."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.proxy.connections_refused += 1
        log.debug("connection refused")
        _abort_with_rst(cast(asyncio.Transport, transport))
