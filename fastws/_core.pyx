# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The frame core: per-frame receive, counting, dispatch and fast send.

Everything here runs once per frame, so it avoids Python-level calls it can
hoist, allocates only what the adapter's parser needs (a memoryview over the
read buffer) and never creates a Task unless an ``async`` parser or handler
really suspends.
"""
import asyncio
import zlib
from collections import deque
from inspect import iscoroutinefunction

from cpython.buffer cimport PyBUF_READ, PyBuffer_FillInfo
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem, PyDict_Size
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.object cimport PyObject
from cpython.list cimport PyList_GET_ITEM
from cpython.ref cimport Py_DECREF, Py_XDECREF
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy, memset
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from fastws._suspend import continue_coroutine


cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    PySendResult PyIter_Send(object iterator, object arg, PyObject** presult)
    Py_ssize_t Py_REFCNT(object o)


cdef extern from *:
    """
    /* Returns -1 so that Cython propagates the exception PyIter_Send set. */
    static int fastws_raise_pending(void) { return -1; }
    """
    int fastws_raise_pending() except -1


cdef enum:
    # What a suspended coroutine was doing when it yielded.
    STAGE_PARSE = 1
    STAGE_HANDLER = 2


ERROR_KINDS = ("parse", "classify", "handler", "oversize", "protocol")

# permessage-deflate (RFC 7692): bound once, not looked up per message.
cdef object _decompressobj = zlib.decompressobj
cdef object _compressobj = zlib.compressobj
cdef object _zlib_error = zlib.error
# The empty stored block a sender strips from each compressed message
# (section 7.2.1) and the receiver appends again (section 7.2.2).
cdef bytes _DEFLATE_TAIL = b"\x00\x00\xff\xff"
cdef int _Z_SYNC_FLUSH = zlib.Z_SYNC_FLUSH
cdef int _Z_FULL_FLUSH = zlib.Z_FULL_FLUSH
# How much of a bad payload is copied into an error report.
cdef Py_ssize_t _ERROR_PREVIEW_BYTES = 256


# Numbers FrameHandlers, so that a route's cached stats are known to be this
# connection's (an address could be reused by a later core; a serial is not).
cdef uint64_t _next_serial = 0


cdef int64_t monotonic_ns() noexcept nogil:
    """CLOCK_MONOTONIC in nanoseconds, the clock of ``time.monotonic_ns()``."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef int64_t realtime_ns() noexcept nogil:
    """CLOCK_REALTIME in nanoseconds (wall clock, comparable with exchange times)."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def monotonic_time_ns():
    """Return the core's receive-time clock (``CLOCK_MONOTONIC``) in nanoseconds."""
    return monotonic_ns()


cdef inline int _latency_bucket(int64_t ns) noexcept nogil:
    cdef uint64_t v = <uint64_t>ns if ns > 0 else 0
    cdef int log2
    if v < 8:
        return <int>v
    log2 = 63 - __builtin_clzll(v)
    return log2 * 4 + <int>((v >> (log2 - 2)) & 3)


cdef inline int _latency_bucket_capped(int64_t value, int buckets) noexcept nogil:
    cdef int index = _latency_bucket(value)
    return index if index < buckets else buckets - 1


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


def latency_bucket_bounds(index):
    """Return the ``(low, high)`` nanosecond bounds of a latency bucket.

    Buckets 0-7 hold exactly 0-7 ns; from 8 ns on, each power of two is split
    into 4 buckets (indices 12 and up; 8-11 stay empty).
    """
    if index < 12:
        return index, index + 1
    log2 = index // 4
    return (4 + index % 4) << (log2 - 2), (5 + index % 4) << (log2 - 2)


def is_async_callable(fn):
    """True for an ``async def`` function, method, partial or object whose
    ``__call__`` is ``async def``: decided once, not per message."""
    return iscoroutinefunction(fn) or iscoroutinefunction(getattr(fn, "__call__", None))


cdef inline uint64_t _fnv1a(const char* ptr, Py_ssize_t size) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(size):
        h = (h ^ <unsigned char>ptr[i]) * 1099511628211ULL
    return h


cdef inline uint64_t _digest(const char* ptr, Py_ssize_t size) noexcept nogil:
    """A 64-bit digest of a payload: FNV-1a over 8-byte words (8x fewer steps than per byte)."""
    cdef uint64_t h = 14695981039346656037ULL ^ <uint64_t>size
    cdef uint64_t word
    cdef Py_ssize_t i = 0
    while i + 8 <= size:
        memcpy(&word, ptr + i, 8)
        h = (h ^ word) * 1099511628211ULL
        h ^= h >> 29
        i += 8
    while i < size:
        h = (h ^ <unsigned char>ptr[i]) * 1099511628211ULL
        i += 1
    return h


cdef inline int64_t _parse_uint(const char* ptr, Py_ssize_t size) noexcept nogil:
    """The non-negative decimal integer at ``ptr``, or -1 (none, or over 18 digits)."""
    cdef Py_ssize_t i = 0
    cdef int64_t value = 0
    cdef char c
    while i < size:
        c = ptr[i]
        if c < 48 or c > 57:
            break
        if i == 18:
            return -1
        value = value * 10 + (c - 48)
        i += 1
    return value if i > 0 else -1


