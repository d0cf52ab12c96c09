# Included by _fastpb.pyx: MEXC depth pushes read from the protobuf wire bytes
# straight into a compiled OrderBook (fastws/book/_book.pxd), and the table
# that sends a book channel's pushes to its book instead of the dict decoder.
#
# No Python object per level: each level's price and quantity bytes go
# through parse_fixed into the book's staging arrays; nothing reaches the book
# before the sync (fastws.book.BookSync) commits the whole push.

from cpython.bytes cimport PyBytes_CheckExact


cdef enum:
    # PushDataV3ApiWrapper
    W_CHANNEL = 1
    W_SEND_TIME = 6
    W_LIMIT_DEPTHS = 303
    W_AGGRE_DEPTHS = 313
    # PublicAggreDepthsV3Api / PublicLimitDepthsV3Api
    D_ASKS = 1
    D_BIDS = 2
    D_FROM_VERSION = 4      # limit depth: its one ``version``
    D_TO_VERSION = 5
    # PublicAggreDepthV3ApiItem / PublicLimitDepthV3ApiItem
    I_PRICE = 1
    I_QUANTITY = 2


cdef struct DepthPush:
    const uint8_t* body
    Py_ssize_t body_size
    int body_field          # W_AGGRE_DEPTHS, W_LIMIT_DEPTHS, or 0: no depth body
    int64_t send_time       # ms; -1 when absent


cdef int _bad(str what) except -1:
    raise ValueError(f"malformed MEXC depth push: {what}")


cdef const uint8_t* _string_field(const uint8_t* p, const uint8_t* end, const uint8_t** text,
                                  Py_ssize_t* size) except NULL:
    """A length-delimited value at ``p``: where it starts and its size; the position after it."""
    cdef uint64_t length = 0
    p = _next_varint32(p, end, &length)
    if p == NULL or length > <uint64_t>(end - p):
        _bad("truncated length-delimited field")
    text[0] = p
    size[0] = <Py_ssize_t>length
    return p + length


cdef const uint8_t* _skip(const uint8_t* p, const uint8_t* end, uint32_t wire_type,
                          uint32_t number) except NULL:
    if wire_type == WT_END_GROUP or _skip_field(&p, end, wire_type, number, 0) < 0:
        _bad(f"field {number} does not parse")
    return p


cdef int _read_wrapper(const uint8_t* p, Py_ssize_t size, DepthPush* out) except -1:
    """The wrapper's send time and depth body (the last one on the wire wins, as a oneof)."""
    cdef const uint8_t* end = p + size
    cdef uint64_t tag = 0, value = 0
    cdef uint32_t number, wire_type
    out.body = NULL
    out.body_size = 0
    out.body_field = 0
    out.send_time = -1
    while p < end:
        p = _next_varint32(p, end, &tag)
        if p == NULL:
            _bad("truncated tag")
        number = <uint32_t>(tag >> 3)
        wire_type = <uint32_t>(tag & 7)
        if number == 0:
            _bad("field number 0")
        if number == W_SEND_TIME and wire_type == WT_VARINT:
            p = _next_varint(p, end, &value)
            if p == NULL:
                _bad("truncated sendTime")
            out.send_time = <int64_t>value
        elif wire_type == WT_LEN and number >= 300:
            # A member of the body oneof: a depth body, or another one that replaces it.
            p = _string_field(p, end, &out.body, &out.body_size)
            out.body_field = <int>number if number == W_AGGRE_DEPTHS or number == W_LIMIT_DEPTHS else 0
        else:
            p = _skip(p, end, wire_type, number)
    return 0


cdef int64_t _version(const uint8_t* text, Py_ssize_t size, str name) except -1:
    cdef int64_t value = _parse_decimal(text, size)
    if value < 0:
        _bad(f"{name} {(<bytes>text[:size]).decode('latin-1')!r} is not a version number")
    return value


