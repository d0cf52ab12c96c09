# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The frame core: per-frame receive, counting, dispatch and fast send.

Everything here runs once per frame, so it avoids Python-level calls it can
hoist, allocates only what the adapter's parser needs (a memoryview over the
read buffer) and never creates a Task unless an ``async`` parser or handler
really suspends.
"""
import asyncio
from collections import deque
from inspect import iscoroutinefunction

from cpython.buffer cimport PyBUF_READ
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_XDECREF
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memset
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from fastws._suspend import continue_coroutine


cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    PySendResult PyIter_Send(object iterator, object arg, PyObject** presult)
    Py_ssize_t Py_REFCNT(object o)


cdef extern from *:
    """
    /* Returns -1 so that Cython propagates the exception PyIter_Send set. */
    static int fastws_raise_pending(void) { return -1; }
    """
    int fastws_raise_pending() except -1


cdef enum:
    # What a suspended coroutine was doing when it yielded.
    STAGE_PARSE = 1
    STAGE_HANDLER = 2


ERROR_KINDS = ("parse", "classify", "handler", "oversize")
# How much of a bad payload is copied into an error report.
cdef Py_ssize_t _ERROR_PREVIEW_BYTES = 256


cdef int64_t monotonic_ns() noexcept nogil:
    """CLOCK_MONOTONIC in nanoseconds, the clock of ``time.monotonic_ns()``."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def monotonic_time_ns():
    """Return the core's receive-time clock (``CLOCK_MONOTONIC``) in nanoseconds."""
    return monotonic_ns()


cdef inline int _latency_bucket(int64_t ns) noexcept nogil:
    cdef uint64_t v = <uint64_t>ns if ns > 0 else 0
    cdef int log2
    if v < 8:
        return <int>v
    log2 = 63 - __builtin_clzll(v)
    return log2 * 4 + <int>((v >> (log2 - 2)) & 3)


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


def latency_bucket_bounds(index):
    """Return the ``(low, high)`` nanosecond bounds of a latency bucket.

    Buckets 0-7 hold exactly 0-7 ns; from 8 ns on, each power of two is split
    into 4 buckets (indices 12 and up; 8-11 stay empty).
    """
    if index < 12:
        return index, index + 1
    log2 = index // 4
    return (4 + index % 4) << (log2 - 2), (5 + index % 4) << (log2 - 2)


def is_async_callable(fn):
    """True for an ``async def`` function, method, partial or object whose
    ``__call__`` is ``async def``: decided once, not per message."""
    return iscoroutinefunction(fn) or iscoroutinefunction(getattr(fn, "__call__", None))


cdef class StreamStats:
    """Per-stream counters kept by the core: messages and receive times."""

    def __cinit__(self, stream_type):
        self.stream_type = stream_type


