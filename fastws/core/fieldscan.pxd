# Per-stream counters and sequence state, and where the fields are read
# from the raw bytes (fieldscan.pxi).
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


cdef class FieldScan:
    # The keys that precede a message's event time and sequence numbers,
    # read from its raw bytes before parsing (see fieldscan.pxi).
    cdef:
        bytes event_time_key
        int64_t event_time_unit_ns
        int64_t max_event_time
        bytes first_sequence_key
        bytes last_sequence_key
        Py_ssize_t window
        char last_byte
        Py_ssize_t event_key_size
        Py_ssize_t first_key_size
        Py_ssize_t last_key_size
        uint32_t event_key_word
        uint32_t first_key_word
        uint32_t last_key_word

    cdef void scan(self, FrameInfo* frame, const char* ptr, Py_ssize_t size, bint sequenced) noexcept