cdef int _stage_item(OrderBook book, bint is_bid, const uint8_t* p, const uint8_t* end) except -1:
    """One level (price, quantity strings) parsed into the book's staging arrays."""
    cdef const uint8_t* price = NULL
    cdef const uint8_t* qty = NULL
    cdef Py_ssize_t price_size = 0, qty_size = 0
    cdef uint64_t tag = 0
    cdef uint32_t number, wire_type
    cdef int64_t price_fixed, qty_fixed
    # As MEXC writes a level: price (tag 0x0A, a one-byte length) then
    # quantity (0x12), nothing else; any other layout takes the general loop.
    if end - p >= 4 and p[0] == ((I_PRICE << 3) | WT_LEN) and p[1] < 0x80 \
            and end - p >= 4 + p[1] and p[2 + p[1]] == ((I_QUANTITY << 3) | WT_LEN) \
            and p[3 + p[1]] < 0x80 and end - p == 4 + p[1] + p[3 + p[1]]:
        price = p + 2
        price_size = p[1]
        qty = price + price_size + 2
        qty_size = end - qty
    else:
        while p < end:
            p = _next_varint32(p, end, &tag)
            if p == NULL:
                _bad("truncated level")
            number = <uint32_t>(tag >> 3)
            wire_type = <uint32_t>(tag & 7)
            if number == I_PRICE and wire_type == WT_LEN:
                p = _string_field(p, end, &price, &price_size)
            elif number == I_QUANTITY and wire_type == WT_LEN:
                p = _string_field(p, end, &qty, &qty_size)
            else:
                p = _skip(p, end, wire_type, number)
    # proto3 leaves an empty string out: a level without one does not parse.
    if price_size == 0 or qty_size == 0:
        _bad("a level without a price or a quantity")
    parse_fixed(price, price_size, book._price_scale, &price_fixed)
    parse_fixed(qty, qty_size, book._qty_scale, &qty_fixed)
    book.stage_level(is_bid, price_fixed, qty_fixed)
    return 0


cdef int _stage_depth(OrderBook book, const uint8_t* p, Py_ssize_t size, const uint8_t* frame_end,
                      bint limit, int64_t* first_id, int64_t* last_id) except -1:
    """Stage an aggregated (or limit) depth body's levels; read its versions.

    ``frame_end`` is the end of the whole push: a level's strings are parsed
    with reads that may run past them up to there (never past it).
    """
    cdef const uint8_t* end = p + size
    cdef const uint8_t* text
    cdef Py_ssize_t text_size, price_size
    cdef int64_t price, qty
    cdef int price_scale = book._price_scale, qty_scale = book._qty_scale
    cdef uint64_t tag = 0
    cdef uint32_t number, wire_type
    cdef bint seen_first = False, seen_last = False
    while p < end:
        if end - p >= 2 and p[0] < 0x80 and p[1] < 0x80 and (p[0] & 7) == WT_LEN:
            # A one-byte tag and length (every level): no varint loop.
            number = p[0] >> 3
            text = p + 2
            text_size = p[1]
            p = text + text_size
            if p > end:
                _bad("truncated depth body")
        else:
            p = _next_varint32(p, end, &tag)
            if p == NULL:
                _bad("truncated depth body")
            number = <uint32_t>(tag >> 3)
            wire_type = <uint32_t>(tag & 7)
            if wire_type != WT_LEN:
                p = _skip(p, end, wire_type, number)
                continue
            p = _string_field(p, end, &text, &text_size)
        if number == D_ASKS or number == D_BIDS:
            # As MEXC writes a level: price (tag 0x0A, a one-byte length), then
            # quantity (0x12, likewise), nothing else; both in the common
            # decimal form. Anything else takes the general route, which also
            # words the error.
            price_size = text[1] if text_size >= 4 else 0
            if (text_size >= 4 and text[0] == ((I_PRICE << 3) | WT_LEN) and price_size < 0x80
                    and text_size >= 4 + price_size and text[2 + price_size] == ((I_QUANTITY << 3) | WT_LEN)
                    and text[3 + price_size] < 0x80 and text_size == 4 + price_size + text[3 + price_size]
                    and parse_fixed_in_frame(text + 2, price_size, frame_end, price_scale, &price)
                    and parse_fixed_in_frame(text + 4 + price_size, text_size - 4 - price_size, frame_end,
                                             qty_scale, &qty)):
                stage_level_fast(book, number == D_BIDS, price, qty)
            else:
                _stage_item(book, number == D_BIDS, text, text + text_size)
        elif number == D_FROM_VERSION:
            first_id[0] = _version(text, text_size, "version" if limit else "fromVersion")
            seen_first = True
        elif number == D_TO_VERSION and not limit:
            last_id[0] = _version(text, text_size, "toVersion")
            seen_last = True
    if limit:
        if not seen_first:
            _bad("limit depth without a version")
        last_id[0] = first_id[0]
    elif not (seen_first and seen_last):
        _bad("aggregated depth without fromVersion and toVersion")
    return 0


