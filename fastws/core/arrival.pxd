# Redundant connections: first arrival wins (arrival.pxi).
cdef enum:
    # Connections (paths) one FirstArrival can judge between.
    MAX_PATHS = 8


cdef struct ArrivalSlot:
    uint64_t digest
    int64_t receive_ns      # monotonic, when the first copy arrived


cdef class ArrivalCell:
    cdef:
        # The stream's last HANDOVER_RING delivered messages, by ordinal:
        # message number ``o`` (0, 1, 2... in delivery order) is in
        # ring[o % HANDOVER_RING] while o > head - HANDOVER_RING.
        ArrivalSlot ring[HANDOVER_RING]
        int64_t head            # the newest delivered ordinal (-1: none yet)
        # The highest last sequence number delivered (-1: none seen).
        int64_t last_sequence
        # Per path: the ordinal of the last message it brought (-1: not
        # known yet, its next copy is looked up in the whole ring).
        int64_t position[MAX_PATHS]
        # Paths that deliver this stream's new messages (bit per path), and
        # paths (re)joined since, waiting to catch up, with the newest
        # digest each has seen.
        unsigned int aligned
        unsigned int pending
        uint64_t pending_last[MAX_PATHS]
        uint64_t pending_count[MAX_PATHS]
        int64_t pending_since[MAX_PATHS]

    cdef int64_t find(self, uint64_t digest) noexcept
    cdef void push(self, uint64_t digest, int64_t receive_ns) noexcept


cdef class FirstArrival:
    cdef:
        dict _cells
        object _last_stream_id
        ArrivalCell _last_cell
        # Paths with a live connection (bit per path).
        unsigned int _live
        readonly int paths
        # A path that waited this long (ns) to catch up on a stream while the
        # others delivered nothing there takes the stream over.
        readonly int64_t takeover_ns
        uint64_t _first[MAX_PATHS]
        uint64_t _late[MAX_PATHS]
        uint64_t _waiting[MAX_PATHS]
        uint64_t _behind[MAX_PATHS]
        uint64_t _takeovers[MAX_PATHS]
        uint64_t _unconfirmed[MAX_PATHS]
        # Per path: how far behind the first copy its copies came (ns buckets).
        uint64_t _lag[MAX_PATHS][LATENCY_BUCKETS]

    cdef bint admit(self, object stream_id, int path, uint64_t digest, int64_t receive_ns,
                    int64_t last_sequence)
    cdef bint _late_copy(self, ArrivalCell cell, int path, int64_t ordinal, int64_t receive_ns)
    cdef int _check(self, int path) except -1
