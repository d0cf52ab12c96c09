# The frame core's C-level interface. An adapter written in Cython can
# `from fastws._core cimport FrameHandler` and subclass it or read its counters
# without a Python-level call.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

cdef enum:
    # Latency histogram: 4 sub-buckets per power of two of nanoseconds.
    LATENCY_BUCKETS = 256
    # Where an error happened, for counting and for the error callback.
    ERROR_PARSE = 0
    ERROR_CLASSIFY = 1
    ERROR_HANDLER = 2
    ERROR_OVERSIZE = 3
    ERROR_PROTOCOL = 4
    # Exchange-event-to-receive histogram, per stream: microseconds, same
    # bucketing as the latency histogram (up to ~2^32 us).
    EVENT_LATENCY_BUCKETS = 128
    # Messages remembered per stream while two connections overlap.
    HANDOVER_RING = 128


cdef int64_t monotonic_ns() noexcept nogil
cdef int64_t realtime_ns() noexcept nogil


cdef class StreamStats:
    cdef:
        readonly object stream_type
        readonly uint64_t messages
        readonly int64_t first_receive_ns
        readonly int64_t last_receive_ns
        # Sequence continuity (when the adapter names sequence keys).
        readonly int64_t last_sequence
        readonly uint64_t sequence_gaps
        readonly uint64_t missing_sequences
        readonly uint64_t stale_sequences
        # Exchange event time to local receive (when the adapter names an
        # event-time key): microsecond histogram; events stamped in the future
        # by the exchange's clock count as 0 and in clock_ahead.
        readonly int64_t last_event_ns
        readonly uint64_t clock_ahead
        uint64_t[EVENT_LATENCY_BUCKETS] _event_latency


cdef class FrameBuffer:
    cdef:
        const char* ptr
        Py_ssize_t size
        bint valid


cdef class Route:
    cdef:
        readonly str stream_id
        readonly bytes key
        readonly object decode
        readonly object handler
        readonly object stream_type
        readonly bint handler_async
        readonly bint sequenced
        readonly bint whole_frame
        readonly bint pass_stream
        uint64_t key_hash
        # The stream's stats on the connection numbered stats_serial.
        StreamStats stats
        uint64_t stats_serial


cdef class RouteTable:
    cdef:
        readonly bytes prefix
        readonly bytes separator
        readonly bytes suffix
        list _slots
        Py_ssize_t _mask
        dict _by_id

    cdef Route match(self, const char* ptr, Py_ssize_t size,
                     Py_ssize_t* data_start, Py_ssize_t* data_size)
    cdef void _rebuild(self, Py_ssize_t capacity)


cdef class HandoverCell:
    cdef:
        # Digests of the stream's last HANDOVER_RING delivered messages.
        uint64_t ring[HANDOVER_RING]
        Py_ssize_t ring_count
        Py_ssize_t ring_next
        # The newest message the new connection has seen.
        uint64_t shadow_last
        bint shadow_seen
        bint aligned
        # Messages the old connection delivered (at mark_subscribed()).
        uint64_t old_delivered
        uint64_t old_at_mark

    cdef bint contains(self, uint64_t digest) noexcept
    cdef void push(self, uint64_t digest) noexcept


cdef class Handover:
    cdef:
        dict _cells
        readonly bint finished
        readonly uint64_t aligned_streams
        bint _marked

    cdef bint admit(self, object stream_id, bint shadow, uint64_t digest)


