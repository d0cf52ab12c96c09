# Shared by every concern of the core: clocks, error kinds, latency buckets.
# (Included by fastws/_core.pyx; declarations in core/common.pxd.)

# The kinds passed to report_error, indexed by ERROR_* (core/common.pxd).
ERROR_KINDS = ("parse", "classify", "handler", "oversize", "protocol", "sequence_gap")

# How much of a bad payload is copied into an error report.
cdef Py_ssize_t _ERROR_PREVIEW_BYTES = 256


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


# Numbers FrameHandlers, so that a route's cached stats are known to be this
# connection's (an address could be reused by a later core; a serial is not).
cdef uint64_t _next_serial = 0


cdef int64_t monotonic_ns() noexcept nogil:
    """CLOCK_MONOTONIC in nanoseconds, the clock of ``time.monotonic_ns()``."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef int64_t realtime_ns() noexcept nogil:
    """CLOCK_REALTIME in nanoseconds (wall clock, comparable with exchange times)."""
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
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


cdef inline int _latency_bucket_capped(int64_t value, int buckets) noexcept nogil:
    cdef int index = _latency_bucket(value)
    return index if index < buckets else buckets - 1


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
