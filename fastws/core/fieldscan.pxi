# Field scan and sequence state: the event time and sequence numbers read
# from a message's raw bytes (or set by a compiled parser), per-stream stats,
# event latency and sequence continuity. Declarations in core/fieldscan.pxd.

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


cdef class FieldScan:
    """Where a message's event time and sequence numbers are in its raw bytes.

    Args:
        event_time_key: Bytes before the event time (``b'"E":'``), or None.
        event_time_unit_ns: Nanoseconds per unit of the event time.
        first_sequence_key, last_sequence_key: Bytes before the first and
            last sequence numbers (``b'"U":'``, ``b'"u":'``), or None.
        window: How many leading bytes of a message are searched.
    """

    def __init__(self, bytes event_time_key, int64_t event_time_unit_ns, bytes first_sequence_key,
                 bytes last_sequence_key, Py_ssize_t window):
        if (first_sequence_key is None) != (last_sequence_key is None):
            raise ValueError("first_sequence_key and last_sequence_key go together")
        for key in (event_time_key, first_sequence_key, last_sequence_key):
            if key is not None and len(key) < 4:
                raise ValueError(f"scan key {key!r} is too short (4 bytes at least, e.g. b'\"E\":')")
        if event_time_unit_ns <= 0:
            raise ValueError("event_time_unit_ns must be positive")
        self.event_time_key = event_time_key
        self.event_time_unit_ns = event_time_unit_ns
        # Larger event times would overflow int64 nanoseconds: not read.
        self.max_event_time = 9223372036854775807 // event_time_unit_ns
        self.first_sequence_key = first_sequence_key
        self.last_sequence_key = last_sequence_key
        self.window = window
        self.event_key_size = len(event_time_key) if event_time_key is not None else 0
        self.first_key_size = len(first_sequence_key) if first_sequence_key is not None else 0
        self.last_key_size = len(last_sequence_key) if last_sequence_key is not None else 0
        keys = [k for k in (event_time_key, first_sequence_key, last_sequence_key) if k is not None]
        if keys:
            if len({k[-1] for k in keys}) != 1:
                raise ValueError("scan keys must share their last byte (':' for JSON keys)")
            self.last_byte = keys[0][-1]
        # Each key's last four bytes, compared as one word.
        if event_time_key is not None:
            memcpy(&self.event_key_word, PyBytes_AS_STRING(event_time_key) + len(event_time_key) - 4, 4)
        if first_sequence_key is not None:
            memcpy(&self.first_key_word, PyBytes_AS_STRING(first_sequence_key) + len(first_sequence_key) - 4, 4)
            memcpy(&self.last_key_word, PyBytes_AS_STRING(last_sequence_key) + len(last_sequence_key) - 4, 4)

    cdef void scan(self, FrameInfo* frame, const char* ptr, Py_ssize_t size, bint sequenced) noexcept:
        """Read the event time and sequence numbers from the message's first bytes.

        Keys share their last byte (``:`` for JSON keys), so the scan jumps
        from one such byte to the next with ``memchr`` and compares the four
        bytes that end there with each key's last four: a few comparisons per
        JSON field rather than per byte (callgrind: ~2600 instructions a
        frame for a byte-by-byte pass over a depth update, far fewer this
        way). Stops when every key is found.
        """
        # The window bounds where keys are looked for; a value that starts
        # inside it is read to its end (up to the frame's end).
        cdef Py_ssize_t n = size if size < self.window else self.window
        cdef Py_ssize_t i = 0, end
        cdef Py_ssize_t ekl = self.event_key_size
        cdef Py_ssize_t fkl = self.first_key_size
        cdef Py_ssize_t lkl = self.last_key_size
        cdef uint32_t word
        cdef const char* hit
        cdef bint want_event = ekl != 0
        cdef bint want_first = fkl != 0 and sequenced
        cdef bint want_last = lkl != 0 and sequenced
        cdef int64_t value
        # The frame's fields were reset by _receive, the only caller.
        while want_event or want_first or want_last:
            hit = <const char*>memchr(ptr + i, self.last_byte, n - i)
            if hit == NULL:
                return
            end = hit - ptr + 1       # just after the key
            i = end
            if end < 4:
                continue
            memcpy(&word, hit - 3, 4)
            if want_event and word == self.event_key_word and end >= ekl and (
                    ekl == 4 or memcmp(ptr + end - ekl, PyBytes_AS_STRING(self.event_time_key), ekl - 4) == 0):
                want_event = False
                value = _parse_uint(ptr + end, size - end)
                if 0 < value <= self.max_event_time:
                    frame.event_ns = value * self.event_time_unit_ns
            elif want_first and word == self.first_key_word and end >= fkl and (
                    fkl == 4 or memcmp(ptr + end - fkl, PyBytes_AS_STRING(self.first_sequence_key), fkl - 4) == 0):
                want_first = False
                frame.first_sequence = _parse_uint(ptr + end, size - end)
            elif want_last and word == self.last_key_word and end >= lkl and (
                    lkl == 4 or memcmp(ptr + end - lkl, PyBytes_AS_STRING(self.last_sequence_key), lkl - 4) == 0):
                want_last = False
                frame.last_sequence = _parse_uint(ptr + end, size - end)


cdef StreamStats _stats_for(FrameHandler core, object stream_id, object stream_type, int64_t recv_ns):
    """The stream's stats, counting this message (None past ``max_streams``)."""
    cdef PyObject* found
    cdef StreamStats stats
    # Most frames of a connection belong to the stream of the frame
    # before: an equality test is cheaper than hashing a new str.
    if core._last_stream_id is not None and stream_id == core._last_stream_id:
        stats = core._last_stats
    else:
        found = PyDict_GetItem(core._streams, stream_id)
        if found is NULL:
            if PyDict_Size(core._streams) >= core.max_streams:
                core.untracked_messages += 1
                return None
            stats = StreamStats(stream_type)
            stats.first_receive_ns = recv_ns
            if core._seed_sequences is not None:
                seed = core._seed_sequences.get(stream_id)
                if seed is not None:
                    stats.last_sequence = seed
            PyDict_SetItem(core._streams, stream_id, stats)
        else:
            stats = <StreamStats>found
        core._last_stream_id = stream_id
        core._last_stats = stats
    stats.messages += 1
    stats.last_receive_ns = recv_ns
    return stats


cdef void _apply_fields(FrameHandler core, object stream_id, StreamStats stats):
    """Record the frame's event time and check its sequence continuity."""
    cdef FrameInfo* frame = &core._frame
    cdef int64_t latency, expected, first, last
    if frame.event_ns > 0:
        stats.last_event_ns = frame.event_ns
        latency = frame.wall_ns - frame.event_ns
        if latency < 0:
            stats.clock_ahead += 1
            latency = 0
        stats._event_latency[_latency_bucket_capped(latency // 1000, EVENT_LATENCY_BUCKETS)] += 1
    first = frame.first_sequence
    last = frame.last_sequence
    if first < 0 or last < 0:
        return
    if stats.last_sequence >= 0:
        expected = stats.last_sequence + 1
        if first > expected:
            stats.sequence_gaps += 1
            stats.missing_sequences += <uint64_t>(first - expected)
            core.sequence_gaps += 1
            core.missing_sequences += <uint64_t>(first - expected)
            if core._on_sequence_gap is not None:
                try:
                    core._on_sequence_gap(stream_id, expected, first, last)
                except Exception as exc:
                    _error(core, ERROR_SEQUENCE_GAP, exc, None)
        elif first < expected:
            stats.stale_sequences += 1
            if last <= stats.last_sequence:
                return
    stats.last_sequence = last
