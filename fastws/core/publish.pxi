# The bus publisher's per-message part: each data frame a connection delivers
# is written, as one NATS HPUB frame (subject of its stream, the bus headers
# of fastws.bus.subjects, the original bytes), into a buffer that the
# connection to NATS takes once per batch (declarations in core/publish.pxd).
#
# Per message: a dict lookup (cached for a run of one stream), the payload
# digest unless the handover already made it, a few integer-to-ASCII
# conversions and one memcpy. No Python object is made; the Python side
# (fastws.bus.publisher) is called once when a batch begins.
from libc.stdlib cimport free, realloc

cdef enum:
    # Bytes of a frame besides the subject, the id prefix, the numbers and
    # the payload: see FramePublisher.publish.
    _PUBLISH_FIXED = 160
    _PUBLISH_FIRST_CAPACITY = 65536

cdef const char* _HEX = b"0123456789abcdef"


cdef const char* _DIGIT_PAIRS = (b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                  b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                  b"8081828384858687888990919293949596979899")


cdef inline int _digit_count(uint64_t value) noexcept nogil:
    cdef int count = 1
    while value >= 100:
        value //= 100
        count += 2
    return count + 1 if value >= 10 else count


cdef inline char* _format_uint(char* end, uint64_t value) noexcept nogil:
    """Write ``value`` in ASCII so that it ends at ``end``, two digits a step; return its start."""
    cdef char* p = end
    cdef unsigned int pair
    while value >= 100:
        pair = <unsigned int>(value % 100) * 2
        value //= 100
        p -= 2
        p[0] = _DIGIT_PAIRS[pair]
        p[1] = _DIGIT_PAIRS[pair + 1]
    if value >= 10:
        pair = <unsigned int>value * 2
        p -= 2
        p[0] = _DIGIT_PAIRS[pair]
        p[1] = _DIGIT_PAIRS[pair + 1]
    else:
        p -= 1
        p[0] = <char>(48 + value)
    return p


cdef inline char* _put_uint(char* out, uint64_t value, int count) noexcept nogil:
    """Write ``value`` (``count`` digits, from ``_digit_count``) at ``out``; return the end."""
    _format_uint(out + count, value)
    return out + count


cdef inline char* _put(char* out, const char* text, Py_ssize_t size) noexcept nogil:
    memcpy(out, text, size)
    return out + size


cdef class PublishSubject:
    """One stream's prepared parts of an HPUB frame (made once per stream)."""

    def __init__(self, bytes subject, bytes id_prefix):
        self.command = b"HPUB " + subject + b" "
        self.id_prefix = id_prefix


