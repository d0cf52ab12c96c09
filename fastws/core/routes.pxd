# The streams' own routes: decoder, handler and cached stats (routes.pxi).
cdef class FrameBuffer:
    cdef:
        const char* ptr
        Py_ssize_t size
        bint valid


cdef class Route:
    cdef:
        readonly str stream_id
        readonly bytes key
        readonly object decode
        readonly object handler
        readonly object stream_type
        readonly bint handler_async
        readonly bint sequenced
        readonly bint whole_frame
        readonly bint pass_stream
        readonly object adapt
        uint64_t key_hash
        # The stream's stats on the connection numbered stats_serial.
        StreamStats stats
        uint64_t stats_serial


cdef class RouteTable:
    cdef:
        readonly bytes prefix
        readonly bytes separator
        readonly bytes suffix
        list _slots
        Py_ssize_t _mask
        dict _by_id

    cdef Route match(self, const char* ptr, Py_ssize_t size,
                     Py_ssize_t* data_start, Py_ssize_t* data_size)
    cdef void _rebuild(self, Py_ssize_t capacity)
