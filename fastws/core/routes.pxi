# The dispatch path: a stream's own route (typed fast route) and the default
# route (the adapter's parse + classify), which continues into the stream's
# route once it knows the stream. Declarations in core/routes.pxd.
#
#   _receive (receive.pxi)
#     ├─ RouteTable.match ─► _decode_route ─┐
#     └─ _parse_default ─► _classify ───────┴─► _deliver ─► _call_handler

cdef inline uint64_t _fnv1a(const char* ptr, Py_ssize_t size) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(size):
        h = (h ^ <unsigned char>ptr[i]) * 1099511628211ULL
    return h


cdef class FrameBuffer:
    """A reusable buffer over a frame's bytes, for route decoders.

    One per core, re-pointed at each routed frame instead of a new
    ``memoryview`` per frame (callgrind: ~1100 instructions a message for
    creating and freeing one). It supports only the buffer protocol
    (``msgspec`` decoders, ``bytes(buf)``, ``memoryview(buf)``). Valid only
    during the decoder's call: one kept past it is retired, and any later use
    raises ``ValueError``.
    """

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        if not self.valid:
            raise ValueError("frame buffer used after its decode call (copy what you keep)")
        PyBuffer_FillInfo(buffer, self, <void*>self.ptr, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer* buffer):
        pass


cdef class Route:
    """One stream of the fast route: its key, decoder, handler and type."""

    def __cinit__(self, str stream_id, decode, handler, stream_type, bint sequenced=True,
                  bint whole_frame=False, bint pass_stream=True, adapt=None):
        self.stream_id = stream_id
        self.key = stream_id.encode("utf-8")
        self.decode = decode
        self.handler = handler
        self.stream_type = stream_type
        self.handler_async = is_async_callable(handler)
        self.sequenced = sequenced
        self.whole_frame = whole_frame
        self.pass_stream = pass_stream
        self.adapt = adapt
        self.key_hash = _fnv1a(PyBytes_AS_STRING(self.key), PyBytes_GET_SIZE(self.key))


