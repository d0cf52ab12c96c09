# Included by _book.pyx: depth levels read from raw JSON bytes into a book.
#
# One pass over the message with no Python object per level: every object is
# walked (so a wrapper such as {"stream": ..., "data": {...}} is transparent),
# the configured keys are matched on their raw bytes, level arrays
# [["price","qty"], ...] are parsed straight into fixed point and staged in the
# book, integer fields are read by key. The book changes only at the commit,
# after the whole message parsed: a malformed message raises ValueError, leaves
# the levels as they were and marks the book invalid.

cdef enum:
    MAX_DEPTH = 32
    MODE_DIFF = 0
    MODE_SNAPSHOT = 1
    MODE_MEASURE = 2         # snapshot pass that only reads the decimals used

cdef struct Key:
    const char* s
    Py_ssize_t n

cdef struct Scan:
    const unsigned char* start
    const unsigned char* end
    int mode
    int price_scale
    int qty_scale
    int max_price_decimals
    int max_qty_decimals
    Key bids
    Key asks
    Key first
    Key last
    Key time
    bint seen_bids
    bint seen_asks
    bint seen_first
    bint seen_last
    bint seen_time
    int64_t first_id
    int64_t last_id
    int64_t event_time


cdef int _fail(Scan* sc, const unsigned char* p, str what) except -1:
    cdef Py_ssize_t at = p - sc.start
    raise ValueError(f"malformed depth JSON at byte {at}: {what} (near {_excerpt(p, sc.end)!r})")


cdef inline const unsigned char* _ws(const unsigned char* p, const unsigned char* end) noexcept nogil:
    while p < end and (p[0] == 32 or p[0] == 10 or p[0] == 13 or p[0] == 9):
        p += 1
    return p


cdef inline const unsigned char* _expect(Scan* sc, const unsigned char* p, unsigned char c) except NULL:
    # The byte is usually right there (compact JSON): no call on that path.
    if p < sc.end and p[0] == c:
        return p + 1
    return _expect_after_ws(sc, p, c)


cdef const unsigned char* _expect_after_ws(Scan* sc, const unsigned char* p, unsigned char c) except NULL:
    p = _ws(p, sc.end)
    if p >= sc.end or p[0] != c:
        _fail(sc, p, "expected " + repr(chr(c)) if p < sc.end else "truncated")
    return p + 1


cdef const unsigned char* _skip_string(Scan* sc, const unsigned char* p) except NULL:
    # p is just past the opening quote; returns just past the closing one.
    while p < sc.end:
        if p[0] == 34:
            return p + 1
        if p[0] == 92:
            p += 1
        p += 1
    _fail(sc, p, "unterminated string")


cdef const unsigned char* _skip_value(Scan* sc, const unsigned char* p, int depth) except NULL:
    cdef unsigned char c
    p = _ws(p, sc.end)
    if p >= sc.end:
        _fail(sc, p, "truncated")
    if depth > MAX_DEPTH:
        _fail(sc, p, "nested too deep")
    c = p[0]
    if c == 34:
        return _skip_string(sc, p + 1)
    if c == 123 or c == 91:            # '{' or '['
        p = _ws(p + 1, sc.end)
        if p < sc.end and p[0] == c + 2:   # '}' is '{' + 2, ']' is '[' + 2
            return p + 1
        while True:
            if c == 123:
                p = _expect(sc, p, 34)
                p = _skip_string(sc, p)
                p = _expect(sc, p, 58)
            p = _skip_value(sc, p, depth + 1)
            p = _ws(p, sc.end)
            if p < sc.end and p[0] == 44:
                p += 1
                continue
            return _expect(sc, p, c + 2)
    # number, true, false, null: the bytes up to a delimiter
    cdef const unsigned char* start = p
    while p < sc.end and not (p[0] == 44 or p[0] == 93 or p[0] == 125 or p[0] == 32
                              or p[0] == 10 or p[0] == 13 or p[0] == 9):
        p += 1
    if p == start:
        _fail(sc, p, "expected a value")
    return p


