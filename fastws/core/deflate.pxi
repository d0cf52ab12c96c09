# permessage-deflate (RFC 7692): compressed frames inflated, bounded by
# max_message_size; outgoing messages compressed (FrameHandler.enable_deflate
# sets it up).

# permessage-deflate (RFC 7692): bound once, not looked up per message.
cdef object _decompressobj = zlib.decompressobj
cdef object _compressobj = zlib.compressobj
cdef object _zlib_error = zlib.error
# The empty stored block a sender strips from each compressed message
# (section 7.2.1) and the receiver appends again (section 7.2.2).
cdef bytes _DEFLATE_TAIL = b"\x00\x00\xff\xff"
cdef int _Z_SYNC_FLUSH = zlib.Z_SYNC_FLUSH
cdef int _Z_FULL_FLUSH = zlib.Z_FULL_FLUSH


cdef void _on_compressed(FrameHandler core, WSFrame frame, int64_t recv_ns):
    """A data frame with RSV1 set, or a continuation of a compressed message."""
    cdef WSMsgType msg_type = frame.msg_type
    if core._failed:
        return
    if not core.deflate_enabled:
        _fail_connection(core, ERROR_PROTOCOL, ValueError(
            "frame with RSV1 set, but no extension was negotiated"),
            WSCloseCode.PROTOCOL_ERROR, b"RSV1 set without an extension")
        return
    if msg_type == WSMsgType.CONTINUATION:
        if frame.rsv1:
            # RFC 7692 section 6.1: only a message's first frame has RSV1.
            _fail_connection(core, ERROR_PROTOCOL, ValueError("continuation frame with RSV1 set"),
                             WSCloseCode.PROTOCOL_ERROR, b"RSV1 set on a continuation frame")
            return
        _on_fragment(core, frame, recv_ns)
        return
    if frame.fin and frame.rsv1 and not core._assembling:
        # A whole compressed message in one frame: inflated straight from
        # picows's read buffer.
        core.messages_received += 1
        core.bytes_received += <uint64_t>frame.payload_size
        payload = _inflate(core, PyMemoryView_FromMemory(frame.payload_ptr, frame.payload_size, PyBUF_READ))
        if payload is not None:
            _receive_message(core, PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), payload,
                             recv_ns, <int>msg_type)
        return
    # The first frame of a fragmented message (or one that interrupts a
    # compressed one being reassembled, which _on_fragment reports).
    core._fragment_compressed = frame.rsv1
    _on_fragment(core, frame, recv_ns)


cdef object _inflate(FrameHandler core, object data):
    """Inflate one message; None when the connection was failed (corrupt or too big)."""
    cdef Py_ssize_t limit = core.max_message_size
    cdef object out, more
    cdef object decompress = core._decompress
    cdef object inflater = None
    if decompress is None:
        # No context takeover: every message starts a new stream.
        inflater = _decompressobj(core._inflate_wbits)
        decompress = inflater.decompress
    try:
        # Bounded: never more than limit + 1 bytes (one more tells a
        # bomb from a message of exactly the limit).
        out = decompress(data, limit + 1)
        if PyBytes_GET_SIZE(out) <= limit:
            more = decompress(_DEFLATE_TAIL, limit + 1 - PyBytes_GET_SIZE(out))
            if PyBytes_GET_SIZE(more):
                out = out + more
    except _zlib_error as exc:
        _fail_connection(core, ERROR_PROTOCOL, ValueError(f"permessage-deflate: cannot inflate: {exc}"),
                         WSCloseCode.PROTOCOL_ERROR, b"invalid compressed data")
        return None
    if PyBytes_GET_SIZE(out) > limit:
        _fail_connection(core, ERROR_OVERSIZE, ValueError(
            f"compressed message inflates to more than max_message_size ({limit})"),
            WSCloseCode.MESSAGE_TOO_BIG, b"message too big")
        return None
    if inflater is None and core._inflater.eof:
        # The server ended its stream with a final block (allowed,
        # section 7.2.3.3): its next message starts a new one.
        core._inflater = _decompressobj(core._inflate_wbits)
        core._decompress = core._inflater.decompress
    core.compressed_received += 1
    core.inflated_bytes += <uint64_t>PyBytes_GET_SIZE(out)
    return out


cdef void _enable_deflate(FrameHandler core, bint server_no_context_takeover, bint client_no_context_takeover,
                          int server_max_window_bits, int client_max_window_bits,
                          Py_ssize_t compress_threshold) except *:
    """Set up inflating and compressing with the negotiated parameters (see enable_deflate)."""
    if not 8 <= server_max_window_bits <= 15 or not 8 <= client_max_window_bits <= 15:
        raise ValueError("window bits must be from 8 to 15")
    if compress_threshold < 0:
        raise ValueError(f"compress_threshold must be >= 0, got {compress_threshold}")
    # zlib inflates raw deflate with windows of 2**9 and up; 9 reads
    # what a server compressing with 8 (which zlib turns into 9) sends.
    core._inflate_wbits = -max(server_max_window_bits, 9)
    if server_no_context_takeover:
        core._inflater = None
        core._decompress = None
    else:
        core._inflater = _decompressobj(core._inflate_wbits)
        core._decompress = core._inflater.decompress
    if client_max_window_bits > 8:
        core._deflater = _compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -client_max_window_bits)
    else:
        core._deflater = None
    # A full flush empties the compressor's window: the next message
    # refers to nothing before it (no context takeover), at no extra
    # cost over a new compressor per message.
    core._deflate_flush = _Z_FULL_FLUSH if client_no_context_takeover else _Z_SYNC_FLUSH
    core.compress_threshold = compress_threshold
    core.deflate_enabled = True


cdef bytes _compress(FrameHandler core, object data):
    """One message compressed with the connection's context, ready to send with RSV1."""
    cdef bytes compressed = core._deflater.compress(data) + core._deflater.flush(core._deflate_flush)
    # A flush ends with the empty stored block 00 00 ff ff, which the sender
    # removes (RFC 7692 section 7.2.1).
    return compressed[:PyBytes_GET_SIZE(compressed) - 4]
