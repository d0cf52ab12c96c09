"""The connection: socket, upgrade, deflate negotiation, the frame core, closing.

``_open_websocket`` builds the frame core (``fastws._core.FrameHandler``) for
one connection and hands it to picows as the listener; from then on every
frame goes through the core, never through this module. ``_close_connection``
is the one place a connection is closed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
import socket
from typing import Any, Mapping, Optional, Union

import msgspec
from picows import WSCloseCode, WSParsedURL, WSUpgradeRequest, WSUpgradeResponse, ws_connect

from fastws._core import FrameHandler
from fastws.bus.source import BusLink, BusSource
from fastws.bus.subjects import DEFAULT_PREFIX
from fastws.client.health import HealthMixin
from fastws.client.proxy import proxy_failure, through_proxy
from fastws.compression import CompressionNegotiationError, negotiate, offer_header
from fastws.config import ProxyURL
from fastws.errors import ConnectionFailedError, ExchangeAPIError
from fastws.policy import apply_policies
from fastws.ratelimit import TokenBucket

__all__ = ["ConnectionMixin", "Live"]

# Seconds allowed for a closing handshake before the socket is aborted.
_CLOSE_TIMEOUT = 2.0

# The live connection as the client holds it: picows's transport, its core,
# the future set when it ends, its outgoing rate limit.
Live = tuple[Any, Optional[FrameHandler], Optional["asyncio.Future[None]"], TokenBucket]


class ConnectionMixin(HealthMixin):
    """Opening and closing the connections of ``BaseWebSocketInterface``."""

    # A bus consumer's source (use_bus): its connections are NATS links.
    _bus: Optional[BusSource] = None

    def use_bus(self, servers: Union[str, list[str]], *, since: Optional[datetime.datetime] = None,
                start_sequence: Optional[int] = None, jetstream: bool = False,
                prefix: str = DEFAULT_PREFIX, deduplicate: bool = True) -> BusSource:
        """Read this exchange's frames from the NATS bus instead of its WebSocket (before ``start()``).

        Subscribing a stream subscribes its subject; each frame published there
        takes the path of a frame read from the exchange: the same handlers,
        typed routes, books, sequence checks and ``health_check()``. A lost
        NATS connection is a gap and a reconnection, as a dropped WebSocket
        (see ``fastws.bus.source``). Staleness and connection age do not apply.

        Args:
            servers: A NATS URL, or every node of a cluster.
            since: Replay each stream from this time (JetStream), then go on live.
            start_sequence: Replay from this JetStream stream sequence, then go on live.
            jetstream: Deliver through JetStream from now on (no replay).
            prefix: The subjects' first token.
            deduplicate: Drop the copy a second collector of a stream publishes.

        Returns:
            The source: its ``malformed`` count and, with JetStream, ``positions``.
        """
        if self._core is not None:
            raise RuntimeError("use_bus() must be called before start()")
        self._bus = BusSource([servers] if isinstance(servers, str) else list(servers), prefix, since,
                              start_sequence, jetstream, deduplicate)
        self.config = dataclasses.replace(self.config, stale_timeout=None, max_connection_age=None)
        return self._bus

    async def _open_websocket(self, url: Optional[str] = None,
                              extra_headers: Optional[Mapping[str, str]] = None) -> None:
        """Open the picows connection with the frame core as its listener.

        Sets ``self._ws``. Auto-ping (``ping_interval``/``pong_timeout``) and
        auto-pong are on; ``max_frame_size`` is enforced by picows and, for
        fragmented messages, by the core. A bus consumer (``use_bus``) opens
        its NATS link instead.

        With ``config.proxy`` picows opens the tunnel (HTTP CONNECT or SOCKS)
        over the socket ``_make_socket`` connects to the proxy; a failure is a
        ``ProxyFailedError`` that names the proxy with its credentials hidden.
        """
        if self._bus is not None:
            link = await BusLink.open(self, self._bus)
            self._core, self._ws = link.core, link
            self._disconnected = asyncio.get_running_loop().create_future()
            return
        core = self._build_core()
        headers = dict(self.config.extra_headers or {})
        headers.update(extra_headers or {})
        cfg = self.config
        if cfg.enable_compression:
            headers["Sec-WebSocket-Extensions"] = offer_header(cfg.compression_client_window_bits,
                                                               cfg.compression_server_window_bits)

        def listener_factory(request: Optional[WSUpgradeRequest] = None,
                             response: Optional[WSUpgradeResponse] = None) -> FrameHandler:
            # Called by picows with the upgrade response, before any frame:
            # the core is set up for the negotiated extension here. An
            # exception fails the attempt (picows drops the socket). Without
            # a response (a harness that opens no socket) nothing is negotiated.
            if response is not None:
                self._negotiate_extensions(core, response)
            return core

        proxy = cfg.proxy if isinstance(cfg.proxy, ProxyURL) else None
        reached_proxy = False

        async def socket_factory(parsed_url: WSParsedURL) -> socket.socket:
            # With a proxy, picows asks for a socket to the proxy.
            nonlocal reached_proxy
            sock = await self._make_socket(parsed_url)
            reached_proxy = True
            return sock

        try:
            transport, _ = await ws_connect(
                listener_factory, url or self.config.url,
                socket_factory=socket_factory,
                websocket_handshake_timeout=self.config.timeout,
                enable_auto_ping=True,
                auto_ping_idle_timeout=self.config.ping_interval,
                auto_ping_reply_timeout=self.config.pong_timeout,
                enable_auto_pong=True,
                max_frame_size=self.config.max_frame_size,
                disconnect_on_exception=False,
                extra_headers=headers or None,
                ssl_context=self.config.ssl_context,
                logger_name=f"{self.exchange}",
                max_redirects=0,
                proxy=proxy,
                proxy_ssl_context=cfg.proxy_ssl_context,
            )
        except BaseException as exc:
            # A cancelled or failed attempt must not leave its socket behind:
            # shutting the socket down makes the transport close itself
            # (and cancel picows's handshake timer) at once.
            if core.transport is not None:
                # The upgrade completed (the core has its transport, picows's
                # auto-ping runs) before the attempt was cancelled: abort it.
                core.transport.disconnect(graceful=False)
            sock = self._connecting_socket
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            if proxy is not None and isinstance(exc, Exception) and not isinstance(exc, ExchangeAPIError):
                raise proxy_failure(exc, proxy, self.exchange, url or cfg.url, reached_proxy) from exc
            raise
        finally:
            self._connecting_socket = None
        if transport.is_disconnected and core.transport is None:
            # picows returns a transport already closed (and never calls the
            # listener) when the peer goes away before the upgrade reply: a
            # failed attempt, not a connection.
            raise ConnectionFailedError(f"{self.exchange}: connection lost during the WebSocket handshake "
                                        f"with {url or self.config.url}{through_proxy(proxy)}")
        self._core = core
        self._ws = transport
        self._disconnected = asyncio.get_running_loop().create_future()
        if transport.is_disconnected:
            # The upgrade succeeded and the peer closed at once (frames and
            # the close came with the 101): a connection that already ended,
            # so its counters and close reason are reported as for any other.
            self._disconnected.set_result(None)
        # Exchanges count control messages per connection: a new connection
        # starts with a fresh bucket, so a resubscribe goes out at once.
        self._rate_limiter = TokenBucket(self.config.max_messages_per_second)

    def _build_core(self) -> FrameHandler:
        """The frame core of a new connection: the adapter's parser, classifier,
        handler and options, the shared routes, the frame tap."""
        handover = self._handover_next
        # A replacement connection checks its sequences against its own first
        # message: the old connection is still delivering up to there.
        core = FrameHandler(self._parse_message, self._extract_stream_info,
                            self._message_handler, self._on_core_error,
                            self._on_core_disconnected,
                            max_message_size=self.config.max_frame_size,
                            routes=self._routes, on_sequence_gap=self._on_sequence_gap,
                            last_sequences=self._last_sequences if handover is None else None,
                            max_backlog=self.config.max_backlog,
                            max_backlog_bytes=self.config.max_backlog_bytes,
                            slice_ns=int(self.config.handler_time_slice * 1e9),
                            backlog_warning_ns=int(self.config.backlog_warning_age * 1e9),
                            on_backlog=self._on_backlog,
                            **self._frame_handler_options())
        if handover is not None:
            core.begin_handover(handover, True)
        if self._redundancy is not None:
            self._redundancy.attach(self, core)
        core.tap = self._frame_tap
        apply_policies(core, self._stream_policies, self.config.backlog_warning_age)
        core.publisher = self._frame_publisher
        return core

    def _negotiate_extensions(self, core: FrameHandler, response: WSUpgradeResponse) -> None:
        """Read the server's ``Sec-WebSocket-Extensions`` answer and set up the core.

        Raises:
            CompressionNegotiationError: the server accepted an extension that
                was not offered, or answered with parameters not allowed.
        """
        cfg = self.config
        answer = response.headers.getall("Sec-WebSocket-Extensions", [])
        if not cfg.enable_compression:
            if answer:
                raise CompressionNegotiationError(
                    f"{self.exchange}: the server accepted extension(s) {', '.join(answer)!r}, "
                    "but none was offered")
            return
        try:
            params = negotiate(answer, cfg.compression_client_window_bits, cfg.compression_server_window_bits)
        except CompressionNegotiationError as exc:
            raise CompressionNegotiationError(f"{self.exchange}: {exc.message} "
                                              f"(Sec-WebSocket-Extensions: {', '.join(answer)!r})") from exc
        if params is None:
            self.logger.info("server declined permessage-deflate: uncompressed connection",
                             extra={"exchange": self.exchange})
            return
        core.enable_deflate(params.server_no_context_takeover, params.client_no_context_takeover,
                            params.server_max_window_bits, params.client_max_window_bits,
                            cfg.compression_threshold)

    async def _make_socket(self, parsed_url: WSParsedURL) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(parsed_url.host, parsed_url.port, type=socket.SOCK_STREAM)
        if not infos:
            raise ConnectionFailedError(f"cannot resolve {parsed_url.host}")
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._connecting_socket = sock
        try:
            await loop.sock_connect(sock, address)
        except BaseException:
            sock.close()
            self._connecting_socket = None
            raise
        return sock

    async def send_message(self, message: Union[dict[str, Any], str, bytes]) -> None:
        """Send a control message: a dict (JSON via msgspec), text, or bytes.

        Waits for the outgoing rate limit. Raises ``ConnectionFailedError``
        when there is no open connection.
        """
        if self._bus is not None:
            return    # a bus consumer sends nothing: the collectors speak to the exchange
        limiter = self._rate_limiter
        await limiter.acquire()
        core = self._core
        if core is None or self._ws is None or self._ws.is_disconnected:
            raise ConnectionFailedError(f"{self.exchange}: cannot send, not connected")
        if limiter is not self._rate_limiter:
            # The connection changed while this message waited: the new one
            # paces its own messages (its resubscribe among them), and this
            # one must not add to them behind the limiter's back.
            raise ConnectionFailedError(f"{self.exchange}: connection replaced before the message was sent")
        if isinstance(message, dict):
            core.send_text(msgspec.json.encode(message))
        elif isinstance(message, str):
            core.send_text(message)
        else:
            core.send_bytes(message)

    def _live(self) -> Live:
        """The live connection, to be put back by ``_put_back`` if a replacement fails."""
        return self._ws, self._core, self._disconnected, self._rate_limiter

    def _put_back(self, live: Live) -> None:
        self._ws, self._core, self._disconnected, self._rate_limiter = live

    async def _close_transport(self, code: WSCloseCode, reason: str, drain: bool = False) -> None:
        """Close the live connection (see ``_close_connection``)."""
        await self._close_connection(self._ws, self._core, code, reason, self._disconnected, drain)

    async def _close_connection(self, ws: Any, core: Optional[FrameHandler], code: WSCloseCode,
                                reason: str, disconnected: Optional[asyncio.Future[None]] = None,
                                drain: bool = False) -> None:
        """Close one connection: the one place connections are closed.

        Closing handshake, abort if it hangs; with ``drain``, the messages
        already received still reach the handler (``_drain_backlog``); then
        end the core's pending task, and set ``disconnected`` (the watch
        loop's wake-up) if given.
        """
        if ws is not None and not ws.is_disconnected:
            ws.send_close(code, reason.encode())
            ws.disconnect()
            try:
                await asyncio.wait_for(ws.wait_disconnected(), _CLOSE_TIMEOUT)
            except (asyncio.TimeoutError, Exception):
                ws.disconnect(graceful=False)
        if drain:
            await self._drain_backlog(core)
        for task in self._tasks_to_end(core):
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if ws is not None and disconnected is not None and not disconnected.done():
            disconnected.set_result(None)

    async def _drain_backlog(self, core: Optional[FrameHandler]) -> None:
        """Let messages received before a connection ended still reach the handler.

        Waits up to ``pong_timeout`` seconds for the core to finish its
        backlog (the socket is closed: nothing more arrives); what still
        waits after that is dropped, counted and reported as a slow-consumer
        gap, never silently.
        """
        if core is None:
            return
        deadline = time.monotonic() + self.config.pong_timeout
        # Draining the connection's backlog may start a stream's Task (a
        # handler that suspends): wait for those too.
        while (tasks := [t for t in self._tasks_to_end(core) if not t.done()]) \
                and time.monotonic() < deadline:
            await asyncio.wait(tasks, timeout=deadline - time.monotonic())
        left = core.backlog_size
        if tasks and left:
            now = time.time()
            self._slow_consumer_gap(left, now - core.backlog_age_ns() / 1e9, now,
                                    f"still waiting for the handler {self.config.pong_timeout} s after "
                                    "the connection ended")

    def _tasks_to_end(self, core: Optional[FrameHandler]) -> list["asyncio.Task[Any]"]:
        """The core's pending Tasks that end with its connection: all of them, but for a
        redundant path not stopping, whose streams' Tasks go on under its group."""
        if core is None:
            return []
        tasks = core.pending_tasks()
        if self._redundancy is not None and not self._stopping and tasks:
            return self._redundancy.adopt(core, tasks)
        return tasks

    def _close_replaced(self, ws: Any, core: FrameHandler) -> None:
        """Close a replaced connection in the background; its counters still count."""
        async def close() -> None:
            try:
                await self._close_connection(ws, core, WSCloseCode.OK, "replaced", drain=True)
            finally:
                ws.disconnect(graceful=False)
                self._metrics.fold(core)
        self._in_background(close(), f"fastws-{self.exchange}-retire")

    def _close_reason(self) -> str:
        """Say why the live connection ended, from the close handshake."""
        core, ws = self._core, self._ws
        lost = getattr(ws, "lost_reason", None)    # a bus link's (BusLink)
        if lost:
            return str(lost)
        if ws is not None and ws.close_handshake is not None:
            sent = ws.close_handshake.sent
            recv = ws.close_handshake.recv
            if sent is not None and not ws.close_handshake.recv_then_sent:
                return f"client closed ({int(sent.code)}): {sent.reason or ''}".rstrip(": ")
            if recv is not None:
                return f"peer closed ({int(recv.code)}){': ' + recv.reason if recv.reason else ''}"
        if core is not None and core.close_code:
            return f"peer closed ({core.close_code})"
        # Through a proxy, either side of the tunnel may have gone: the proxy or the exchange.
        return f"connection lost (no close frame){through_proxy(self.config.proxy)}"

    def _on_core_disconnected(self, core: FrameHandler) -> None:
        if core is self._core and self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)
