"""``ReplayServer``: serve a recorded capture through a loopback exchange server.

A picows server on 127.0.0.1 that plays a capture written by
``fastws.recording.CaptureWriter`` (``fastws record``) back to the clients
that connect to it, so that a strategy runs again on a real day's frames
through the same adapter and frame core.

- It speaks enough of the exchange's protocol for an adapter to subscribe:
  a ``ReplayProfile`` that the exchange's package registers (``fastws.registry``,
  its entry's ``replay``) answers the client's control requests, tells recorded
  control replies from data and reads each data frame's stream. The profile
  comes from the capture's metadata (``exchange``) or the ``exchange`` argument.
- The capture's own control replies (recorded acks, PONGs) and markers are
  not sent; data frames are sent as recorded: same opcode, same bytes.
- One timeline for the whole server, as a live exchange has one: playback
  starts when a client has subscribed to every stream the capture's metadata
  names (at once if it names none), or ``start_grace`` seconds after the
  first subscription, whichever comes first; it then runs once, frames keep
  the recorded gaps divided by ``speed`` (0 or ``inf``: as fast as the
  clients read), and each frame goes to every open connection subscribed to
  its stream (as the profile reads it). A frame whose stream cannot be read
  goes to every subscribed connection. A client that
  reconnects continues where the timeline is, missing what it was down for,
  as with a live exchange.
- ``finished`` completes when the capture has been played; the counters say
  what was sent and skipped. ``stop()`` ends the playback, closes every
  connection (close 1000) and the listening socket.

Example::

    async with ReplayServer("day.fwscap", speed=10) as replay:
        entry = fastws.registry.get_exchange(replay.exchange)
        ws = entry.client(replay.exchange, entry.config(replay.ws_url()), on_message)
        async with ws:
            await ws.subscribe(streams)
            await replay.wait_finished(timeout=60)
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
from typing import Any, Iterable, Optional, Union

import msgspec
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from fastws.recording import KIND_BINARY, KIND_TEXT, CaptureError, CaptureReader
from fastws.registry import RegistryError, get_exchange

__all__ = ["ReplayConnection", "ReplayProfile", "ReplayServer", "replay_profile"]

log = logging.getLogger("fastws.testing.replay")

# Frames sent between two looks at the clients' write buffers (and, at full
# speed, two chances for the loop to run other callbacks).
_YIELD_EVERY = 256
# A client whose unsent bytes exceed this is waited for ...
_MAX_WRITE_BUFFER = 4 * 1024 * 1024
# ... at most this many seconds, then dropped, as exchanges drop slow readers.
_SLOW_CLIENT_TIMEOUT = 10.0
# Seconds stop() waits for the clients to answer its close.
_CLOSE_TIMEOUT = 1.0

_encode = msgspec.json.Encoder().encode


# ---------------------------------------------------------------- profiles

class ReplayProfile:
    """An exchange's control protocol, as far as the replay server needs it.

    An exchange's package gives one (its registry entry's ``replay``); the replay
    server finds it by the capture's ``exchange`` name through ``fastws.registry``.

    Attributes:
        name: The exchange's name.
        client_path: The path a client's config URL adds to the server's
            ``ws://127.0.0.1:<port>`` (e.g. ``"/ws"``; ``""`` when the adapter adds
            its own path).
    """

    name = ""
    client_path = ""

    def initial_streams(self, path: str) -> list[str]:
        """Streams named in the upgrade request's path."""
        return []

    def is_control(self, kind: int, payload: bytes) -> bool:
        """Whether a recorded frame is a control reply (not sent again)."""
        raise NotImplementedError

    def stream_of(self, kind: int, payload: bytes) -> Optional[str]:
        """The stream a data frame belongs to, None if it cannot be read."""
        raise NotImplementedError

    def on_request(self, connection: "ReplayConnection", text: bytes) -> None:
        """Answer one TEXT frame of a client (``connection.reply``, ``subscribe``, ``unsubscribe``)."""
        raise NotImplementedError


