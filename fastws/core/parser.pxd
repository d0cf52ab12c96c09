# The compiled-parser interface (parser.pxi): what a parser written in Cython
# subclasses to read each message in place, without a memoryview or a
# Python-level call, and to give the message its event time and sequence
# numbers:
#
#     from fastws._core cimport CompiledParser, FrameInfo, set_event_time_ns, set_sequence
#
#     cdef class MyParser(CompiledParser):
#         cdef object parse(self, const char* data, Py_ssize_t size, FrameInfo* frame):
#             ...                                   # frame.opcode: 1 text, 2 binary
#             set_event_time_ns(frame, event_ms * 1000000)
#             set_sequence(frame, first_id, last_id)
#             return message                        # None: a control message
#
# and hands an instance to ``FrameHandler(..., compiled_parser=MyParser())``.
cdef class CompiledParser:
    cdef object parse(self, const char* data, Py_ssize_t size, FrameInfo* frame)
