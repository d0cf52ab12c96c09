# Redundant connections, first arrival wins (declarations in core/arrival.pxd).


cdef class ArrivalCell:
    """One stream's delivered messages, as seen by every path (see ``FirstArrival``)."""

    def __cinit__(self):
        self.last_sequence = -1

    cdef Py_ssize_t find(self, uint64_t digest) noexcept:
        """The ring index of ``digest``, newest first (a copy is usually recent), or -1."""
        cdef Py_ssize_t i = self.ring_next
        cdef Py_ssize_t n
        for n in range(self.ring_count):
            i = i - 1 if i > 0 else HANDOVER_RING - 1
            if self.ring[i].digest == digest:
                return i
        return -1

    cdef void push(self, uint64_t digest, int64_t receive_ns, int path) noexcept:
        self.ring[self.ring_next].digest = digest
        self.ring[self.ring_next].receive_ns = receive_ns
        self.ring[self.ring_next].path = path
        self.ring_next = (self.ring_next + 1) % HANDOVER_RING
        if self.ring_count < HANDOVER_RING:
            self.ring_count += 1


cdef class FirstArrival:
    """Several connections carry the same streams; each message is delivered once, by the first.

    Redundancy: ``paths`` live connections (over one or several endpoints)
    subscribe the same streams, and each core asks ``admit`` before it
    decodes a message. An exchange sends the same bytes to every subscriber,
    so a message is known by its payload digest: per stream the digests of
    the last ``HANDOVER_RING`` delivered messages are kept with the time and
    path of their first arrival. A copy already delivered is dropped, and how
    far behind the first it came is counted for its path. A message whose
    sequence number is not beyond the last delivered one is dropped too (a
    copy older than the ring), so a slow path never repeats or reorders.

    A path that (re)joins (``join``) starts behind the others on every
    stream already flowing: it delivers nothing new on a stream until it is
    caught up there (it brings a copy already delivered, or another path
    delivers the newest message it has seen), unless no other live path
    delivers that stream, so nothing is lost or repeated while it catches up.
    """

    def __init__(self, int paths):
        if paths < 1 or paths > MAX_PATHS:
            raise ValueError(f"paths must be 1 to {MAX_PATHS}, not {paths}")
        self.paths = paths
        self._cells = {}

    cdef bint admit(self, object stream_id, int path, uint64_t digest, int64_t receive_ns,
                    int64_t last_sequence):
        """True when this path's copy of the message is the first: deliver it."""
        cdef ArrivalCell cell
        cdef PyObject* found
        cdef unsigned int bit = 1u << path
        cdef Py_ssize_t i
        cdef int64_t lag
        cdef int p
        if self._last_cell is not None and stream_id == self._last_stream_id:
            cell = self._last_cell
        else:
            found = PyDict_GetItem(self._cells, stream_id)
            if found is NULL:
                cell = ArrivalCell()
                cell.aligned = (1u << self.paths) - 1      # nothing to catch up on
                PyDict_SetItem(self._cells, stream_id, cell)
            else:
                cell = <ArrivalCell>found
            self._last_stream_id = stream_id
            self._last_cell = cell
        i = cell.find(digest)
        if i >= 0:
            lag = receive_ns - cell.ring[i].receive_ns
            self._late[path] += 1
            self._lag[path][_latency_bucket(lag if lag > 0 else 0)] += 1
            if not (cell.aligned & bit):
                cell.aligned |= bit
                cell.pending &= ~bit
            return False
        if last_sequence >= 0 and last_sequence <= cell.last_sequence:
            self._stale[path] += 1      # a copy that fell out of the ring
            return False
        if not (cell.aligned & bit):
            if cell.aligned & self._live & ~bit:
                # A caught-up path delivers this stream: wait for it.
                cell.pending |= bit
                cell.pending_last[path] = digest
                self._waiting[path] += 1
                return False
            cell.aligned |= bit       # nobody else delivers it now
        cell.push(digest, receive_ns, path)
        if last_sequence > cell.last_sequence:
            cell.last_sequence = last_sequence
        self._first[path] += 1
        if cell.pending:
            # A path waiting to catch up is level once this message, the
            # newest it has seen, is delivered.
            for p in range(self.paths):
                if cell.pending & (1u << p) and cell.pending_last[p] == digest:
                    cell.pending &= ~(1u << p)
                    cell.aligned |= 1u << p
        return True

    def join(self, int path):
        """Path ``path`` has a new connection: live, catching up on the streams already seen."""
        cdef ArrivalCell cell
        self._check(path)
        for value in self._cells.values():
            cell = <ArrivalCell>value
            cell.aligned &= ~(1u << path)
            cell.pending &= ~(1u << path)
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
        ``stale`` (copies older than the last delivered sequence)."""
        self._check(path)
        return {"first": self._first[path], "late": self._late[path],
                "waiting": self._waiting[path], "stale": self._stale[path]}

    def lag_histogram(self, int path):
        """How far behind the first copy path ``path``'s copies came: counts per latency bucket."""
        self._check(path)
        return [self._lag[path][i] for i in range(LATENCY_BUCKETS)]

    @property
    def stream_count(self):
        """Streams seen so far."""
        return len(self._cells)
