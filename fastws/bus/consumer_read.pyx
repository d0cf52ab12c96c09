# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The bus consumer's per-message loop, compiled: NATS ``HMSG`` bytes into the frame core.

``NatsReader.data_received`` (fastws/bus/consumer_nats.py) is the readable twin
and the specification; this does the same per read, in C, for the messages of
subscribed streams: find each complete ``HMSG``/``MSG``, read its subscription
id, the ``Fastws-Opcode`` and ``Nats-Msg-Id`` header values straight from the
header block, check the id names the subscription's stream, and feed the
payload (one ``bytes``, the only allocation) to the core. Everything else (a
control line, a message that fails a check) goes back to Python callbacks.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.string cimport memchr, memcmp

cdef extern from "string.h" nogil:
    void* memmem(const void* haystack, size_t haystacklen, const void* needle, size_t needlelen)

cdef bytes _OPCODE = b"\r\nFastws-Opcode: "
cdef bytes _MSG_ID = b"\r\nNats-Msg-Id: "
# "NATS/1.0\r\n\r\n": a header block without a field.
cdef Py_ssize_t _EMPTY_HEADERS = 12
# A control line longer than this without its end is not NATS.
cdef Py_ssize_t _MAX_LINE = 64 * 1024


cdef class Subscription:
    """One subscribed stream as the loop needs it: its key and the message id prefix it expects."""

    cdef readonly object key
    cdef readonly bytes id_prefix

    def __init__(self, key, bytes id_prefix not None):
        self.key = key
        self.id_prefix = id_prefix


cdef inline Py_ssize_t _number(const char* p, Py_ssize_t size) except -2:
    """A decimal number of ``size`` digits; ValueError if it is not one."""
    cdef Py_ssize_t value = 0, i
    if size <= 0 or size > 12:
        raise ValueError("not a NATS length or id")
    for i in range(size):
        if p[i] < 48 or p[i] > 57:
            raise ValueError("not a NATS length or id")
        value = value * 10 + (p[i] - 48)
    return value


cdef class HmsgLoop:
    """Reads the messages of a NATS read buffer into a frame core.

    Args:
        subscriptions: ``{sid: Subscription}``, kept up to date by the owner.
        feed: ``FrameHandler.feed`` of the link's core.
        on_refused: ``(subscription, opcode, msg_id, payload)`` for a message of a
            subscribed stream that fails a check (``opcode`` -1: no headers, 0: no
            valid ``Fastws-Opcode``).
        on_control: ``(line)`` for every other line (``PING``, ``PONG``, ``INFO``, ``-ERR``, ``+OK``).
        deduplicate: Feed with the subscription's key (the core drops a second copy).
    """

    cdef dict _subscriptions
    cdef object _feed
    cdef object _on_refused
    cdef object _on_control
    cdef bint _deduplicate

    def __init__(self, dict subscriptions not None, feed, on_refused, on_control, bint deduplicate=True):
        self._subscriptions = subscriptions
        self._feed = feed
        self._on_refused = on_refused
        self._on_control = on_control
        self._deduplicate = deduplicate

    def read(self, bytes buf not None):
        """Handle every complete operation in ``buf``; return how many bytes were used.

        Raises:
            ValueError: bytes that are not the NATS protocol (the connection must end).
        """
        cdef const char* base = PyBytes_AS_STRING(buf)
        cdef Py_ssize_t size = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0, end, start, stop, header_size, total
        cdef const char* line
        cdef const char* nl
        cdef const char* token[6]
        cdef Py_ssize_t lengths[6]
        cdef int count, opcode
        cdef bint with_headers
        cdef const char* p
        cdef const char* value
        cdef const char* hit
        cdef Py_ssize_t sid, id_size, i, line_size
        cdef PyObject* found
        cdef Subscription sub
        cdef bytes payload
        cdef object msg_id
        while pos < size:
            line = base + pos
            nl = <const char*>memchr(line, 10, size - pos)
            if nl == NULL:
                if size - pos > _MAX_LINE:
                    raise ValueError("control line too long")
                break
            if nl == line or nl[-1] != 13:
                raise ValueError("a NATS line must end with CRLF")
            end = nl - 1 - base                 # the CR
            line_size = end - pos
            with_headers = line_size > 5 and memcmp(line, b"HMSG ", 5) == 0
            if not with_headers and not (line_size > 4 and memcmp(line, b"MSG ", 4) == 0):
                self._on_control(PyBytes_FromStringAndSize(line, line_size))
                pos = end + 2
                continue
            # The arguments: subject sid [reply] [header bytes] total bytes.
            count = 0
            p = line + (5 if with_headers else 4)
            while p < base + end:
                if count == 6:
                    raise ValueError("too many arguments in a NATS message line")
                token[count] = p
                while p < base + end and p[0] != 32:
                    p += 1
                lengths[count] = p - token[count]
                count += 1
                while p < base + end and p[0] == 32:
                    p += 1
            if count < (4 if with_headers else 3):
                raise ValueError("too few arguments in a NATS message line")
            total = _number(token[count - 1], lengths[count - 1])
            header_size = _number(token[count - 2], lengths[count - 2]) if with_headers else 0
            if header_size > total:
                raise ValueError("NATS header block longer than its message")
            start = end + 2
            stop = start + total
            if stop + 2 > size:
                break                            # the rest comes with the next read
            sid = _number(token[1], lengths[1])
            pos = stop + 2
            found = PyDict_GetItem(self._subscriptions, sid)
            if found is NULL:
                continue                         # in flight when its stream was unsubscribed
            sub = <Subscription>found
            payload = PyBytes_FromStringAndSize(base + start + header_size, total - header_size)
            opcode = -1
            msg_id = None
            if header_size > _EMPTY_HEADERS:
                opcode = 0
                hit = <const char*>memmem(base + start, header_size, PyBytes_AS_STRING(_OPCODE), 17)
                if hit != NULL and hit + 18 < base + start + header_size and hit[18] == 13 \
                        and (hit[17] == 49 or hit[17] == 50):
                    opcode = hit[17] - 48
                hit = <const char*>memmem(base + start, header_size, PyBytes_AS_STRING(_MSG_ID), 15)
                if hit != NULL:
                    value = hit + 15
                    nl = <const char*>memchr(value, 13, base + start + header_size - value)
                    id_size = (nl - value) if nl != NULL else 0
                    if opcode > 0 and id_size == PyBytes_GET_SIZE(sub.id_prefix) + 16 and \
                            memcmp(value, PyBytes_AS_STRING(sub.id_prefix), id_size - 16) == 0:
                        self._feed(payload, opcode, sub.key if self._deduplicate else None)
                        continue
                    msg_id = PyBytes_FromStringAndSize(value, id_size)
            self._on_refused(sub, opcode, msg_id if msg_id is not None else b"", payload)
        return pos
