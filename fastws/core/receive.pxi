# Receive and reassembly: a whole message (one frame, reassembled fragments,
# or inflated) enters here, in order, gets its FrameInfo, and is routed
# (dispatch.pxi). FrameHandler.on_ws_frame (in _core.pyx) is the entry.

cdef inline void _receive_message(FrameHandler core, const char* ptr, Py_ssize_t size, object owner,
                                  int64_t recv_ns, int opcode):
    """Receive one whole message now, or keep it in order behind a suspended one.

    ``owner`` is a ``bytes`` holding the payload (reassembled or inflated),
    or None when ``ptr`` points into picows's read buffer.
    """
    if core.pending_task is None:
        if recv_ns - core._batch_start_ns <= core._slice_ns:
            if _receive(core, ptr, size, owner, recv_ns, opcode):
                core._publish_ptr = NULL    # the bytes will be gone when it resumes
                _start_resume_task(core)
            return
        # This read batch has kept the event loop for a whole time slice
        # (``recv_ns`` is stamped after the earlier messages' handlers ran):
        # the rest of it waits for the next turns of the loop.
        _defer(core)
    # An earlier message is still being handled (or the slice is spent):
    # keep order, so this one waits (as a copy when it lives in the read
    # buffer, which will be reused).
    _wait_in_backlog(core, owner if owner is not None else PyBytes_FromStringAndSize(ptr, size), recv_ns, opcode)


cdef bint _receive(FrameHandler core, const char* ptr, Py_ssize_t size, object owner, int64_t recv_ns,
                   int opcode):
    """Fill the message's FrameInfo, then route or parse it. True when a coroutine suspended.

    ``opcode`` is the message's (1 text, 2 binary), readable by a parser as
    the core's ``frame_type``.
    """
    cdef Route route = None
    cdef StreamStats stats
    cdef object message
    cdef FrameInfo* frame = &core._frame
    core.frame_type = opcode
    # Wall-clock receive time without a second clock read per frame: the
    # monotonic stamp plus an offset refreshed every 65536 frames (and on
    # connect), which follows a stepped wall clock.
    if (core.frames_received & 0xFFFF) == 0:
        core._wall_offset_ns = realtime_ns() - monotonic_ns()
    frame.receive_ns = recv_ns
    frame.wall_ns = recv_ns + core._wall_offset_ns
    frame.opcode = opcode
    # The event time and sequence numbers: read below from the raw bytes,
    # or set by a compiled parser.
    frame.event_ns = 0
    frame.first_sequence = -1
    frame.last_sequence = -1
    frame.data_start = 0
    frame.data_size = size
    core._publish_ptr = ptr
    core._publish_size = size
    if core._tap is not None:
        _call_tap(core, ptr, size, opcode)
    if core._handover is not None or core._arrival is not None:
        frame.digest = _digest(ptr, size)
    if core.routes is not None:
        route = core.routes.match(ptr, size, &frame.data_start, &frame.data_size)
    if route is None:
        if core._scan is not None:
            core._scan.scan(frame, ptr, size, True)
        return _parse_default(core, ptr, size, owner)
    # The stream's own route. The envelope holds no key: the scan reads the
    # data only, and the sequence keys only where the route carries them.
    if core._scan is not None:
        core._scan.scan(frame, ptr + frame.data_start, frame.data_size, route.sequenced)
    if core._arrival is not None and not core._arrival.admit(
            route.stream_id, core._path, frame.digest, frame.receive_ns, frame.last_sequence):
        core.redundant_dropped += 1
        return False
    if route.whole_frame:
        message = _decode_route(core, route, ptr, size)
    else:
        message = _decode_route(core, route, ptr + frame.data_start, frame.data_size)
    if message is None:
        return False
    stats = _route_stats(core, route)
    if stats is not None and (frame.event_ns > 0 or frame.first_sequence >= 0):
        _apply_fields(core, route.stream_id, stats)
    return _deliver(core, route, route.stream_id, message)


cdef void _call_tap(FrameHandler core, const char* ptr, Py_ssize_t size, int opcode):
    """Hand a copy of the message to the tap (a recorder); its errors are reported, not raised."""
    try:
        core._tap(PyBytes_FromStringAndSize(ptr, size), core._frame.wall_ns, opcode)
    except Exception as exc:
        _error(core, ERROR_HANDLER, exc, None)


cdef void _on_fragment(FrameHandler core, WSFrame frame, int64_t recv_ns):
    """One frame of a fragmented message; the last one receives the whole message."""
    cdef WSMsgType msg_type = frame.msg_type
    if msg_type == WSMsgType.CONTINUATION:
        if not core._assembling:
            _error(core, ERROR_PARSE, ValueError("continuation frame without a first fragment"), None)
            return
    elif core._assembling:
        _error(core, ERROR_PARSE, ValueError("new data frame inside a fragmented message"), None)
        core._fragments.clear()
    if msg_type != WSMsgType.CONTINUATION:
        core._fragment_type = <int>msg_type
    core._assembling = True
    if len(core._fragments) + frame.payload_size > core.max_message_size:
        _fail_connection(core, ERROR_OVERSIZE, ValueError(
            f"fragmented message larger than max_message_size ({core.max_message_size})"),
            WSCloseCode.MESSAGE_TOO_BIG, b"message too big")
        return
    core._fragments.extend(frame.get_payload_as_memoryview())
    if frame.fin:
        core._assembling = False
        core.messages_received += 1
        core.bytes_received += <uint64_t>len(core._fragments)
        if core._fragment_compressed:
            core._fragment_compressed = False
            payload = _inflate(core, core._fragments)
            core._fragments.clear()
            if payload is None:
                return
        else:
            payload = bytes(core._fragments)
            core._fragments.clear()
        _receive_message(core, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), payload, recv_ns,
                         core._fragment_type)


cdef void _fail_connection(FrameHandler core, int kind, object exc, WSCloseCode code, bytes reason):
    """Report ``exc``, close with ``code`` and drop the connection (it reconnects)."""
    core._failed = True
    core._assembling = False
    core._fragment_compressed = False
    core._fragments.clear()
    _error(core, kind, exc, None)
    if core.transport is not None and not core.transport.is_disconnected:
        if not core.transport.is_close_frame_sent:
            core.transport.send_close(code, reason)
        core.transport.disconnect()


cdef void _on_close(FrameHandler core, WSTransport transport, WSFrame frame):
    """The peer's CLOSE: keep its code and reason, answer it, drop the socket."""
    core.close_code = <int>frame.get_close_code()
    try:
        core.close_reason = frame.get_close_reason()
    except Exception:
        core.close_reason = None
    if not transport.is_close_frame_sent:
        transport.send_close(WSCloseCode.OK if core.close_code in (0, 1005) else <WSCloseCode>core.close_code)
    transport.disconnect()
