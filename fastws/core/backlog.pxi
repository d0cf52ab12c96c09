# Backlogs and resumption. The socket is never paused: a message that cannot
# be handled now waits while the socket keeps being read (so pings, pongs and
# the peer's liveness are seen however slow a handler is). Two places to wait:
#
# - the connection's backlog (raw bytes, arrival order), while an async parser
#   is suspended (no later message can be classified before it returns), or
#   when the read batch has already kept the event loop for a time slice (the
#   rest is handled in the next turns of the loop, a slice at a time); the
#   connection's ``pending_task`` drains it;
# - a stream's backlog (``StreamBacklog``, parsed messages of one stream),
#   while that stream's async handler is suspended: its later messages wait
#   there under the stream's policy (lossless, latest, drop_oldest) and the
#   other streams' messages go on to their handlers. The stream's own Task
#   finishes the handler, then hands it the waiting messages in order.
#
# Both are bounded: past its bound a backlog is abandoned, counted and
# reported (never dropped silently). A stream's policy may give up messages by
# design (conflated, dropped): counted per stream and in the totals.

# What _parse_default's parser returned when it suspended.
cdef object _SUSPENDED = object()
cdef object _sleep = asyncio.sleep

# Indexed by POLICY_* (core/backlog.pxd); the names of fastws.policy.
POLICY_NAMES = ("lossless", "latest", "drop_oldest")


cdef class StreamBacklog:
    """One stream's place to wait behind its suspended handler, with its policy and counters.

    Attributes:
        stream_id: The stream (None: messages no stream was named for).
        keep: Waiting messages the policy keeps (0: lossless, bounded by
            ``max_backlog`` only).
        alarm_ns: Age of the oldest waiting message at which ``on_backlog``
            is told ``"aging"`` (0: never).
        waiting_bytes: Bytes of the waiting messages (as received).
        task: The Task finishing the stream's handler (None: not behind).
        conflated: Waiting messages replaced by a newer one (``latest``).
        dropped: Waiting messages given up: the oldest past ``keep``
            (``drop_oldest``), or the whole backlog past ``max_backlog``.
        waited: Messages that had to wait behind the stream's handler.
        suspensions: Times the stream's handler suspended.
    """

    def __cinit__(self, stream_id, int policy, Py_ssize_t keep, int64_t alarm_ns):
        self.stream_id = stream_id
        self.policy = policy
        self.keep = keep
        self.alarm_ns = alarm_ns
        self._items = deque()

    @property
    def policy_name(self):
        """``"lossless"``, ``"latest"`` or ``"drop_oldest"``."""
        return POLICY_NAMES[self.policy]

    @property
    def waiting(self):
        """Messages waiting for the stream's handler."""
        return len(self._items)

    def age_ns(self):
        """Nanoseconds since the oldest message of the stream not yet handled arrived; 0 when none."""
        cdef int64_t oldest = self._oldest_ns()
        return monotonic_ns() - oldest if oldest else 0

    cdef int64_t _oldest_ns(self):
        if self._inflight_ns:
            return self._inflight_ns
        if self._items:
            return (<tuple>self._items[0])[3]
        return 0


cdef inline void _suspend(FrameHandler core, object coro, object yielded):
    """Keep a suspended parser's coroutine and the context of its message (one struct copy)."""
    core._suspended_coro = coro
    core._suspended_yield = yielded
    core._suspended_frame = core._frame


cdef void _wait_in_backlog(FrameHandler core, object payload, int64_t recv_ns, int opcode):
    """Keep a message (a ``bytes``) behind the ones being handled; abandon the backlog past its bound."""
    cdef int64_t oldest
    core._backlog.append((payload, recv_ns, opcode))
    core._backlog_bytes += PyBytes_GET_SIZE(payload)
    if PyObject_Length(core._backlog) > core.max_backlog \
            or core._backlog_bytes + core._queued_bytes > core.max_backlog_bytes:
        _abandon_backlog(core)
        return
    if not core._backlog_warned and core._on_backlog is not None:
        oldest = (<tuple>core._backlog[0])[1]
        if recv_ns - oldest > core._backlog_warning_ns:
            core._backlog_warned = True
            _report_backlog(core, "aging", PyObject_Length(core._backlog), oldest, recv_ns, None)


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
    _report_backlog(core, "dropped", count, first, last, None)


