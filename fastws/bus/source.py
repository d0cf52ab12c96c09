"""A client whose connection is a NATS subscription set: frames from the bus into the same core.

``client.use_bus(servers)`` (before ``start()``) turns any adapter's client into a
bus consumer. Everything else stays: the adapter, its parser and typed routes,
order books, ``health_check()``, sequence gaps, the supervisor. Only the
"connection" changes: instead of a WebSocket, a :class:`BusLink` holds one NATS
connection, and subscribing a stream subscribes its subject
(:func:`fastws.bus.subjects.stream_subject`); the adapter's subscribe message
is not sent. Each NATS message's payload, the frame's original bytes, goes
into the frame core through ``FrameHandler.feed`` and takes the path of a frame
read from a socket.

Delivery:

- live (the default): core NATS subscriptions, one per stream. Two collectors
  publishing the same stream deliver each frame twice: the core keeps the first
  and drops the copy (per-stream digest rings, ``overlap_dropped``).
- replay (``since`` or ``start_sequence``, or ``jetstream=True``): one JetStream
  ordered consumer per stream from that time or stream sequence; it catches up
  and stays on, live, so there is no seam between replay and live (no gap, no
  repeat). After a lost NATS connection it resumes at the stream sequence after
  the last one delivered.

Life cycle: the link's NATS connection does not reconnect by itself (nats-py's
``allow_reconnect=False``). A lost NATS connection ends the link like a dropped
WebSocket: the state goes RECONNECTING, the gap is reported, and the
supervisor reconnects with the client's reconnection policy (the servers of a
cluster are tried in turn), then subscribes every stream again.

Live delivery reads plain ``nats://`` servers with :class:`fastws.bus.consumer_nats.NatsReader`
and its compiled per-message loop (``fastws.bus.consumer_read``), about 1.2x the core's
cost of a WebSocket frame; ``FASTWS_PURE_BUS=1`` picks the loop's Python twin. JetStream,
TLS and credentials go through nats-py.

Bad input: a message on a subject that is not a subscribed stream's, without
the bus headers, with an opcode other than 1 or 2, or with a message id that
names another exchange or stream is counted (``BusSource.malformed``) and
reported to the error handler as an ``InvalidMessageError``; the feed goes on.
A payload the adapter cannot parse is the core's parse error, as from a socket.

Needs the ``nats`` extra (nats-py), imported only when a link opens.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime
import importlib.util
import os
import re
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from fastws.bus.consumer_nats import NatsReader, fast_reader_supports
from fastws.bus.consumer_read import HmsgLoop, Subscription
from fastws.bus.subjects import DEFAULT_PREFIX, HEADER_MSG_ID, HEADER_OPCODE, stream_subject, stream_token
from fastws.errors import ConnectionFailedError, InvalidMessageError
from fastws.types import SubscriptionAction

if TYPE_CHECKING:
    from fastws._core import FrameHandler

__all__ = ["BusLink", "BusSource", "PURE_PYTHON_VARIABLE", "parse_since"]

PURE_PYTHON_VARIABLE = "FASTWS_PURE_BUS"
"""Set to 1, live delivery reads NATS with the Python twin of the compiled loop (for tests)."""

# nats-py's own buffer of messages received and not yet handed to the callback.
_PENDING_MESSAGES = 1_000_000
_PENDING_BYTES = 256 * 1024 * 1024
_OPCODES = {"1": 1, "2": 2}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Bytes of a bad message quoted in its report.
_PREVIEW = 256


def parse_since(text: str, now: Optional[float] = None) -> datetime.datetime:
    """The start time of a replay: ISO 8601 (``2026-11-30T05:00:00Z``) or a duration ago (``90s``, ``5m``, ``2h``).

    A time without a zone is UTC.

    Raises:
        ValueError: neither form.
    """
    match = _DURATION.match(text.strip())
    if match:
        ago = float(match.group(1)) * _SECONDS[match.group(2)]
        return datetime.datetime.fromtimestamp((time.time() if now is None else now) - ago,
                                               datetime.timezone.utc)
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO 8601, e.g. 2026-11-30T05:00:00Z, "
                         "or a duration ago, e.g. 90s, 5m, 2h)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment


@dataclasses.dataclass
class BusSource:
    """Where a bus consumer reads, and what it has read (kept across its NATS connections).

    Attributes:
        servers: NATS URLs (every node of a cluster: a lost one is replaced by another).
        prefix: The subjects' first token.
        since: Replay each stream from this time (JetStream), then stay live.
        start_sequence: Replay each stream from this JetStream stream sequence, then stay live.
        jetstream: Deliver through JetStream even without ``since``/``start_sequence``
            (new messages only).
        deduplicate: Drop the copies a second collector publishes (core delivery).
        malformed: Messages refused as not bus frames (counted and reported).
        positions: Per stream, the JetStream stream sequence to resume at.
    """

    servers: list[str]
    prefix: str = DEFAULT_PREFIX
    since: Optional[datetime.datetime] = None
    start_sequence: Optional[int] = None
    jetstream: bool = False
    deduplicate: bool = True
    malformed: int = 0
    positions: dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if importlib.util.find_spec("nats") is None:
            raise ImportError("the NATS bus needs nats-py: pip install 'fastws[nats]'")
        if not self.servers:
            raise ValueError("use_bus: give at least one NATS server URL")
        if self.since is not None and self.start_sequence is not None:
            raise ValueError("use_bus: give since or start_sequence, not both")
        if self.start_sequence is not None and self.start_sequence < 1:
            raise ValueError(f"use_bus: start_sequence must be >= 1, got {self.start_sequence}")
        if self.since is not None or self.start_sequence is not None:
            self.jetstream = True

    @property
    def url(self) -> str:
        """The servers as one comma-separated string (for logs and messages)."""
        return ",".join(self.servers)


def _ack_tokens(reply: str) -> list[str]:
    """A JetStream reply subject's tokens, as nats-py reads them: [5] is the stream sequence."""
    from nats.aio.msg import Msg

    return list(Msg.Metadata._get_metadata_fields(reply))


