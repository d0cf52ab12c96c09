# Constants, clocks and the frame context shared by every concern of the core.
from libc.stdint cimport int64_t, uint64_t

cdef enum:
    # Latency histogram: 4 sub-buckets per power of two of nanoseconds.
    LATENCY_BUCKETS = 256
    # Where an error happened, for counting and for the error callback
    # (each kind has its counter, see FrameHandler).
    ERROR_PARSE = 0
    ERROR_CLASSIFY = 1
    ERROR_HANDLER = 2
    ERROR_OVERSIZE = 3
    ERROR_PROTOCOL = 4
    ERROR_SEQUENCE_GAP = 5
    # Exchange-event-to-receive histogram, per stream: microseconds, same
    # bucketing as the latency histogram (up to ~2^32 us).
    EVENT_LATENCY_BUCKETS = 128
    # Messages remembered per stream while two connections overlap.
    HANDOVER_RING = 128


ctypedef struct FrameInfo:
    # One whole message's context, filled by the core before it is parsed.
    # It lives in the core; a suspended parser or handler keeps a copy.
    int64_t receive_ns        # monotonic receive time (the first fragment's)
    int64_t wall_ns           # the same instant on the wall clock, Unix ns
    int64_t event_ns          # the exchange's event time, Unix ns (0: none)
    int64_t first_sequence    # the message's first sequence number (-1: none)
    int64_t last_sequence     # its last sequence number (-1: none)
    uint64_t digest           # payload digest (only while a handover runs)
    Py_ssize_t data_start     # where the route found the data (0 off the route)
    Py_ssize_t data_size      # its size (the whole message off the route)
    int opcode                # 1 text, 2 binary


cdef int64_t monotonic_ns() noexcept nogil
cdef int64_t realtime_ns() noexcept nogil


cdef inline void set_event_time_ns(FrameInfo* frame, int64_t event_ns) noexcept nogil:
    """Give the message its exchange event time (Unix ns; <= 0 leaves none)."""
    if event_ns > 0:
        frame.event_ns = event_ns


cdef inline void set_sequence(FrameInfo* frame, int64_t first, int64_t last) noexcept nogil:
    """Give the message its first and last sequence numbers (both >= 0, else none)."""
    if first >= 0 and last >= 0:
        frame.first_sequence = first
        frame.last_sequence = last