cdef class RouteTable:
    """Streams whose frames skip the generic parser: the typed fast route.

    A frame shaped ``<prefix><key><separator><data><suffix>`` whose key is a
    registered stream goes straight to that stream's ``decode(view_of_data)``
    and then to ``handler(stream_id, message)``; the key is read from the raw
    bytes and looked up without allocating. Any other frame (acks, errors,
    streams not registered, other layouts) takes the default route: parsed
    and classified by the adapter, it continues into its stream's route when
    it has one that takes such messages (see ``add``'s ``adapt``). The defaults match the
    combined-stream envelope ``{"stream":"<name>","data":{...}}``.

    Args:
        prefix: Bytes before the key.
        separator: Bytes between the key and the data (they begin with the
            key's terminator, so a key never contains its first byte).
        suffix: Bytes after the data, at the end of the frame.
    """

    def __init__(self, bytes prefix=b'{"stream":"', bytes separator=b'","data":', bytes suffix=b"}"):
        if not prefix or not separator:
            raise ValueError("prefix and separator must not be empty")
        self.prefix = prefix
        self.separator = separator
        self.suffix = suffix
        self._by_id = {}
        self._rebuild(16)

    def add(self, str stream_id, decode, handler, stream_type, *, bint sequenced=True,
            bint whole_frame=False, bint pass_stream=True, adapt=None):
        """Route ``stream_id``'s frames to ``decode`` and then ``handler``.

        Replaces an earlier route of the same stream.

        Args:
            stream_id: The key, as it appears in the frame.
            decode: ``decode(buffer) -> message`` (None: a control message).
                ``buffer`` supports only the buffer protocol and is valid
                during the call.
            handler: ``handler(stream_id, message)`` (or ``handler(message)``
                without ``pass_stream``), sync or async.
            stream_type: Reported in the stream's stats.
            sequenced: The stream's messages carry the core's sequence keys
                (only then are they looked for).
            whole_frame: ``decode`` gets the whole frame, not just the data.
            pass_stream: Call ``handler(stream_id, message)``.
            adapt: ``adapt(message) -> message``: given, a frame of this
                stream that missed the fast route (another layout) continues
                here after the default route parsed and classified it, as
                ``adapt`` makes it (the decoder's form); an exception is a
                parse error of that message. None: such frames go to the
                default handler.
        """
        route = Route(stream_id, decode, handler, stream_type, sequenced, whole_frame, pass_stream, adapt)
        if self.separator[0] in route.key:
            raise ValueError(f"stream id {stream_id!r} contains the separator's first byte")
        self._by_id[stream_id] = route
        if len(self._by_id) * 2 > len(self._slots):
            self._rebuild(len(self._slots) * 2)
        else:
            self._rebuild(len(self._slots))
        return route

    def remove(self, str stream_id):
        """Stop routing ``stream_id`` (its frames take the generic route again)."""
        cdef Route route = self._by_id.pop(stream_id, None)
        if route is not None:
            route.stats = None
            route.stats_serial = 0
            self._rebuild(len(self._slots))

    def get(self, str stream_id):
        """The ``Route`` of ``stream_id``, or None."""
        return self._by_id.get(stream_id)

    def __len__(self):
        return len(self._by_id)

    def __contains__(self, stream_id):
        return stream_id in self._by_id

    def __iter__(self):
        return iter(list(self._by_id))

    cdef void _rebuild(self, Py_ssize_t capacity):
        # Open addressing with linear probing; rebuilt on every change
        # (subscriptions change rarely, lookups happen per frame).
        cdef Route route
        cdef Py_ssize_t index
        slots = [None] * capacity
        for route in self._by_id.values():
            index = <Py_ssize_t>(route.key_hash & <uint64_t>(capacity - 1))
            while slots[index] is not None:
                index = (index + 1) & (capacity - 1)
            slots[index] = route
        self._slots = slots
        self._mask = capacity - 1

    cdef Route match(self, const char* ptr, Py_ssize_t size,
                     Py_ssize_t* data_start, Py_ssize_t* data_size):
        """The route of a frame, with its data's place; None for the generic route."""
        cdef Py_ssize_t plen = PyBytes_GET_SIZE(self.prefix)
        cdef Py_ssize_t slen = PyBytes_GET_SIZE(self.separator)
        cdef Py_ssize_t tlen = PyBytes_GET_SIZE(self.suffix)
        cdef const char* sep = PyBytes_AS_STRING(self.separator)
        cdef const char* key
        cdef const char* end
        cdef Py_ssize_t key_size, start
        cdef uint64_t h
        cdef Py_ssize_t index
        cdef PyObject* slot
        cdef Route route
        if size < plen + slen + tlen or memcmp(ptr, PyBytes_AS_STRING(self.prefix), plen) != 0:
            return None
        key = ptr + plen
        end = <const char*>memchr(key, sep[0], size - plen)
        if end == NULL:
            return None
        key_size = end - key
        start = plen + key_size + slen
        if start + tlen > size or memcmp(end, sep, slen) != 0:
            return None
        if tlen and memcmp(ptr + size - tlen, PyBytes_AS_STRING(self.suffix), tlen) != 0:
            return None
        h = _fnv1a(key, key_size)
        index = <Py_ssize_t>(h & <uint64_t>self._mask)
        while True:
            slot = PyList_GET_ITEM(self._slots, index)
            if <object>slot is None:
                return None
            route = <Route>slot
            if route.key_hash == h and PyBytes_GET_SIZE(route.key) == key_size \
                    and memcmp(PyBytes_AS_STRING(route.key), key, key_size) == 0:
                data_start[0] = start
                data_size[0] = size - tlen - start
                return route
            index = (index + 1) & self._mask