cdef class StreamStats:
    """Per-stream counters kept by the core.

    Attributes:
        stream_type: What ``_extract_stream_info`` (or the route) said.
        messages: Messages delivered on this stream over this connection.
        first_receive_ns, last_receive_ns: Monotonic receive times.
        last_sequence: Last sequence number seen (-1: none).
        sequence_gaps: Times a message did not continue the previous one.
        missing_sequences: Sequence numbers skipped over, summed.
        stale_sequences: Messages whose first sequence number was not after
            the last one seen (replays, duplicates).
        last_event_ns: The exchange's event time of the last message (Unix ns,
            0: none).
        clock_ahead: Messages stamped later than their local receive time.
    """

    def __cinit__(self, stream_type):
        self.stream_type = stream_type
        self.last_sequence = -1
        memset(self._event_latency, 0, sizeof(self._event_latency))

    def event_latency_histogram(self):
        """Exchange-event-to-receive counts per bucket (microseconds).

        Bucket ``i`` spans ``latency_bucket_bounds(i)`` microseconds.
        """
        return [self._event_latency[i] for i in range(EVENT_LATENCY_BUCKETS)]


cdef class FrameBuffer:
    """A reusable buffer over a frame's bytes, for route decoders.

    One per core, re-pointed at each routed frame instead of a new
    ``memoryview`` per frame (callgrind: ~1100 instructions a message for
    creating and freeing one). It supports only the buffer protocol
    (``msgspec`` decoders, ``bytes(buf)``, ``memoryview(buf)``). Valid only
    during the decoder's call: one kept past it is retired, and any later use
    raises ``ValueError``.
    """

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        if not self.valid:
            raise ValueError("frame buffer used after its decode call (copy what you keep)")
        PyBuffer_FillInfo(buffer, self, <void*>self.ptr, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer* buffer):
        pass


cdef class Route:
    """One stream of the fast route: its key, decoder, handler and type."""

    def __cinit__(self, str stream_id, decode, handler, stream_type, bint sequenced=True,
                  bint whole_frame=False, bint pass_stream=True):
        self.stream_id = stream_id
        self.key = stream_id.encode("utf-8")
        self.decode = decode
        self.handler = handler
        self.stream_type = stream_type
        self.handler_async = is_async_callable(handler)
        self.sequenced = sequenced
        self.whole_frame = whole_frame
        self.pass_stream = pass_stream
        self.key_hash = _fnv1a(PyBytes_AS_STRING(self.key), PyBytes_GET_SIZE(self.key))


cdef class RouteTable:
    """Streams whose frames skip the generic parser: the typed fast route.

    A frame shaped ``<prefix><key><separator><data><suffix>`` whose key is a
    registered stream goes straight to that stream's ``decode(view_of_data)``
    and then to ``handler(stream_id, message)``; the key is read from the raw
    bytes and looked up without allocating. Any other frame (acks, errors,
    streams not registered) takes the generic route. The defaults match the
    combined-stream envelope ``{"stream":"<name>","data":{...}}``.

    Args:
        prefix: Bytes before the key.
        separator: Bytes between the key and the data (they begin with the
            key's terminator, so a key never contains its first byte).
        suffix: Bytes after the data, at the end of the frame.
    """

    def __init__(self, bytes prefix=b'{"stream":"', bytes separator=b'","data":', bytes suffix=b"}"):
        if not prefix or not separator:
            raise ValueError("prefix and separator must not be empty")
        self.prefix = prefix
        self.separator = separator
        self.suffix = suffix
        self._by_id = {}
        self._rebuild(16)

    def add(self, str stream_id, decode, handler, stream_type, *, bint sequenced=True,
            bint whole_frame=False, bint pass_stream=True):
        """Route ``stream_id``'s frames to ``decode`` and then ``handler``.

        Replaces an earlier route of the same stream.

        Args:
            stream_id: The key, as it appears in the frame.
            decode: ``decode(buffer) -> message`` (None: a control message).
                ``buffer`` supports only the buffer protocol and is valid
                during the call.
            handler: ``handler(stream_id, message)`` (or ``handler(message)``
                without ``pass_stream``), sync or async.
            stream_type: Reported in the stream's stats.
            sequenced: The stream's messages carry the core's sequence keys
                (only then are they looked for).
            whole_frame: ``decode`` gets the whole frame, not just the data.
            pass_stream: Call ``handler(stream_id, message)``.
        """
        route = Route(stream_id, decode, handler, stream_type, sequenced, whole_frame, pass_stream)
        if self.separator[0] in route.key:
            raise ValueError(f"stream id {stream_id!r} contains the separator's first byte")
        self._by_id[stream_id] = route
        if len(self._by_id) * 2 > len(self._slots):
            self._rebuild(len(self._slots) * 2)
        else:
            self._rebuild(len(self._slots))
        return route

    def remove(self, str stream_id):
        """Stop routing ``stream_id`` (its frames take the generic route again)."""
        cdef Route route = self._by_id.pop(stream_id, None)
        if route is not None:
            route.stats = None
            route.stats_serial = 0
            self._rebuild(len(self._slots))

    def get(self, str stream_id):
        """The ``Route`` of ``stream_id``, or None."""
        return self._by_id.get(stream_id)

    def __len__(self):
        return len(self._by_id)

    def __contains__(self, stream_id):
        return stream_id in self._by_id

    def __iter__(self):
        return iter(list(self._by_id))

    cdef void _rebuild(self, Py_ssize_t capacity):
        # Open addressing with linear probing; rebuilt on every change
        # (subscriptions change rarely, lookups happen per frame).
        cdef Route route
        cdef Py_ssize_t index
        slots = [None] * capacity
        for route in self._by_id.values():
            index = <Py_ssize_t>(route.key_hash & <uint64_t>(capacity - 1))
            while slots[index] is not None:
                index = (index + 1) & (capacity - 1)
            slots[index] = route
        self._slots = slots
        self._mask = capacity - 1

    cdef Route match(self, const char* ptr, Py_ssize_t size,
                     Py_ssize_t* data_start, Py_ssize_t* data_size):
        """The route of a frame, with its data's place; None for the generic route."""
        cdef Py_ssize_t plen = PyBytes_GET_SIZE(self.prefix)
        cdef Py_ssize_t slen = PyBytes_GET_SIZE(self.separator)
        cdef Py_ssize_t tlen = PyBytes_GET_SIZE(self.suffix)
        cdef const char* sep = PyBytes_AS_STRING(self.separator)
        cdef const char* key
        cdef const char* end
        cdef Py_ssize_t key_size, start
        cdef uint64_t h
        cdef Py_ssize_t index
        cdef PyObject* slot
        cdef Route route
        if size < plen + slen + tlen or memcmp(ptr, PyBytes_AS_STRING(self.prefix), plen) != 0:
            return None
        key = ptr + plen
        end = <const char*>memchr(key, sep[0], size - plen)
        if end == NULL:
            return None
        key_size = end - key
        start = plen + key_size + slen
        if start + tlen > size or memcmp(end, sep, slen) != 0:
            return None
        if tlen and memcmp(ptr + size - tlen, PyBytes_AS_STRING(self.suffix), tlen) != 0:
            return None
        h = _fnv1a(key, key_size)
        index = <Py_ssize_t>(h & <uint64_t>self._mask)
        while True:
            slot = PyList_GET_ITEM(self._slots, index)
            if <object>slot is None:
                return None
            route = <Route>slot
            if route.key_hash == h and PyBytes_GET_SIZE(route.key) == key_size \
                    and memcmp(PyBytes_AS_STRING(route.key), key, key_size) == 0:
                data_start[0] = start
                data_size[0] = size - tlen - start
                return route
            index = (index + 1) & self._mask


