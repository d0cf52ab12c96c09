# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The frame core: per-frame receive, counting, dispatch and fast send.

Everything here runs once per frame, so it avoids Python-level calls it can
hoist, allocates only what the adapter's parser needs (a memoryview over the
read buffer) and never creates a Task unless an ``async`` parser or handler
really suspends.

One extension, split by concern into included files (each with its
declarations in the ``.pxd`` of the same name), so that every inner call
stays a C call:

- ``core/common.pxi``: clocks, error kinds, latency buckets, ``FrameInfo``;
- ``core/fieldscan.pxi``: event time and sequence numbers read from the raw
  bytes, per-stream stats and sequence continuity;
- ``core/routes.pxi``: the streams' own routes (the typed fast route);
- ``core/dispatch.pxi``: the one dispatch path (route or parse + classify,
  then the handler) and error reporting;
- ``core/parser.pxi``: the compiled-parser interface;
- ``core/handover.pxi``: make-before-break de-duplication;
- ``core/arrival.pxi``: redundant connections, first arrival wins;
- ``core/publish.pxi``: the bus publisher's HPUB frames;
- ``core/backlog.pxi``: suspended parsers and handlers, the backlog;
- ``core/deflate.pxi``: permessage-deflate;
- ``core/receive.pxi``: whole messages, reassembly, close;
- this file: ``FrameHandler``, the picows listener that ties them together,
  and its public API.
