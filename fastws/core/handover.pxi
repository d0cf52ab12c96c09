# Make-before-break: two connections deliver each message once (declarations
# in core/handover.pxd).

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


