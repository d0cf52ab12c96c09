# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""MEXC pushes decoded from protobuf wire format straight into dicts.

``PushDecoder`` reads a serialized ``PushDataV3ApiWrapper`` from any buffer
(the core's frame view: no intermediate ``bytes``, no protobuf message object)
and builds exactly the dict that ``json_format.MessageToDict(msg,
preserving_proto_field_name=True)`` builds from ``ParseFromString``:

- int64 values as decimal strings, int32 as ints, bools as bools;
- implicit-presence fields left out at their default value (the last
  occurrence on the wire wins), explicit-presence fields (``optional``,
  messages, oneof members) kept whenever present;
- a message field seen twice is merged, a repeated one appended to, a oneof
  member replaces the other members of its oneof;
- unknown fields and fields of a known number but another wire type skipped.

Its tables are built from the protobuf descriptor of the schema, so the two
decoders cannot disagree on names, numbers or types.

Malformed input (truncated, bad varints or lengths, invalid UTF-8, invalid
wire types, no body) returns ``None`` and counts a parse error; nothing is
half-built, nothing raises.

``PushParser`` plugs the decoder into the frame core through its
compiled-parser interface (``fastws._core.CompiledParser``): the core hands it
each message's bytes in place, and it gives the message its event time
(``sendTime``) and depth versions (``fromVersion``/``toVersion``).
"""
from cpython.buffer cimport PyBUF_READ, PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bool cimport PyBool_FromLong
from cpython.dict cimport PyDict_DelItem, PyDict_SetItem
from cpython.list cimport PyList_Append, PyList_GET_ITEM
from cpython.long cimport PyLong_FromLong
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.object cimport PyObject
from cpython.ref cimport Py_REFCNT
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

from fastws._core cimport (CompiledParser, FrameBuffer, FrameHandler, FrameInfo, RouteTable, set_event_time_ns,
                           set_sequence)
from fastws.book._book cimport (DiffIds, JsonBookReader, OrderBook, parse_fixed, parse_fixed_in_frame,
                                stage_level_fast)


cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, unsigned int maxchar)
    void* PyUnicode_DATA(object o)
    object PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    # A dict sized for its keys up front: no resize while a message's fields
    # go in (callgrind: a resize per item dict otherwise).
    dict _PyDict_NewPresized(Py_ssize_t minused)
    # Unlike PyDict_GetItem, does not save and restore the error state
    # (callgrind: a visible share of a depth push).
    PyObject* PyDict_GetItemWithError(object d, object key) except? NULL


cdef enum:
    K_STRING = 1
    K_INT32 = 2
    K_INT64 = 3
    K_BOOL = 4
    K_MESSAGE = 5
    # Wire types.
    WT_VARINT = 0
    WT_FIXED64 = 1
    WT_LEN = 2
    WT_START_GROUP = 3
    WT_END_GROUP = 4
    WT_FIXED32 = 5
    # Nesting bound of messages and unknown groups together: upb's (100).
    MAX_DEPTH = 100
    # Oneofs per message the decoder tracks (the schema has one).
    MAX_ONEOFS = 8
    # Longest string a field remembers (channel names are ~50 bytes).
    CACHED_TEXT_SIZE = 64
    # Captured integer slots.
    CAPTURE_NONE = -1
    CAPTURE_SEND_TIME = 0
    CAPTURE_FIRST = 1
    CAPTURE_LAST = 2


# Protobuf FieldDescriptor type numbers.
_TYPE_KINDS = {9: K_STRING, 5: K_INT32, 3: K_INT64, 8: K_BOOL, 11: K_MESSAGE}
_KIND_WIRE = {K_STRING: WT_LEN, K_INT32: WT_VARINT, K_INT64: WT_VARINT, K_BOOL: WT_VARINT,
              K_MESSAGE: WT_LEN}
# Integer fields read into the decoder's slots, whichever message holds them:
# the event time of a push and the versions of a depth update.
_CAPTURES = {"sendTime": CAPTURE_SEND_TIME, "fromVersion": CAPTURE_FIRST, "toVersion": CAPTURE_LAST}


cdef class FieldSpec:
    """One field of a message: its dict key, kind, and how presence works."""
    cdef readonly str name
    cdef int kind
    cdef int wire_type
    cdef bint repeated
    cdef bint presence
    cdef int oneof
    cdef int capture
    cdef MessageSpec sub
    # The last string decoded for this field and its bytes: channels,
    # symbols and event types repeat push after push, so an equal one is
    # shared, not rebuilt.
    cdef object last_text
    cdef Py_ssize_t last_size
    cdef char last_raw[CACHED_TEXT_SIZE]


cdef class MessageSpec:
    """A message's fields indexed by field number (None: unknown)."""
    cdef readonly str name
    cdef list fields
    cdef Py_ssize_t max_number
    cdef Py_ssize_t field_count
    cdef int oneof_count


cdef MessageSpec _build(object descriptor, dict built):
    cdef MessageSpec spec = built.get(descriptor.full_name)
    cdef FieldSpec field
    if spec is not None:
        return spec
    spec = MessageSpec()
    spec.name = descriptor.full_name
    built[descriptor.full_name] = spec
    real_oneofs = [o for o in descriptor.oneofs
                   if not (len(o.fields) == 1 and o.name == "_" + o.fields[0].name)]
    if len(real_oneofs) > MAX_ONEOFS:
        raise TypeError(f"{descriptor.full_name}: more than {MAX_ONEOFS} oneofs")
    spec.oneof_count = len(real_oneofs)
    spec.max_number = max([f.number for f in descriptor.fields] or [0])
    # A oneof's members share one key slot.
    spec.field_count = len(descriptor.fields) - sum(len(o.fields) - 1 for o in real_oneofs)
    spec.fields = [None] * (spec.max_number + 1)
    for f in descriptor.fields:
        kind = _TYPE_KINDS.get(f.type)
        if kind is None:
            raise TypeError(f"{descriptor.full_name}.{f.name}: protobuf type {f.type} is not supported")
        field = FieldSpec()
        field.name = __import__("sys").intern(f.name)
        field.kind = kind
        field.wire_type = _KIND_WIRE[kind]
        field.repeated = bool(f.is_repeated)
        field.presence = bool(f.has_presence) and not field.repeated
        field.oneof = -1
        for index, oneof in enumerate(real_oneofs):
            if f.containing_oneof is not None and f.containing_oneof.full_name == oneof.full_name:
                field.oneof = index
        field.capture = _CAPTURES.get(f.name, CAPTURE_NONE)
        if kind == K_MESSAGE:
            field.sub = _build(f.message_type, built)
        spec.fields[f.number] = field
    return spec


cdef inline const uint8_t* _next_varint(const uint8_t* p, const uint8_t* end, uint64_t* out) noexcept:
    """Read a varint at ``p``; the position after it, or NULL when malformed.

    Returns the new position rather than updating one through a pointer, so
    the caller's position stays in a register; one-byte varints (most tags
    and lengths) take the first branch.
    """
    if p < end and p[0] < 0x80:
        out[0] = p[0]
        return p + 1
    if _varint(&p, end, out) < 0:
        return NULL
    return p


cdef inline const uint8_t* _next_varint32(const uint8_t* p, const uint8_t* end, uint64_t* out) noexcept:
    """Read a tag or a length: at most 5 bytes and below 2^32, as upb requires; NULL otherwise."""
    cdef uint64_t value = 0
    cdef int shift = 0
    cdef uint8_t byte
    if p < end and p[0] < 0x80:
        out[0] = p[0]
        return p + 1
    while p < end and shift < 35:
        byte = p[0]
        p += 1
        value |= <uint64_t>(byte & 0x7F) << shift
        if byte < 0x80:
            if (value >> 32) != 0:
                return NULL
            out[0] = value
            return p
        shift += 7
    return NULL


cdef inline int _varint(const uint8_t** pp, const uint8_t* end, uint64_t* out) noexcept:
    """Read a varint; 0 on success, -1 when truncated or longer than 10 bytes."""
    cdef const uint8_t* p = pp[0]
    cdef uint64_t value = 0
    cdef int shift = 0
    cdef uint8_t byte
    while p < end:
        byte = p[0]
        p += 1
        value |= <uint64_t>(byte & 0x7F) << shift
        if byte < 0x80:
            pp[0] = p
            out[0] = value
            return 0
        shift += 7
        if shift >= 70:
            return -1
    return -1


cdef int _skip_field(const uint8_t** pp, const uint8_t* end, uint32_t wire_type,
                     uint32_t number, int depth) noexcept:
    """Skip one unknown field's value; 0 on success, -1 when malformed."""
    cdef uint64_t value, tag
    cdef const uint8_t* p
    if wire_type == WT_VARINT:
        return _varint(pp, end, &value)
    if wire_type == WT_FIXED64:
        if end - pp[0] < 8:
            return -1
        pp[0] += 8
        return 0
    if wire_type == WT_FIXED32:
        if end - pp[0] < 4:
            return -1
        pp[0] += 4
        return 0
    if wire_type == WT_LEN:
        p = _next_varint32(pp[0], end, &value)
        if p == NULL or value > <uint64_t>(end - p):
            return -1
        pp[0] = p + value
        return 0
    if wire_type == WT_START_GROUP:
        if depth >= MAX_DEPTH:
            return -1
        while True:
            # upb accepts field number 0 inside a group (not at message level).
            p = _next_varint32(pp[0], end, &tag)
            if p == NULL:
                return -1
            pp[0] = p
            if (tag & 7) == WT_END_GROUP:
                return 0 if (tag >> 3) == number else -1
            if _skip_field(pp, end, <uint32_t>(tag & 7), <uint32_t>(tag >> 3), depth + 1) < 0:
                return -1
    return -1     # an END_GROUP without its start, or wire types 6 and 7


cdef inline bint _is_ascii(const uint8_t* p, Py_ssize_t size) noexcept:
    """No byte with the high bit set: checked 8 bytes at a time."""
    cdef Py_ssize_t i = 0
    cdef uint64_t word, high = 0
    while i + 8 <= size:
        memcpy(&word, p + i, 8)
        high |= word
        i += 8
    while i < size:
        high |= p[i]
        i += 1
    return (high & 0x8080808080808080ULL) == 0


cdef inline object _ascii_or_utf8(const uint8_t* p, Py_ssize_t size):
    """A str from UTF-8 bytes; pure ASCII (prices, channels) takes a copy, no decoder."""
    cdef object text
    if not _is_ascii(p, size):
        return PyUnicode_DecodeUTF8(<const char*>p, size, "strict")
    text = PyUnicode_New(size, 127)
    memcpy(PyUnicode_DATA(text), p, size)
    return text


cdef inline object _field_text(FieldSpec field, const uint8_t* p, Py_ssize_t size):
    """The field's string, shared with its previous value when the bytes are equal."""
    if field.last_text is not None and field.last_size == size and memcmp(field.last_raw, p, size) == 0:
        return field.last_text
    text = _ascii_or_utf8(p, size)
    if size <= CACHED_TEXT_SIZE:
        memcpy(field.last_raw, p, size)
        field.last_size = size
        field.last_text = text
    return text


cdef const char* _DIGIT_PAIRS = (b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                 b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                 b"8081828384858687888990919293949596979899")


cdef inline object _int64_text(int64_t value):
    """``str(value)`` for an int64, written straight into an ASCII str."""
    cdef char digits[24]
    cdef int n = 0, start
    cdef uint64_t magnitude = <uint64_t>(-(value + 1)) + 1 if value < 0 else <uint64_t>value
    cdef uint64_t pair
    cdef object text
    # Two digits per division (timestamps have 13).
    while magnitude >= 100:
        pair = magnitude % 100
        magnitude //= 100
        digits[23 - n] = _DIGIT_PAIRS[2 * pair + 1]
        digits[22 - n] = _DIGIT_PAIRS[2 * pair]
        n += 2
    if magnitude >= 10:
        digits[23 - n] = _DIGIT_PAIRS[2 * magnitude + 1]
        digits[22 - n] = _DIGIT_PAIRS[2 * magnitude]
        n += 2
    else:
        digits[23 - n] = <char>(48 + magnitude)
        n += 1
    if value < 0:
        digits[23 - n] = b"-"[0]
        n += 1
    start = 24 - n
    text = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(text), &digits[start], n)
    return text