cdef class FrameHandler(WSListener):
    """The picows listener that carries every frame of one connection.

    Per data frame: count it, stamp its receive time (monotonic ns, before
    parsing), reassemble fragments, call ``parse(view)`` with a zero-copy
    ``memoryview`` of the payload, call ``extract(message)`` and dispatch the
    message to ``handler(message)``.

    The view handed to ``parse`` points into picows's read buffer and is valid
    only during that call (up to the parser's first suspension for an
    ``async`` parser): copy what you keep. A view still referenced after the
    call is released, so a late use raises ``ValueError`` instead of reading
    overwritten bytes.

    ``parse`` returning ``None`` means the frame was a control message the
    adapter consumed (an ack, a pong); it is counted and not dispatched.

    ``async`` callables are driven with ``send(None)``: one that completes
    without suspending costs no Task. One that suspends is finished in a Task
    while later frames of this connection wait in arrival order, and reading
    from the socket is paused until the backlog is drained.

    Exceptions from ``parse``, ``extract`` and ``handler`` are counted and
    passed to ``report_error(kind, exc, payload_preview)``; the connection
    keeps running.

    Args:
        parse: ``(memoryview) -> message | None``, sync or async.
        extract: ``(message) -> (stream_id, stream_type) | None``, sync.
        handler: ``(message) -> None``, sync or async.
        report_error: ``(kind: str, exc: BaseException, payload: bytes | None)``.
        on_disconnect: ``(handler: FrameHandler) -> None``, called once when the
            socket is gone.
        max_message_size: bound on a reassembled fragmented message; larger
            closes the connection with 1009.
    """

    def __init__(self, parse, extract, handler, report_error, on_disconnect=None,
                 Py_ssize_t max_message_size=10 * 1024 * 1024):
        self._parse = parse
        self._extract = extract
        self._handler = handler
        self._report_error = report_error
        self._on_disconnect = on_disconnect
        self._parse_async = is_async_callable(parse)
        self._handler_async = is_async_callable(handler)
        self.max_message_size = max_message_size
        self._streams = {}
        self._fragments = bytearray()
        self._backlog = deque()
        self.close_code = 0
        self.close_reason = None
        memset(self._latency, 0, sizeof(self._latency))

    # ------------------------------------------------------------ picows hooks
    cpdef on_ws_connected(self, WSTransport transport):
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        self.connected_ns = monotonic_ns()
        self.last_receive_ns = self.connected_ns

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef int64_t now = monotonic_ns()
        cdef WSMsgType msg_type = frame.msg_type
        self.frames_received += 1
        self.last_receive_ns = now
        if (msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY) and frame.fin and not self._assembling:
            self.messages_received += 1
            self.bytes_received += <uint64_t>frame.payload_size
            self._deliver(frame.payload_ptr, frame.payload_size, now)
        elif msg_type == WSMsgType.CLOSE:
            self._on_close(transport, frame)
        elif msg_type == WSMsgType.TEXT or msg_type == WSMsgType.BINARY or msg_type == WSMsgType.CONTINUATION:
            self._on_fragment(frame, now)
        # PING is answered by picows's auto-pong; a PONG is consumed by its
        # auto-ping. Neither reaches Python.

    cpdef on_ws_disconnected(self, WSTransport transport):
        if self._on_disconnect is not None:
            self._on_disconnect(self)

    # ---------------------------------------------------------------- receive
    cdef inline void _deliver(self, char* ptr, Py_ssize_t size, int64_t recv_ns):
        cdef object view
        if self.pending_task is not None:
            # An earlier message is still being handled: keep order, so this
            # one waits as a copy (the read buffer will be reused).
            self._backlog.append((PyBytes_FromStringAndSize(ptr, size), recv_ns))
            return
        cdef bint suspended
        view = PyMemoryView_FromMemory(ptr, size, PyBUF_READ)
        suspended = self._process(view, recv_ns)
        if Py_REFCNT(view) > 1:
            # Somebody kept the view past the call: make a late use fail
            # loudly instead of reading bytes the next frame overwrote.
            try:
                view.release()
            except BufferError:
                pass
        if suspended:
            self._start_resume_task()

    cdef bint _process(self, object payload, int64_t recv_ns):
        """Parse and dispatch one message. True when a coroutine suspended."""
        cdef PyObject* result = NULL
        cdef PySendResult status
        cdef object message
        try:
            if self._parse_async:
                coro = self._parse(payload)
                status = PyIter_Send(coro, None, &result)
                if status == PYGEN_RETURN:
                    message = <object>result
                    Py_DECREF(message)
                elif status == PYGEN_NEXT:
                    self._suspended_coro = coro
                    self._suspended_yield = <object>result
                    Py_DECREF(self._suspended_yield)
                    self._suspended_stage = STAGE_PARSE
                    self._suspended_recv_ns = recv_ns
                    return True
                else:
                    fastws_raise_pending()
            else:
                message = self._parse(payload)
        except Exception as exc:
            self._error(ERROR_PARSE, exc, payload)
            return False
        if message is None:
            self.control_messages += 1
            return False
        return self._dispatch(message, recv_ns)

    cdef bint _dispatch(self, object message, int64_t recv_ns):
        """Classify and hand a parsed message on. True when the handler suspended."""
        cdef PyObject* result = NULL
        cdef PySendResult status
        cdef PyObject* found
        cdef StreamStats stats
        try:
            info = self._extract(message)
            if info is not None:
                stream_id = (<tuple?>info)[0]
                # Most frames of a connection belong to the stream of the frame
                # before: an equality test is cheaper than hashing a new str.
                if self._last_stream_id is not None and stream_id == self._last_stream_id:
                    stats = self._last_stats
                else:
                    found = PyDict_GetItem(self._streams, stream_id)
                    if found is NULL:
                        stats = StreamStats((<tuple>info)[1])
                        stats.first_receive_ns = recv_ns
                        PyDict_SetItem(self._streams, stream_id, stats)
                    else:
                        stats = <StreamStats>found
                    self._last_stream_id = stream_id
                    self._last_stats = stats
                stats.messages += 1
                stats.last_receive_ns = recv_ns
        except Exception as exc:
            self._error(ERROR_CLASSIFY, exc, None)
        try:
            if self._handler_async:
                coro = self._handler(message)
                status = PyIter_Send(coro, None, &result)
                if status == PYGEN_NEXT:
                    self._suspended_coro = coro
                    self._suspended_yield = <object>result
                    Py_DECREF(self._suspended_yield)
                    self._suspended_stage = STAGE_HANDLER
                    self._suspended_recv_ns = recv_ns
                    return True
                Py_XDECREF(result)
                if status == PYGEN_ERROR:
                    fastws_raise_pending()
            else:
                self._handler(message)
        except Exception as exc:
            self._error(ERROR_HANDLER, exc, None)
            return False
        self.messages_delivered += 1
        self._record_latency(recv_ns)
        return False

    cdef inline void _record_latency(self, int64_t recv_ns) noexcept:
        self._latency[_latency_bucket(monotonic_ns() - recv_ns)] += 1
        self._latency_count += 1

    cdef void _error(self, int kind, object exc, object payload):
        cdef object preview = None
        if kind == ERROR_PARSE:
            self.parse_errors += 1
        elif kind == ERROR_CLASSIFY:
            self.classify_errors += 1
        elif kind == ERROR_HANDLER:
            self.handler_errors += 1
        if payload is not None:
            try:
                preview = bytes(payload[:_ERROR_PREVIEW_BYTES])
            except Exception:
                preview = None
        try:
            self._report_error(ERROR_KINDS[kind], exc, preview)
        except Exception:
            # The reporter is ours and must not raise; if it does, the feed
            # still goes on.
            pass

    cdef void _on_fragment(self, WSFrame frame, int64_t recv_ns):
        cdef WSMsgType msg_type = frame.msg_type
        if msg_type == WSMsgType.CONTINUATION:
            if not self._assembling:
                self._error(ERROR_PARSE, ValueError("continuation frame without a first fragment"), None)
                return
        elif self._assembling:
            self._error(ERROR_PARSE, ValueError("new data frame inside a fragmented message"), None)
            self._fragments.clear()
        self._assembling = True
        if len(self._fragments) + frame.payload_size > self.max_message_size:
            self._assembling = False
            self._fragments.clear()
            self._error(ERROR_OVERSIZE, ValueError(
                f"fragmented message larger than max_message_size ({self.max_message_size})"), None)
            self.transport.send_close(WSCloseCode.MESSAGE_TOO_BIG, b"message too big")
            self.transport.disconnect()
            return
        self._fragments.extend(frame.get_payload_as_memoryview())
        if frame.fin:
            self._assembling = False
            self.messages_received += 1
            self.bytes_received += <uint64_t>len(self._fragments)
            payload = bytes(self._fragments)
            self._fragments.clear()
            if self.pending_task is not None:
                self._backlog.append((payload, recv_ns))
            elif self._process(payload, recv_ns):
                self._start_resume_task()

    cdef void _on_close(self, WSTransport transport, WSFrame frame):
        self.close_code = <int>frame.get_close_code()
        try:
            self.close_reason = frame.get_close_reason()
        except Exception:
            self.close_reason = None
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.OK if self.close_code in (0, 1005) else <WSCloseCode>self.close_code)
        transport.disconnect()

    # ------------------------------------------------------ suspended coroutines
    cdef void _start_resume_task(self):
        self.suspensions += 1
        underlying = self.transport.underlying_transport if self.transport is not None else None
        if underlying is not None:
            # Backpressure: the rest of the current read buffer still arrives
            # (into the backlog); nothing more is read until it is drained.
            underlying.pause_reading()
        self.pending_task = self._loop.create_task(self._resume())

    async def _resume(self):
        """Finish a suspended parser or handler, then drain the backlog in order."""
        cdef int stage
        cdef int64_t recv_ns
        try:
            while True:
                coro = self._suspended_coro
                stage = self._suspended_stage
                recv_ns = self._suspended_recv_ns
                self._suspended_coro = None
                self._suspended_yield, yielded = None, self._suspended_yield
                suspended = False
                try:
                    result = await continue_coroutine(coro, yielded)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._error(ERROR_PARSE if stage == STAGE_PARSE else ERROR_HANDLER, exc, None)
                else:
                    if stage == STAGE_PARSE:
                        if result is None:
                            self.control_messages += 1
                        else:
                            suspended = self._dispatch(result, recv_ns)
                    else:
                        self.messages_delivered += 1
                        self._record_latency(recv_ns)
                while not suspended and self._backlog:
                    payload, recv_ns = self._backlog.popleft()
                    suspended = self._process(payload, recv_ns)
                if not suspended:
                    return
        finally:
            self.pending_task = None
            self._suspended_coro = None
            self._suspended_yield = None
            if self.transport is not None and not self.transport.is_disconnected:
                underlying = self.transport.underlying_transport
                if underlying is not None and not underlying.is_closing():
                    underlying.resume_reading()

    # ------------------------------------------------------------------- send
    cpdef send_text(self, object text):
        """Send one TEXT frame: a str is encoded as UTF-8, bytes go as they are."""
        cdef object data = (<str>text).encode("utf-8") if type(text) is str else text
        self.transport.send(WSMsgType.TEXT, data)
        self.messages_sent += 1
        self.bytes_sent += <uint64_t>len(data)

    cpdef send_bytes(self, object data):
        """Send a bytes-like object as one BINARY frame."""
        self.transport.send(WSMsgType.BINARY, data)
        self.messages_sent += 1
        self.bytes_sent += <uint64_t>len(data)

    # ------------------------------------------------------------- snapshots
    cpdef dict counters(self):
        """Return the connection's counters as a new dict (built on demand)."""
        return {
            "frames_received": self.frames_received,
            "messages_received": self.messages_received,
            "bytes_received": self.bytes_received,
            "messages_delivered": self.messages_delivered,
            "control_messages": self.control_messages,
            "parse_errors": self.parse_errors,
            "classify_errors": self.classify_errors,
            "handler_errors": self.handler_errors,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "suspensions": self.suspensions,
            "backlog": len(self._backlog),
        }

    cpdef list latency_histogram(self):
        """Return the receive-to-handler-done histogram as a list of counts.

        Bucket ``i`` spans ``latency_bucket_bounds(i)`` nanoseconds.
        """
        return [self._latency[i] for i in range(LATENCY_BUCKETS)]

    def stream_stats(self):
        """Return the per-stream counters, keyed by stream id (a new dict)."""
        return dict(self._streams)

    @property
    def backlog_size(self):
        """Messages waiting behind a suspended parser or handler."""
        return len(self._backlog)