cdef class HandoverCell:
    """One stream's state while two connections overlap (see ``Handover``)."""

    cdef bint contains(self, uint64_t digest) noexcept:
        cdef Py_ssize_t i
        for i in range(self.ring_count):
            if self.ring[i] == digest:
                return True
        return False

    cdef void push(self, uint64_t digest) noexcept:
        self.ring[self.ring_next] = digest
        self.ring_next = (self.ring_next + 1) % HANDOVER_RING
        if self.ring_count < HANDOVER_RING:
            self.ring_count += 1


cdef class Handover:
    """Lets each message through once while a new connection overlaps the old.

    Make before break: the replacement connection (the *shadow*) subscribes
    while the old one still delivers. Both carry the same messages of a
    stream in the same order, and an exchange sends the same bytes to every
    subscriber, so a message is known by a 64-bit digest of its payload; it
    needs no sequence number, and works for any format.

    Per stream, the digests of the last ``HANDOVER_RING`` delivered messages
    are kept. The old connection delivers what was not delivered yet. The
    shadow drops everything until it is *aligned*: until it receives a
    message already delivered (it is then behind or level with the old one),
    or the old one delivers the newest message the shadow has seen (level).
    From then on either connection delivers a message the first time it
    arrives, so nothing is lost, repeated or reordered. Once every stream the
    shadow has seen is aligned, the old connection can close (``finish``).
    """

    def __init__(self):
        self._cells = {}

    cdef bint admit(self, object stream_id, bint shadow, uint64_t digest):
        """True when this connection is to deliver this message."""
        cdef PyObject* found = PyDict_GetItem(self._cells, stream_id)
        cdef HandoverCell cell
        if found is NULL:
            if self.finished:
                # Nothing of the stream was delivered while both were open.
                return shadow
            cell = HandoverCell()
            PyDict_SetItem(self._cells, stream_id, cell)
        else:
            cell = <HandoverCell>found
        if shadow:
            cell.shadow_seen = True
            cell.shadow_last = digest
            if cell.contains(digest):
                if not cell.aligned:
                    cell.aligned = True
                    self.aligned_streams += 1
                return False
            if not cell.aligned:
                return False      # the old connection will deliver it
            cell.push(digest)
            return True
        if self.finished or cell.contains(digest):
            return False
        cell.push(digest)
        cell.old_delivered += 1
        if not cell.aligned and cell.shadow_seen and digest == cell.shadow_last:
            cell.aligned = True
            self.aligned_streams += 1
        return True

    def mark_subscribed(self):
        """The new connection's subscriptions are acknowledged: from now on a
        message the old one delivers will reach the new one too."""
        for cell in self._cells.values():
            (<HandoverCell>cell).old_at_mark = (<HandoverCell>cell).old_delivered
        self._marked = True

    def unaligned_streams(self):
        """Streams the new connection has not caught up on yet.

        Those it has seen without being aligned, and, once subscribed, those
        the old connection delivered since (their copies are on the way).
        """
        cdef HandoverCell cell
        unaligned = []
        for stream_id, value in self._cells.items():
            cell = <HandoverCell>value
            if not cell.aligned and (cell.shadow_seen or (
                    self._marked and cell.old_delivered > cell.old_at_mark)):
                unaligned.append(stream_id)
        return unaligned

    @property
    def stream_count(self):
        """Streams seen by either connection so far."""
        return len(self._cells)

    def finish(self):
        """The old connection delivers nothing more; the new one everything new.

        Returns the streams that were not aligned: for those, messages the
        new connection saw before the old one may be lost.
        """
        unaligned = self.unaligned_streams()
        for cell in self._cells.values():
            (<HandoverCell>cell).aligned = True
        self.finished = True
        return unaligned