def _end_jetstream_tasks(subscription: Any) -> None:
    """Cancel the heartbeat and flow-control tasks of a JetStream subscription.

    nats-py cancels them in ``unsubscribe()`` only, not when the connection
    closes: a link that ends must not leave them behind.
    """
    jsi = getattr(getattr(subscription, "_sub", None), "_jsi", None)
    for task in (getattr(jsi, "_hbtask", None), getattr(jsi, "_fctask", None)):
        if task is not None:
            task.cancel()


class _Stream:
    """One subscribed stream on a link: its subscription and the message id prefix it expects."""

    __slots__ = ("name", "subject", "id_prefix", "id_prefix_bytes", "subscription")

    def __init__(self, exchange: str, name: str, prefix: str) -> None:
        self.name = name
        self.subject = stream_subject(exchange, name, prefix)
        self.id_prefix = f"{exchange}.{stream_token(name)}."
        self.id_prefix_bytes = self.id_prefix.encode()
        # A nats-py subscription, or the fast reader's subscription id.
        self.subscription: Any = None


class BusLink:
    """One NATS connection of a bus consumer, in the place of a WebSocket transport.

    The client holds it as its live connection (``_ws``): it answers what the
    life cycle asks of a transport (``is_disconnected``, ``send_close``,
    ``disconnect``, ``wait_disconnected``, ``close_handshake``) and says why it
    ended (``lost_reason``). Built and opened by :meth:`open`.
    """

    close_handshake = None
    """A NATS connection has no WebSocket closing handshake."""

    def __init__(self, client: Any, source: BusSource, core: "FrameHandler") -> None:
        self.client = client
        self.source = source
        self.core = core
        self.lost_reason: Optional[str] = None
        """Why the link ended (None while it is up)."""
        self._exchange = str(client.exchange)
        self._nc: Any = None
        # Live core delivery from plain nats:// servers reads through NatsReader.
        self._reader: Optional[NatsReader] = None
        self._by_sid: dict[int, _Stream] = {}
        # The same, as the compiled loop reads them.
        self._subscriptions: dict[int, Subscription] = {}
        self._server = source.url
        self._js: Any = None
        self._streams: dict[str, _Stream] = {}
        self._by_subject: dict[str, _Stream] = {}
        self._closed = asyncio.get_running_loop().create_future()
        self._closing: Optional[asyncio.Task[None]] = None
        self._dedup = source.deduplicate

    # ----------------------------------------------------------- opening
    @classmethod
    async def open(cls, client: Any, source: BusSource) -> "BusLink":
        """Connect to NATS and make the link the client's live connection (its core built as for a socket).

        Raises:
            ConnectionFailedError: no server of ``source`` accepted the connection.
        """
        core = client._build_core()
        link = cls(client, source, core)
        try:
            if not source.jetstream and all(fast_reader_supports(url) for url in source.servers):
                link._reader = await NatsReader.connect(
                    source.servers, link._on_reader_message, link._on_reader_lost,
                    timeout=client.config.timeout, name=f"fastws-{link._exchange}-consumer",
                    ping_interval=client.config.ping_interval)
                link._server = link._reader.url
                if os.environ.get(PURE_PYTHON_VARIABLE) != "1":
                    link._reader.use_compiled(HmsgLoop(link._subscriptions, core.feed, link._on_refused,
                                                       link._reader.on_control, source.deduplicate))
                core.on_ws_connected(None)
                return link
            import nats   # the optional extra: only a bus consumer needs it

            link._nc = await nats.connect(
                # Each server tried twice, then the attempt fails (the supervisor retries).
                servers=source.servers, allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0.05,
                connect_timeout=max(1, int(client.config.timeout)),
                ping_interval=max(1, int(client.config.ping_interval)), max_outstanding_pings=2,
                name=f"fastws-{link._exchange}-consumer",
                error_cb=link._on_nats_error, disconnected_cb=link._on_nats_disconnected,
                closed_cb=link._on_nats_closed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise ConnectionFailedError(f"{link._exchange}: cannot connect to NATS at {source.url}: "
                                        f"{type(exc).__name__}: {exc}") from exc
        current = link._nc.connected_url
        link._server = current.geturl() if current is not None else source.url
        if source.jetstream:
            link._js = link._nc.jetstream()
        core.on_ws_connected(None)
        return link

    @property
    def server(self) -> str:
        """The URL of the NATS server this link is (or was last) connected to."""
        return self._server

    # ------------------------------------------------------ subscriptions
    async def request(self, streams: Sequence[str], action: SubscriptionAction) -> None:
        """Subscribe (or unsubscribe) ``streams``' subjects; returns once the server has them.

        Raises:
            ConnectionFailedError: the link is down.
        """
        if self.is_disconnected:
            raise ConnectionFailedError(f"{self._exchange}: NATS connection lost before {action.value}")
        try:
            if action is SubscriptionAction.SUBSCRIBE:
                for name in streams:
                    if name not in self._streams:
                        await self._subscribe(name)
            else:
                for name in streams:
                    stream = self._streams.pop(name, None)
                    if stream is not None:
                        del self._by_subject[stream.subject]
                        if self._reader is not None:
                            del self._by_sid[stream.subscription]
                            del self._subscriptions[stream.subscription]
                            self._reader.unsubscribe(stream.subscription)
                        else:
                            await stream.subscription.unsubscribe()
            # The server has seen every SUB/UNSUB once it answers the flush's ping.
            timeout = self.client.config.subscription_timeout
            if self._reader is not None:
                await asyncio.wait_for(self._reader.flush(), timeout)
            else:
                await self._nc.flush(timeout=max(1, int(timeout)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A link that cannot carry its streams is a lost link: closed, and
            # the supervisor makes a new one (which subscribes them all again).
            if self.lost_reason is None:
                self.lost_reason = (f"NATS {action.value} failed on {self.server}: "
                                    f"{type(exc).__name__}: {exc}")
            self.disconnect()
            raise ConnectionFailedError(f"{self._exchange}: {self.lost_reason}") from exc

    async def _subscribe(self, name: str) -> None:
        stream = _Stream(self._exchange, name, self.source.prefix)
        if self._reader is not None:
            stream.subscription = self._reader.subscribe(stream.subject)
            self._by_sid[stream.subscription] = stream
            self._subscriptions[stream.subscription] = Subscription(name, stream.id_prefix_bytes)
        elif self._js is None:
            stream.subscription = await self._nc.subscribe(
                stream.subject, cb=self._on_message, pending_msgs_limit=_PENDING_MESSAGES,
                pending_bytes_limit=_PENDING_BYTES)
        else:
            stream.subscription = await self._subscribe_jetstream(stream)
        self._streams[name] = stream
        self._by_subject[stream.subject] = stream

    async def _subscribe_jetstream(self, stream: _Stream) -> Any:
        """An ordered consumer of the stream's subject from where the consumer stands."""
        from nats.js.api import ConsumerConfig, DeliverPolicy

        source = self.source
        resume = source.positions.get(stream.name)
        if resume is not None:
            policy, config = DeliverPolicy.BY_START_SEQUENCE, ConsumerConfig(opt_start_seq=resume)
        elif source.start_sequence is not None:
            policy, config = DeliverPolicy.BY_START_SEQUENCE, ConsumerConfig(opt_start_seq=source.start_sequence)
        elif source.since is not None:
            policy, config = DeliverPolicy.BY_START_TIME, ConsumerConfig(opt_start_time=source.since)
        else:
            policy, config = DeliverPolicy.NEW, ConsumerConfig()
        return await self._js.subscribe(stream.subject, cb=self._on_jetstream_message, ordered_consumer=True,
                                        deliver_policy=policy, config=config,
                                        pending_msgs_limit=_PENDING_MESSAGES, pending_bytes_limit=_PENDING_BYTES)

    # ----------------------------------------------------------- messages
    def _on_refused(self, subscription: Subscription, opcode: int, msg_id: bytes, payload: bytes) -> None:
        """A message the compiled loop did not feed: reported as ``_deliver`` reports it."""
        stream = self._streams.get(subscription.key)
        if stream is not None:
            self._deliver(stream, opcode, msg_id, stream.id_prefix_bytes, payload)

    def _on_reader_message(self, sid: int, opcode: int, msg_id: bytes, payload: bytes, subject: bytes) -> None:
        """A message read by the fast reader (core delivery)."""
        stream = self._by_sid.get(sid)
        if stream is not None:     # else: in flight when its stream was unsubscribed
            self._deliver(stream, opcode, msg_id, stream.id_prefix_bytes, payload)

    async def _on_message(self, msg: Any) -> None:
        """A message through nats-py: check it is a frame of a subscribed stream, then feed the core."""
        stream = self._by_subject.get(msg.subject)
        if stream is None:
            self._malformed(msg.subject, msg.data, "not a subscribed stream's subject")
            return
        headers = msg.headers
        if headers is None:
            self._deliver(stream, -1, "", stream.id_prefix, msg.data)
            return
        self._deliver(stream, _OPCODES.get(headers.get(HEADER_OPCODE, ""), 0), headers.get(HEADER_MSG_ID, ""),
                      stream.id_prefix, msg.data)

    def _deliver(self, stream: _Stream, opcode: int, msg_id: Union[str, bytes], id_prefix: Union[str, bytes],
                 payload: bytes) -> None:
        """Feed the core a message whose headers are right; count and report any other."""
        if opcode != 1 and opcode != 2:
            self._malformed(stream.subject, payload, "no headers" if opcode < 0 else
                            f"{HEADER_OPCODE} missing or not 1 or 2")
        elif len(msg_id) != len(id_prefix) + 16 or not msg_id.startswith(id_prefix):  # type: ignore[arg-type]
            shown = msg_id.decode(errors="replace") if isinstance(msg_id, bytes) else msg_id
            self._malformed(stream.subject, payload, f"{HEADER_MSG_ID} {shown!r} is not a message id of "
                                                     f"{stream.name!r}")
        else:
            self.core.feed(payload, opcode, stream.name if self._dedup else None)

    async def _on_jetstream_message(self, msg: Any) -> None:
        """A JetStream message: as a core one, and its stream sequence is where a new link resumes."""
        await self._on_message(msg)
        stream = self._by_subject.get(msg.subject)
        if stream is not None and msg.reply:
            # The reply subject carries the stream sequence (both of its layouts).
            self.source.positions[stream.name] = int(_ack_tokens(msg.reply)[5]) + 1

    def _malformed(self, subject: Union[str, bytes], payload: bytes, why: str) -> None:
        self.source.malformed += 1
        shown = subject.decode(errors="replace") if isinstance(subject, bytes) else subject
        self.client._on_core_error("bus", InvalidMessageError(
            f"{self._exchange}: bus message on {shown!r} refused: {why}", bytes(payload[:_PREVIEW])), None)

    # ------------------------------------------------------ NATS callbacks
    async def _on_nats_error(self, exc: Exception) -> None:
        from nats.errors import SlowConsumerError

        if isinstance(exc, SlowConsumerError):
            # nats-py dropped a message it could not queue: a gap, counted.
            now = time.time()
            self.client._slow_consumer_gap(1, now, now, f"NATS client queue full on {exc.subject}")
            return
        self.client.logger.info("NATS: %s: %s", type(exc).__name__, exc,
                                extra={"exchange": self._exchange, "url": self.source.url})

    async def _on_nats_disconnected(self) -> None:
        if self.lost_reason is None:
            self.lost_reason = f"NATS connection to {self.server} lost"

    async def _on_nats_closed(self) -> None:
        self._ended(f"NATS connection to {self.server} closed")

    def _on_reader_lost(self, reason: str) -> None:
        self._ended(reason)

    def _ended(self, reason: str) -> None:
        """The connection is gone (lost, or closed by us): the link ends, once."""
        if self.lost_reason is None:
            self.lost_reason = reason
        for stream in self._streams.values():
            _end_jetstream_tasks(stream.subscription)
        if not self._closed.done():
            self._closed.set_result(None)
            self.core.on_ws_disconnected(None)

    # ------------------------------------------- the transport's interface
    @property
    def is_disconnected(self) -> bool:
        """True once the NATS connection is closed or closing."""
        if self._closed.done() or self._closing is not None:
            return True
        if self._reader is not None:
            return self._reader.is_closed
        return self._nc is None or self._nc.is_closed

    def send_close(self, code: Union[int, Any], reason: bytes = b"") -> None:
        """Say why the client closes the link (a NATS connection has no close frame)."""
        if self.lost_reason is None:
            text = reason.decode(errors="replace")
            self.lost_reason = f"client closed ({int(code)}){': ' + text if text else ''}"

    def disconnect(self, graceful: bool = True) -> None:
        """Close the NATS connection (in the background; ``wait_disconnected`` waits for it)."""
        if self._closing is None and not self._closed.done():
            self._closing = asyncio.get_running_loop().create_task(self._close(), name="fastws-bus-close")

    async def _close(self) -> None:
        try:
            if self._reader is not None:
                self._reader.close()
            elif self._nc is not None and not self._nc.is_closed:
                await self._nc.close()
        finally:
            # closed_cb ran inside close(); if it did not, the link ends here.
            self._ended(f"NATS connection to {self.server} closed")

    async def wait_disconnected(self) -> None:
        """Wait until the NATS connection is closed."""
        await asyncio.shield(self._closed)
