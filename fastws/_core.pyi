"""Type stub of the compiled frame core (fastws/_core.pyx)."""
import asyncio
from typing import Any, Awaitable, Callable, Iterator, Optional, Union

from picows import WSFrame, WSListener, WSTransport

ERROR_KINDS: tuple[str, str, str, str, str]

def monotonic_time_ns() -> int:
    """The core's receive-time clock (CLOCK_MONOTONIC) in nanoseconds."""

def latency_bucket_bounds(index: int) -> tuple[int, int]:
    """The (low, high) nanosecond bounds of latency histogram bucket ``index``."""

def is_async_callable(fn: object) -> bool:
    """True when calling ``fn`` returns a coroutine (decided once, not per message)."""

class StreamStats:
    """Per-stream counters kept by the core."""
    @property
    def stream_type(self) -> Any: ...
    @property
    def messages(self) -> int: ...
    @property
    def first_receive_ns(self) -> int: ...
    @property
    def last_receive_ns(self) -> int: ...
    @property
    def last_sequence(self) -> int: ...
    @property
    def sequence_gaps(self) -> int: ...
    @property
    def missing_sequences(self) -> int: ...
    @property
    def stale_sequences(self) -> int: ...
    @property
    def last_event_ns(self) -> int: ...
    @property
    def clock_ahead(self) -> int: ...
    def event_latency_histogram(self) -> list[int]:
        """Exchange-event-to-receive counts per bucket (microseconds)."""