cdef object _decode_route(FrameHandler core, Route route, const char* ptr, Py_ssize_t size):
    """The route's decoder over the frame's data, through the core's reusable buffer.

    Returns the message; None for a control message (counted) or a decode
    error (reported): either way nothing is delivered.
    """
    cdef FrameBuffer buffer = core._buffer
    cdef object message
    buffer.ptr = ptr
    buffer.size = size
    buffer.valid = True
    try:
        message = route.decode(buffer)
    except Exception as exc:
        _error(core, ERROR_PARSE, exc, PyBytes_FromStringAndSize(ptr, min(size, _ERROR_PREVIEW_BYTES)))
        return None
    finally:
        if Py_REFCNT(buffer) > 2:
            # Kept past the call (we hold two references): retire it so a
            # late use raises instead of reading another frame's bytes.
            buffer.valid = False
            core._buffer = FrameBuffer()
    if message is None:
        core.control_messages += 1
    return message


cdef bint _parse_default(FrameHandler core, const char* ptr, Py_ssize_t size, object owner):
    """The default route: parse the message, then classify it. True when a coroutine suspended.

    ``owner`` is a ``bytes`` holding the payload (a reassembled or
    backlogged message), or None when ``ptr`` points into picows's buffer
    (a memoryview over it is made for the parser and released after).
    """
    cdef PyObject* result = NULL
    cdef PySendResult status
    cdef object message
    cdef object payload = owner
    if core._compiled is not None:
        try:
            message = core._compiled.parse(ptr, size, &core._frame)
        except Exception as exc:
            _error(core, ERROR_PARSE, exc, PyBytes_FromStringAndSize(ptr, min(size, _ERROR_PREVIEW_BYTES)))
            return False
        if message is None:
            core.control_messages += 1
            return False
        return _classify(core, message, None)
    if payload is None:
        payload = PyMemoryView_FromMemory(<char*>ptr, size, PyBUF_READ)
    try:
        if core._parse_async:
            coro = core._parse(payload, core) if core._parse_with_handler else core._parse(payload)
            status = PyIter_Send(coro, None, &result)
            if status == PYGEN_RETURN:
                message = <object>result
                Py_DECREF(message)
            elif status == PYGEN_NEXT:
                _suspend(core, coro, <object>result, STAGE_PARSE)
                Py_DECREF(<object>result)
                message = _SUSPENDED
            else:
                fastws_raise_pending()
        elif core._parse_with_handler:
            message = core._parse(payload, core)
        else:
            message = core._parse(payload)
    except Exception as exc:
        _error(core, ERROR_PARSE, exc, payload)
        message = None
    else:
        if message is None:
            core.control_messages += 1
    if message is None or message is _SUSPENDED:
        if owner is None:
            _release_view(payload)
        return message is _SUSPENDED
    suspended = _classify(core, message, payload)
    if owner is None:
        _release_view(payload)
    return suspended


cdef inline void _release_view(object view):
    if Py_REFCNT(view) > 1:
        # Somebody kept the view past the call: make a late use fail loudly
        # instead of reading bytes the next frame overwrote.
        try:
            view.release()
        except BufferError:
            pass


cdef bint _classify(FrameHandler core, object message, object payload):
    """Name a parsed message's stream, then deliver it on the stream's own
    route if it has one (the default handler otherwise). True when the handler suspended.

    ``payload`` (the parser's input, None when gone) is quoted in the report
    of a message the stream's route cannot take.
    """
    cdef object stream_id = None
    cdef object stream_type = None
    cdef StreamStats stats
    cdef PyObject* found
    cdef Route route = None
    try:
        info = core._extract(message)
        if info is not None:
            stream_id = (<tuple?>info)[0]
            stream_type = (<tuple>info)[1]
            if core.routes is not None:
                found = PyDict_GetItem(core.routes._by_id, stream_id)
                if found is not NULL and (<Route>found).adapt is not None:
                    route = <Route>found
    except Exception as exc:
        _error(core, ERROR_CLASSIFY, exc, None)
        stream_id = None
    if route is not None:
        # The stream's route takes its decoder's form of the message: one
        # that does not fit it is a bad message.
        try:
            message = route.adapt(message)
        except Exception as exc:
            _error(core, ERROR_PARSE, exc, payload)
            return False
    if stream_id is not None:
        try:
            stats = _route_stats(core, route) if route is not None else \
                _stats_for(core, stream_id, stream_type, core._frame.receive_ns)
            if stats is not None and (core._frame.event_ns > 0 or core._frame.first_sequence >= 0):
                _apply_fields(core, stream_id, stats)
        except Exception as exc:
            _error(core, ERROR_CLASSIFY, exc, None)
    return _deliver(core, route, stream_id, message)