cdef class FrameHandler(WSListener):
    """The picows listener that carries every frame of one connection.

    Per data frame: count it, stamp its receive time (monotonic ns, before
    parsing), reassemble fragments, call ``parse(view)`` with a zero-copy
    ``memoryview`` of the payload, call ``extract(message)`` and dispatch the
    message to ``handler(message)``.

    The view handed to ``parse`` points into picows's read buffer and is valid
    only during that call (up to the parser's first suspension for an
    ``async`` parser): copy what you keep. A view still referenced after the
    call is released, so a late use raises ``ValueError`` instead of reading
    overwritten bytes.

    ``parse`` returning ``None`` means the frame was a control message the
    adapter consumed (an ack, a pong); it is counted and not dispatched.

    ``async`` callables are driven with ``send(None)``: one that completes
    without suspending costs no Task. One that suspends is finished in a Task
    while later frames of this connection wait in arrival order, and reading
    from the socket is paused until the backlog is drained.

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
            the second argument (for parsers that read ``frame_type`` or set
            the frame's fields while another connection's core is live).
    """

    def __init__(self, parse, extract, handler, report_error, on_disconnect=None,
                 Py_ssize_t max_message_size=10 * 1024 * 1024, RouteTable routes=None,
                 bytes event_time_key=None, int64_t event_time_unit_ns=1000000,
                 bytes first_sequence_key=None, bytes last_sequence_key=None,
                 Py_ssize_t scan_window=256, on_sequence_gap=None, dict last_sequences=None,
                 Py_ssize_t max_streams=100000, bint parse_with_handler=False):
        if scan_window < 0:
            raise ValueError(f"scan_window must be >= 0, got {scan_window}")
        if max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {max_streams}")
        self.max_streams = max_streams
        if (first_sequence_key is None) != (last_sequence_key is None):
            raise ValueError("first_sequence_key and last_sequence_key go together")
        for key in (event_time_key, first_sequence_key, last_sequence_key):
            if key is not None and len(key) < 4:
                raise ValueError(f"scan key {key!r} is too short (4 bytes at least, e.g. b'\"E\":')")
        self.routes = routes
        self._event_time_key = event_time_key
        if event_time_unit_ns <= 0:
            raise ValueError("event_time_unit_ns must be positive")
        self._event_time_unit_ns = event_time_unit_ns
        # Larger event times would overflow int64 nanoseconds: not read.
        self._max_event_time = 9223372036854775807 // event_time_unit_ns
        self._first_sequence_key = first_sequence_key
        self._last_sequence_key = last_sequence_key
        self._scan_window = scan_window
        self._scan = event_time_key is not None or first_sequence_key is not None
        self._event_key_size = len(event_time_key) if event_time_key is not None else 0
        self._first_key_size = len(first_sequence_key) if first_sequence_key is not None else 0
        self._last_key_size = len(last_sequence_key) if last_sequence_key is not None else 0
        keys = [k for k in (event_time_key, first_sequence_key, last_sequence_key) if k is not None]
        if keys:
            if len({k[-1] for k in keys}) != 1:
                raise ValueError("scan keys must share their last byte (':' for JSON keys)")
            self._scan_last = keys[0][-1]
        # Each key's last four bytes, compared as one word.
        if event_time_key is not None:
            memcpy(&self._event_key_word, PyBytes_AS_STRING(event_time_key) + len(event_time_key) - 4, 4)
        if first_sequence_key is not None:
            memcpy(&self._first_key_word, PyBytes_AS_STRING(first_sequence_key) + len(first_sequence_key) - 4, 4)
            memcpy(&self._last_key_word, PyBytes_AS_STRING(last_sequence_key) + len(last_sequence_key) - 4, 4)
        self._on_sequence_gap = on_sequence_gap
        self._seed_sequences = last_sequences
        self._frame_first_seq = -1
        self._frame_last_seq = -1
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
        self._handler_async = is_async_callable(handler)
        self.max_message_size = max_message_size
        self._streams = {}
        self._fragments = bytearray()
        self._backlog = deque()
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
        # The uncompressed path pays one test for compression: frame.rsv1.
        if (msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY) and frame.fin \
                and not self._assembling and not frame.rsv1:
            self.messages_received += 1
            self.bytes_received += <uint64_t>frame.payload_size
            self._deliver(frame.payload_ptr, frame.payload_size, now, <int>msg_type)
        elif msg_type == WSMsgType.CLOSE:
            self._on_close(transport, frame)
        elif msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY or msg_type == WSMsgType.CONTINUATION:
            if frame.rsv1 or self._fragment_compressed:
                self._on_compressed(frame, now)
            else:
                self._on_fragment(frame, now)
        # PING is answered by picows's auto-pong; a PONG is consumed by its
        # auto-ping. Neither reaches Python.

    cpdef on_ws_disconnected(self, WSTransport transport):
        if self._on_disconnect is not None:
            self._on_disconnect(self)

    # ---------------------------------------------------------------- receive
    cdef inline void _deliver(self, char* ptr, Py_ssize_t size, int64_t recv_ns, int frame_type):
        if self.pending_task is not None:
            # An earlier message is still being handled: keep order, so this
            # one waits as a copy (the read buffer will be reused).
            self._backlog.append((PyBytes_FromStringAndSize(ptr, size), recv_ns, frame_type))
            return
        if self._receive(ptr, size, None, recv_ns, frame_type):
            self._start_resume_task()

    cdef bint _receive(self, const char* ptr, Py_ssize_t size, object owner, int64_t recv_ns,
                       int frame_type):
        """Route or parse one whole message. True when a coroutine suspended.

        ``owner`` is a ``bytes`` holding the payload (a reassembled or
        backlogged message), or None when ``ptr`` points into picows's buffer.
        ``frame_type`` is the message's opcode (1 text, 2 binary), readable
        by the parser as ``frame_type``.
        """
        cdef Route route
        cdef Py_ssize_t data_start = 0, data_size = 0
        cdef object view
        cdef bint suspended
        self.frame_type = frame_type
        # Wall-clock receive time without a second clock read per frame: the
        # monotonic stamp plus an offset refreshed every 65536 frames (and on
        # connect), which follows a stepped wall clock.
        if (self.frames_received & 0xFFFF) == 0:
            self._wall_offset_ns = realtime_ns() - monotonic_ns()
        self._frame_wall_ns = recv_ns + self._wall_offset_ns
        if self._tap is not None:
            self._call_tap(ptr, size, frame_type)
        # This frame's event time and sequence numbers: read below from the
        # raw bytes, or set by a compiled parser (see the .pxd).
        self._frame_event_ns = 0
        self._frame_first_seq = -1
        self._frame_last_seq = -1
        if self._handover is not None:
            self._frame_digest = _digest(ptr, size)
        if self.routes is not None:
            route = self.routes.match(ptr, size, &data_start, &data_size)
            if route is not None:
                if self._scan:
                    # The envelope holds no key: scan the data only, and the
                    # sequence keys only where the route carries them.
                    self._scan_fields(ptr + data_start, data_size, route.sequenced)
                if route.whole_frame:
                    return self._route(route, ptr, size, recv_ns)
                return self._route(route, ptr + data_start, data_size, recv_ns)
        if self._scan:
            self._scan_fields(ptr, size, True)
        if owner is not None:
            return self._process(owner, recv_ns)
        view = PyMemoryView_FromMemory(<char*>ptr, size, PyBUF_READ)
        suspended = self._process(view, recv_ns)
        if Py_REFCNT(view) > 1:
            # Somebody kept the view past the call: make a late use fail
            # loudly instead of reading bytes the next frame overwrote.
            try:
                view.release()
            except BufferError:
                pass
        return suspended

    cdef void _scan_fields(self, const char* ptr, Py_ssize_t size, bint sequenced) noexcept:
        """Read the event time and sequence numbers from the frame's first bytes.

        Keys share their last byte (``:`` for JSON keys), so the scan jumps
        from one such byte to the next with ``memchr`` and compares the four
        bytes that end there with each key's last four: a few comparisons per
        JSON field rather than per byte (callgrind: ~2600 instructions a
        frame for a byte-by-byte pass over a depth update, far fewer this
        way). Stops when every key is found.
        """
        # The window bounds where keys are looked for; a value that starts
        # inside it is read to its end (up to the frame's end).
        cdef Py_ssize_t n = size if size < self._scan_window else self._scan_window
        cdef Py_ssize_t i = 0, end
        cdef Py_ssize_t ekl = self._event_key_size
        cdef Py_ssize_t fkl = self._first_key_size
        cdef Py_ssize_t lkl = self._last_key_size
        cdef uint32_t word
        cdef const char* hit
        cdef bint want_event = ekl != 0
        cdef bint want_first = fkl != 0 and sequenced
        cdef bint want_last = lkl != 0 and sequenced
        cdef int64_t value
        # The frame's fields were reset by _receive, the only caller.
        while want_event or want_first or want_last:
            hit = <const char*>memchr(ptr + i, self._scan_last, n - i)
            if hit == NULL:
                return
            end = hit - ptr + 1       # just after the key
            i = end
            if end < 4:
                continue
            memcpy(&word, hit - 3, 4)
            if want_event and word == self._event_key_word and end >= ekl and (
                    ekl == 4 or memcmp(ptr + end - ekl, PyBytes_AS_STRING(self._event_time_key), ekl - 4) == 0):
                want_event = False
                value = _parse_uint(ptr + end, size - end)
                if 0 < value <= self._max_event_time:
                    self._frame_event_ns = value * self._event_time_unit_ns
            elif want_first and word == self._first_key_word and end >= fkl and (
                    fkl == 4 or memcmp(ptr + end - fkl, PyBytes_AS_STRING(self._first_sequence_key), fkl - 4) == 0):
                want_first = False
                self._frame_first_seq = _parse_uint(ptr + end, size - end)
            elif want_last and word == self._last_key_word and end >= lkl and (
                    lkl == 4 or memcmp(ptr + end - lkl, PyBytes_AS_STRING(self._last_sequence_key), lkl - 4) == 0):
                want_last = False
                self._frame_last_seq = _parse_uint(ptr + end, size - end)

    cdef bint _route(self, Route route, const char* ptr, Py_ssize_t size, int64_t recv_ns):
        """The fast route: decode the frame's data, hand it to the stream's handler."""
        cdef FrameBuffer buffer = self._buffer
        cdef object message
        cdef StreamStats stats
        buffer.ptr = ptr
        buffer.size = size
        buffer.valid = True
        try:
            message = route.decode(buffer)
        except Exception as exc:
            self._error(ERROR_PARSE, exc, PyBytes_FromStringAndSize(ptr, min(size, _ERROR_PREVIEW_BYTES)))
            return False
        finally:
            if Py_REFCNT(buffer) > 2:
                # Kept past the call (we hold two references): retire it so a
                # late use raises instead of reading another frame's bytes.
                buffer.valid = False
                self._buffer = FrameBuffer()
        if message is None:
            self.control_messages += 1
            return False
        # The stats of the stream on this connection, cached in its route.
        if route.stats_serial == self._serial:
            stats = route.stats
            stats.messages += 1
            stats.last_receive_ns = recv_ns
        else:
            stats = self._stats_for(route.stream_id, route.stream_type, recv_ns)
            if stats is not None:
                route.stats = stats
                route.stats_serial = self._serial
        if stats is not None and (self._frame_event_ns > 0 or self._frame_first_seq >= 0):
            self._apply_fields(route.stream_id, stats)
        if self._handover is not None and not self._handover.admit(route.stream_id, self._shadow,
                                                                    self._frame_digest):
            self.overlap_dropped += 1
            return False
        return self._call_handler(route.handler, route.handler_async,
                                  route.stream_id if route.pass_stream else None, message, recv_ns)

    cdef bint _process(self, object payload, int64_t recv_ns):
        """Parse and dispatch one message. True when a coroutine suspended."""
        cdef PyObject* result = NULL
        cdef PySendResult status
        cdef object message
        try:
            if self._parse_async:
                coro = self._parse(payload, self) if self._parse_with_handler else self._parse(payload)
                status = PyIter_Send(coro, None, &result)
                if status == PYGEN_RETURN:
                    message = <object>result
                    Py_DECREF(message)
                elif status == PYGEN_NEXT:
                    self._suspended_coro = coro
                    self._suspended_yield = <object>result
                    Py_DECREF(self._suspended_yield)
                    self._suspended_stage = STAGE_PARSE
                    self._suspended_recv_ns = recv_ns
                    # The scanned fields belong to this frame: keep them for
                    # the dispatch that follows the parser's resumption.
                    self._suspended_event_ns = self._frame_event_ns
                    self._suspended_wall_ns = self._frame_wall_ns
                    self._suspended_first_seq = self._frame_first_seq
                    self._suspended_last_seq = self._frame_last_seq
                    self._suspended_digest = self._frame_digest
                    return True
                else:
                    fastws_raise_pending()
            elif self._parse_with_handler:
                message = self._parse(payload, self)
            else:
                message = self._parse(payload)
        except Exception as exc:
            self._error(ERROR_PARSE, exc, payload)
            return False
        if message is None:
            self.control_messages += 1
            return False
        return self._dispatch(message, recv_ns)

    cdef bint _dispatch(self, object message, int64_t recv_ns):
        """Classify and hand a parsed message on. True when the handler suspended."""
        cdef StreamStats stats
        cdef object stream_id = None
        try:
            info = self._extract(message)
            if info is not None:
                stream_id = (<tuple?>info)[0]
                stats = self._stats_for(stream_id, (<tuple>info)[1], recv_ns)
                if stats is not None and (self._frame_event_ns > 0 or self._frame_first_seq >= 0):
                    self._apply_fields(stream_id, stats)
        except Exception as exc:
            self._error(ERROR_CLASSIFY, exc, None)
        if self._handover is not None and stream_id is not None and \
                not self._handover.admit(stream_id, self._shadow, self._frame_digest):
            self.overlap_dropped += 1
            return False
        return self._call_handler(self._handler, self._handler_async, None, message, recv_ns)

    cdef StreamStats _stats_for(self, object stream_id, object stream_type, int64_t recv_ns):
        """The stream's stats, counting this message."""
        cdef PyObject* found
        cdef StreamStats stats
        # Most frames of a connection belong to the stream of the frame
        # before: an equality test is cheaper than hashing a new str.
        if self._last_stream_id is not None and stream_id == self._last_stream_id:
            stats = self._last_stats
        else:
            found = PyDict_GetItem(self._streams, stream_id)
            if found is NULL:
                if PyDict_Size(self._streams) >= self.max_streams:
                    self.untracked_messages += 1
                    return None
                stats = StreamStats(stream_type)
                stats.first_receive_ns = recv_ns
                if self._seed_sequences is not None:
                    seed = self._seed_sequences.get(stream_id)
                    if seed is not None:
                        stats.last_sequence = seed
                PyDict_SetItem(self._streams, stream_id, stats)
            else:
                stats = <StreamStats>found
            self._last_stream_id = stream_id
            self._last_stats = stats
        stats.messages += 1
        stats.last_receive_ns = recv_ns
        return stats

    cdef void _apply_fields(self, object stream_id, StreamStats stats):
        """Record the scanned event time and check sequence continuity."""
        cdef int64_t latency, expected, first, last
        if self._frame_event_ns > 0:
            stats.last_event_ns = self._frame_event_ns
            latency = self._frame_wall_ns - self._frame_event_ns
            if latency < 0:
                stats.clock_ahead += 1
                latency = 0
            stats._event_latency[_latency_bucket_capped(latency // 1000, EVENT_LATENCY_BUCKETS)] += 1
        first = self._frame_first_seq
        last = self._frame_last_seq
        if first < 0 or last < 0:
            return
        if stats.last_sequence >= 0:
            expected = stats.last_sequence + 1
            if first > expected:
                stats.sequence_gaps += 1
                stats.missing_sequences += <uint64_t>(first - expected)
                self.sequence_gaps += 1
                self.missing_sequences += <uint64_t>(first - expected)
                if self._on_sequence_gap is not None:
                    try:
                        self._on_sequence_gap(stream_id, expected, first, last)
                    except Exception as exc:
                        self._error(ERROR_CLASSIFY, exc, None)
            elif first < expected:
                stats.stale_sequences += 1
                if last <= stats.last_sequence:
                    return
        stats.last_sequence = last

    cdef bint _call_handler(self, object handler, bint is_async, object stream_id,
                            object message, int64_t recv_ns):
        """Call ``handler(message)`` (or ``handler(stream_id, message)``). True when it suspended."""
        cdef PyObject* result = NULL
        cdef PySendResult status
        try:
            if is_async:
                coro = handler(message) if stream_id is None else handler(stream_id, message)
                status = PyIter_Send(coro, None, &result)
                if status == PYGEN_NEXT:
                    self._suspended_coro = coro
                    self._suspended_yield = <object>result
                    Py_DECREF(self._suspended_yield)
                    self._suspended_stage = STAGE_HANDLER
                    self._suspended_recv_ns = recv_ns
                    return True
                Py_XDECREF(result)
                if status == PYGEN_ERROR:
                    fastws_raise_pending()
            elif stream_id is None:
                handler(message)
            else:
                handler(stream_id, message)
        except Exception as exc:
            self._error(ERROR_HANDLER, exc, None)
            return False
        self.messages_delivered += 1
        self._record_latency(recv_ns)
        return False

    cdef inline void _record_latency(self, int64_t recv_ns) noexcept:
        self._latency[_latency_bucket(monotonic_ns() - recv_ns)] += 1
        self._latency_count += 1

    cdef void _error(self, int kind, object exc, object payload):
        cdef object preview = None
        if kind == ERROR_PARSE:
            self.parse_errors += 1
        elif kind == ERROR_CLASSIFY:
            self.classify_errors += 1
        elif kind == ERROR_HANDLER:
            self.handler_errors += 1
        if payload is not None:
            try:
                preview = bytes(payload[:_ERROR_PREVIEW_BYTES])
            except Exception:
                preview = None
        try:
            self._report_error(ERROR_KINDS[kind], exc, preview)
        except Exception:
            # The reporter is ours and must not raise; if it does, the feed
            # still goes on.
            pass

    cdef void _call_tap(self, const char* ptr, Py_ssize_t size, int frame_type):
        """Hand a copy of the message to the tap (a recorder); its errors are reported, not raised."""
        try:
            self._tap(PyBytes_FromStringAndSize(ptr, size), self._frame_wall_ns, frame_type)
        except Exception as exc:
            self._error(ERROR_HANDLER, exc, None)

    cdef void _on_fragment(self, WSFrame frame, int64_t recv_ns):
        cdef WSMsgType msg_type = frame.msg_type
        if msg_type == WSMsgType.CONTINUATION:
            if not self._assembling:
                self._error(ERROR_PARSE, ValueError("continuation frame without a first fragment"), None)
                return
        elif self._assembling:
            self._error(ERROR_PARSE, ValueError("new data frame inside a fragmented message"), None)
            self._fragments.clear()
        if msg_type != WSMsgType.CONTINUATION:
            self._fragment_type = <int>msg_type
        self._assembling = True
        if len(self._fragments) + frame.payload_size > self.max_message_size:
            self._fail_connection(ERROR_OVERSIZE, ValueError(
                f"fragmented message larger than max_message_size ({self.max_message_size})"),
                WSCloseCode.MESSAGE_TOO_BIG, b"message too big")
            return
        self._fragments.extend(frame.get_payload_as_memoryview())
        if frame.fin:
            self._assembling = False
            self.messages_received += 1
            self.bytes_received += <uint64_t>len(self._fragments)
            if self._fragment_compressed:
                self._fragment_compressed = False
                payload = self._inflate(self._fragments)
                self._fragments.clear()
                if payload is None:
                    return
            else:
                payload = bytes(self._fragments)
                self._fragments.clear()
            self._receive_owned(payload, recv_ns, self._fragment_type)

    cdef void _receive_owned(self, object payload, int64_t recv_ns, int frame_type):
        """Receive a whole message held in ``payload`` (a ``bytes``), in order."""
        if self.pending_task is not None:
            self._backlog.append((payload, recv_ns, frame_type))
        elif self._receive(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), payload, recv_ns,
                           frame_type):
            self._start_resume_task()

    # ------------------------------------------------------ permessage-deflate
    cdef void _on_compressed(self, WSFrame frame, int64_t recv_ns):
        """A data frame with RSV1 set, or a continuation of a compressed message."""
        cdef WSMsgType msg_type = frame.msg_type
        if self._failed:
            return
        if not self.deflate_enabled:
            self._fail_connection(ERROR_PROTOCOL, ValueError(
                "frame with RSV1 set, but no extension was negotiated"),
                WSCloseCode.PROTOCOL_ERROR, b"RSV1 set without an extension")
            return
        if msg_type == WSMsgType.CONTINUATION:
            if frame.rsv1:
                # RFC 7692 section 6.1: only a message's first frame has RSV1.
                self._fail_connection(ERROR_PROTOCOL, ValueError("continuation frame with RSV1 set"),
                                      WSCloseCode.PROTOCOL_ERROR, b"RSV1 set on a continuation frame")
                return
            self._on_fragment(frame, recv_ns)
            return
        if frame.fin and frame.rsv1 and not self._assembling:
            # A whole compressed message in one frame: inflated straight from
            # picows's read buffer.
            self.messages_received += 1
            self.bytes_received += <uint64_t>frame.payload_size
            payload = self._inflate(PyMemoryView_FromMemory(frame.payload_ptr, frame.payload_size, PyBUF_READ))
            if payload is not None:
                self._receive_owned(payload, recv_ns, <int>msg_type)
            return
        # The first frame of a fragmented message (or one that interrupts a
        # compressed one being reassembled, which _on_fragment reports).
        self._fragment_compressed = frame.rsv1
        self._on_fragment(frame, recv_ns)

    cdef object _inflate(self, object data):
        """Inflate one message; None when the connection was failed (corrupt or too big)."""
        cdef Py_ssize_t limit = self.max_message_size
        cdef object out, more
        cdef object decompress = self._decompress
        cdef object inflater = None
        if decompress is None:
            # No context takeover: every message starts a new stream.
            inflater = _decompressobj(self._inflate_wbits)
            decompress = inflater.decompress
        try:
            # Bounded: never more than limit + 1 bytes (one more tells a
            # bomb from a message of exactly the limit).
            out = decompress(data, limit + 1)
            if PyBytes_GET_SIZE(out) <= limit:
                more = decompress(_DEFLATE_TAIL, limit + 1 - PyBytes_GET_SIZE(out))
                if PyBytes_GET_SIZE(more):
                    out = out + more
        except _zlib_error as exc:
            self._fail_connection(ERROR_PROTOCOL, ValueError(f"permessage-deflate: cannot inflate: {exc}"),
                                  WSCloseCode.PROTOCOL_ERROR, b"invalid compressed data")
            return None
        if PyBytes_GET_SIZE(out) > limit:
            self._fail_connection(ERROR_OVERSIZE, ValueError(
                f"compressed message inflates to more than max_message_size ({limit})"),
                WSCloseCode.MESSAGE_TOO_BIG, b"message too big")
            return None
        if inflater is None and self._inflater.eof:
            # The server ended its stream with a final block (allowed,
            # section 7.2.3.3): its next message starts a new one.
            self._inflater = _decompressobj(self._inflate_wbits)
            self._decompress = self._inflater.decompress
        self.compressed_received += 1
        self.inflated_bytes += <uint64_t>PyBytes_GET_SIZE(out)
        return out

    cdef void _fail_connection(self, int kind, object exc, WSCloseCode code, bytes reason):
        """Report ``exc``, close with ``code`` and drop the connection (it reconnects)."""
        self._failed = True
        self._assembling = False
        self._fragment_compressed = False
        self._fragments.clear()
        if kind == ERROR_PROTOCOL:
            self.protocol_errors += 1
        self._error(kind, exc, None)
        if self.transport is not None and not self.transport.is_disconnected:
            if not self.transport.is_close_frame_sent:
                self.transport.send_close(code, reason)
            self.transport.disconnect()

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
        if not 8 <= server_max_window_bits <= 15 or not 8 <= client_max_window_bits <= 15:
            raise ValueError("window bits must be from 8 to 15")
        if compress_threshold < 0:
            raise ValueError(f"compress_threshold must be >= 0, got {compress_threshold}")
        # zlib inflates raw deflate with windows of 2**9 and up; 9 reads
        # what a server compressing with 8 (which zlib turns into 9) sends.
        self._inflate_wbits = -max(server_max_window_bits, 9)
        if server_no_context_takeover:
            self._inflater = None
            self._decompress = None
        else:
            self._inflater = _decompressobj(self._inflate_wbits)
            self._decompress = self._inflater.decompress
        if client_max_window_bits > 8:
            self._deflater = _compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -client_max_window_bits)
        else:
            self._deflater = None
        # A full flush empties the compressor's window: the next message
        # refers to nothing before it (no context takeover), at no extra
        # cost over a new compressor per message.
        self._deflate_flush = _Z_FULL_FLUSH if client_no_context_takeover else _Z_SYNC_FLUSH
        self.compress_threshold = compress_threshold
        self.deflate_enabled = True

    cdef void _on_close(self, WSTransport transport, WSFrame frame):
        self.close_code = <int>frame.get_close_code()
        try:
            self.close_reason = frame.get_close_reason()
        except Exception:
            self.close_reason = None
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.OK if self.close_code in (0, 1005) else <WSCloseCode>self.close_code)
        transport.disconnect()

    # ------------------------------------------------------ suspended coroutines
    cdef void _start_resume_task(self):
        self.suspensions += 1
        underlying = self.transport.underlying_transport if self.transport is not None else None
        if underlying is not None:
            # Backpressure: the rest of the current read buffer still arrives
            # (into the backlog); nothing more is read until it is drained.
            underlying.pause_reading()
        self.pending_task = self._loop.create_task(self._resume())

    async def _resume(self):
        """Finish a suspended parser or handler, then drain the backlog in order."""
        cdef int stage
        cdef int64_t recv_ns
        try:
            while True:
                coro = self._suspended_coro
                stage = self._suspended_stage
                recv_ns = self._suspended_recv_ns
                self._suspended_coro = None
                self._suspended_yield, yielded = None, self._suspended_yield
                suspended = False
                try:
                    result = await continue_coroutine(coro, yielded)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._error(ERROR_PARSE if stage == STAGE_PARSE else ERROR_HANDLER, exc, None)
                else:
                    if stage == STAGE_PARSE:
                        if result is None:
                            self.control_messages += 1
                        else:
                            self._frame_event_ns = self._suspended_event_ns
                            self._frame_wall_ns = self._suspended_wall_ns
                            self._frame_first_seq = self._suspended_first_seq
                            self._frame_last_seq = self._suspended_last_seq
                            self._frame_digest = self._suspended_digest
                            suspended = self._dispatch(result, recv_ns)
                    else:
                        self.messages_delivered += 1
                        self._record_latency(recv_ns)
                while not suspended and self._backlog:
                    payload, recv_ns, frame_type = self._backlog.popleft()
                    suspended = self._receive(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                                              payload, recv_ns, frame_type)
                if not suspended:
                    return
        finally:
            self.pending_task = None
            self._suspended_coro = None
            self._suspended_yield = None
            if self.transport is not None and not self.transport.is_disconnected:
                underlying = self.transport.underlying_transport
                if underlying is not None and not underlying.is_closing():
                    underlying.resume_reading()

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

    cdef void _send_data(self, WSMsgType msg_type, object data):
        cdef Py_ssize_t size = len(data)
        cdef bytes compressed
        if self._deflater is not None and size >= self.compress_threshold:
            compressed = self._deflater.compress(data) + self._deflater.flush(self._deflate_flush)
            # A flush ends with the empty stored block 00 00 ff ff, which
            # the sender removes (RFC 7692 section 7.2.1).
            self.transport.send(msg_type, compressed[:PyBytes_GET_SIZE(compressed) - 4], True, True)
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
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "suspensions": self.suspensions,
            "sequence_gaps": self.sequence_gaps,
            "untracked_messages": self.untracked_messages,
            "missing_sequences": self.missing_sequences,
            "backlog": len(self._backlog),
            "overlap_dropped": self.overlap_dropped,
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

    @property
    def backlog_size(self):
        """Messages waiting behind a suspended parser or handler."""
        return len(self._backlog)