cdef class FramePublisher:
    """Writes each delivered data frame as a NATS ``HPUB`` frame into a bounded buffer.

    Set as a ``FrameHandler``'s ``publisher`` (several connections may share
    one): every message a connection delivers to its handler, once its stream
    is known (and once a make-before-break handover has let it through), is
    appended as::

        HPUB <subject> <header bytes> <total bytes>\\r\\n
        NATS/1.0\\r\\n
        Nats-Msg-Id: <exchange>.<stream token>.<digest, 16 hex>\\r\\n
        Fastws-Recv-Ns: <wall-clock receive ns>\\r\\n
        Fastws-Event-Ms: <exchange event ms>\\r\\n      (when the core found one)
        Fastws-Opcode: <1 or 2>\\r\\n\\r\\n
        <the frame's bytes>\\r\\n

    The first message after a ``take()`` calls ``on_pending()`` (the owner
    then takes the batch in a later turn of the event loop: one write per
    batch, not per message). A message that would take the buffer past
    ``max_buffer_bytes`` is dropped and counted (``dropped``); nothing waits.

    Args:
        subject_for: ``(stream_id) -> (subject: bytes, id_prefix: bytes) | None``,
            called once per stream (None: the stream is not published; counted
            as ``unrouted``). ``forget(stream_id)`` asks again.
        on_pending: ``() -> None``, called when a batch begins.
        max_buffer_bytes: Bound on the bytes waiting to be taken.
        max_streams: Streams whose subjects are kept (more are asked each time).
    """

    def __init__(self, subject_for, on_pending, Py_ssize_t max_buffer_bytes=8 * 1024 * 1024,
                 Py_ssize_t max_streams=100000):
        if not callable(subject_for) or not callable(on_pending):
            raise TypeError("subject_for and on_pending must be callable")
        if max_buffer_bytes < 1024:
            raise ValueError(f"max_buffer_bytes must be >= 1024, got {max_buffer_bytes}")
        self._subject_for = subject_for
        self._on_pending = on_pending
        self._subjects = {}
        self.max_buffer_bytes = max_buffer_bytes
        self.max_streams = max_streams

    def __dealloc__(self):
        free(self._data)

    cdef PublishSubject _subject(self, object stream_id):
        """The stream's prepared subject, or None when it is not published."""
        cdef PyObject* found
        cdef PublishSubject subject = None
        if stream_id is self._last_stream_id:
            return self._last_subject
        found = PyDict_GetItem(self._subjects, stream_id)
        if found is not NULL:
            subject = <PublishSubject>found if <object>found is not None else None
        else:
            parts = self._subject_for(stream_id)
            if parts is not None:
                subject = PublishSubject(<bytes?>parts[0], <bytes?>parts[1])
            if PyDict_Size(self._subjects) < self.max_streams:
                PyDict_SetItem(self._subjects, stream_id, subject)
        self._last_stream_id = stream_id
        self._last_subject = subject
        return subject

    cdef bint _reserve(self, Py_ssize_t needed) noexcept:
        """Room for ``needed`` more bytes within the bound; False when there is none."""
        cdef Py_ssize_t capacity
        cdef char* grown
        if self._size + needed > self.max_buffer_bytes:
            return False
        if self._size + needed <= self._capacity:
            return True
        capacity = self._capacity if self._capacity else _PUBLISH_FIRST_CAPACITY
        while capacity < self._size + needed:
            capacity *= 2
        if capacity > self.max_buffer_bytes:
            capacity = self.max_buffer_bytes
        grown = <char*>realloc(self._data, capacity)
        if grown is NULL:
            return False
        self._data = grown
        self._capacity = capacity
        return True

    cdef void publish(self, object stream_id, const char* ptr, Py_ssize_t size, FrameInfo* frame,
                      bint have_digest):
        cdef PublishSubject subject
        cdef uint64_t digest
        cdef uint64_t recv_ns = <uint64_t>frame.wall_ns if frame.wall_ns > 0 else 0
        cdef uint64_t event_ms = <uint64_t>(frame.event_ns // 1000000) if frame.event_ns > 0 else 0
        cdef int recv_digits, event_digits, header_digits, total_digits
        cdef Py_ssize_t header_size, total_size, command_size, prefix_size, needed
        cdef char* out
        cdef int i
        if ptr is NULL:
            # The raw bytes are gone (an async parser suspended on them).
            self.unpublishable += 1
            return
        try:
            subject = self._subject(stream_id)
        except Exception:
            self.unrouted += 1
            return
        if subject is None:
            self.unrouted += 1
            return
        digest = frame.digest if have_digest else _digest(ptr, size)
        command_size = PyBytes_GET_SIZE(subject.command)
        prefix_size = PyBytes_GET_SIZE(subject.id_prefix)
        recv_digits = _digit_count(recv_ns)
        event_digits = _digit_count(event_ms) if event_ms else 0
        # NATS/1.0\r\n (10) + Nats-Msg-Id: (13) + prefix + 16 + \r\n (2)
        # + Fastws-Recv-Ns: (16) + digits + \r\n (2)
        # [+ Fastws-Event-Ms: (17) + digits + \r\n (2)]
        # + Fastws-Opcode: (15) + 1 + \r\n\r\n (4)
        header_size = 10 + 13 + prefix_size + 16 + 2 + 16 + recv_digits + 2 + 15 + 1 + 4
        if event_ms:
            header_size += 17 + event_digits + 2
        total_size = header_size + size
        header_digits = _digit_count(<uint64_t>header_size)
        total_digits = _digit_count(<uint64_t>total_size)
        needed = command_size + header_digits + 1 + total_digits + 2 + total_size + 2
        if not self._reserve(needed):
            self.dropped += 1
            return
        out = self._data + self._size
        out = _put(out, PyBytes_AS_STRING(subject.command), command_size)
        out = _put_uint(out, <uint64_t>header_size, header_digits)
        out[0] = b' '
        out = _put_uint(out + 1, <uint64_t>total_size, total_digits)
        out = _put(out, b"\r\nNATS/1.0\r\nNats-Msg-Id: ", 25)
        out = _put(out, PyBytes_AS_STRING(subject.id_prefix), prefix_size)
        for i in range(16):
            out[i] = _HEX[(digest >> (60 - 4 * i)) & 0xF]
        out = _put(out + 16, b"\r\nFastws-Recv-Ns: ", 18)
        out = _put_uint(out, recv_ns, recv_digits)
        if event_ms:
            out = _put(out, b"\r\nFastws-Event-Ms: ", 19)
            out = _put_uint(out, event_ms, event_digits)
        out = _put(out, b"\r\nFastws-Opcode: ", 17)
        out[0] = <char>(48 + frame.opcode)
        out = _put(out + 1, b"\r\n\r\n", 4)
        out = _put(out, ptr, size)
        out = _put(out, b"\r\n", 2)
        self._size += needed
        self.published += 1
        self.published_bytes += <uint64_t>size
        self._batch_messages += 1
        if self._batch_messages == 1:
            try:
                self._on_pending()
            except Exception:
                self.pending_errors += 1

    def take(self):
        """The frames written since the last take, as ``(bytes, message count)``; the buffer empties.

        ``(b"", 0)`` when nothing waits.
        """
        cdef object data
        cdef Py_ssize_t count = self._batch_messages
        if self._size == 0:
            return b"", 0
        data = PyBytes_FromStringAndSize(self._data, self._size)
        self._size = 0
        self._batch_messages = 0
        return data, count

    def forget(self, stream_id=None):
        """Ask ``subject_for`` again for ``stream_id`` (every stream when None)."""
        if stream_id is None:
            self._subjects.clear()
        else:
            self._subjects.pop(stream_id, None)
        self._last_stream_id = None
        self._last_subject = None

    @property
    def buffered_bytes(self):
        """Bytes written and not taken yet."""
        return self._size

    @property
    def buffered_messages(self):
        """Messages written and not taken yet."""
        return self._batch_messages

    def counters(self):
        """The publisher's counters as a new dict."""
        return {
            "published": self.published,
            "published_bytes": self.published_bytes,
            "dropped": self.dropped,
            "unrouted": self.unrouted,
            "unpublishable": self.unpublishable,
            "buffered_bytes": self._size,
            "buffered_messages": self._batch_messages,
        }

    def publish_frame(self, object stream_id, bytes payload, int64_t wall_ns, int64_t event_ns=0,
                      int opcode=1):
        """Write one frame as the core would (for tests and benchmarks without a socket)."""
        cdef FrameInfo frame
        memset(&frame, 0, sizeof(frame))
        frame.wall_ns = wall_ns
        frame.event_ns = event_ns
        frame.opcode = opcode
        self.publish(stream_id, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), &frame, False)


def payload_digest(data):
    """The core's 64-bit digest of a payload (the one in a bus message id and the handover)."""
    cdef const unsigned char[::1] view = data
    if view.shape[0] == 0:
        return _digest(b"", 0)
    return _digest(<const char*>&view[0], view.shape[0])