cdef int _decimals(const uint8_t* text, Py_ssize_t size) noexcept:
    """Decimals written in a decimal string (as a snapshot's are measured: trailing zeros count)."""
    cdef Py_ssize_t i
    for i in range(size):
        if text[i] == 46:
            return <int>(size - i - 1)
    return 0


cdef void _measure(const uint8_t* p, Py_ssize_t size, int* price_decimals, int* qty_decimals) noexcept:
    """The most decimals of a depth body's prices and quantities (a best effort: no errors)."""
    cdef const uint8_t* end = p + size
    cdef const uint8_t* item
    cdef const uint8_t* item_end
    cdef uint64_t tag, length
    while p < end:
        p = _next_varint32(p, end, &tag)
        if p == NULL or (tag & 7) != WT_LEN:
            return
        p = _next_varint32(p, end, &length)
        if p == NULL or length > <uint64_t>(end - p):
            return
        item = p
        p += length
        if (tag >> 3) != D_ASKS and (tag >> 3) != D_BIDS:
            continue
        item_end = p
        while item < item_end:
            item = _next_varint32(item, item_end, &tag)
            if item == NULL or (tag & 7) != WT_LEN:
                break
            item = _next_varint32(item, item_end, &length)
            if item == NULL or length > <uint64_t>(item_end - item):
                break
            if (tag >> 3) == I_PRICE:
                price_decimals[0] = max(price_decimals[0], _decimals(item, <Py_ssize_t>length))
            elif (tag >> 3) == I_QUANTITY:
                qty_decimals[0] = max(qty_decimals[0], _decimals(item, <Py_ssize_t>length))
            item += length


cdef void _reset_scales(OrderBook book) noexcept:
    """Forget a book's levels and scales: the next snapshot measures them again."""
    book._bids.n = book._bids.live = 0
    book._asks.n = book._asks.live = 0
    book.stage_clear()
    book.valid = False
    book._price_scale = -1
    book._qty_scale = -1


