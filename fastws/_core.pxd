# The frame core's C-level interface. An adapter written in Cython can
# `from fastws._core cimport FrameHandler` and subclass it or read its counters
# without a Python-level call.
from libc.stdint cimport int64_t, uint64_t
from picows.picows cimport WSFrame, WSListener, WSTransport

cdef enum:
    # Latency histogram: 4 sub-buckets per power of two of nanoseconds.
    LATENCY_BUCKETS = 256
    # Where an error happened, for counting and for the error callback.
    ERROR_PARSE = 0
    ERROR_CLASSIFY = 1
    ERROR_HANDLER = 2
    ERROR_OVERSIZE = 3


cdef int64_t monotonic_ns() noexcept nogil


cdef class StreamStats:
    cdef:
        readonly object stream_type
        readonly uint64_t messages
        readonly int64_t first_receive_ns
        readonly int64_t last_receive_ns


cdef class FrameHandler(WSListener):
    cdef:
        # Callables, bound once at construction; the *_async flags say whether
        # each returns a coroutine, decided once, never per message.
        object _parse
        object _extract
        object _handler
        object _report_error
        object _on_disconnect
        bint _parse_async
        bint _handler_async

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

        # Fragment reassembly.
        bytearray _fragments
        bint _assembling
        readonly Py_ssize_t max_message_size

        # Order keeping while an async parser or handler is suspended.
        object _backlog
        readonly object pending_task
        object _suspended_coro
        object _suspended_yield
        int _suspended_stage
        int64_t _suspended_recv_ns

        readonly int close_code
        readonly str close_reason

    cdef inline void _deliver(self, char* ptr, Py_ssize_t size, int64_t recv_ns)
    cdef bint _process(self, object payload, int64_t recv_ns)
    cdef bint _dispatch(self, object message, int64_t recv_ns)
    cdef inline void _record_latency(self, int64_t recv_ns) noexcept
    cdef void _error(self, int kind, object exc, object payload)
    cdef void _start_resume_task(self)
    cdef void _on_fragment(self, WSFrame frame, int64_t recv_ns)
    cdef void _on_close(self, WSTransport transport, WSFrame frame)

    cpdef send_text(self, object text)
    cpdef send_bytes(self, object data)
    cpdef dict counters(self)
    cpdef list latency_histogram(self)
