# The compiled-parser interface (declarations and the how-to in
# core/parser.pxd).

cdef class CompiledParser:
    """Base of parsers written in Cython that read each message in place.

    Given to ``FrameHandler(..., compiled_parser=...)``, it replaces the
    ``parse`` callable on the default route: the core calls
    ``parse(data, size, frame)`` (a C call) with a pointer to the message's
    bytes, valid only during the call, and its ``FrameInfo`` (opcode,
    receive times, and the event time and sequence numbers read so far).
    A subclass overrides ``parse``; it returns the message (None: a control
    message, counted, not delivered) or raises (a counted parse error), and
    may give the message its event time and sequence numbers with
    ``set_event_time_ns(frame, ns)`` and ``set_sequence(frame, first, last)``:
    the core applies them to the stream once the message is classified.
    """

    cdef object parse(self, const char* data, Py_ssize_t size, FrameInfo* frame):
        raise NotImplementedError(f"{type(self).__name__} does not override CompiledParser.parse")
