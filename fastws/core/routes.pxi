# The streams' own routes: a stream's key read from the raw bytes finds its
# decoder and handler without allocating (the typed fast route).
# Declarations in core/routes.pxd; dispatch.pxi uses them.

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
