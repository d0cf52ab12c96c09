# Make-before-break de-duplication shared by two connections (handover.pxi).
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