cdef void _report_backlog(FrameHandler core, str event, Py_ssize_t count, int64_t first_ns, int64_t last_ns,
                          object stream_id):
    """``on_backlog(event, count, first_wall_ns, last_wall_ns, stream_id)``; its errors are the reporter's."""
    if core._on_backlog is None:
        return
    try:
        core._on_backlog(event, count, first_ns + core._wall_offset_ns, last_ns + core._wall_offset_ns, stream_id)
    except Exception:
        pass


cdef void _start_resume_task(FrameHandler core):
    """A parser suspended: finish it, then drain the backlog, in a Task."""
    core.suspensions += 1
    core.pending_task = core._loop.create_task(_resume(core))


cdef void _defer(FrameHandler core):
    """The read batch used its time slice: the backlog is drained in the next turns of the loop."""
    core.deferrals += 1
    core.pending_task = core._loop.create_task(_resume(core))


async def _resume(FrameHandler core):
    """Finish a suspended parser (if any), then drain the connection's backlog in order.

    Drains a time slice at a time, yielding to the event loop between slices
    so that timers, pings and the user's other tasks run. A handler that
    suspends meanwhile goes on in its stream's Task.
    """
    cdef int64_t slice_start = monotonic_ns()
    cdef int64_t now
    try:
        while True:
            coro = core._suspended_coro
            suspended = False
            if coro is not None:
                core._suspended_coro = None
                core._suspended_yield, yielded = None, core._suspended_yield
                core.drain_busy_ns += <uint64_t>(monotonic_ns() - slice_start)
                try:
                    result = await continue_coroutine(coro, yielded)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _error(core, ERROR_PARSE, exc, None)
                else:
                    if result is None:
                        core.control_messages += 1
                    else:
                        # The message's context, as it was when it arrived.
                        core._frame = core._suspended_frame
                        _classify(core, result, None)
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


# ------------------------------------------------------------ stream backlogs

cdef StreamBacklog _stream_backlog(FrameHandler core, object stream_id):
    """The stream's backlog, made with the stream's policy when first needed."""
    cdef PyObject* found = PyDict_GetItem(core._stream_backlogs, stream_id)
    cdef StreamBacklog backlog
    if found is not NULL:
        return <StreamBacklog>found
    policy = core._policies.get(stream_id) if stream_id is not None else None
    if policy is None:
        backlog = StreamBacklog(stream_id, POLICY_LOSSLESS, 0, core._backlog_warning_ns)
    else:
        backlog = StreamBacklog(stream_id, (<tuple>policy)[0], (<tuple>policy)[1], (<tuple>policy)[2])
    PyDict_SetItem(core._stream_backlogs, stream_id, backlog)
    return backlog


cdef void _handler_suspended(FrameHandler core, object stream_id, int64_t recv_ns):
    """The stream's handler suspended: the stream's Task finishes it, then drains the stream's backlog."""
    cdef StreamBacklog backlog = _stream_backlog(core, stream_id)
    coro, yielded = core._handler_coro, core._handler_yield
    core._handler_coro = None
    core._handler_yield = None
    core.suspensions += 1
    backlog.suspensions += 1
    backlog._inflight_ns = recv_ns
    core._busy_streams += 1
    backlog.owner = core
    backlog.task = core._loop.create_task(_drain_stream(core, backlog, coro, yielded, recv_ns))