cdef const unsigned char* _read_int(Scan* sc, const unsigned char* p, int64_t* out) except NULL:
    # A non-negative integer, bare or quoted (some venues send ids as strings).
    cdef bint quoted = False
    cdef int64_t v = 0
    cdef int d, digits = 0
    p = _ws(p, sc.end)
    if p < sc.end and p[0] == 34:
        quoted = True
        p += 1
    while p < sc.end:
        d = p[0] - 48
        if not 0 <= d <= 9:
            break
        if v > (INT64_MAX - d) // 10:
            _fail(sc, p, "integer too large")
        v = v * 10 + d
        digits += 1
        p += 1
    if digits == 0:
        _fail(sc, p, "expected a non-negative integer")
    if quoted:
        if p >= sc.end or p[0] != 34:
            _fail(sc, p, "expected a closing quote")
        p += 1
    elif p < sc.end and (p[0] == 46 or p[0] == 101 or p[0] == 69):
        _fail(sc, p, "expected an integer")
    out[0] = v
    return p


cdef inline const unsigned char* _read_fixed(Scan* sc, const unsigned char* p, int scale,
                                             int* max_decimals, int64_t* out) except NULL:
    # A quoted decimal string straight to fixed point.
    cdef const unsigned char* text
    cdef int64_t m
    cdef int k, error = DEC_NOT_A_NUMBER
    p = _expect(sc, p, 34)
    text = p
    p = read_decimal(p, sc.end, &m, &k, &error)
    if p == NULL:
        _fail(sc, text, decimal_error(error, scale, text, sc.end))
    if p >= sc.end or p[0] != 34:
        _fail(sc, text, "not a decimal string" if p < sc.end else "truncated")
    if max_decimals != NULL:
        if k > max_decimals[0]:
            max_decimals[0] = k
    else:
        error = to_scale(m, k, scale, out)
        if error:
            _fail(sc, text, decimal_error(error, scale, text, sc.end))
    return p + 1


cdef const unsigned char* _read_levels(Scan* sc, OrderBook book, bint is_bid,
                                       const unsigned char* p) except NULL:
    cdef int64_t price = 0, qty = 0
    cdef bint measure = sc.mode == MODE_MEASURE
    p = _expect(sc, p, 91)                 # '['
    p = _ws(p, sc.end)
    if p < sc.end and p[0] == 93:
        return p + 1
    while True:
        p = _expect(sc, p, 91)
        p = _read_fixed(sc, p, sc.price_scale, &sc.max_price_decimals if measure else NULL, &price)
        p = _expect(sc, p, 44)
        p = _read_fixed(sc, p, sc.qty_scale, &sc.max_qty_decimals if measure else NULL, &qty)
        p = _ws(p, sc.end)
        while p < sc.end and p[0] == 44:   # extra fields of a level: skipped
            p = _skip_value(sc, p + 1, 2)
            p = _ws(p, sc.end)
        p = _expect(sc, p, 93)
        if not measure:
            if is_bid:
                side_push(&book._stage_bids, price, qty)
            else:
                side_push(&book._stage_asks, -price, qty)
        p = _ws(p, sc.end)
        if p < sc.end and p[0] == 44:
            p += 1
            continue
        return _expect(sc, p, 93)


cdef inline bint _is_key(const Key* k, const unsigned char* s, Py_ssize_t n) noexcept:
    return k.n == n and n > 0 and memcmp(k.s, s, n) == 0