def replay_profile(exchange: Union[str, ReplayProfile]) -> ReplayProfile:
    """``exchange`` itself, or the replay profile the exchange of that name registers.

    Raises:
        CaptureError: no registered exchange of that name, or it has no replay profile.
    """
    if isinstance(exchange, ReplayProfile):
        return exchange
    try:
        profile = get_exchange(str(exchange)).replay
    except RegistryError as exc:
        raise CaptureError(f"no replay profile for exchange {exchange!r}: {exc}") from None
    if profile is None:
        raise CaptureError(f"no replay profile for exchange {exchange!r}: it registers none")
    return profile


# -------------------------------------------------------------- connection

class ReplayConnection(WSListener):
    """The server side of one client connection."""

    def __init__(self, server: "ReplayServer", path: str) -> None:
        WSListener.__init__(self)
        self.server = server
        self.path = path
        self.transport: Optional[WSTransport] = None
        self.subscriptions: dict[str, None] = {}
        self.frames_sent = 0
        self.closing = False

    @property
    def is_open(self) -> bool:
        """Connected and not closing."""
        return self.transport is not None and not self.transport.is_disconnected and not self.closing

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.server._connected(self)
        initial = self.server._profile.initial_streams(self.path)
        if initial:
            self.subscribe(initial)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server._disconnected(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == WSMsgType.CLOSE:
            if not self.closing:       # the client's close: answer it
                self.closing = True
                transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif msg_type == WSMsgType.TEXT and not self.closing:
            self.server._profile.on_request(self, frame.get_payload_as_bytes())

    def reply(self, message: dict[str, Any]) -> None:
        """Send one JSON control reply."""
        if self.is_open:
            self.transport.send(WSMsgType.TEXT, _encode(message))  # type: ignore[union-attr]

    def subscribe(self, names: Iterable[str]) -> None:
        """Add streams; tell the server (playback may start)."""
        self.subscriptions.update(dict.fromkeys(names))
        self.server._subscribed(self)

    def unsubscribe(self, names: Iterable[str]) -> None:
        """Remove streams."""
        for name in names:
            self.subscriptions.pop(name, None)

    def close(self, code: WSCloseCode, reason: str) -> None:
        """Start a close handshake."""
        if self.is_open:
            self.closing = True
            self.transport.send_close(code, reason.encode())  # type: ignore[union-attr]

    def write_buffer_size(self) -> int:
        """Bytes accepted for sending and not yet written to the socket."""
        if self.transport is None or self.transport.is_disconnected:
            return 0
        return int(self.transport.underlying_transport.get_write_buffer_size())


# ------------------------------------------------------------------ server

class ReplayServer:
    """A loopback server on 127.0.0.1 that plays a capture back (see the module docstring).

    Args:
        capture: The capture file.
        exchange: The control protocol to speak: a ``ReplayProfile``, or the name
            of a registered exchange (``fastws.registry``); default: the capture's
            ``exchange`` metadata.
        speed: Divides the recorded gaps between frames; 0 or ``inf``: no waiting.
        port: Port to listen on (0: any free one).
        filter_streams: Send each client only the frames of its streams (else
            every data frame to every subscribed client).
        start_grace: Seconds after the first subscription after which playback
            starts even if not every recorded stream is subscribed.
        max_pause: Longest wait between two frames, in seconds of replay time
            (None: as recorded); shortens the gaps of a capture appended
            to hours apart.

    Raises:
        CaptureError: the file is not a capture, or its exchange has no profile
            (checked at once; ``OSError`` if it cannot be opened).

    Attributes:
        metadata: The capture's header metadata.
        exchange: The profile in use.
        connection_count: Connections accepted so far.
        records_read: Records of the capture reached by the playback.
        frames_played: Data frames reached (whether anyone was subscribed or not).
        frames_sent: Frames sent, summed over connections.
        bytes_sent: Bytes of those frames.
        controls_skipped: Recorded control replies not sent.
        markers: Marker records (feed lost / back) passed.
        unsent: Data frames no open connection was subscribed to.
        slow_clients_dropped: Connections dropped for not reading.
        damage: After playback, the capture's damaged tail (see ``CaptureReader.damage``).
    """

    def __init__(self, capture: Union[str, "os.PathLike[str]"], *,
                 exchange: Union[str, ReplayProfile, None] = None,
                 speed: float = 1.0, port: int = 0, filter_streams: bool = True, start_grace: float = 1.0,
                 max_pause: Optional[float] = None) -> None:
        if speed < 0 or math.isnan(speed):
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.path = os.fspath(capture)
        with CaptureReader(self.path) as reader:
            self.metadata = reader.metadata
        chosen = exchange if exchange is not None else self.metadata.get("exchange")
        if not isinstance(chosen, (str, ReplayProfile)):
            raise CaptureError(f"{self.path}: the capture names no exchange (pick one with exchange=)")
        try:
            self._profile = replay_profile(chosen)
        except CaptureError as exc:
            raise CaptureError(f"{self.path}: {exc} (pick one with exchange=)") from None
        self.exchange: str = self._profile.name
        self.speed = speed
        self.port = port
        self.filter_streams = filter_streams
        self.start_grace = start_grace
        self.max_pause = max_pause
        streams = self.metadata.get("streams")
        names = streams if isinstance(streams, list) else []
        self._expected = frozenset(s for s in names if isinstance(s, str))
        self.connection_count = 0
        self.records_read = 0
        self.frames_played = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.controls_skipped = 0
        self.markers = 0
        self.unsent = 0
        self.slow_clients_dropped = 0
        self.damage: Optional[str] = None
        self._connections: list[ReplayConnection] = []
        self._server: Optional[asyncio.AbstractServer] = None
        self._player: Optional[asyncio.Task[None]] = None
        self._grace: Optional[asyncio.TimerHandle] = None
        self._finished: Optional[asyncio.Future[int]] = None

    # ------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` (no path)."""
        return f"ws://127.0.0.1:{self.port}"

    def ws_url(self) -> str:
        """The URL an adapter's config takes: ``url`` and the profile's ``client_path``."""
        return self.url + self._profile.client_path

    def scan(self) -> tuple[int, float, Optional[str]]:
        """Read the capture once: the data frames it will play, their recorded span
        in seconds, and its damaged tail (``None`` if it has none)."""
        count = first = last = 0
        with CaptureReader(self.path) as reader:
            for record in reader:      # bounded by the file
                kind = record.kind
                if (kind == KIND_TEXT or kind == KIND_BINARY) and not self._profile.is_control(kind, record.payload):
                    if not count:
                        first = record.receive_ns
                    last = record.receive_ns
                    count += 1
            return count, (last - first) / 1e9, reader.damage

    # ----------------------------------------------------------- life cycle

    @property
    def started(self) -> bool:
        """Whether playback has started."""
        return self._player is not None

    @property
    def finished(self) -> "asyncio.Future[int]":
        """Completes with ``frames_played`` when the whole capture has been played."""
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
        return self._finished

    async def wait_finished(self, timeout: float) -> int:
        """Wait for ``finished``; return ``frames_played``.

        Raises:
            TimeoutError: not finished within ``timeout`` seconds.
        """
        try:
            return await asyncio.wait_for(asyncio.shield(self.finished), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"replay not finished after {timeout} s ({self.frames_played} frames played, "
                               f"started: {self.started})") from None

    @property
    def connections(self) -> list[ReplayConnection]:
        """Open connections, oldest first."""
        return list(self._connections)

    async def start(self) -> None:
        """Listen on 127.0.0.1 (``port``, 0: an ephemeral one)."""
        if self._finished is None:      # on the running loop
            self._finished = asyncio.get_running_loop().create_future()
        self._server = await ws_create_server(self._accept, "127.0.0.1", self.port, enable_auto_pong=True,
                                              logger_name="fastws-replay")
        self.port = self._server.sockets[0].getsockname()[1]
        log.debug("replaying %s (%s) on %s", self.path, self.exchange, self.url)

    async def stop(self) -> None:
        """End the playback, close every connection and the listening socket; safe twice."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        player, self._player = self._player, None
        if player is not None and not player.done():
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
        if self._finished is not None and not self._finished.done():
            self._finished.cancel()
        transports = [c.transport for c in self._connections if c.transport is not None]
        for connection in list(self._connections):
            connection.close(WSCloseCode.OK, "replay stopped")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if transports:
            waits = asyncio.gather(*(t.wait_disconnected() for t in transports), return_exceptions=True)
            try:
                await asyncio.wait_for(waits, _CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                for transport in transports:
                    transport.disconnect(graceful=False)
                await asyncio.wait_for(asyncio.gather(*(t.wait_disconnected() for t in transports),
                                                      return_exceptions=True), _CLOSE_TIMEOUT)

    async def __aenter__(self) -> "ReplayServer":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _accept(self, request: WSUpgradeRequest) -> ReplayConnection:
        return ReplayConnection(self, request.path.decode("latin-1"))

    def _connected(self, connection: ReplayConnection) -> None:
        self.connection_count += 1
        self._connections.append(connection)

    def _disconnected(self, connection: ReplayConnection) -> None:
        if connection in self._connections:
            self._connections.remove(connection)

    # -------------------------------------------------------------- playback

    def _subscribed(self, connection: ReplayConnection) -> None:
        if self._player is not None or self._server is None:
            return
        if self._expected <= connection.subscriptions.keys():
            self._start_playback()
        elif self._grace is None:
            self._grace = asyncio.get_running_loop().call_later(self.start_grace, self._start_playback)

    def _start_playback(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._player is None:
            self._player = asyncio.get_running_loop().create_task(self._play(), name="fastws-replay")

    async def _play(self) -> None:
        reader = CaptureReader(self.path)
        try:
            await self._play_records(reader)
            self.damage = reader.damage
        finally:
            reader.close()
        if self.damage is not None:
            log.warning("%s: %s", self.path, self.damage)
        finished = self.finished
        if not finished.done():
            finished.set_result(self.frames_played)

    async def _play_records(self, reader: CaptureReader) -> None:
        loop = asyncio.get_running_loop()
        paced = 0 < self.speed < math.inf
        scale = 1e-9 / self.speed if paced else 0.0
        profile = self._profile
        start = loop.time()
        first_ns = previous_ns = None
        skipped = 0.0        # seconds of replay time cut by max_pause
        since_check = 0
        for record in reader:      # bounded by the capture's length
            self.records_read += 1
            kind, payload = record.kind, record.payload
            if kind != KIND_TEXT and kind != KIND_BINARY:
                self.markers += 1
                continue
            if profile.is_control(kind, payload):
                self.controls_skipped += 1
                continue
            if paced:
                ns = record.receive_ns
                if first_ns is None or previous_ns is None:
                    first_ns = previous_ns = ns
                if self.max_pause is not None:
                    skipped += max(0.0, (ns - previous_ns) * scale - self.max_pause)
                previous_ns = ns
                delay = start + (ns - first_ns) * scale - skipped - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            self._send(kind, payload)
            since_check += 1
            if since_check >= _YIELD_EVERY:
                since_check = 0
                await self._wait_for_readers()

    def _send(self, kind: int, payload: bytes) -> None:
        self.frames_played += 1
        stream = self._profile.stream_of(kind, payload) if self.filter_streams else None
        msg_type = WSMsgType.TEXT if kind == KIND_TEXT else WSMsgType.BINARY
        sent = 0
        for connection in self._connections:
            if not connection.subscriptions or not connection.is_open:
                continue
            if stream is not None and stream not in connection.subscriptions:
                continue
            connection.transport.send(msg_type, payload)  # type: ignore[union-attr]
            connection.frames_sent += 1
            sent += 1
        if sent:
            self.frames_sent += sent
            self.bytes_sent += sent * len(payload)
        else:
            self.unsent += 1

    async def _wait_for_readers(self) -> None:
        """Let the loop run; wait (bounded) for clients with a full write buffer, drop the ones that stay full."""
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SLOW_CLIENT_TIMEOUT
        while True:       # bounded by the deadline
            slow = [c for c in self._connections if c.write_buffer_size() > _MAX_WRITE_BUFFER]
            if not slow:
                return
            if loop.time() >= deadline:
                for connection in slow:
                    log.warning("dropping a client that read nothing for %s s", _SLOW_CLIENT_TIMEOUT)
                    self.slow_clients_dropped += 1
                    if connection.transport is not None:
                        connection.transport.disconnect(graceful=False)
                return
            await asyncio.sleep(0.005)