cdef bint _wait_behind_stream(FrameHandler receiver, Route route, object stream_id, object message):
    """Keep the message in its stream's backlog if the stream's handler is behind (True), under its policy.

    The backlog's counts are its owner's (the core whose Task drains it):
    under redundancy another path's core may have received the message.
    """
    cdef PyObject* found = PyDict_GetItem(receiver._stream_backlogs, stream_id)
    cdef StreamBacklog backlog
    cdef FrameHandler core
    cdef int64_t recv_ns = receiver._frame.receive_ns
    cdef Py_ssize_t size = receiver._frame.data_size
    cdef int64_t oldest
    if found is NULL or (<StreamBacklog>found).task is None:
        return False
    backlog = <StreamBacklog>found
    core = <FrameHandler>backlog.owner
    items = backlog._items
    if backlog.policy == POLICY_LATEST and items:
        _forget_waiting(core, backlog, items.pop())
        backlog.conflated += 1
        core.conflated += 1
    elif backlog.policy == POLICY_DROP_OLDEST and PyObject_Length(items) >= backlog.keep:
        _forget_waiting(core, backlog, items.popleft())
        backlog.dropped += 1
        core.policy_dropped += 1
    items.append((route, stream_id, message, recv_ns, size))
    backlog.waited += 1
    backlog.waiting_bytes += size
    core._queued += 1
    core._queued_bytes += size
    if PyObject_Length(items) > core.max_backlog or core._queued_bytes + core._backlog_bytes > core.max_backlog_bytes:
        _abandon_stream_backlog(core, backlog)
        return True
    if backlog.alarm_ns and not backlog._warned and core._on_backlog is not None:
        oldest = (<tuple>items[0])[3]
        if recv_ns - oldest > backlog.alarm_ns:
            backlog._warned = True
            _report_backlog(core, "aging", PyObject_Length(items), oldest, recv_ns, stream_id)
    return True


cdef inline void _forget_waiting(FrameHandler core, StreamBacklog backlog, tuple item):
    """A message left its stream's backlog (handled or given up): the sizes follow."""
    cdef Py_ssize_t size = item[4]
    backlog.waiting_bytes -= size
    core._queued -= 1
    core._queued_bytes -= size


cdef void _abandon_stream_backlog(FrameHandler core, StreamBacklog backlog):
    """Past the bound: drop the stream's waiting messages, counted and reported as a gap."""
    cdef object items = backlog._items
    cdef Py_ssize_t count = PyObject_Length(items)
    cdef int64_t first = (<tuple>items[0])[3]
    cdef int64_t last = (<tuple>items[count - 1])[3]
    items.clear()
    core._queued -= count
    core._queued_bytes -= backlog.waiting_bytes
    backlog.waiting_bytes = 0
    backlog._warned = False
    backlog.dropped += <uint64_t>count
    core.backlog_dropped += <uint64_t>count
    core.backlog_abandoned += 1
    _report_backlog(core, "dropped", count, first, last, backlog.stream_id)


async def _drain_stream(FrameHandler core, StreamBacklog backlog, coro, yielded, int64_t recv_ns):
    """Finish a stream's suspended handler, then hand it the stream's waiting messages in order.

    A later suspension is awaited here as well; the other streams go on
    meanwhile. Sync handling yields to the event loop after each time slice.
    """
    cdef int64_t slice_start
    cdef int64_t now
    cdef tuple item
    try:
        while True:
            try:
                await continue_coroutine(coro, yielded)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _error(core, ERROR_HANDLER, exc, None)
            else:
                _delivered(core, recv_ns)
            coro = None
            slice_start = monotonic_ns()
            while coro is None:
                if not backlog._items:
                    backlog._inflight_ns = 0
                    core.drain_busy_ns += <uint64_t>(monotonic_ns() - slice_start)
                    return
                now = monotonic_ns()
                if now - slice_start > core._slice_ns:
                    core.drain_busy_ns += <uint64_t>(now - slice_start)
                    await _sleep(0)
                    slice_start = monotonic_ns()
                    continue
                item = backlog._items.popleft()
                _forget_waiting(core, backlog, item)
                recv_ns = item[3]
                backlog._inflight_ns = recv_ns
                if _handle(core, <Route>item[0], item[1], item[2], recv_ns):
                    coro, yielded = core._handler_coro, core._handler_yield
                    core._handler_coro = None
                    core._handler_yield = None
                    core.suspensions += 1
                    backlog.suspensions += 1
                    core.drain_busy_ns += <uint64_t>(monotonic_ns() - slice_start)
    finally:
        backlog.task = None
        backlog._inflight_ns = 0
        backlog._warned = False
        core._busy_streams -= 1
        if backlog._items:
            # Cancelled (the connection is closing): what still waits is
            # given up; the client has reported it as a gap before.
            core._queued -= PyObject_Length(backlog._items)
            core._queued_bytes -= backlog.waiting_bytes
            backlog.waiting_bytes = 0
            backlog._items.clear()
        if PyDict_Size(core._stream_backlogs) > core.max_streams:
            # Bounded like the per-stream stats: a server sending ever new
            # names must not grow it (the totals keep counting).
            core._stream_backlogs.pop(backlog.stream_id, None)