cdef class FrameHandler(WSListener):
    cdef:
        # Callables, bound once at construction; the *_async flags say whether
        # each returns a coroutine, decided once, never per message.
        object _parse
        object _extract
        object _handler
        object _report_error
        object _on_disconnect
        object _on_sequence_gap
        dict _seed_sequences
        bint _parse_async
        bint _handler_async
        # parse(view, self) rather than parse(view).
        bint _parse_with_handler

        readonly WSTransport transport
        object _loop

        # Counters: C integers, read as a dict by counters() on demand.
        readonly uint64_t frames_received
        readonly uint64_t messages_received
        readonly uint64_t bytes_received
        readonly uint64_t messages_delivered
        readonly uint64_t control_messages
        readonly uint64_t parse_errors
        readonly uint64_t classify_errors
        readonly uint64_t handler_errors
        readonly uint64_t messages_sent
        readonly uint64_t bytes_sent
        readonly uint64_t suspensions
        readonly int64_t connected_ns
        readonly int64_t last_receive_ns
        uint64_t[LATENCY_BUCKETS] _latency
        uint64_t _latency_count
        dict _streams
        object _last_stream_id
        StreamStats _last_stats

        # The fast route (None: every frame takes the generic route).
        readonly RouteTable routes
        FrameBuffer _buffer
        uint64_t _serial

        # Fields read from the raw bytes before parsing (None: not read).
        bytes _event_time_key
        int64_t _event_time_unit_ns
        int64_t _max_event_time
        bytes _first_sequence_key
        bytes _last_sequence_key
        Py_ssize_t _scan_window
        bint _scan
        char _scan_last
        Py_ssize_t _event_key_size
        Py_ssize_t _first_key_size
        Py_ssize_t _last_key_size
        uint32_t _event_key_word
        uint32_t _first_key_word
        uint32_t _last_key_word
        # The current frame's exchange event time (Unix ns) and sequence
        # numbers (0 / -1: none). Reset per frame, filled by the scan or by a
        # compiled parser that cimports this class (set them during
        # parse; the core applies them to the stream once it is classified).
        int64_t _frame_event_ns
        int64_t _frame_wall_ns
        int64_t _wall_offset_ns
        int64_t _frame_first_seq
        int64_t _frame_last_seq
        readonly uint64_t sequence_gaps
        readonly uint64_t missing_sequences
        readonly Py_ssize_t max_streams
        readonly uint64_t untracked_messages

        # Make-before-break: while a replacement connection overlaps this
        # one, both cores share a Handover that lets each message through
        # once (None otherwise: one pointer test per frame).
        Handover _handover
        bint _shadow
        uint64_t _frame_digest
        uint64_t _suspended_digest
        readonly uint64_t overlap_dropped

        # Called with a copy of every whole data message (None: no call).
        object _tap

        # The opcode of the message being parsed: 1 text, 2 binary.
        readonly int frame_type

        # Fragment reassembly.
        bytearray _fragments
        bint _assembling
        int _fragment_type
        readonly Py_ssize_t max_message_size

        # Order keeping while an async parser or handler is suspended.
        object _backlog
        readonly object pending_task
        object _suspended_coro
        object _suspended_yield
        int _suspended_stage
        int64_t _suspended_recv_ns
        int64_t _suspended_event_ns
        int64_t _suspended_wall_ns
        int64_t _suspended_first_seq
        int64_t _suspended_last_seq

        readonly int close_code
        readonly str close_reason

        # permessage-deflate (RFC 7692), set by enable_deflate() before the
        # first frame. The uncompressed path tests only frame.rsv1.
        readonly bint deflate_enabled
        # The inflater kept across messages; None when the server takes no
        # context over (a new one per message then).
        object _inflater
        object _decompress
        int _inflate_wbits
        object _deflater
        int _deflate_flush
        readonly Py_ssize_t compress_threshold
        # The message being reassembled began with RSV1 set.
        bint _fragment_compressed
        # The connection was failed (_fail_connection): later compressed
        # frames are dropped.
        bint _failed
        readonly uint64_t compressed_received
        readonly uint64_t inflated_bytes
        readonly uint64_t compressed_sent
        readonly uint64_t protocol_errors

    cdef inline void _deliver(self, char* ptr, Py_ssize_t size, int64_t recv_ns, int frame_type)
    cdef bint _receive(self, const char* ptr, Py_ssize_t size, object owner, int64_t recv_ns,
                       int frame_type)
    cdef void _scan_fields(self, const char* ptr, Py_ssize_t size, bint sequenced) noexcept
    cdef bint _route(self, Route route, const char* ptr, Py_ssize_t size, int64_t recv_ns)
    cdef bint _process(self, object payload, int64_t recv_ns)
    cdef bint _dispatch(self, object message, int64_t recv_ns)
    cdef StreamStats _stats_for(self, object stream_id, object stream_type, int64_t recv_ns)
    cdef void _apply_fields(self, object stream_id, StreamStats stats)
    cdef bint _call_handler(self, object handler, bint is_async, object stream_id,
                            object message, int64_t recv_ns)
    cdef inline void _record_latency(self, int64_t recv_ns) noexcept
    cdef void _error(self, int kind, object exc, object payload)
    cdef void _call_tap(self, const char* ptr, Py_ssize_t size, int frame_type)
    cdef void _start_resume_task(self)
    cdef void _on_fragment(self, WSFrame frame, int64_t recv_ns)
    cdef void _on_close(self, WSTransport transport, WSFrame frame)
    cdef void _on_compressed(self, WSFrame frame, int64_t recv_ns)
    cdef object _inflate(self, object data)
    cdef void _receive_owned(self, object payload, int64_t recv_ns, int frame_type)
    cdef void _fail_connection(self, int kind, object exc, WSCloseCode code, bytes reason)
    cdef void _send_data(self, WSMsgType msg_type, object data)

    cpdef send_text(self, object text)
    cpdef send_bytes(self, object data)
    cpdef dict counters(self)
    cpdef list latency_histogram(self)