"""
import asyncio
import zlib
from collections import deque
from inspect import iscoroutinefunction

from cpython.buffer cimport PyBUF_READ, PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem, PyDict_Size
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.object cimport PyObject, PyObject_Length
from cpython.list cimport PyList_GET_ITEM
from cpython.ref cimport Py_DECREF, Py_XDECREF
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from fastws._suspend import continue_coroutine

include "core/common.pxi"
include "core/fieldscan.pxi"
include "core/routes.pxi"
include "core/dispatch.pxi"
include "core/parser.pxi"
include "core/handover.pxi"
include "core/arrival.pxi"
include "core/publish.pxi"
include "core/backlog.pxi"
include "core/deflate.pxi"
include "core/receive.pxi"


cdef class FrameHandler(WSListener):
    """The picows listener that carries every frame of one connection.

    Per data frame: count it, stamp its receive time (monotonic ns, before
    parsing), reassemble fragments, and route the message: a stream of
    ``routes`` read from the raw bytes goes to that stream's decoder and
    handler; any other message takes the default route: ``parse(view)`` with
    a zero-copy ``memoryview`` of the payload, ``extract(message)`` to name
    its stream, then the stream's route if it takes such messages, else
    ``handler(message)``. The work is split by concern into the files
    ``fastws/core/*.pxi`` included below.

    The view handed to ``parse`` points into picows's read buffer and is valid
    only during that call (up to the parser's first suspension for an
    ``async`` parser): copy what you keep. A view still referenced after the
    call is released, so a late use raises ``ValueError`` instead of reading
    overwritten bytes.

    ``parse`` returning ``None`` means the frame was a control message the
    adapter consumed (an ack, a pong); it is counted and not dispatched.

    ``async`` callables are driven with ``send(None)``: one that completes
    without suspending costs no Task. A parser that suspends is finished in
    a Task while later messages of this connection wait in arrival order in
    the connection's backlog. A handler that suspends is finished in a Task
    of its stream: later messages of that stream wait in the stream's
    backlog, in order, under the stream's policy (``set_stream_policy``:
    lossless, latest, drop_oldest), while the other streams' messages go on
    to their handlers. The socket keeps being read meanwhile (pings are
    answered, the peer's pongs and liveness seen). A read batch whose
    handlers have kept the event loop longer than ``slice_ns`` leaves the
    rest of its messages to the connection's backlog too, drained a slice at
    a time with the loop running in between. A backlog past ``max_backlog``
    messages (or all backlogs past ``max_backlog_bytes``) is dropped whole,
    counted (``backlog_dropped``) and reported to ``on_backlog``.

    Exceptions from ``parse``, ``extract`` and ``handler`` are counted and
    passed to ``report_error(kind, exc, payload_preview)``; the connection
    keeps running.

    permessage-deflate (RFC 7692), once ``enable_deflate`` set it up: a data
    frame with RSV1 set is inflated with zlib (bounded by
    ``max_message_size``: more closes with 1009) and the inflated ``bytes``
    take the same path as any message; frames without RSV1 pass untouched.
    RSV1 on a connection that negotiated nothing, on a continuation frame,
    or data that does not inflate close the connection with 1002 (error
    kind ``protocol``).

    Args:
        parse: ``(memoryview) -> message | None``, sync or async.
        extract: ``(message) -> (stream_id, stream_type) | None``, sync.
        handler: ``(message) -> None``, sync or async.
        report_error: ``(kind: str, exc: BaseException, payload: bytes | None)``.
        on_disconnect: ``(handler: FrameHandler) -> None``, called once when the
            socket is gone.
        max_message_size: bound on a reassembled fragmented message; larger
            closes the connection with 1009.
        routes: A ``RouteTable``: frames of its streams take the typed fast
            route (decoded by the stream's decoder, handed to its handler)
            instead of ``parse``/``extract``/``handler``.
        event_time_key: Bytes that precede the exchange's event time in a
            payload (``b'"E":'``); read from the first ``scan_window`` bytes of
            each frame, before parsing, to measure event-to-receive latency
            per stream.
        event_time_unit_ns: Nanoseconds per unit of that event time
            (1_000_000 for milliseconds).
        first_sequence_key, last_sequence_key: Bytes that precede a message's
            first and last sequence numbers (``b'"U":'``, ``b'"u":'``); a
            message whose first number is not the stream's previous last + 1
            is a sequence gap: counted and passed to ``on_sequence_gap``.
        scan_window: How many leading bytes of a frame are searched.
        on_sequence_gap: ``(stream_id, expected, first, last) -> None``.
        last_sequences: ``{stream_id: last sequence number}`` from an earlier
            connection: the first message of such a stream here is checked
            against it, so updates lost while reconnecting are reported too.
        max_streams: Streams the core keeps counters for; messages of further
            streams are delivered but not counted per stream
            (``untracked_messages``), so a server that sends ever new names
            cannot grow memory without bound.
        parse_with_handler: Call ``parse(view, handler)`` with this core as
            the second argument (for parsers that read ``frame_type``).
        compiled_parser: A ``CompiledParser`` (a Cython subclass) that parses
            the default route's messages in place instead of ``parse``, and
            may set their event time and sequence numbers.
        handler_takes_stream: Call ``handler(stream_id, message)`` (``""``
            for a message without a stream), as a route's handler is called.
        max_backlog: Messages that may wait in one backlog (the
            connection's, or a stream's) before it is abandoned.
        max_backlog_bytes: Bytes that may wait in all of them together,
            likewise.
        slice_ns: Nanoseconds of handling after which a read batch, or a
            step of the drain, yields to the event loop.
        backlog_warning_ns: Age of the oldest waiting message at which
            ``on_backlog("aging", ...)`` is called (once until the backlog
            empties); a stream's policy may set its own.
        on_backlog: ``(event, count, first_wall_ns, last_wall_ns, stream_id)
            -> None``: ``"dropped"`` when a backlog was abandoned (``count``
            messages received between the two wall-clock times are lost),
            ``"aging"`` when its oldest message passed its alarm age;
            ``stream_id`` is the stream's, None for the connection's backlog.
    """

    def __init__(self, parse, extract, handler, report_error, on_disconnect=None,
                 Py_ssize_t max_message_size=10 * 1024 * 1024, RouteTable routes=None,
                 bytes event_time_key=None, int64_t event_time_unit_ns=1000000,
                 bytes first_sequence_key=None, bytes last_sequence_key=None,
                 Py_ssize_t scan_window=256, on_sequence_gap=None, dict last_sequences=None,
                 Py_ssize_t max_streams=100000, bint parse_with_handler=False,
                 CompiledParser compiled_parser=None, bint handler_takes_stream=False,
                 Py_ssize_t max_backlog=100000, Py_ssize_t max_backlog_bytes=128 * 1024 * 1024,
                 int64_t slice_ns=20000000, int64_t backlog_warning_ns=1000000000, on_backlog=None):
        if scan_window < 0:
            raise ValueError(f"scan_window must be >= 0, got {scan_window}")
        if max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {max_streams}")
        self.max_streams = max_streams
        scan = FieldScan(event_time_key, event_time_unit_ns, first_sequence_key, last_sequence_key,
                         scan_window)
        if event_time_key is not None or first_sequence_key is not None:
            self._scan = scan
        self.routes = routes
        self._on_sequence_gap = on_sequence_gap
        self._seed_sequences = last_sequences
        self._frame.first_sequence = -1
        self._frame.last_sequence = -1
        self._wall_offset_ns = realtime_ns() - monotonic_ns()
        self._buffer = FrameBuffer()
        global _next_serial
        _next_serial += 1
        self._serial = _next_serial
        self._parse = parse
        self._extract = extract
        self._handler = handler
        self._report_error = report_error
        self._on_disconnect = on_disconnect
        self._parse_async = is_async_callable(parse)
        self._parse_with_handler = parse_with_handler
        self._compiled = compiled_parser
        self._handler_async = is_async_callable(handler)
        self._handler_takes_stream = handler_takes_stream
        self.max_message_size = max_message_size
        self._streams = {}
        self._fragments = bytearray()
        self._backlog = deque()
        self._stream_backlogs = {}
        self._policies = {}
        if max_backlog < 1 or max_backlog_bytes < 1 or slice_ns < 1 or backlog_warning_ns < 1:
            raise ValueError("max_backlog, max_backlog_bytes, slice_ns and backlog_warning_ns must be positive")
        self.max_backlog = max_backlog
        self.max_backlog_bytes = max_backlog_bytes
        self._slice_ns = slice_ns
        self._backlog_warning_ns = backlog_warning_ns
        self._on_backlog = on_backlog
        self.close_code = 0
        self.close_reason = None
        memset(self._latency, 0, sizeof(self._latency))

    # ------------------------------------------------------------ picows hooks
    cpdef on_ws_connected(self, WSTransport transport):
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self.connected_ns = monotonic_ns()
        self._wall_offset_ns = realtime_ns() - self.connected_ns
        self.last_receive_ns = self.connected_ns

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef int64_t now = monotonic_ns()
        cdef WSMsgType msg_type = frame.msg_type
        self.frames_received += 1
        self.last_receive_ns = now
        # The time slice of a read batch (the frames picows parsed from one
        # read) counts from its first frame; see _receive_message.
        if not self._in_batch:
            self._in_batch = True
            self._batch_start_ns = now
        # The uncompressed path pays one test for compression: frame.rsv1.
        if (msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY) and frame.fin \
                and not self._assembling and not frame.rsv1:
            self.messages_received += 1
            self.bytes_received += <uint64_t>frame.payload_size
            _receive_message(self, frame.payload_ptr, frame.payload_size, None, now, <int>msg_type)
        elif msg_type == WSMsgType.CLOSE:
            _on_close(self, transport, frame)
        elif msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY or msg_type == WSMsgType.CONTINUATION:
            if frame.rsv1 or self._fragment_compressed:
                _on_compressed(self, frame, now)
            else:
                _on_fragment(self, frame, now)
        # PING is answered by picows's auto-pong; a PONG is consumed by its
        # auto-ping. Neither reaches Python.
        if frame.last_in_buffer:
            self._in_batch = False

    cpdef on_ws_disconnected(self, WSTransport transport):
        if self._on_disconnect is not None:
            self._on_disconnect(self)

    def feed(self, bytes payload not None, int opcode=1, object dedup_key=None):
        """Receive one whole message that came from elsewhere than a socket (the NATS bus).

        It takes the path of a message read from the socket: counted,
        stamped, routed or parsed, sequence-checked, delivered, in order
        behind a suspended handler. Start a core without a socket with
        ``on_ws_connected(None)``, end it with ``on_ws_disconnected(None)``.

        With ``dedup_key`` (the message's stream), a payload already fed under
        that key among the last ``HANDOVER_RING`` (128) is a copy (a second
        publisher's): dropped before routing, counted in ``overlap_dropped``
        (the handover's per-stream digest rings, with this core as the only
        side). The socket path never reads this.

        Args:
            payload: The message's bytes (kept while it waits in the backlog).
            opcode: 1 text, 2 binary (the parser's ``frame_type``).
            dedup_key: None, or the key of its de-duplication ring.

        Returns:
            False when the message was dropped as a copy, else True.
        """
        cdef int64_t now = monotonic_ns()
        cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
        cdef const char* ptr = PyBytes_AS_STRING(payload)
        if opcode != 1 and opcode != 2:
            raise ValueError(f"opcode must be 1 (text) or 2 (binary), got {opcode}")
        self.frames_received += 1
        self.messages_received += 1
        self.bytes_received += <uint64_t>size
        self.last_receive_ns = now
        if dedup_key is not None:
            if self._feed_dedup is None:
                self._feed_dedup = Handover()
            if not self._feed_dedup.admit(dedup_key, False, _digest(ptr, size)):
                self.overlap_dropped += 1
                return False
        # Each fed message is a read batch of its own (the slice never runs out).
        self._batch_start_ns = now
        _receive_message(self, ptr, size, payload, now, opcode)
        return True


    def enable_deflate(self, bint server_no_context_takeover=False, bint client_no_context_takeover=False,
                       int server_max_window_bits=15, int client_max_window_bits=15,
                       Py_ssize_t compress_threshold=64):
        """Use permessage-deflate with the negotiated parameters (before the first frame).

        Args:
            server_no_context_takeover: Inflate every message on its own.
            client_no_context_takeover: Compress every message on its own.
            server_max_window_bits: The server's window (8 to 15).
            client_max_window_bits: The window the client may use (8 to
                15). With 8 the client sends uncompressed: zlib cannot
                compress raw deflate within a 256-byte window.
            compress_threshold: Messages shorter than this go uncompressed
                (allowed by RFC 7692, and cheaper for tiny messages).
        """
        _enable_deflate(self, server_no_context_takeover, client_no_context_takeover,
                        server_max_window_bits, client_max_window_bits, compress_threshold)

    # ------------------------------------------------------------------- send
    cpdef send_text(self, object text):
        """Send one TEXT frame: a str is encoded as UTF-8, bytes go as they are.

        Compressed when permessage-deflate is on and the message is at least
        ``compress_threshold`` bytes long.
        """
        cdef object data = (<str>text).encode("utf-8") if type(text) is str else text
        self._send_data(WSMsgType.TEXT, data)

    cpdef send_bytes(self, object data):
        """Send a bytes-like object as one BINARY frame (compressed as ``send_text``)."""
        self._send_data(WSMsgType.BINARY, data)

    cdef void _send_data(self, WSMsgType msg_type, object data) except *:
        cdef Py_ssize_t size = len(data)
        if self._deflater is not None and size >= self.compress_threshold:
            self.transport.send(msg_type, _compress(self, data), True, True)
            self.compressed_sent += 1
        else:
            self.transport.send(msg_type, data)
        self.messages_sent += 1
        self.bytes_sent += <uint64_t>size

    # ------------------------------------------------------------- snapshots
    cpdef dict counters(self):
        """Return the connection's counters as a new dict (built on demand)."""
        return {
            "frames_received": self.frames_received,
            "messages_received": self.messages_received,
            "bytes_received": self.bytes_received,
            "messages_delivered": self.messages_delivered,
            "control_messages": self.control_messages,
            "parse_errors": self.parse_errors,
            "classify_errors": self.classify_errors,
            "handler_errors": self.handler_errors,
            "oversize_errors": self.oversize_errors,
            "sequence_gap_errors": self.sequence_gap_errors,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "suspensions": self.suspensions,
            "sequence_gaps": self.sequence_gaps,
            "untracked_messages": self.untracked_messages,
            "missing_sequences": self.missing_sequences,
            "backlog": self._queued + len(self._backlog),
            "conflated": self.conflated,
            "policy_dropped": self.policy_dropped,
            "backlog_dropped": self.backlog_dropped,
            "backlog_abandoned": self.backlog_abandoned,
            "deferrals": self.deferrals,
            "overlap_dropped": self.overlap_dropped,
            "redundant_dropped": self.redundant_dropped,
            "protocol_errors": self.protocol_errors,
            "compressed_received": self.compressed_received,
            "inflated_bytes": self.inflated_bytes,
            "compressed_sent": self.compressed_sent,
        }

    cpdef list latency_histogram(self):
        """Return the receive-to-handler-done histogram as a list of counts.

        Bucket ``i`` spans ``latency_bucket_bounds(i)`` nanoseconds.
        """
        return [self._latency[i] for i in range(LATENCY_BUCKETS)]

    def stream_stats(self):
        """Return the per-stream counters, keyed by stream id (a new dict)."""
        return dict(self._streams)

    def begin_handover(self, Handover handover, bint shadow):
        """Share ``handover`` with the other connection of a make-before-break.

        ``shadow`` is True for the new connection, False for the old one.
        Costs a payload digest and a lookup per message until ``end_handover``.
        """
        self._handover = handover
        self._shadow = shadow

    def end_handover(self):
        """Deliver every message again, without de-duplication."""
        self._handover = None
        self._shadow = False

    def begin_redundancy(self, FirstArrival arrival, int path, dict streams, dict backlogs=None):
        """Be path ``path`` of a redundant group: deliver a message only if it arrives here first.

        ``streams`` is the group's per-stream stats, shared by every path's
        core, so counts and sequence continuity are those of the messages
        delivered, whichever path brought them. ``backlogs``, the group's
        stream backlogs, likewise: a stream whose handler is behind (its Task
        on any path's core) keeps its later messages waiting, in order, under
        its policy, whichever path brought them. Costs a payload digest and a
        ring lookup per message, and a dict lookup in the stream backlogs.
        """
        arrival._check(path)
        if self._arrival is None and backlogs is not None:
            # Another path's Task may hold any stream back: every delivery
            # looks the stream up (one count that never returns to 0; the
            # core without redundancy keeps its single test).
            self._busy_streams += 1
        self._arrival = arrival
        self._path = path
        self._streams = streams
        if backlogs is not None:
            self._stream_backlogs = backlogs
        self._last_stream_id = None
        self._last_stats = None

    @property
    def arrival(self):
        """The ``FirstArrival`` shared with the other paths of a redundant group, or None."""
        return self._arrival

    @property
    def path(self):
        """This connection's path number in its redundant group (0 without one)."""
        return self._path

    @property
    def tap(self):
        """``tap(payload: bytes, receive_ns: int, opcode: int)`` or None.

        Called with a copy of every whole data message before it is parsed
        (control replies included): ``receive_ns`` is the wall-clock receive
        time in Unix nanoseconds, ``opcode`` 1 text or 2 binary. For recording;
        it costs a copy per message while set.
        """
        return self._tap

    @tap.setter
    def tap(self, value):
        if value is not None and not callable(value):
            raise TypeError("tap must be callable or None")
        self._tap = value

    @property
    def publisher(self):
        """The ``FramePublisher`` every delivered data message is written to, or None.

        Set it (several connections may share one) and each message handed
        to a handler is also written, with its stream's subject and the bus
        headers, into the publisher's buffer (see ``FramePublisher``). None
        (the default) costs one pointer test per message.
        """
        return self._publisher

    @publisher.setter
    def publisher(self, FramePublisher value):
        self._publisher = value

    @property
    def handover(self):
        """The ``Handover`` shared with an overlapping connection, or None."""
        return self._handover

    def forget_stream(self, stream_id):
        """Drop a stream's counters and sequence state (after an unsubscribe)."""
        cdef Route route
        self._streams.pop(stream_id, None)
        if self.routes is not None:
            route = self.routes.get(stream_id)
            if route is not None and route.stats_serial == self._serial:
                route.stats = None
                route.stats_serial = 0
        if self._last_stream_id is not None and self._last_stream_id == stream_id:
            self._last_stream_id = None
            self._last_stats = None
        if self._seed_sequences is not None:
            self._seed_sequences.pop(stream_id, None)
        backlog = self._stream_backlogs.get(stream_id)
        if backlog is not None and backlog.task is None:
            del self._stream_backlogs[stream_id]

    def set_stream_policy(self, stream_id, str policy, Py_ssize_t keep=0, int64_t alarm_ns=0):
        """Say what waits of ``stream_id`` while its handler is behind (from its next wait on).

        Streams without one are lossless with ``backlog_warning_ns`` as
        their alarm age.

        Args:
            stream_id: The stream.
            policy: ``"lossless"``, ``"latest"`` or ``"drop_oldest"``.
            keep: For ``"drop_oldest"``: how many waiting messages are kept (>= 1).
            alarm_ns: Age of the oldest waiting message at which
                ``on_backlog("aging", ...)`` is called; 0: never.
        """
        cdef int kind
        cdef StreamBacklog backlog
        if policy not in POLICY_NAMES:
            raise ValueError(f"policy must be one of {POLICY_NAMES}, got {policy!r}")
        kind = POLICY_NAMES.index(policy)
        if kind == POLICY_LATEST:
            keep = 1
        elif kind == POLICY_DROP_OLDEST and keep < 1:
            raise ValueError(f"drop_oldest keeps at least 1 message, got {keep}")
        elif kind == POLICY_LOSSLESS:
            keep = 0
        if alarm_ns < 0:
            raise ValueError(f"alarm_ns must be >= 0, got {alarm_ns}")
        self._policies[stream_id] = (kind, keep, alarm_ns)
        backlog = self._stream_backlogs.get(stream_id)
        if backlog is not None:
            backlog.policy = kind
            backlog.keep = keep
            backlog.alarm_ns = alarm_ns

    def stream_backlogs(self):
        """Return each stream's ``StreamBacklog`` (policy, waiting, counters), keyed by stream id (a new dict).

        A stream is there once its handler has suspended (or its policy was
        set); the key None stands for messages no stream was named for.
        """
        return dict(self._stream_backlogs)

    def pending_tasks(self):
        """Return the Tasks finishing this connection's suspended work (a new list).

        ``pending_task`` (a suspended parser, or the connection's backlog),
        then one per stream whose handler is behind. Closing a connection
        cancels them; nothing else of the core outlives it.
        """
        cdef StreamBacklog backlog
        tasks = [] if self.pending_task is None else [self.pending_task]
        if self._busy_streams:
            for backlog in self._stream_backlogs.values():
                # A Task cancelled before its first step never runs its
                # cleanup: done, it is not pending any more. Under
                # redundancy the backlogs are shared: only this core's.
                if backlog.task is not None and backlog.owner is self and not backlog.task.done():
                    tasks.append(backlog.task)
        return tasks

    @property
    def backlog_size(self):
        """Messages waiting: behind a suspended parser, for the next slice, or behind their stream's handler."""
        return len(self._backlog) + self._queued

    def report_oversize(self, message):
        """Count and report a message refused as too big before it reached the core.

        picows refuses a single frame larger than its ``max_frame_size`` itself
        (it closes with 1009 and never calls ``on_ws_frame``): the client says
        so here, so that the refusal is counted (``oversize_errors``) and
        reported like the core's own.
        """
        _error(self, ERROR_OVERSIZE, ValueError(message), None)

    @property
    def backlog_bytes(self):
        """Bytes of the messages waiting in the backlogs."""
        return self._backlog_bytes + self._queued_bytes

    def backlog_age_ns(self):
        """Nanoseconds since the oldest message not yet handled arrived; 0 when none waits."""
        cdef int64_t oldest = 0
        cdef int64_t stream_oldest
        cdef StreamBacklog backlog
        if self.pending_task is not None and self._suspended_coro is not None:
            oldest = self._suspended_frame.receive_ns
        elif self._backlog:
            oldest = (<tuple>self._backlog[0])[1]
        if self._busy_streams:
            for backlog in self._stream_backlogs.values():
                if backlog.owner is not self:
                    continue
                stream_oldest = backlog._oldest_ns()
                if stream_oldest and (oldest == 0 or stream_oldest < oldest):
                    oldest = stream_oldest
        return monotonic_ns() - oldest if oldest else 0