cdef const unsigned char* _read_object(Scan* sc, OrderBook book, const unsigned char* p,
                                       int depth) except NULL:
    # p is just past '{'.
    cdef const unsigned char* key
    cdef Py_ssize_t n
    if depth > MAX_DEPTH:
        _fail(sc, p, "nested too deep")
    p = _ws(p, sc.end)
    if p < sc.end and p[0] == 125:
        return p + 1
    while True:
        p = _expect(sc, p, 34)
        key = p
        p = _skip_string(sc, p)
        n = p - 1 - key
        p = _expect(sc, p, 58)
        p = _ws(p, sc.end)
        if p >= sc.end:
            _fail(sc, p, "truncated")
        if _is_key(&sc.bids, key, n):
            p = _read_levels(sc, book, True, p)
            sc.seen_bids = True
        elif _is_key(&sc.asks, key, n):
            p = _read_levels(sc, book, False, p)
            sc.seen_asks = True
        elif _is_key(&sc.last, key, n):
            p = _read_int(sc, p, &sc.last_id)
            sc.seen_last = True
        elif _is_key(&sc.first, key, n):
            p = _read_int(sc, p, &sc.first_id)
            sc.seen_first = True
        elif _is_key(&sc.time, key, n):
            p = _read_int(sc, p, &sc.event_time)
            sc.seen_time = True
        elif p[0] == 123:
            p = _read_object(sc, book, p + 1, depth + 1)
        else:
            p = _skip_value(sc, p, depth + 1)
        p = _ws(p, sc.end)
        if p < sc.end and p[0] == 44:
            p += 1
            continue
        return _expect(sc, p, 125)


cdef int _scan(Scan* sc, OrderBook book) except -1:
    cdef const unsigned char* p = _expect(sc, sc.start, 123)
    p = _read_object(sc, book, p, 0)
    p = _ws(p, sc.end)
    if p != sc.end:
        _fail(sc, p, "trailing bytes after the object")
    if not (sc.seen_bids and sc.seen_asks):
        _fail(sc, sc.start, "no bids or no asks array")
    if not sc.seen_last:
        _fail(sc, sc.start, "no update id")
    return 0


cdef inline void _key(Key* k, bytes b) noexcept:
    k.s = PyBytes_AS_STRING(b)
    k.n = PyBytes_GET_SIZE(b)


cdef bytes _key_bytes(object key):
    if isinstance(key, str):
        return (<str>key).encode()
    return bytes(key)


cdef struct Bytes:
    const unsigned char* p
    Py_ssize_t n
    bint held          # a buffer view to release


cdef int _get_bytes(object data, Py_buffer* view, Bytes* out) except -1:
    # bytes without the buffer machinery (the common case), else any buffer.
    if PyBytes_CheckExact(data):
        out.p = <const unsigned char*>PyBytes_AS_STRING(data)
        out.n = PyBytes_GET_SIZE(data)
        out.held = False
        return 0
    PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    out.p = <const unsigned char*>view.buf
    out.n = view.len
    out.held = True
    return 0


# What apply_sequenced did with a diff (SEQ_* below for Python).
cdef enum:
    _SEQ_OLD = 0
    _SEQ_APPLIED = 1
    _SEQ_AHEAD = 2
    _SEQ_CROSSED = 3


