# Redundant connections: first arrival wins (arrival.pxi).
cdef enum:
    # Connections (paths) one FirstArrival can judge between.
    MAX_PATHS = 8


cdef struct ArrivalSlot:
    uint64_t digest
    int64_t receive_ns      # monotonic, when the first copy arrived
    int path                # which path brought it first


cdef class ArrivalCell:
    cdef:
        # The stream's last HANDOVER_RING delivered messages.
        ArrivalSlot ring[HANDOVER_RING]
        Py_ssize_t ring_count
        Py_ssize_t ring_next
        # The highest last sequence number delivered (-1: none seen).
        int64_t last_sequence
        # Paths that deliver this stream's new messages (bit per path), and
        # paths (re)joined since, waiting to catch up, with the newest
        # digest each has seen.
        unsigned int aligned
        unsigned int pending
        uint64_t pending_last[MAX_PATHS]

    cdef Py_ssize_t find(self, uint64_t digest) noexcept
    cdef void push(self, uint64_t digest, int64_t receive_ns, int path) noexcept


cdef class FirstArrival:
    cdef:
        dict _cells
        object _last_stream_id
        ArrivalCell _last_cell
        # Paths with a live connection (bit per path).
        unsigned int _live
        readonly int paths
        uint64_t _first[MAX_PATHS]
        uint64_t _late[MAX_PATHS]
        uint64_t _waiting[MAX_PATHS]
        uint64_t _stale[MAX_PATHS]
        # Per path: how far behind the first copy its copies came (ns buckets).
        uint64_t _lag[MAX_PATHS][LATENCY_BUCKETS]

    cdef bint admit(self, object stream_id, int path, uint64_t digest, int64_t receive_ns,
                    int64_t last_sequence)
    cdef int _check(self, int path) except -1