cdef inline StreamStats _route_stats(FrameHandler core, Route route):
    """The route's stream's stats, counting this message (cached in the route)."""
    cdef StreamStats stats
    if route.stats_serial == core._serial:
        stats = route.stats
        stats.messages += 1
        stats.last_receive_ns = core._frame.receive_ns
        return stats
    stats = _stats_for(core, route.stream_id, route.stream_type, core._frame.receive_ns)
    if stats is not None:
        route.stats = stats
        route.stats_serial = core._serial
    return stats


cdef bint _deliver(FrameHandler core, Route route, object stream_id, object message):
    """Let the handover judge a counted message, then hand it to its route's
    handler (the default handler without a route). True when the handler suspended.

    ``stream_id`` None: the message could not be classified (never
    de-duplicated).
    """
    if core._handover is not None and stream_id is not None \
            and not core._handover.admit(stream_id, core._shadow, core._frame.digest):
        core.overlap_dropped += 1
        return False
    if route is not None:
        return _call_handler(core, route.handler, route.handler_async,
                             stream_id if route.pass_stream else None, message)
    if core._handler_takes_stream:
        return _call_handler(core, core._handler, core._handler_async,
                             stream_id if stream_id is not None else "", message)
    return _call_handler(core, core._handler, core._handler_async, None, message)


cdef bint _call_handler(FrameHandler core, object handler, bint is_async, object stream_id, object message):
    """Call ``handler(message)`` (or ``handler(stream_id, message)``). True when it suspended."""
    cdef PyObject* result = NULL
    cdef PySendResult status
    try:
        if is_async:
            coro = handler(message) if stream_id is None else handler(stream_id, message)
            status = PyIter_Send(coro, None, &result)
            if status == PYGEN_NEXT:
                _suspend(core, coro, <object>result, STAGE_HANDLER)
                Py_DECREF(<object>result)
                return True
            Py_XDECREF(result)
            if status == PYGEN_ERROR:
                fastws_raise_pending()
        elif stream_id is None:
            handler(message)
        else:
            handler(stream_id, message)
    except Exception as exc:
        _error(core, ERROR_HANDLER, exc, None)
        return False
    _delivered(core, core._frame.receive_ns)
    return False


cdef inline void _delivered(FrameHandler core, int64_t recv_ns) noexcept:
    """Count a message its handler finished, with its receive-to-done latency."""
    core.messages_delivered += 1
    core._latency[_latency_bucket(monotonic_ns() - recv_ns)] += 1


cdef void _error(FrameHandler core, int kind, object exc, object payload):
    """Count an error of ``kind`` and report it; the feed goes on."""
    cdef object preview = None
    if kind == ERROR_PARSE:
        core.parse_errors += 1
    elif kind == ERROR_CLASSIFY:
        core.classify_errors += 1
    elif kind == ERROR_HANDLER:
        core.handler_errors += 1
    elif kind == ERROR_OVERSIZE:
        core.oversize_errors += 1
    elif kind == ERROR_PROTOCOL:
        core.protocol_errors += 1
    elif kind == ERROR_SEQUENCE_GAP:
        core.sequence_gap_errors += 1
    if payload is not None:
        try:
            preview = bytes(payload[:_ERROR_PREVIEW_BYTES])
        except Exception:
            preview = None
    try:
        core._report_error(ERROR_KINDS[kind], exc, preview)
    except Exception:
        # The reporter is ours and must not raise; if it does, the feed
        # still goes on.
        pass