class StreamBacklog:
    """One stream's place to wait behind its suspended handler, with its policy and counters."""
    @property
    def stream_id(self) -> Optional[str]: ...
    @property
    def policy_name(self) -> str:
        """``"lossless"``, ``"latest"`` or ``"drop_oldest"``."""
    @property
    def keep(self) -> int: ...
    @property
    def alarm_ns(self) -> int: ...
    @property
    def waiting(self) -> int:
        """Messages waiting for the stream's handler."""
    @property
    def waiting_bytes(self) -> int: ...
    @property
    def task(self) -> Optional["asyncio.Task[None]"]: ...
    @property
    def conflated(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def waited(self) -> int: ...
    @property
    def suspensions(self) -> int: ...
    def age_ns(self) -> int:
        """Nanoseconds since the stream's oldest message not yet handled arrived; 0 when none."""

POLICY_NAMES: tuple[str, str, str]

class FrameBuffer:
    """A reusable buffer over a frame's bytes for route decoders (buffer protocol only)."""
    def __buffer__(self, flags: int) -> memoryview: ...

class Route:
    """One stream of the fast route."""
    @property
    def stream_id(self) -> str: ...
    @property
    def key(self) -> bytes: ...
    @property
    def decode(self) -> Callable[[FrameBuffer], Any]: ...
    @property
    def handler(self) -> Callable[..., Union[None, Awaitable[None]]]: ...
    @property
    def stream_type(self) -> Any: ...
    @property
    def handler_async(self) -> bool: ...
    @property
    def sequenced(self) -> bool: ...
    @property
    def whole_frame(self) -> bool: ...
    @property
    def pass_stream(self) -> bool: ...
    @property
    def adapt(self) -> Optional[Callable[[Any], Any]]:
        """Makes a default-route message of this stream the decoder's form (None: the default handler takes it)."""

class RouteTable:
    """Streams whose frames skip the generic parser (the typed fast route)."""
    def __init__(self, prefix: bytes = ..., separator: bytes = ..., suffix: bytes = ...) -> None: ...
    @property
    def prefix(self) -> bytes: ...
    @property
    def separator(self) -> bytes: ...
    @property
    def suffix(self) -> bytes: ...
    def add(self, stream_id: str, decode: Callable[[FrameBuffer], Any],
            handler: Callable[..., Union[None, Awaitable[None]]], stream_type: Any, *,
            sequenced: bool = True, whole_frame: bool = False, pass_stream: bool = True,
            adapt: Optional[Callable[[Any], Any]] = None) -> Route:
        """Route ``stream_id``'s frames to ``decode`` and then ``handler``."""
    def remove(self, stream_id: str) -> None:
        """Stop routing ``stream_id``."""
    def get(self, stream_id: str) -> Optional[Route]:
        """The route of ``stream_id``, or None."""
    def __len__(self) -> int: ...
    def __contains__(self, stream_id: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...

class Handover:
    """Lets each message through once while a new connection overlaps the old (make before break)."""
    def __init__(self) -> None: ...
    @property
    def finished(self) -> bool: ...
    @property
    def aligned_streams(self) -> int:
        """Streams on which the new connection has caught up."""
    @property
    def stream_count(self) -> int:
        """Streams seen by either connection so far."""
    def mark_subscribed(self) -> None:
        """The new connection's subscriptions are acknowledged."""
    def unaligned_streams(self) -> list[str]:
        """Streams the new connection has not caught up on yet."""
    def finish(self) -> list[str]:
        """End the overlap: the old connection delivers nothing more. Returns the unaligned streams."""

class FirstArrival:
    """Several connections carry the same streams; each message is delivered once, by the first.

    Each path's core asks it before decoding; a copy already delivered (known
    by its digest and its place in the stream, or a sequence number not beyond
    the last delivered) is dropped and its lag behind the first copy counted;
    a path that (re)joins delivers nothing new on a stream until it has caught
    up there.
    """
    def __init__(self, paths: int, takeover_seconds: float = 1.0) -> None: ...
    @property
    def paths(self) -> int: ...
    @property
    def takeover_ns(self) -> int:
        """A path that waited this long (ns) to catch up while the others delivered nothing takes over."""
    def join(self, path: int) -> None:
        """Path ``path`` has a new connection: live, catching up on the streams already seen."""
    def leave(self, path: int) -> None:
        """Path ``path`` lost its connection: the others deliver without waiting for it."""
    def forget(self, stream_id: str) -> None:
        """Drop a stream's state (after it is unsubscribed everywhere)."""
    def live(self, path: int) -> bool:
        """Whether path ``path`` has a live connection."""
    def path_counts(self, path: int) -> dict[str, int]:
        """``first``, ``late``, ``waiting``, ``behind``, ``takeovers`` and ``unconfirmed`` counts of path ``path``."""
    def lag_histogram(self, path: int) -> list[int]:
        """How far behind the first copy path ``path``'s copies came: counts per latency bucket."""
    @property
    def stream_count(self) -> int:
        """Streams seen so far."""

def payload_digest(data: Union[bytes, bytearray, memoryview]) -> int:
    """The core's 64-bit digest of a payload (the one in a bus message id and the handover)."""

class FramePublisher:
    """Writes each delivered data frame as a NATS ``HPUB`` frame into a bounded buffer.

    ``subject_for(stream_id)`` gives ``(subject, id_prefix)`` once per stream
    (None: not published); ``on_pending()`` is called when a batch begins;
    ``take()`` empties the buffer. See ``fastws/core/publish.pxi``.
    """
    def __init__(self, subject_for: Callable[[str], Optional[tuple[bytes, bytes]]],
                 on_pending: Callable[[], None], max_buffer_bytes: int = ...,
                 max_streams: int = ...) -> None: ...
    @property
    def max_buffer_bytes(self) -> int: ...
    @property
    def max_streams(self) -> int: ...
    @property
    def published(self) -> int:
        """Messages written into the buffer."""
    @property
    def published_bytes(self) -> int:
        """Payload bytes of those messages."""
    @property
    def dropped(self) -> int:
        """Messages dropped because the buffer was at its bound."""
    @property
    def unrouted(self) -> int:
        """Messages of streams without a subject (not published)."""
    @property
    def unpublishable(self) -> int:
        """Messages whose raw bytes were gone (an async parser suspended on them)."""
    @property
    def pending_errors(self) -> int:
        """Exceptions raised by ``on_pending`` (ignored)."""
    @property
    def buffered_bytes(self) -> int: ...
    @property
    def buffered_messages(self) -> int: ...
    def take(self) -> tuple[bytes, int]:
        """The frames written since the last take and their count; the buffer empties."""
    def forget(self, stream_id: Optional[str] = None) -> None:
        """Ask ``subject_for`` again for ``stream_id`` (every stream when None)."""
    def counters(self) -> dict[str, int]:
        """The counters as a new dict."""
    def publish_frame(self, stream_id: str, payload: bytes, wall_ns: int, event_ns: int = 0,
                      opcode: int = 1) -> None:
        """Write one frame as the core would (tests and benchmarks)."""

class CompiledParser:
    """Base of parsers written in Cython that read each message in place.

    A Cython subclass overrides ``cdef object parse(self, const char* data,
    Py_ssize_t size, FrameInfo* frame)`` (see ``fastws/core/parser.pxd``);
    from Python it is only passed to ``FrameHandler(compiled_parser=...)``.
    """

class FrameHandler(WSListener):
    """The picows listener that parses and dispatches every frame of a connection."""
    def __init__(
        self,
        parse: Callable[[Any], Any],
        extract: Callable[[Any], Optional[tuple[str, Any]]],
        handler: Callable[[Any], Union[None, Awaitable[None]]],
        report_error: Callable[[str, BaseException, Optional[bytes]], None],
        on_disconnect: Optional[Callable[["FrameHandler"], None]] = None,
        max_message_size: int = ...,
        routes: Optional[RouteTable] = None,
        event_time_key: Optional[bytes] = None,
        event_time_unit_ns: int = 1_000_000,
        first_sequence_key: Optional[bytes] = None,
        last_sequence_key: Optional[bytes] = None,
        scan_window: int = 256,
        on_sequence_gap: Optional[Callable[[str, int, int, int], None]] = None,
        last_sequences: Optional[dict[str, int]] = None,
        max_streams: int = 100000,
        parse_with_handler: bool = False,
        compiled_parser: Optional[CompiledParser] = None,
        handler_takes_stream: bool = False,
        max_backlog: int = 100000,
        max_backlog_bytes: int = 134217728,
        slice_ns: int = 20000000,
        backlog_warning_ns: int = 1000000000,
        on_backlog: Optional[Callable[[str, int, int, int, Optional[str]], None]] = None,
    ) -> None: ...
    @property
    def max_streams(self) -> int: ...
    @property
    def untracked_messages(self) -> int: ...
    @property
    def routes(self) -> Optional[RouteTable]: ...
    @property
    def frame_type(self) -> int:
        """The opcode of the message being parsed: 1 text, 2 binary."""
    @property
    def sequence_gaps(self) -> int: ...
    @property
    def missing_sequences(self) -> int: ...
    @property
    def transport(self) -> Optional[WSTransport]: ...
    @property
    def frames_received(self) -> int: ...
    @property
    def messages_received(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
    @property
    def messages_delivered(self) -> int: ...
    @property
    def control_messages(self) -> int: ...
    @property
    def parse_errors(self) -> int: ...
    @property
    def classify_errors(self) -> int: ...
    @property
    def handler_errors(self) -> int: ...
    @property
    def messages_sent(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def suspensions(self) -> int: ...
    @property
    def connected_ns(self) -> int: ...
    @property
    def last_receive_ns(self) -> int: ...
    @property
    def max_message_size(self) -> int: ...
    @property
    def pending_task(self) -> Any: ...
    @property
    def close_code(self) -> int: ...
    @property
    def close_reason(self) -> Optional[str]: ...
    @property
    def backlog_size(self) -> int: ...
    @property
    def backlog_bytes(self) -> int: ...
    def report_oversize(self, message: str) -> None:
        """Count and report a message refused as too big before it reached the core."""
    def backlog_age_ns(self) -> int:
        """Nanoseconds since the oldest message not yet handled arrived; 0 when none waits."""
    def set_stream_policy(self, stream_id: Optional[str], policy: str, keep: int = 0, alarm_ns: int = 0) -> None:
        """Say what waits of ``stream_id`` while its handler is behind: lossless, latest or drop_oldest."""
    def stream_backlogs(self) -> dict[Optional[str], StreamBacklog]:
        """Each stream's ``StreamBacklog`` keyed by stream id (a new dict)."""
    def pending_tasks(self) -> list["asyncio.Task[None]"]:
        """The Tasks finishing this connection's suspended work (a new list)."""
    @property
    def conflated(self) -> int:
        """Waiting messages replaced by a newer one of their stream (``latest``)."""
    @property
    def policy_dropped(self) -> int:
        """Waiting messages given up by a ``drop_oldest`` policy."""
    @property
    def max_backlog(self) -> int: ...
    @property
    def max_backlog_bytes(self) -> int: ...
    @property
    def backlog_dropped(self) -> int: ...
    @property
    def backlog_abandoned(self) -> int: ...
    @property
    def deferrals(self) -> int: ...
    @property
    def drain_busy_ns(self) -> int: ...
    def on_ws_connected(self, transport: Optional[WSTransport]) -> None: ...
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None: ...
    def on_ws_disconnected(self, transport: Optional[WSTransport]) -> None: ...
    def feed(self, payload: bytes, opcode: int = 1, dedup_key: Optional[object] = None) -> bool:
        """Receive one whole message from elsewhere than a socket (the NATS bus): the socket's path.

        Start a core without a socket with ``on_ws_connected(None)``. With
        ``dedup_key``, a payload already fed under that key among the last 128
        is dropped as a copy (counted in ``overlap_dropped``); returns False then.
        """
    def send_text(self, text: Union[str, bytes]) -> None:
        """Send one TEXT frame (a str is encoded as UTF-8; bytes must be UTF-8).

        Compressed when permessage-deflate is on and the message is at least
        ``compress_threshold`` bytes long.
        """
    def send_bytes(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Send one BINARY frame (compressed as ``send_text``)."""
    def enable_deflate(self, server_no_context_takeover: bool = False,
                       client_no_context_takeover: bool = False,
                       server_max_window_bits: int = 15, client_max_window_bits: int = 15,
                       compress_threshold: int = 64) -> None:
        """Use permessage-deflate with the negotiated parameters (before the first frame)."""
    @property
    def deflate_enabled(self) -> bool:
        """permessage-deflate was negotiated on this connection."""
    @property
    def compress_threshold(self) -> int:
        """Outgoing messages shorter than this are sent uncompressed."""
    @property
    def compressed_received(self) -> int:
        """Compressed messages inflated."""
    @property
    def inflated_bytes(self) -> int:
        """Bytes those messages inflated to."""
    @property
    def compressed_sent(self) -> int:
        """Messages sent compressed."""
    @property
    def oversize_errors(self) -> int:
        """Messages over ``max_message_size`` (each closed the connection with 1009)."""
    @property
    def sequence_gap_errors(self) -> int:
        """Exceptions raised by the ``on_sequence_gap`` callback."""
    @property
    def protocol_errors(self) -> int:
        """Frames that broke the protocol (RSV1 not negotiated, corrupt deflate data)."""
    def counters(self) -> dict[str, int]:
        """The connection's counters as a new dict."""
    def latency_histogram(self) -> list[int]:
        """Receive-to-handler-done latency counts per bucket."""
    def stream_stats(self) -> dict[str, StreamStats]:
        """Per-stream counters keyed by stream id (a new dict)."""
    @property
    def tap(self) -> Optional[Callable[[bytes, int, int], None]]:
        """Called with (payload copy, wall-clock receive ns, opcode) for every whole data message."""
    @tap.setter
    def tap(self, value: Optional[Callable[[bytes, int, int], None]]) -> None: ...
    @property
    def publisher(self) -> Optional[FramePublisher]:
        """The ``FramePublisher`` every delivered data message is written to, or None."""
    @publisher.setter
    def publisher(self, value: Optional[FramePublisher]) -> None: ...
    @property
    def overlap_dropped(self) -> int:
        """Messages not delivered as copies: the other connection of a handover delivers them,
        or (``feed``) a bus's other publisher's copy was delivered."""
    @property
    def handover(self) -> Optional[Handover]:
        """The ``Handover`` shared with an overlapping connection, or None."""
    def begin_redundancy(self, arrival: FirstArrival, path: int, streams: dict[str, StreamStats],
                         backlogs: Optional[dict[Optional[str], StreamBacklog]] = None) -> None:
        """Be path ``path`` of a redundant group sharing ``arrival``, the per-stream stats ``streams``
        and the stream backlogs ``backlogs``."""
    @property
    def arrival(self) -> Optional[FirstArrival]:
        """The ``FirstArrival`` shared with the other paths of a redundant group, or None."""
    @property
    def path(self) -> int:
        """This connection's path number in its redundant group (0 without one)."""
    @property
    def redundant_dropped(self) -> int:
        """Copies not delivered because another path of the redundant group brought them first."""
    def begin_handover(self, handover: Handover, shadow: bool) -> None:
        """Share ``handover`` with the other connection (``shadow``: this is the new one)."""
    def end_handover(self) -> None:
        """Deliver every message again, without de-duplication."""
    def forget_stream(self, stream_id: str) -> None:
        """Drop a stream's counters and sequence state (after an unsubscribe)."""
