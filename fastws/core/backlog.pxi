# Backlog and resumption: messages that cannot be handled now wait here, in
# arrival order, while the socket keeps being read (so pings, pongs and the
# peer's liveness are seen however slow the handler is). A message waits when
# an async parser or handler suspended (finished in a Task), or when the
# current read batch has already kept the event loop for a time slice (the
# rest is handled in the next turns of the loop, a slice at a time). The
# backlog is bounded: past its bound it is abandoned, counted and reported
# (never dropped silently).

cdef enum:
    # What a suspended coroutine was doing when it yielded.
    STAGE_PARSE = 1
    STAGE_HANDLER = 2


# What _parse_default's parser returned when it suspended.
cdef object _SUSPENDED = object()
cdef object _sleep = asyncio.sleep


cdef inline void _suspend(FrameHandler core, object coro, object yielded, int stage):
    """Keep a suspended coroutine and the context of its message (one struct copy)."""
    core._suspended_coro = coro
    core._suspended_yield = yielded
    core._suspended_stage = stage
    core._suspended_frame = core._frame


cdef void _wait_in_backlog(FrameHandler core, object payload, int64_t recv_ns, int opcode):
    """Keep a message (a ``bytes``) behind the ones being handled; abandon the backlog past its bound."""
    cdef int64_t oldest
    core._backlog.append((payload, recv_ns, opcode))
    core._backlog_bytes += PyBytes_GET_SIZE(payload)
    if PyObject_Length(core._backlog) > core.max_backlog or core._backlog_bytes > core.max_backlog_bytes:
        _abandon_backlog(core)
        return
    if not core._backlog_warned and core._on_backlog is not None:
        oldest = (<tuple>core._backlog[0])[1]
        if recv_ns - oldest > core._backlog_warning_ns:
            core._backlog_warned = True
            _report_backlog(core, "aging", PyObject_Length(core._backlog), oldest, recv_ns)


cdef void _abandon_backlog(FrameHandler core):
    """Drop every waiting message: counted, and reported as a gap by ``on_backlog``."""
    cdef Py_ssize_t count = PyObject_Length(core._backlog)
    cdef int64_t first = (<tuple>core._backlog[0])[1]
    cdef int64_t last = (<tuple>core._backlog[count - 1])[1]
    core._backlog.clear()
    core._backlog_bytes = 0
    core._backlog_warned = False
    core.backlog_dropped += <uint64_t>count
    core.backlog_abandoned += 1
    _report_backlog(core, "dropped", count, first, last)


cdef void _report_backlog(FrameHandler core, str event, Py_ssize_t count, int64_t first_ns, int64_t last_ns):
    """``on_backlog(event, count, first_wall_ns, last_wall_ns)``; its errors are the reporter's."""
    if core._on_backlog is None:
        return
    try:
        core._on_backlog(event, count, first_ns + core._wall_offset_ns, last_ns + core._wall_offset_ns)
    except Exception:
        pass


cdef void _start_resume_task(FrameHandler core):
    """A coroutine suspended: finish it, then drain the backlog, in a Task."""
    core.suspensions += 1
    core.pending_task = core._loop.create_task(_resume(core))


cdef void _defer(FrameHandler core):
    """The read batch used its time slice: the backlog is drained in the next turns of the loop."""
    core.deferrals += 1
    core.pending_task = core._loop.create_task(_resume(core))


async def _resume(FrameHandler core):
    """Finish a suspended parser or handler (if any), then drain the backlog in order.

    Drains a time slice at a time, yielding to the event loop between slices
    so that timers, pings and the user's other tasks run.
    """
    cdef int stage
    cdef int64_t slice_start = monotonic_ns()
    cdef int64_t now
    try:
        while True:
            coro = core._suspended_coro
            suspended = False
            if coro is not None:
                stage = core._suspended_stage
                core._suspended_coro = None
                core._suspended_yield, yielded = None, core._suspended_yield
                core.drain_busy_ns += <uint64_t>(monotonic_ns() - slice_start)
                try:
                    result = await continue_coroutine(coro, yielded)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _error(core, ERROR_PARSE if stage == STAGE_PARSE else ERROR_HANDLER, exc, None)
                else:
                    if stage == STAGE_PARSE:
                        if result is None:
                            core.control_messages += 1
                        else:
                            # The message's context, as it was when it arrived.
                            core._frame = core._suspended_frame
                            suspended = _classify(core, result, None)
                    else:
                        _delivered(core, core._suspended_frame.receive_ns)
                slice_start = monotonic_ns()
            while not suspended and core._backlog:
                now = monotonic_ns()
                if now - slice_start > core._slice_ns:
                    core.drain_busy_ns += <uint64_t>(now - slice_start)
                    await _sleep(0)
                    slice_start = monotonic_ns()
                    continue
                payload, recv_ns, opcode = core._backlog.popleft()
                core._backlog_bytes -= PyBytes_GET_SIZE(payload)
                suspended = _receive(core, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                                     payload, recv_ns, opcode)
            if not suspended:
                core.drain_busy_ns += <uint64_t>(monotonic_ns() - slice_start)
                return
    finally:
        core.pending_task = None
        core._suspended_coro = None
        core._suspended_yield = None
        if not core._backlog:
            core._backlog_warned = False
        # Whatever batch was being read when this began is over.
        core._in_batch = False
