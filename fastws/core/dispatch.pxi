# The one dispatch path: a stream's own route (typed fast route) and the
# default route (the adapter's parse + classify), which continues into the
# stream's route once it knows the stream:
#
#   _receive (receive.pxi)
#     ├─ RouteTable.match ─► _decode_route ─┐
#     └─ _parse_default ─► _classify ───────┴─► _deliver ─► _handle ─► _call_handler
#                                                    └─► a stream's backlog (backlog.pxi)
#
# Errors of every step are counted and reported by _error.

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
            if _first_unnamed(core):
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
                _suspend(core, coro, <object>result)
                Py_DECREF(<object>result)
                message = _SUSPENDED
            else:
                fastws_raise_pending()
        elif core._parse_with_handler:
            message = core._parse(payload, core)
        else:
            message = core._parse(payload)
    except Exception as exc:
        if _first_unnamed(core):
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


cdef inline bint _first_unnamed(FrameHandler core):
    """Whether to report (or deliver) a message no stream is named for: always, but under
    redundancy only its first copy (the paths' copies of a bad frame are one bad frame;
    a later copy is counted in ``redundant_dropped``)."""
    if core._arrival is None or core._arrival.admit(None, core._path, core._frame.digest,
                                                    core._frame.receive_ns, -1):
        return True
    core.redundant_dropped += 1
    return False


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
    if core._arrival is not None:
        if stream_id is None:
            # A message without a stream is judged under the key None.
            if not _first_unnamed(core):
                return False
        elif not core._arrival.admit(stream_id, core._path, core._frame.digest, core._frame.receive_ns,
                                     core._frame.last_sequence):
            core.redundant_dropped += 1
            return False
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
    handler (the default handler without a route), or to its stream's backlog
    while the stream's handler is behind (backlog.pxi). A handler that
    suspends goes on in its stream's Task: always False (nothing of the
    connection waits for it).

    ``stream_id`` None: the message could not be classified (never
    de-duplicated; such messages form one stream of their own).
    """
    if core._handover is not None and stream_id is not None \
            and not core._handover.admit(stream_id, core._shadow, core._frame.digest):
        core.overlap_dropped += 1
        return False
    if core._publisher is not None and stream_id is not None:
        core._publisher.publish(stream_id, core._publish_ptr, core._publish_size, &core._frame,
                                core._handover is not None or core._arrival is not None)
    # The one test the per-stream backlogs cost while no handler is behind.
    if core._busy_streams != 0 and _wait_behind_stream(core, route, stream_id, message):
        return False
    if _handle(core, route, stream_id, message, core._frame.receive_ns):
        _handler_suspended(core, stream_id, core._frame.receive_ns)
    return False


cdef inline bint _handle(FrameHandler core, Route route, object stream_id, object message, int64_t recv_ns):
    """Call the handler of the message's route (the default handler without one). True when it suspended."""
    if route is not None:
        return _call_handler(core, route.handler, route.handler_async,
                             stream_id if route.pass_stream else None, message, recv_ns)
    if core._handler_takes_stream:
        return _call_handler(core, core._handler, core._handler_async,
                             stream_id if stream_id is not None else "", message, recv_ns)
    return _call_handler(core, core._handler, core._handler_async, None, message, recv_ns)


cdef bint _call_handler(FrameHandler core, object handler, bint is_async, object stream_id, object message,
                        int64_t recv_ns):
    """Call ``handler(message)`` (or ``handler(stream_id, message)``) for a message received at ``recv_ns``.

    True when it suspended: its coroutine and what it yielded are left in
    ``core._handler_coro`` and ``core._handler_yield`` for the caller.
    """
    cdef PyObject* result = NULL
    cdef PySendResult status
    try:
        if is_async:
            coro = handler(message) if stream_id is None else handler(stream_id, message)
            status = PyIter_Send(coro, None, &result)
            if status == PYGEN_NEXT:
                core._handler_coro = coro
                core._handler_yield = <object>result
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
    _delivered(core, recv_ns)
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
