# The bus publisher's core part (publish.pxi): HPUB frames written per message
# into one buffer, handed to the NATS connection once per batch.
cdef class PublishSubject:
    cdef:
        # "HPUB <subject> " and "<exchange>.<stream token>." of one stream.
        bytes command
        bytes id_prefix


cdef class FramePublisher:
    cdef:
        object _subject_for
        object _on_pending
        dict _subjects
        object _last_stream_id
        PublishSubject _last_subject
        char* _data
        Py_ssize_t _size
        Py_ssize_t _capacity
        Py_ssize_t _batch_messages
        readonly Py_ssize_t max_buffer_bytes
        readonly Py_ssize_t max_streams
        readonly uint64_t published
        readonly uint64_t published_bytes
        readonly uint64_t dropped
        readonly uint64_t unrouted
        readonly uint64_t unpublishable
        readonly uint64_t pending_errors

    cdef void publish(self, object stream_id, const char* ptr, Py_ssize_t size, FrameInfo* frame,
                      bint have_digest)
    cdef PublishSubject _subject(self, object stream_id)
    cdef bint _reserve(self, Py_ssize_t needed) noexcept
