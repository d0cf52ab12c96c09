# Per-stream backlogs and their slow-consumer policies (backlog.pxi).
cdef enum:
    # A stream's policy (fastws.policy): what waits behind its busy handler.
    POLICY_LOSSLESS = 0
    POLICY_LATEST = 1
    POLICY_DROP_OLDEST = 2


cdef class StreamBacklog:
    cdef:
        # The stream (None: messages no stream was named for).
        readonly object stream_id
        int policy
        # Waiting messages the policy keeps (0: no bound but max_backlog).
        readonly Py_ssize_t keep
        # Age of the oldest waiting message at which the alarm is raised (0: never).
        readonly int64_t alarm_ns
        # Waiting messages: (route, stream_id, message, receive_ns, size), in order.
        object _items
        readonly Py_ssize_t waiting_bytes
        # The Task finishing the stream's suspended handler, then its backlog
        # (None: the stream is not behind).
        readonly object task
        # The FrameHandler whose Task that is (its counters count the
        # waiting messages). Under redundancy the paths of a group share
        # their stream backlogs: a stream behind its handler waits on every
        # path, whichever brings its next message.
        object owner
        # Receive time of the message its handler is on (0: none).
        int64_t _inflight_ns
        bint _warned
        readonly uint64_t conflated
        readonly uint64_t dropped
        readonly uint64_t waited
        readonly uint64_t suspensions

    cdef int64_t _oldest_ns(self)
