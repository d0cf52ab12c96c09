# The frame core's C-level interface, one extension split by concern: each
# fastws/core/<concern>.pxd declares what fastws/core/<concern>.pxi defines.
# An adapter written in Cython can `from fastws._core cimport FrameHandler`
# (subclass it, read its counters) or `cimport CompiledParser, FrameInfo` to
# parse frames in place (see core/parser.pxd).
from libc.stdint cimport int64_t, uint32_t, uint64_t
from picows.picows cimport WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

include "core/common.pxd"
include "core/fieldscan.pxd"
include "core/routes.pxd"
include "core/handover.pxd"
include "core/arrival.pxd"
include "core/publish.pxd"
include "core/parser.pxd"
include "core/backlog.pxd"


cdef class FrameHandler(WSListener):
    cdef:
        # --- dispatch (dispatch.pxi): callables bound once at construction;
        # the *_async flags say whether each returns a coroutine, decided
        # once, never per message.
        object _parse
        object _extract
        object _handler
        object _report_error
        object _on_disconnect
        bint _parse_async
        bint _handler_async
        # parse(view, self) rather than parse(view).
        bint _parse_with_handler
        # The default handler takes (stream_id, message), like a route's.
        bint _handler_takes_stream
        # Parses the default route's messages in place instead of _parse.
        CompiledParser _compiled
        # The fast route (None: every frame takes the default route).
        readonly RouteTable routes
        FrameBuffer _buffer
        # Numbers this core, so a route's cached stats are known to be ours.
        uint64_t _serial

        # --- receive and reassembly (receive.pxi)
        readonly WSTransport transport
        object _loop
        # The message being received: one struct, filled before parsing.
        FrameInfo _frame
        # The opcode of the message being parsed: 1 text, 2 binary.
        readonly int frame_type
        int64_t _wall_offset_ns
        bytearray _fragments
        bint _assembling
        int _fragment_type
        readonly Py_ssize_t max_message_size
        # The connection was failed (_fail_connection): later compressed
        # frames are dropped.
        bint _failed
        readonly int close_code
        readonly str close_reason
        # Called with a copy of every whole data message (None: no call).
        object _tap
        # The bus publisher (publish.pxi; None: one pointer test per
        # message) and the raw bytes of the message being received, which
        # it writes once the stream is known (NULL once they are gone).
        FramePublisher _publisher
        const char* _publish_ptr
        Py_ssize_t _publish_size

        # --- counters: C integers, read as a dict by counters() on demand.
        readonly uint64_t frames_received
        readonly uint64_t messages_received
        readonly uint64_t bytes_received
        readonly uint64_t messages_delivered
        readonly uint64_t control_messages
        readonly uint64_t parse_errors
        readonly uint64_t classify_errors
        readonly uint64_t handler_errors
        readonly uint64_t oversize_errors
        readonly uint64_t sequence_gap_errors
        readonly uint64_t protocol_errors
        readonly uint64_t messages_sent
        readonly uint64_t bytes_sent
        readonly uint64_t suspensions
        readonly int64_t connected_ns
        readonly int64_t last_receive_ns
        uint64_t[LATENCY_BUCKETS] _latency

        # --- field scan and sequence state (fieldscan.pxi)
        FieldScan _scan
        object _on_sequence_gap
        dict _seed_sequences
        dict _streams
        object _last_stream_id
        StreamStats _last_stats
        readonly uint64_t sequence_gaps
        readonly uint64_t missing_sequences
        readonly Py_ssize_t max_streams
        readonly uint64_t untracked_messages

        # --- handover (handover.pxi): while a replacement connection
        # overlaps this one, both cores share a Handover that lets each
        # message through once (None otherwise: one pointer test per frame).
        Handover _handover
        bint _shadow
        readonly uint64_t overlap_dropped
        # feed(): per-stream digest rings of the copies a bus's second
        # publisher sends (created on the first keyed message).
        Handover _feed_dedup

        # --- redundancy (arrival.pxi): several connections carry the same
        # streams and share a FirstArrival; each message is delivered by the
        # first (None otherwise: one pointer test per frame).
        FirstArrival _arrival
        int _path
        readonly uint64_t redundant_dropped

        # --- backlog and resumption (backlog.pxi): order kept while an
        # async parser or handler is suspended.
        object _backlog
        readonly object pending_task
        object _suspended_coro
        object _suspended_yield
        # The suspended message's context, copied once at suspension.
        FrameInfo _suspended_frame
        # Bounds of the backlog, and what has been dropped past them.
        readonly Py_ssize_t max_backlog
        readonly Py_ssize_t max_backlog_bytes
        Py_ssize_t _backlog_bytes
        readonly uint64_t backlog_dropped
        readonly uint64_t backlog_abandoned
        int64_t _backlog_warning_ns
        bint _backlog_warned
        object _on_backlog
        # The time slice: a read batch (frames of one read, from the first
        # frame's stamp) or a drain step yields to the loop after it.
        int64_t _slice_ns
        int64_t _batch_start_ns
        bint _in_batch
        readonly uint64_t deferrals
        readonly uint64_t drain_busy_ns
        # --- per-stream backlogs (backlog.pxi): while a stream's async
        # handler is suspended, that stream's later messages wait in its
        # StreamBacklog (under its policy) and the other streams go on.
        # Streams with a Task finishing their handler (0: one test per
        # message on the fast path, nothing more).
        Py_ssize_t _busy_streams
        dict _stream_backlogs
        # Stream -> (policy, keep, alarm_ns), set by set_stream_policy.
        dict _policies
        Py_ssize_t _queued
        Py_ssize_t _queued_bytes
        readonly uint64_t conflated
        readonly uint64_t policy_dropped
        # A handler's coroutine that suspended just now, and what it yielded.
        object _handler_coro
        object _handler_yield

        # --- permessage-deflate (deflate.pxi), set by enable_deflate()
        # before the first frame. The uncompressed path tests only frame.rsv1.
        readonly bint deflate_enabled
        # The inflater kept across messages; None when the server takes no
        # context over (a new one per message then).
        object _inflater
        object _decompress
        int _inflate_wbits
        object _deflater
        int _deflate_flush
        readonly Py_ssize_t compress_threshold
        # The message being reassembled began with RSV1 set.
        bint _fragment_compressed
        readonly uint64_t compressed_received
        readonly uint64_t inflated_bytes
        readonly uint64_t compressed_sent

    cdef void _send_data(self, WSMsgType msg_type, object data) except *
    cpdef send_text(self, object text)
    cpdef send_bytes(self, object data)
    cpdef dict counters(self)
    cpdef list latency_histogram(self)
