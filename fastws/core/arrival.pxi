# Redundant connections, first arrival wins (declarations in core/arrival.pxd).


cdef class ArrivalCell:
    """One stream's delivered messages, as seen by every path (see ``FirstArrival``)."""

    def __cinit__(self):
        cdef int p
        self.head = -1
        self.last_sequence = -1
        for p in range(MAX_PATHS):
            self.position[p] = -1

    cdef int64_t find(self, uint64_t digest) noexcept:
        """The ordinal of the delivered message with ``digest``, newest first, or -1."""
        cdef int64_t ordinal = self.head
        cdef int64_t oldest = self.head - HANDOVER_RING
        while ordinal > oldest and ordinal >= 0:
            if self.ring[ordinal % HANDOVER_RING].digest == digest:
                return ordinal
            ordinal -= 1
        return -1

    cdef void push(self, uint64_t digest, int64_t receive_ns) noexcept:
        self.head += 1
        self.ring[self.head % HANDOVER_RING].digest = digest
        self.ring[self.head % HANDOVER_RING].receive_ns = receive_ns


cdef class FirstArrival:
    """Several connections carry the same streams; each message is delivered once, by the first.

    Redundancy: ``paths`` live connections (over one or several endpoints)
    subscribe the same streams, and each core asks ``admit`` before it
    decodes a message. An exchange sends the same bytes, in the same order,
    to every subscriber of a stream, so a message is known by its payload
    digest and by its place in the stream. Per stream, the digests of the
    last ``HANDOVER_RING`` delivered messages are kept by ordinal (their
    number in delivery order), with the time of their first arrival, and
    each path's place: the ordinal of the last message it brought.

    A path behind the newest delivered message brings a copy: checked
    against the digest at its next place (a copy is dropped and how far
    behind the first it came is counted for its path); a path more than the
    ring behind keeps counting its place (``behind``: dropped, and the
    redundancy checker replaces such a path). A path at the newest place
    brings a new message: delivered. So a slow path never repeats or
    reorders, at any rate. A message whose sequence number is not beyond
    the last delivered one is dropped too.

    A path that does not know its place on a stream yet (its first message
    there, or after it (re)joined: ``join``) delivers nothing new on that
    stream until it has caught up (it brings a copy already delivered, or
    another path delivers the newest message it has seen), so nothing is
    lost or repeated while it catches up; unless no other live path knows
    its place there, or it has waited ``takeover_ns`` while those paths
    delivered nothing on the stream (they lost it without closing): it then
    takes the stream over (``takeovers``), and the messages it dropped while
    waiting, which nobody delivered, are counted (``unconfirmed``).
    """

    def __init__(self, int paths, double takeover_seconds=1.0):
        if paths < 1 or paths > MAX_PATHS:
            raise ValueError(f"paths must be 1 to {MAX_PATHS}, not {paths}")
        if not takeover_seconds > 0:
            raise ValueError(f"takeover_seconds must be > 0, not {takeover_seconds}")
        self.paths = paths
        self.takeover_ns = <int64_t>(takeover_seconds * 1e9)
        self._cells = {}

    cdef bint admit(self, object stream_id, int path, uint64_t digest, int64_t receive_ns,
                    int64_t last_sequence):
        """True when this path's copy of the message is the first: deliver it."""
        cdef ArrivalCell cell
        cdef PyObject* found
        cdef unsigned int bit = 1u << path
        cdef int64_t expected, ordinal
        cdef int p
        if self._last_cell is not None and stream_id == self._last_stream_id:
            cell = self._last_cell
        else:
            found = PyDict_GetItem(self._cells, stream_id)
            if found is NULL:
                cell = ArrivalCell()
                PyDict_SetItem(self._cells, stream_id, cell)
            else:
                cell = <ArrivalCell>found
            self._last_stream_id = stream_id
            self._last_cell = cell
        expected = cell.position[path] + 1
        if cell.position[path] >= 0 and expected <= cell.head:
            # Behind the newest delivered message: this should be the copy of
            # the one at its next place.
            if expected <= cell.head - HANDOVER_RING:
                # Out of the ring: more than HANDOVER_RING behind.
                cell.position[path] = expected
                self._behind[path] += 1
                return False
            if cell.ring[expected % HANDOVER_RING].digest == digest:
                return self._late_copy(cell, path, expected, receive_ns)
        # At the newest place, first on this stream, or not the copy expected:
        # delivered already (a copy found elsewhere in the ring), or new.
        ordinal = cell.find(digest)
        if ordinal >= 0:
            return self._late_copy(cell, path, ordinal, receive_ns)
        if last_sequence >= 0 and last_sequence <= cell.last_sequence:
            self._behind[path] += 1      # a copy older than the ring
            return False
        if not (cell.aligned & bit):
            if not (cell.pending & bit):
                cell.pending_since[path] = receive_ns
                cell.pending_count[path] = 0
            if cell.aligned & self._live & ~bit and (
                    receive_ns - cell.pending_since[path] < self.takeover_ns
                    or cell.ring[cell.head % HANDOVER_RING].receive_ns >= cell.pending_since[path]):
                # A path that knows its place delivers this stream: wait for it.
                cell.pending |= bit
                cell.pending_last[path] = digest
                cell.pending_count[path] += 1
                self._waiting[path] += 1
                return False
            if cell.aligned & self._live & ~bit:
                self._takeovers[path] += 1
                self._unconfirmed[path] += cell.pending_count[path]
            # Nobody else delivers it now: this path does.
            cell.aligned |= bit
            cell.pending &= ~bit
            cell.pending_count[path] = 0
        cell.push(digest, receive_ns)
        cell.position[path] = cell.head
        if last_sequence > cell.last_sequence:
            cell.last_sequence = last_sequence
        self._first[path] += 1
        if cell.pending:
            # A path waiting to catch up is level once this message, the
            # newest it has seen, is delivered.
            for p in range(self.paths):
                if cell.pending & (1u << p) and cell.pending_last[p] == digest:
                    cell.pending &= ~(1u << p)
                    cell.pending_count[p] = 0
                    cell.aligned |= 1u << p
                    cell.position[p] = cell.head
        return True

    cdef bint _late_copy(self, ArrivalCell cell, int path, int64_t ordinal, int64_t receive_ns):
        """Path ``path`` brought the copy of delivered message ``ordinal``: count it, note its place."""
        cdef unsigned int bit = 1u << path
        cdef int64_t lag = receive_ns - cell.ring[ordinal % HANDOVER_RING].receive_ns
        self._late[path] += 1
        self._lag[path][_latency_bucket(lag if lag > 0 else 0)] += 1
        cell.position[path] = ordinal
        if not (cell.aligned & bit):
            cell.aligned |= bit
            cell.pending &= ~bit
            cell.pending_count[path] = 0
        return False

    def join(self, int path):
        """Path ``path`` has a new connection: live, catching up on the streams already seen."""
        cdef ArrivalCell cell
        self._check(path)
        for value in self._cells.values():
            cell = <ArrivalCell>value
            cell.aligned &= ~(1u << path)
            cell.pending &= ~(1u << path)
            cell.pending_count[path] = 0
            cell.position[path] = -1
        self._live |= 1u << path

    def leave(self, int path):
        """Path ``path`` lost its connection: the others deliver without waiting for it."""
        self._check(path)
        self._live &= ~(1u << path)

    def forget(self, stream_id):
        """Drop a stream's state (after it is unsubscribed everywhere)."""
        self._cells.pop(stream_id, None)
        self._last_stream_id = None
        self._last_cell = None

    cdef int _check(self, int path) except -1:
        if path < 0 or path >= self.paths:
            raise ValueError(f"path must be 0 to {self.paths - 1}, not {path}")
        return 0

    def live(self, int path):
        """Whether path ``path`` has a live connection."""
        self._check(path)
        return bool(self._live & (1u << path))

    def path_counts(self, int path):
        """Path ``path``'s counts: ``first`` (delivered, it was first), ``late`` (copies
        dropped, another was first), ``waiting`` (new messages dropped while catching up),
        ``behind`` (copies dropped more than the ring behind the first), ``takeovers``
        (streams it took over from silent paths while catching up), ``unconfirmed`` (the
        messages it dropped before those takeovers: nobody delivered them)."""
        self._check(path)
        return {"first": self._first[path], "late": self._late[path],
                "waiting": self._waiting[path], "behind": self._behind[path],
                "takeovers": self._takeovers[path], "unconfirmed": self._unconfirmed[path]}

    def lag_histogram(self, int path):
        """How far behind the first copy path ``path``'s copies came: counts per latency bucket."""
        self._check(path)
        return [self._lag[path][i] for i in range(LATENCY_BUCKETS)]

    @property
    def stream_count(self):
        """Streams seen so far."""
        return len(self._cells)