cdef class MexcBookReader(JsonBookReader):
    """Reads MEXC depth into an ``OrderBook``: pushes from protobuf bytes, snapshots from JSON.

    A push (``PushDataV3ApiWrapper`` with ``publicAggreDepths``, or
    ``publicLimitDepths``) is parsed from its wire bytes with no Python object
    per level; the REST snapshot (``{"lastUpdateId", "bids", "asks"}``) is read
    as JSON by the base class.

    Scales: MEXC writes decimals without padding, so a snapshot may show fewer
    decimals than a later level. A level with more decimals than the book's
    scale does not parse (ValueError: the sync resyncs); the reader remembers
    the decimals that level needed, and the next snapshot rebuilds the book at
    the larger scale (its levels were replaced anyway).

    Attributes:
        needed_scales: Per symbol, ``(price, quantity)`` decimals seen in
            levels that did not fit the book's scales.
    """
    cdef readonly dict needed_scales

    def __init__(self) -> None:
        JsonBookReader.__init__(self)
        self.needed_scales = {}

    cdef int read_push(self, OrderBook book, const uint8_t* p, Py_ssize_t size, DiffIds* ids,
                       bint* limit) except -1:
        """Stage a depth push's levels in ``book`` (not applied yet); its versions and send time."""
        cdef DepthPush push
        cdef int price_decimals = 0, qty_decimals = 0
        if book._price_scale < 0 or book._qty_scale < 0:
            book._require_scales()
        book.stage_clear()
        try:
            _read_wrapper(p, size, &push)
            if push.body_field == 0:
                _bad("not a depth push (no publicAggreDepths or publicLimitDepths body)")
            limit[0] = push.body_field == W_LIMIT_DEPTHS
            _stage_depth(book, push.body, push.body_size, p + size, limit[0], &ids.first_id, &ids.last_id)
        except BaseException:
            book.stage_clear()
            book.valid = False
            if push.body != NULL:
                _measure(push.body, push.body_size, &price_decimals, &qty_decimals)
                if price_decimals > book._price_scale or qty_decimals > book._qty_scale:
                    self._need(book, price_decimals, qty_decimals)
            raise
        ids.event_time = push.send_time if push.send_time > 0 else 0
        return 0

    cdef void _need(self, OrderBook book, int price_decimals, int qty_decimals):
        old = self.needed_scales.get(book.symbol, (0, 0))
        self.needed_scales[book.symbol] = (max(old[0], price_decimals), max(old[1], qty_decimals))

    cdef int _read_diff_push(self, OrderBook book, object data, DiffIds* ids) except -1:
        """Stage an aggregated depth push's levels (bytes read in place; any buffer otherwise)."""
        cdef Py_buffer view
        if PyBytes_CheckExact(data):
            self.read_diff(book, <const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), ids)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                self.read_diff(book, <const unsigned char*>view.buf, view.len, ids)
            finally:
                PyBuffer_Release(&view)
        return 0

    cdef int read_diff(self, OrderBook book, const unsigned char* data, Py_ssize_t size,
                       DiffIds* ids) except -1:
        """Stage an aggregated depth push: how the base class's ``apply_sequenced`` (the
        sync's in-order path), ``stage_diff`` and ``apply_diff`` read a diff."""
        cdef bint limit = False
        self.read_push(book, <const uint8_t*>data, size, ids, &limit)
        if limit:
            book.stage_clear()
            book.valid = False
            _bad("a limit depth push on a diff stream")
        return 0

    def stage_diff(self, OrderBook book, data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
        """Parse an aggregated depth push and stage its levels without applying them.

        Follow with ``book.commit_staged(last_id, event_time)`` or ``book.discard_staged()``.

        Returns:
            ``(fromVersion, toVersion, sendTime)`` (ms; 0 when absent).

        Raises:
            ValueError: Not a depth push, malformed, or a level that does not
                parse; the book is then invalid and its levels unchanged.
        """
        cdef DiffIds ids
        self._read_diff_push(book, data, &ids)
        return (ids.first_id, ids.last_id, ids.event_time)

    def apply_diff(self, OrderBook book, data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
        """Parse an aggregated depth push and apply it to ``book`` in one call.

        ``stage_diff`` then ``commit_staged`` without the round trip through
        Python; the book's id becomes the push's ``toVersion`` and its
        exchange time the push's ``sendTime``. No version check is made here
        (that is the sync's job).

        Returns:
            ``(fromVersion, toVersion, sendTime)`` (ms; 0 when absent).

        Raises:
            ValueError: Not a depth push, malformed, or a level that does not
                parse; the book is then invalid and its levels unchanged.
        """
        cdef DiffIds ids
        self._read_diff_push(book, data, &ids)
        book.commit_diff(ids.last_id)
        book.exchange_time = ids.event_time
        return (ids.first_id, ids.last_id, ids.event_time)

    def apply_limit(self, OrderBook book, data: bytes | bytearray | memoryview) -> int:
        """Replace ``book`` with a limit depth push (a full top N); valid after.

        The first push (or one with more decimals than the book's scales)
        sets the scales from its own levels.

        Returns:
            The push's ``version``.

        Raises:
            ValueError: Not a limit depth push, malformed, or a level that does
                not parse; the book is then invalid and its levels unchanged.
        """
        cdef DiffIds ids
        cdef DepthPush push
        cdef Py_buffer view
        cdef bint limit = False
        cdef int price_decimals = 0, qty_decimals = 0
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if book._price_scale < 0 or book._qty_scale < 0:
                _read_wrapper(<const uint8_t*>view.buf, view.len, &push)
                if push.body_field == W_LIMIT_DEPTHS:
                    _measure(push.body, push.body_size, &price_decimals, &qty_decimals)
                book.set_scales(price_decimals, qty_decimals)
            try:
                self.read_push(book, <const uint8_t*>view.buf, view.len, &ids, &limit)
            except ValueError:
                needed = self.needed_scales.pop(book.symbol, None)
                if needed is None:
                    raise
                # A whole book per push: rebuild it at the scales this one needs.
                price_scale = max(needed[0], book._price_scale)
                qty_scale = max(needed[1], book._qty_scale)
                _reset_scales(book)
                book.set_scales(price_scale, qty_scale)
                self.read_push(book, <const uint8_t*>view.buf, view.len, &ids, &limit)
        finally:
            PyBuffer_Release(&view)
        if not limit:
            book.stage_clear()
            book.valid = False
            _bad("an aggregated depth push on a limit depth stream")
        book.commit_snapshot(ids.last_id)
        book.exchange_time = ids.event_time
        return ids.last_id

    def apply_snapshot(self, OrderBook book, data: bytes | bytearray | memoryview) -> int:
        """Replace ``book`` with a REST snapshot (JSON); valid after.

        The book is rebuilt at larger scales when a level (of this snapshot
        or of a push since the last one) needed more decimals.

        Returns:
            The snapshot's ``lastUpdateId``.

        Raises:
            ValueError: Not JSON, no ``lastUpdateId``, or a level that does not
                parse; the book is then invalid.
        """
        cdef int64_t update_id
        cdef Py_buffer view
        needed = self.needed_scales.get(book.symbol)
        if needed is not None and (needed[0] > book._price_scale or needed[1] > book._qty_scale):
            _reset_scales(book)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            try:
                self.read_snapshot(book, <const unsigned char*>view.buf, view.len, &update_id)
            except ValueError:
                if book._price_scale < 0:
                    raise           # measured this time: the snapshot itself is bad
                _reset_scales(book)
                self.read_snapshot(book, <const unsigned char*>view.buf, view.len, &update_id)
            if needed is not None and (needed[0] > book._price_scale or needed[1] > book._qty_scale):
                # Measured from the snapshot, but a push needed more: stage it again at those scales.
                price_scale = max(needed[0], book._price_scale)
                qty_scale = max(needed[1], book._qty_scale)
                _reset_scales(book)
                book.set_scales(price_scale, qty_scale)
                self.read_snapshot(book, <const unsigned char*>view.buf, view.len, &update_id)
        finally:
            PyBuffer_Release(&view)
        self.needed_scales.pop(book.symbol, None)
        book.commit_snapshot(update_id)
        return update_id


cdef class BookRoute:
    """One book channel: its pushes go to ``on_frame(buffer)``, and the core
    classifies ``message`` (``{"channel": channel}``) to find the book's route."""
    cdef readonly str channel
    cdef bytes _key
    cdef uint64_t _hash
    cdef readonly object on_frame
    cdef readonly dict message

    def __init__(self, str channel, on_frame) -> None:
        self.channel = channel
        self._key = channel.encode()
        self._hash = _fnv1a(<const uint8_t*>PyBytes_AS_STRING(self._key), PyBytes_GET_SIZE(self._key))
        self.on_frame = on_frame
        self.message = {"channel": channel}


cdef inline uint64_t _fnv1a(const uint8_t* p, Py_ssize_t size) noexcept:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(size):
        h = (h ^ p[i]) * 1099511628211ULL
    return h


cdef class BookRoutes:
    """The channels whose pushes go to order books, shared by a client's connections.

    A push whose channel (field 1, first on the wire) is here skips the dict
    decoder: its bytes go to the route's ``on_frame`` (the book's sync) through
    a reusable buffer valid during the call. Looked up without allocating
    (open addressing on the channel's bytes); an empty table costs one test.
    """
    cdef dict _by_channel
    cdef list _slots
    cdef Py_ssize_t _mask
    cdef Py_ssize_t _count
    cdef FrameBuffer _buffer

    def __init__(self) -> None:
        self._by_channel = {}
        self._slots = [None] * 16
        self._mask = 15
        self._count = 0
        self._buffer = FrameBuffer()

    def add(self, channel: str, on_frame) -> None:
        """Send ``channel``'s pushes to ``on_frame(buffer)`` (replacing an earlier route)."""
        self._by_channel[channel] = BookRoute(channel, on_frame)
        self._rebuild()

    def remove(self, channel: str) -> None:
        """Stop routing ``channel`` (its pushes are decoded as dicts again)."""
        if self._by_channel.pop(channel, None) is not None:
            self._rebuild()

    def __len__(self) -> int:
        return self._count

    def __contains__(self, channel: object) -> bool:
        return channel in self._by_channel

    cdef void _rebuild(self):
        cdef BookRoute route
        cdef Py_ssize_t capacity = 16, index
        while capacity < 2 * len(self._by_channel):
            capacity *= 2
        slots = [None] * capacity
        for route in self._by_channel.values():
            index = <Py_ssize_t>(route._hash & <uint64_t>(capacity - 1))
            while slots[index] is not None:
                index = (index + 1) & (capacity - 1)
            slots[index] = route
        self._slots = slots
        self._mask = capacity - 1
        self._count = len(self._by_channel)

    cdef BookRoute match(self, const uint8_t* p, Py_ssize_t size):
        """The route of a push whose first field is a routed channel, or None."""
        cdef uint64_t length, h
        cdef const uint8_t* end = p + size
        cdef Py_ssize_t index
        cdef PyObject* slot
        cdef BookRoute route
        if size < 2 or p[0] != ((W_CHANNEL << 3) | WT_LEN):
            return None
        p = _next_varint32(p + 1, end, &length)
        if p == NULL or length > <uint64_t>(end - p):
            return None
        h = _fnv1a(p, <Py_ssize_t>length)
        index = <Py_ssize_t>(h & <uint64_t>self._mask)
        while True:
            slot = PyList_GET_ITEM(self._slots, index)
            if <object>slot is None:
                return None
            route = <BookRoute>slot
            if route._hash == h and PyBytes_GET_SIZE(route._key) == <Py_ssize_t>length \
                    and memcmp(PyBytes_AS_STRING(route._key), p, length) == 0:
                return route
            index = (index + 1) & self._mask

    cdef object deliver(self, BookRoute route, const char* data, Py_ssize_t size):
        """``route.on_frame(buffer)`` over the push's bytes; the buffer is retired if kept."""
        cdef FrameBuffer buffer = self._buffer
        buffer.ptr = data
        buffer.size = size
        buffer.valid = True
        try:
            route.on_frame(buffer)
        finally:
            if Py_REFCNT(buffer) > 2:
                # Kept past the call: a late use raises instead of reading another push.
                buffer.valid = False
                self._buffer = FrameBuffer()
        return route.message


def attach_routes(FrameHandler core not None, RouteTable routes) -> None:
    """Give a live connection's core ``routes`` (from its next frame on).

    A client creates its route table only when it first keeps a book, so a
    client without books pays nothing for routes on any push; connections
    opened before then get the table here (those opened later are built with it).
    """
    core.routes = routes
