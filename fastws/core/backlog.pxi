# Backlog and resumption: an async parser or handler that suspends is
# finished in a Task while later messages wait, in arrival order, and
# reading from the socket is paused until the backlog is drained.

cdef enum:
    # What a suspended coroutine was doing when it yielded.
    STAGE_PARSE = 1
    STAGE_HANDLER = 2


# What _parse_default's parser returned when it suspended.
cdef object _SUSPENDED = object()


cdef inline void _suspend(FrameHandler core, object coro, object yielded, int stage):
    """Keep a suspended coroutine and the context of its message (one struct copy)."""
    core._suspended_coro = coro
    core._suspended_yield = yielded
    core._suspended_stage = stage
    core._suspended_frame = core._frame


cdef void _start_resume_task(FrameHandler core):
    core.suspensions += 1
    underlying = core.transport.underlying_transport if core.transport is not None else None
    if underlying is not None:
        # Backpressure: the rest of the current read buffer still arrives
        # (into the backlog); nothing more is read until it is drained.
        underlying.pause_reading()
    core.pending_task = core._loop.create_task(_resume(core))


async def _resume(FrameHandler core):
    """Finish a suspended parser or handler, then drain the backlog in order."""
    cdef int stage
    try:
        while True:
            coro = core._suspended_coro
            stage = core._suspended_stage
            core._suspended_coro = None
            core._suspended_yield, yielded = None, core._suspended_yield
            suspended = False
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
            while not suspended and core._backlog:
                payload, recv_ns, opcode = core._backlog.popleft()
                suspended = _receive(core, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload),
                                     payload, recv_ns, opcode)
            if not suspended:
                return
    finally:
        core.pending_task = None
        core._suspended_coro = None
        core._suspended_yield = None
        if core.transport is not None and not core.transport.is_disconnected:
            underlying = core.transport.underlying_transport
            if underlying is not None and not underlying.is_closing():
                underlying.resume_reading()