cdef class JsonBookReader:
    """Reads depth levels and ids from raw JSON bytes into an ``OrderBook``.

    The keys are configuration (no venue is named here); the defaults are the
    common ``depthUpdate`` and REST snapshot field names. Objects nested in the
    message (a combined-stream wrapper) are searched too; whitespace and key
    order do not matter; levels are ``["price", "qty", ...]`` decimal strings.

    Args:
        bids: Key of a diff's bid levels.
        asks: Key of a diff's ask levels.
        first_id: Key of a diff's first update id (absent: the last id).
        last_id: Key of a diff's last update id (required).
        event_time: Key of the event time (absent: 0).
        snapshot_bids: Key of a snapshot's bid levels.
        snapshot_asks: Key of a snapshot's ask levels.
        snapshot_id: Key of a snapshot's update id (required).
    """

    def __init__(self, bids: str = "b", asks: str = "a", first_id: str = "U", last_id: str = "u",
                 event_time: str = "E", snapshot_bids: str = "bids", snapshot_asks: str = "asks",
                 snapshot_id: str = "lastUpdateId") -> None:
        self._bids_key = _key_bytes(bids)
        self._asks_key = _key_bytes(asks)
        self._first_key = _key_bytes(first_id)
        self._last_key = _key_bytes(last_id)
        self._time_key = _key_bytes(event_time)
        self._snap_bids_key = _key_bytes(snapshot_bids)
        self._snap_asks_key = _key_bytes(snapshot_asks)
        self._snap_id_key = _key_bytes(snapshot_id)

    cdef int read_diff(self, OrderBook book, const unsigned char* data, Py_ssize_t size,
                       DiffIds* ids) except -1:
        """Parse a diff and stage its levels in ``book`` (not applied yet)."""
        cdef Scan sc
        if book._price_scale < 0 or book._qty_scale < 0:
            book._require_scales()
        sc.start = data
        sc.end = data + size
        sc.mode = MODE_DIFF
        sc.price_scale = book._price_scale
        sc.qty_scale = book._qty_scale
        _key(&sc.bids, self._bids_key)
        _key(&sc.asks, self._asks_key)
        _key(&sc.first, self._first_key)
        _key(&sc.last, self._last_key)
        _key(&sc.time, self._time_key)
        sc.seen_bids = sc.seen_asks = sc.seen_first = sc.seen_last = sc.seen_time = False
        sc.first_id = sc.last_id = sc.event_time = 0
        book.stage_clear()
        try:
            _scan(&sc, book)
        except BaseException:
            book.stage_clear()
            book.valid = False
            raise
        ids.first_id = sc.first_id if sc.seen_first else sc.last_id
        ids.last_id = sc.last_id
        ids.event_time = sc.event_time
        return 0

    cdef int read_snapshot(self, OrderBook book, const unsigned char* data, Py_ssize_t size,
                           int64_t* update_id) except -1:
        """Parse a snapshot, reading the scales first if the book has none, and stage it."""
        cdef Scan sc
        sc.start = data
        sc.end = data + size
        sc.price_scale = book._price_scale
        sc.qty_scale = book._qty_scale
        _key(&sc.bids, self._snap_bids_key)
        _key(&sc.asks, self._snap_asks_key)
        _key(&sc.last, self._snap_id_key)
        sc.first.n = 0
        sc.time.n = 0
        sc.first_id = sc.last_id = sc.event_time = 0
        sc.max_price_decimals = sc.max_qty_decimals = 0
        book.stage_clear()
        try:
            if sc.price_scale < 0 or sc.qty_scale < 0:
                sc.mode = MODE_MEASURE
                sc.seen_bids = sc.seen_asks = sc.seen_first = sc.seen_last = sc.seen_time = False
                _scan(&sc, book)
                if sc.price_scale < 0:
                    sc.price_scale = sc.max_price_decimals
                if sc.qty_scale < 0:
                    sc.qty_scale = sc.max_qty_decimals
                _check_scale(sc.price_scale)
                _check_scale(sc.qty_scale)
            sc.mode = MODE_SNAPSHOT
            sc.seen_bids = sc.seen_asks = sc.seen_first = sc.seen_last = sc.seen_time = False
            _scan(&sc, book)
        except BaseException:
            book.stage_clear()
            book.valid = False
            raise
        book.set_scales(sc.price_scale, sc.qty_scale)
        update_id[0] = sc.last_id
        return 0

    def stage_diff(self, OrderBook book, data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
        """Parse a diff and stage its levels without applying them.

        For a sync that checks the ids before applying: follow with
        ``book.commit_staged(last_id)`` or ``book.discard_staged()``.

        Returns:
            ``(first_id, last_id, event_time)``.

        Raises:
            ValueError: Malformed JSON or a level that does not parse; the book is
                then invalid and its levels unchanged.
        """
        cdef DiffIds ids
        cdef Py_buffer view
        cdef Bytes b
        _get_bytes(data, &view, &b)
        try:
            self.read_diff(book, b.p, b.n, &ids)
        finally:
            if b.held:
                PyBuffer_Release(&view)
        return (ids.first_id, ids.last_id, ids.event_time)

    def apply_diff(self, OrderBook book, data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
        """Parse a diff and apply it to ``book``; the book's id becomes its last id.

        No sequence check is made here (that is the sync's job).

        Returns:
            ``(first_id, last_id, event_time)``.

        Raises:
            ValueError: Malformed JSON or a level that does not parse; the book is
                then invalid and its levels unchanged.
        """
        cdef DiffIds ids
        cdef Py_buffer view
        cdef Bytes b
        _get_bytes(data, &view, &b)
        try:
            self.read_diff(book, b.p, b.n, &ids)
        finally:
            if b.held:
                PyBuffer_Release(&view)
        book.commit_diff(ids.last_id)
        book.exchange_time = ids.event_time
        return (ids.first_id, ids.last_id, ids.event_time)

    def apply_sequenced(self, OrderBook book, data: bytes | bytearray | memoryview, int64_t step=1) -> int:
        """Parse a diff and apply it only if it continues the book: a sync's in-order case in one call.

        The sync's per-message path: no tuple, no Python integer, one call
        (``stage_diff`` + the id checks + ``commit_staged`` + ``is_crossed``).

        Args:
            step: A diff continues the book when its first id is the book's id + ``step``.

        Returns:
            ``SEQ_APPLIED``: applied (the book's id and exchange time are the
            diff's); ``SEQ_CROSSED``: applied, and the book is now crossed;
            ``SEQ_OLD``: wholly at or before the book's id, dropped;
            ``SEQ_AHEAD``: its first id is past the book's id + ``step`` (a gap,
            or a replacement connection ahead): not applied (``stage_diff``
            reads its ids).

        Raises:
            ValueError: Malformed JSON or a level that does not parse; the book is
                then invalid and its levels unchanged.
        """
        cdef DiffIds ids
        cdef Py_buffer view
        cdef Bytes b
        _get_bytes(data, &view, &b)
        try:
            self.read_diff(book, b.p, b.n, &ids)
        finally:
            if b.held:
                PyBuffer_Release(&view)
        if ids.last_id <= book.update_id:
            book.stage_clear()
            return _SEQ_OLD
        if ids.first_id != book.update_id + step:
            book.stage_clear()
            return _SEQ_AHEAD
        book.commit_diff(ids.last_id)
        book.exchange_time = ids.event_time
        return _SEQ_CROSSED if book_crossed(book) else _SEQ_APPLIED

    def apply_snapshot(self, OrderBook book, data: bytes | bytearray | memoryview) -> int:
        """Replace ``book`` with the snapshot (REST depth or partial depth); valid after.

        Returns:
            The snapshot's update id.

        Raises:
            ValueError: Malformed JSON, a level that does not parse or no update id;
                the book is then invalid and its levels unchanged.
        """
        cdef int64_t update_id
        cdef Py_buffer view
        cdef Bytes b
        _get_bytes(data, &view, &b)
        try:
            self.read_snapshot(book, b.p, b.n, &update_id)
        finally:
            if b.held:
                PyBuffer_Release(&view)
        book.commit_snapshot(update_id)
        return update_id


SEQ_OLD = _SEQ_OLD
"""``apply_sequenced``: the diff is wholly at or before the book's id (dropped)."""
SEQ_APPLIED = _SEQ_APPLIED
"""``apply_sequenced``: the diff continued the book and was applied."""
SEQ_AHEAD = _SEQ_AHEAD
"""``apply_sequenced``: the diff does not continue the book (not applied)."""
SEQ_CROSSED = _SEQ_CROSSED
"""``apply_sequenced``: the diff was applied and the book is now crossed."""


cdef JsonBookReader _DEFAULT_READER = JsonBookReader()


def apply_json_diff(OrderBook book, data: bytes | bytearray | memoryview,
                    reader: JsonBookReader | None = None) -> tuple[int, int, int]:
    """Apply a JSON depth diff from raw bytes (``reader`` defaults to the usual keys).

    Returns:
        ``(first_id, last_id, event_time)``.
    """
    return (reader or _DEFAULT_READER).apply_diff(book, data)


def apply_json_snapshot(OrderBook book, data: bytes | bytearray | memoryview,
                        reader: JsonBookReader | None = None) -> int:
    """Replace ``book`` with a JSON snapshot from raw bytes; returns its update id."""
    return (reader or _DEFAULT_READER).apply_snapshot(book, data)