cdef inline int64_t _parse_decimal(const uint8_t* p, Py_ssize_t size) noexcept:
    """A version string's value (1 to 18 ASCII digits), or -1."""
    cdef Py_ssize_t i
    cdef int64_t value = 0
    if size < 1 or size > 18:
        return -1
    for i in range(size):
        if p[i] < 48 or p[i] > 57:
            return -1
        value = value * 10 + (p[i] - 48)
    return value


cdef class PushDecoder:
    """Decodes serialized MEXC pushes into MessageToDict-equal dicts, fast.

    Args:
        descriptor: The wrapper message's protobuf descriptor
            (``PushDataV3ApiWrapper.DESCRIPTOR``).
        body_oneof: The oneof that must be set for a push to be valid.

    Attributes:
        parse_errors: Malformed pushes seen.
        last_error: Why the last malformed push was refused.
        send_time_ms, first_version, last_version: The last decoded push's
            ``sendTime`` and depth versions (-1: absent).
    """
    cdef MessageSpec _root
    cdef int _body_oneof
    cdef bint _body_seen
    cdef readonly uint64_t parse_errors
    cdef readonly str last_error
    cdef int64_t[3] _captured

    def __init__(self, descriptor, str body_oneof="body"):
        self._root = _build(descriptor, {})
        oneofs = [o for o in descriptor.oneofs if o.name == body_oneof]
        if not oneofs:
            raise ValueError(f"{descriptor.full_name} has no oneof {body_oneof!r}")
        self._body_oneof = (<FieldSpec>self._root.fields[oneofs[0].fields[0].number]).oneof
        self.last_error = None

    @property
    def send_time_ms(self):
        return self._captured[CAPTURE_SEND_TIME]

    @property
    def first_version(self):
        return self._captured[CAPTURE_FIRST]

    @property
    def last_version(self):
        return self._captured[CAPTURE_LAST]

    def decode(self, data):
        """Decode one push; ``None`` (and a counted parse error) when malformed.

        Args:
            data: Any buffer (bytes, memoryview, the core's frame view); read
                in place, not copied.
        """
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return self._decode(<const uint8_t*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef dict _decode(self, const uint8_t* p, Py_ssize_t size):
        """The push at ``p``; None (counted, ``last_error`` says why) when malformed."""
        cdef dict result = _PyDict_NewPresized(self._root.field_count)
        cdef int status
        self._captured[0] = -1
        self._captured[1] = -1
        self._captured[2] = -1
        self._body_seen = False
        try:
            status = self._message(self._root, &p, p + size, result, 0)
        except UnicodeDecodeError:
            status = -2
        if status == 0 and not self._body_seen:
            status = -3
        if status != 0:
            self.parse_errors += 1
            self.last_error = ("malformed protobuf" if status == -1 else
                               "invalid UTF-8 in a string field" if status == -2 else "push without a body")
            return None
        return result

    cdef int _message(self, MessageSpec spec, const uint8_t** pp, const uint8_t* end, dict out,
                      int depth) except -2:
        """Decode fields until ``end`` into ``out``; 0, or -1 when malformed."""
        cdef uint64_t tag, value, length
        cdef uint32_t number, wire_type
        cdef FieldSpec field
        cdef object item, current
        cdef const uint8_t* start
        cdef PyObject* found
        # The member last set of each oneof of this message: setting another
        # one removes it (O(1), no scan of the members).
        cdef PyObject* oneof_set[MAX_ONEOFS]
        cdef int i
        cdef PyObject* slot
        # The list of the repeated field last appended to: items of one
        # field come in a row on the wire, so the dict lookup is skipped.
        cdef FieldSpec list_field = None
        cdef object list_items = None
        cdef const uint8_t* p = pp[0]
        for i in range(spec.oneof_count):
            oneof_set[i] = NULL
        if depth >= MAX_DEPTH:
            return -1
        while p < end:
            p = _next_varint32(p, end, &tag)
            if p == NULL:
                return -1
            number = <uint32_t>(tag >> 3)
            wire_type = <uint32_t>(tag & 7)
            if number == 0:
                return -1
            field = None
            if number <= <uint64_t>spec.max_number:
                slot = PyList_GET_ITEM(spec.fields, <Py_ssize_t>number)
                if slot != <PyObject*>None:
                    field = <FieldSpec>slot
            if field is None or field.wire_type != <int>wire_type:
                # Unknown, or a known number with another wire type: protobuf
                # keeps it as an unknown field, which MessageToDict ignores.
                if wire_type == WT_END_GROUP:
                    return -1
                if _skip_field(&p, end, wire_type, number, depth) < 0:
                    return -1
                continue
            if field.oneof >= 0:
                if oneof_set[field.oneof] != NULL and oneof_set[field.oneof] != <PyObject*>field:
                    self._clear(out, <FieldSpec>oneof_set[field.oneof])
                    if depth == 0 and field.oneof == self._body_oneof:
                        # The replaced body's depth versions do not describe this push.
                        self._captured[CAPTURE_FIRST] = -1
                        self._captured[CAPTURE_LAST] = -1
                oneof_set[field.oneof] = <PyObject*>field
                if depth == 0 and field.oneof == self._body_oneof:
                    self._body_seen = True
            if wire_type == WT_VARINT:
                p = _next_varint(p, end, &value)
                if p == NULL:
                    return -1
                if field.kind == K_INT64:
                    if field.capture >= 0:
                        self._captured[field.capture] = <int64_t>value
                    if value == 0 and not field.presence:
                        self._clear(out, field)
                    else:
                        PyDict_SetItem(out, field.name, _int64_text(<int64_t>value))
                elif field.kind == K_INT32:
                    if <uint32_t>value == 0 and not field.presence:
                        self._clear(out, field)
                    else:
                        PyDict_SetItem(out, field.name, PyLong_FromLong(<int32_t><uint32_t>value))
                else:
                    if value == 0 and not field.presence:
                        self._clear(out, field)
                    else:
                        PyDict_SetItem(out, field.name, PyBool_FromLong(value != 0))
                continue
            # Length-delimited: a string or a message.
            p = _next_varint32(p, end, &length)
            if p == NULL or length > <uint64_t>(end - p):
                return -1
            start = p
            p += length
            if field.kind == K_STRING:
                if field.capture >= 0:
                    self._captured[field.capture] = _parse_decimal(start, <Py_ssize_t>length)
                if length == 0 and not field.presence:
                    self._clear(out, field)
                else:
                    PyDict_SetItem(out, field.name, _field_text(field, start, <Py_ssize_t>length))
                continue
            if field.repeated:
                item = _PyDict_NewPresized(field.sub.field_count)
                if self._message(field.sub, &start, p, <dict>item, depth + 1) < 0:
                    return -1
                if field is not list_field:
                    list_field = field
                    found = PyDict_GetItemWithError(out, field.name)
                    if found is NULL:
                        list_items = []
                        PyDict_SetItem(out, field.name, list_items)
                    else:
                        list_items = <object>found
                PyList_Append(list_items, item)
                continue
            # A singular message: a second occurrence merges into the first.
            found = PyDict_GetItemWithError(out, field.name)
            if found is NULL:
                current = _PyDict_NewPresized(field.sub.field_count)
                PyDict_SetItem(out, field.name, current)
            else:
                current = <object>found
            if self._message(field.sub, &start, p, <dict>current, depth + 1) < 0:
                return -1
        pp[0] = p
        return 0 if p == end else -1

    cdef inline int _clear(self, dict out, FieldSpec field) except -1:
        # A later default value makes an implicit-presence field absent again.
        if PyDict_GetItemWithError(out, field.name) is not NULL:
            PyDict_DelItem(out, field.name)
        return 0


include "_bookpb.pxi"


cdef class PushParser(CompiledParser):
    """A MEXC connection's messages, parsed in place by the frame core.

    Binary frames are pushes, decoded by ``decoder``; each gets its
    ``sendTime`` as event time and a depth update its versions as sequence
    numbers. A push of a channel in ``books`` goes to its book's sync instead
    (its levels read from the bytes, no dict; see ``BookRoutes``) and the core
    classifies the route's ``{"channel": ...}`` message. Text frames are JSON
    control replies, handed to ``on_control(view)`` (the view is valid during
    the call only).

    Args:
        decoder: The connection's ``PushDecoder``.
        on_control: ``(memoryview) -> message | None`` for text frames.
        on_malformed: ``(reason: str, payload: bytes) -> Exception``: what
            a malformed push raises (a counted parse error in the core).
        books: The client's book channels (None or empty: none).
    """
    cdef PushDecoder _decoder
    cdef object _on_control
    cdef object _on_malformed
    cdef BookRoutes _books

    def __init__(self, PushDecoder decoder not None, on_control, on_malformed, BookRoutes books=None):
        self._decoder = decoder
        self._on_control = on_control
        self._on_malformed = on_malformed
        self._books = books

    cdef object parse(self, const char* data, Py_ssize_t size, FrameInfo* frame):
        cdef dict message
        cdef int64_t send_time
        cdef BookRoute route
        if frame.opcode == 1:
            view = PyMemoryView_FromMemory(<char*>data, size, PyBUF_READ)
            try:
                return self._on_control(view)
            finally:
                try:
                    view.release()     # a late use raises, as the core's views do
                except BufferError:
                    pass
        if self._books is not None and self._books._count:
            route = self._books.match(<const uint8_t*>data, size)
            if route is not None:
                # The sync checks the versions itself (one report per gap): no sequence here.
                send_time = _send_time(<const uint8_t*>data, size)
                if 0 < send_time < 9223372036854:
                    set_event_time_ns(frame, send_time * 1000000)
                return self._books.deliver(route, data, size)
        message = self._decoder._decode(<const uint8_t*>data, size)
        if message is None:
            raise self._on_malformed(self._decoder.last_error,
                                     PyBytes_FromStringAndSize(data, size if size < 256 else 256))
        send_time = self._decoder._captured[CAPTURE_SEND_TIME]
        if 0 < send_time < 9223372036854:
            set_event_time_ns(frame, send_time * 1000000)
        set_sequence(frame, self._decoder._captured[CAPTURE_FIRST], self._decoder._captured[CAPTURE_LAST])
        return message


cdef int64_t _send_time(const uint8_t* p, Py_ssize_t size) noexcept:
    """A push's ``sendTime`` from the fields before its body (-1: not there or malformed)."""
    cdef const uint8_t* end = p + size
    cdef uint64_t tag, value
    while p < end:
        p = _next_varint32(p, end, &tag)
        if p == NULL or (tag >> 3) >= 300:
            return -1
        if tag == ((W_SEND_TIME << 3) | WT_VARINT):
            p = _next_varint(p, end, &value)
            return -1 if p == NULL else <int64_t>value
        if _skip_field(&p, end, <uint32_t>(tag & 7), <uint32_t>(tag >> 3), 0) < 0:
            return -1
    return -1
