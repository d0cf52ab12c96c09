# cython: language_level=3
"""The compiled order book: exact fixed-point levels, best level last.

Each side is one sorted C array of ``Level`` (key, qty), ascending by key with
the best level at the end: the key is the price for bids and minus the price
for asks. A depth diff mostly touches the levels near the top, so a change
there is found by a branch-free bisection of the top 32 levels (of the rest
below them otherwise) and an insert or delete moves only the few levels above it. A level removed more
than 64 levels down becomes a tombstone (qty 0) rather than moving everything
above it, and an insert takes a tombstone beside it when there is one. Chosen by measurement
against a plain binary search, a best-first array and cryptofeed's
``order-book`` (see ``bench/book_bench.py``).

Prices and quantities are int64: ``value * 10**scale``, one scale for prices
and one for quantities per book, given or read from the first snapshot (the
largest number of decimals in it). A value with a non-zero digit beyond the
scale, a negative value, or text that is not a plain decimal is refused with
``ValueError``, never rounded.
"""
from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_ND, PyBUF_SIMPLE, PyBUF_STRIDES, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_GetBuffer)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport INT64_MAX, int64_t, uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcmp, memcpy, memmove

cdef extern from "Python.h":
    double PyOS_string_to_double(const char* s, char** endptr, object overflow_exception) except? -1.0

__all__ = ["MAX_SCALE", "JsonBookReader", "LevelBuffer", "OrderBook", "apply_json_diff",
           "apply_json_snapshot", "parse_decimal"]

MAX_SCALE = 18
"""The largest scale (decimals) a book accepts."""

cdef int64_t[19] POW10
POW10[0] = 1
for _i in range(1, 19):
    POW10[_i] = POW10[_i - 1] * 10

# Doubles hold integers exactly below 2**53: a fixed-point value there converts
# with one correctly rounded division; above it, through the decimal text.
cdef int64_t EXACT_DOUBLE = 1LL << 53


# ---------------------------------------------------------------- decimals

cdef str _excerpt(const unsigned char* p, const unsigned char* end):
    cdef Py_ssize_t n = 0
    while n < 40 and p + n < end and p[n] != 34:     # up to a closing quote
        n += 1
    return (<bytes>p[:n]).decode("latin-1")


cdef enum:
    DEC_OK = 0
    DEC_NOT_A_NUMBER = 1
    DEC_NEGATIVE = 2
    DEC_TOO_MANY_DIGITS = 3
    DEC_TOO_LARGE = 4
    DEC_TOO_PRECISE = 5


cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil


cdef bint LITTLE_ENDIAN = (<unsigned char*>&POW10[1])[0] == 10


cdef inline bint eight_digits(uint64_t v) noexcept nogil:
    # Every byte 0x30..0x39: high nibbles 3, and adding 6 keeps them 3.
    return ((v & 0xF0F0F0F0F0F0F0F0ULL) == 0x3030303030303030ULL
            and ((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) == 0x3030303030303030ULL)


cdef inline uint64_t eight_digits_value(uint64_t v) noexcept nogil:
    # Little-endian ASCII digits to their value: pairs, then fours, then eight.
    v -= 0x3030303030303030ULL
    v = (v * 10 + (v >> 8)) & 0x00FF00FF00FF00FFULL
    v = (v * 100 + (v >> 16)) & 0x0000FFFF0000FFFFULL
    return (v * 10000 + (v >> 32)) & 0xFFFFFFFFULL


cdef const unsigned char* read_decimal(const unsigned char* p, const unsigned char* end,
                                       int64_t* mantissa, int* decimals, int* error) noexcept nogil:
    """Digits with at most one point from ``p``: the integer they spell and how many
    decimals it has. Stops at the first other byte. A sign, no digits or a value past
    int64 sets ``error`` and returns NULL (the caller words the error)."""
    cdef const unsigned char* start = p
    cdef const unsigned char* fraction
    cdef uint64_t m = 0, d
    cdef Py_ssize_t digits, k = 0
    cdef uint64_t v, other
    cdef int n
    # Up to eight integer digits at once: find the first byte that is not a
    # digit (bytes after it may be misjudged by a carry, but are not looked at),
    # move the digits to the top of the word and fill below with '0's.
    if LITTLE_ENDIAN and end - p >= 8:
        memcpy(&v, p, 8)
        other = (((v & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
                 | (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL))
        n = 8 if other == 0 else __builtin_ctzll(other) >> 3
        if n == 8:
            m = eight_digits_value(v)
        elif n > 0:
            m = eight_digits_value((v << (8 * (8 - n))) | (0x3030303030303030ULL >> (8 * n)))
        p += n
    # Unchecked (unsigned, so no undefined overflow): up to 18 digits always fit;
    # longer texts are checked again below.
    while p < end and <unsigned char>(p[0] - 48) <= 9:
        m = m * 10 + (p[0] - 48)
        p += 1
    digits = p - start
    if p < end and p[0] == 46:            # '.'
        p += 1
        fraction = p
        # Eight fraction digits at once (Binance writes eight), when they are there.
        if LITTLE_ENDIAN and end - p >= 8 and digits <= 10:
            memcpy(&d, p, 8)
            if eight_digits(d):
                m = m * 100000000 + eight_digits_value(d)
                p += 8
        while p < end and <unsigned char>(p[0] - 48) <= 9:
            m = m * 10 + (p[0] - 48)
            p += 1
        k = p - fraction
        digits += k
    if digits == 0:
        error[0] = DEC_NEGATIVE if start < end and start[0] == 45 else DEC_NOT_A_NUMBER
        return NULL
    if digits > 18:
        # Leading zeros are free; past int64 is too many digits.
        m = 0
        while start < p:
            if start[0] != 46:
                d = start[0] - 48
                if m > (<uint64_t>INT64_MAX - d) // 10:
                    error[0] = DEC_TOO_MANY_DIGITS
                    return NULL
                m = m * 10 + d
            start += 1
    mantissa[0] = <int64_t>m
    decimals[0] = <int>k
    return p


cdef inline int to_scale(int64_t m, int k, int scale, int64_t* out) noexcept nogil:
    """``m / 10**k`` as a fixed-point integer of ``scale`` decimals, exactly; or an error code."""
    if k == scale:
        out[0] = m
        return DEC_OK
    if k < scale:
        if m > INT64_MAX // POW10[scale - k]:
            return DEC_TOO_LARGE
        out[0] = m * POW10[scale - k]
        return DEC_OK
    # More decimals than the scale: exact only when the extra ones are zeros.
    if k - scale > 18 or m % POW10[k - scale] != 0:
        return DEC_TOO_PRECISE
    out[0] = m // POW10[k - scale]
    return DEC_OK


cdef str decimal_error(int error, int scale, const unsigned char* text, const unsigned char* end):
    cdef str value = repr(_excerpt(text, end))
    if error == DEC_NEGATIVE:
        return f"negative value: {value}"
    if error == DEC_TOO_MANY_DIGITS:
        return f"too many digits in a decimal: {value}"
    if error == DEC_TOO_LARGE:
        return f"value too large for {scale} decimals: {value}"
    if error == DEC_TOO_PRECISE:
        return f"more decimals than the scale ({scale}): {value}"
    return f"not a decimal number: {value}"


cdef bytes _as_ascii(object value):
    if isinstance(value, bytes):
        return <bytes>value
    if isinstance(value, str):
        return (<str>value).encode("latin-1", "replace")
    raise TypeError(f"a price or quantity must be a decimal str or bytes, not {type(value).__name__}")


cdef int _decimals_of(bytes text) except -1:
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(text)
    cdef const unsigned char* end = p + PyBytes_GET_SIZE(text)
    cdef int64_t m
    cdef int k, error = DEC_NOT_A_NUMBER
    if read_decimal(p, end, &m, &k, &error) != end:
        raise ValueError(decimal_error(error, 0, p, end))
    return k


cdef int parse_fixed(const unsigned char* text, Py_ssize_t size, int scale, int64_t* out) except -1:
    """The whole of ``text`` as a fixed-point integer of ``scale`` decimals, exactly.

    For compiled readers (declared in _book.pxd). Raises ValueError naming the text.
    """
    cdef const unsigned char* end = text + size
    cdef int64_t m
    cdef int k, error = DEC_NOT_A_NUMBER
    cdef const unsigned char* p = read_decimal(text, end, &m, &k, &error)
    if p != end:
        raise ValueError(decimal_error(error, scale, text, end))
    error = to_scale(m, k, scale, out)
    if error:
        raise ValueError(decimal_error(error, scale, text, end))
    return 0


cdef int64_t _fixed(bytes text, int scale) except? -1:
    cdef int64_t out
    parse_fixed(<const unsigned char*>PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text), scale, &out)
    return out


def parse_decimal(value: str | bytes, scale: int) -> int:
    """The fixed-point integer of a decimal string at ``scale`` decimals (exact).

    Raises:
        ValueError: not a plain non-negative decimal, or not exact at ``scale``.
    """
    _check_scale(scale)
    return _fixed(_as_ascii(value), scale)


cdef int _check_scale(int scale) except -1:
    if not 0 <= scale <= 18:
        raise ValueError(f"a scale is 0 to {MAX_SCALE} decimals, not {scale}")
    return 0


cdef str format_fixed(int64_t v, int scale):
    """Exact decimal text of a fixed-point value, ``scale`` decimals."""
    if scale == 0:
        return str(v)
    cdef str digits = str(v).rjust(scale + 1, "0")
    return digits[:-scale] + "." + digits[-scale:]


cdef double to_double(int64_t v, int scale):
    # Below 2**53 both operands are exact doubles and the division rounds once,
    # like float(Decimal(text)); above it the text is parsed (rare, slow path).
    if v < EXACT_DOUBLE:
        return <double>v / <double>POW10[scale]
    cdef bytes text = format_fixed(v, scale).encode()
    return PyOS_string_to_double(PyBytes_AS_STRING(text), NULL, None)


# ---------------------------------------------------------------- sides

cdef int side_reserve(Side* s, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap
    cdef Level* lv
    if need <= s.cap:
        return 0
    cap = max(need, 2 * s.cap, 64)
    lv = <Level*>PyMem_Realloc(s.lv, cap * sizeof(Level))
    if lv == NULL:
        raise MemoryError()
    s.lv = lv
    s.cap = cap
    return 0


cdef inline int side_push(Side* s, int64_t key, int64_t qty) except -1:
    """Append a level (staging: order and duplicates are sorted out at the commit)."""
    if s.n == s.cap:
        side_reserve(s, s.n + 1)
    s.lv[s.n].key = key
    s.lv[s.n].qty = qty
    s.n += 1
    return 0


cdef enum:
    # The top levels a search bisects without branches (before it bisects the
    # rest): most changes are this close to the top, and a data-dependent
    # branch per step would be mispredicted half the time.
    TOP_WINDOW = 32


cdef inline Py_ssize_t lower_bound_branchless(const Level* a, Py_ssize_t base, Py_ssize_t n,
                                              int64_t key) noexcept nogil:
    """First index in ``[base, base + n]`` whose key is >= ``key`` (the keys below
    ``base`` are not looked at); each step is a conditional move, not a branch."""
    cdef Py_ssize_t half
    if n == 0:
        return base
    while n > 1:
        half = n >> 1
        base = base + half if a[base + half - 1].key < key else base
        n -= half
    return base + (a[base].key < key)


cdef inline Py_ssize_t lower_bound_from_top(const Level* a, Py_ssize_t n, int64_t key) noexcept nogil:
    """First index whose key is >= ``key``: a branch-free bisection of the top
    ``TOP_WINDOW`` levels, or (one branch, rarely taken) of the levels below them."""
    cdef Py_ssize_t hi = n - TOP_WINDOW
    if hi <= 0:
        return lower_bound_branchless(a, 0, n, key)
    if a[hi].key < key:
        return lower_bound_branchless(a, hi + 1, TOP_WINDOW - 1, key)
    return lower_bound_branchless(a, 0, hi, key)


cdef enum:
    # Within this many levels of the top a removal moves the levels above it
    # (a few cache lines); deeper down it leaves a tombstone instead.
    NEAR_TOP = 64
    # How far above a deep insert a tombstone is looked for before the tail moves.
    TOMBSTONE_REACH = 32


cdef inline int side_set(Side* s, int64_t key, int64_t qty) except -1:
    """Set one level (qty 0 removes). Near the top a removal or insert moves the
    few levels above it; deeper down a removal leaves a tombstone (qty 0, key
    kept, order intact) and an insert takes a tombstone next to its place, or
    shifts only the levels up to the nearest tombstone above. The best level
    (the last) is never a tombstone; when tombstones outnumber live levels the
    side is compacted."""
    cdef Py_ssize_t i = lower_bound_from_top(s.lv, s.n, key), j, limit
    cdef Level* lv = s.lv
    if i < s.n and lv[i].key == key:
        if qty != 0:
            if lv[i].qty == 0:
                s.live += 1
            lv[i].qty = qty
        elif lv[i].qty != 0:
            s.live -= 1
            if s.n - i <= NEAR_TOP:
                s.n -= 1
                memmove(&lv[i], &lv[i + 1], (s.n - i) * sizeof(Level))
                while s.n > 0 and lv[s.n - 1].qty == 0:
                    s.n -= 1
            else:
                lv[i].qty = 0
                if s.n - s.live > s.live + 64:
                    side_compact(s)
        return 0
    if qty == 0:
        return 0                     # removing an absent level: nothing to do
    s.live += 1
    if i > 0 and lv[i - 1].qty == 0:
        lv[i - 1].key = key          # the tombstone just below keeps the order
        lv[i - 1].qty = qty
        return 0
    if s.n - i > TOMBSTONE_REACH:
        limit = i + TOMBSTONE_REACH
        j = i
        while j < limit and lv[j].qty != 0:
            j += 1
        if j < limit:                # shift [i, j) up into the tombstone at j
            memmove(&lv[i + 1], &lv[i], (j - i) * sizeof(Level))
            lv[i].key = key
            lv[i].qty = qty
            return 0
    if s.n == s.cap:
        side_reserve(s, s.n + 1)
        lv = s.lv
    if i < s.n:
        memmove(&lv[i + 1], &lv[i], (s.n - i) * sizeof(Level))
    s.n += 1
    lv[i].key = key
    lv[i].qty = qty
    return 0


cdef void side_compact(Side* s) noexcept:
    """Drop the tombstones."""
    cdef Py_ssize_t i, j = 0
    for i in range(s.n):
        if s.lv[i].qty != 0:
            s.lv[j] = s.lv[i]
            j += 1
    s.n = j
    s.live = j


cdef int _level_cmp(const void* a, const void* b) noexcept nogil:
    cdef int64_t x = (<const Level*>a).key, y = (<const Level*>b).key
    return (x > y) - (x < y)


cdef void side_normalize(Side* s) noexcept:
    """Sort by key (stable for ties: the later level wins), drop zero quantities."""
    cdef Py_ssize_t i, j, n = s.n
    cdef Level t
    cdef bint ascending = True, descending = True
    for i in range(1, n):
        if s.lv[i].key <= s.lv[i - 1].key:
            ascending = False
        if s.lv[i].key >= s.lv[i - 1].key:
            descending = False
    if descending and n > 1:
        # The usual case: a snapshot lists the best level first.
        i = 0
        j = n - 1
        while i < j:
            t = s.lv[i]
            s.lv[i] = s.lv[j]
            s.lv[j] = t
            i += 1
            j -= 1
    elif not ascending:
        # Stable, so of two levels at one price the later one wins.
        _stable_sort(s)
    # Drop zero quantities and keep the last of equal keys (already adjacent).
    j = 0
    for i in range(n):
        if i + 1 < n and s.lv[i + 1].key == s.lv[i].key:
            continue
        if s.lv[i].qty != 0:
            s.lv[j] = s.lv[i]
            j += 1
    s.n = j
    s.live = j


cdef void _stable_sort(Side* s) noexcept:
    # Stable sort: insertion for a few levels, a merge sort beyond. Only a
    # snapshot that is not best-first gets here.
    cdef Py_ssize_t i, j
    cdef Level t
    if s.n > 64:
        _merge_sort(s.lv, s.n)
        return
    for i in range(1, s.n):
        t = s.lv[i]
        j = i - 1
        while j >= 0 and s.lv[j].key > t.key:
            s.lv[j + 1] = s.lv[j]
            j -= 1
        s.lv[j + 1] = t


cdef void _merge_sort(Level* a, Py_ssize_t n) noexcept:
    cdef Level* tmp = <Level*>PyMem_Malloc(n * sizeof(Level))
    cdef Py_ssize_t width = 1, lo, mid, hi, i, j, k
    if tmp == NULL:
        qsort(a, n, sizeof(Level), _level_cmp)    # not stable, but no memory left
        return
    while width < n:
        lo = 0
        while lo < n:
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            k = lo
            while i < mid and j < hi:
                if a[j].key < a[i].key:
                    tmp[k] = a[j]
                    j += 1
                else:
                    tmp[k] = a[i]
                    i += 1
                k += 1
            while i < mid:
                tmp[k] = a[i]
                i += 1
                k += 1
            while j < hi:
                tmp[k] = a[j]
                j += 1
                k += 1
            lo = hi
        memcpy(a, tmp, n * sizeof(Level))
        width *= 2
    PyMem_Free(tmp)


# ---------------------------------------------------------------- the book

cdef enum:
    # What OrderBook._top makes of a level.
    FORM_FLOAT = 0
    FORM_EXACT = 1
    FORM_FIXED = 2


cdef class LevelBuffer:
    """The top levels of one side as C doubles ``[price, qty, price, qty, ...]``.

    Exposes the buffer protocol (format ``"d"``, shape ``(n, 2)``), so
    ``numpy.asarray(buf)`` or ``memoryview(buf)`` read it without a copy. It is a
    copy of the book at the time it was taken (the book keeps exact integers).
    """
    cdef double* _data
    cdef Py_ssize_t _n
    cdef Py_ssize_t _shape[2]
    cdef Py_ssize_t _strides[2]

    def __dealloc__(self) -> None:
        PyMem_Free(self._data)

    def __len__(self) -> int:
        return self._n

    def __getbuffer__(self, Py_buffer* view, int flags) -> None:
        if flags & PyBUF_WRITABLE:
            raise BufferError("a LevelBuffer is read-only")
        self._shape[0] = self._n
        self._shape[1] = 2
        self._strides[0] = 2 * sizeof(double)
        self._strides[1] = sizeof(double)
        view.buf = <void*>self._data
        view.obj = self
        view.len = self._n * 2 * sizeof(double)
        view.readonly = 1
        view.itemsize = sizeof(double)
        view.format = <char*>"d" if flags & PyBUF_FORMAT else NULL
        view.ndim = 2
        view.shape = self._shape if flags & PyBUF_ND else NULL
        view.strides = self._strides if flags & PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL

    def __releasebuffer__(self, Py_buffer* view) -> None:
        pass


cdef class OrderBook:
    """One symbol's book: bids and asks as exact fixed-point levels.

    A new book is invalid and empty until a snapshot is applied. ``valid`` is
    the sync's verdict (a gap or a bad message clears it); the book itself
    clears it when a message it is given fails to parse.

    Args:
        symbol: The instrument, as the caller names it.
        price_scale: Decimals of prices; None reads it from the first snapshot.
        qty_scale: Decimals of quantities; None reads it from the first snapshot.
    """

    def __cinit__(self) -> None:
        self._price_scale = -1
        self._qty_scale = -1

    def __init__(self, symbol: str, price_scale: int | None = None, qty_scale: int | None = None) -> None:
        self.symbol = symbol
        self.update_id = 0
        self.exchange_time = 0
        self.valid = False
        if price_scale is not None:
            _check_scale(price_scale)
            self._price_scale = price_scale
        if qty_scale is not None:
            _check_scale(qty_scale)
            self._qty_scale = qty_scale

    def __dealloc__(self) -> None:
        PyMem_Free(self._bids.lv)
        PyMem_Free(self._asks.lv)
        PyMem_Free(self._stage_bids.lv)
        PyMem_Free(self._stage_asks.lv)

    def __repr__(self) -> str:
        return (f"<OrderBook {self.symbol} id={self.update_id} valid={bool(self.valid)} "
                f"bids={self._bids.live} asks={self._asks.live} best={self.best_bid()}/{self.best_ask()}>")

    # -- C API (see _book.pxd) --

    cdef int set_scales(self, int price_scale, int qty_scale) except -1:
        _check_scale(price_scale)
        _check_scale(qty_scale)
        if (self._price_scale not in (-1, price_scale) or self._qty_scale not in (-1, qty_scale)) and (
                self._bids.live or self._asks.live):
            raise ValueError("the scales of a book with levels cannot change")
        self._price_scale = price_scale
        self._qty_scale = qty_scale
        return 0

    cdef int set_level(self, bint is_bid, int64_t price, int64_t qty) except -1:
        """Apply one absolute level now (qty 0 removes it)."""
        if price < 0 or qty < 0:
            raise ValueError("a negative level")
        if is_bid:
            return side_set(&self._bids, price, qty)
        return side_set(&self._asks, -price, qty)

    cdef void stage_clear(self) noexcept:
        self._stage_bids.n = 0
        self._stage_asks.n = 0

    cdef int stage_level(self, bint is_bid, int64_t price, int64_t qty) except -1:
        if is_bid:
            return side_push(&self._stage_bids, price, qty)
        return side_push(&self._stage_asks, -price, qty)

    cdef int commit_diff(self, int64_t update_id) except -1:
        """Apply the staged levels in order; the book's id becomes ``update_id``."""
        cdef Py_ssize_t i
        cdef Side* s = &self._stage_bids
        for i in range(s.n):
            side_set(&self._bids, s.lv[i].key, s.lv[i].qty)
        s = &self._stage_asks
        for i in range(s.n):
            side_set(&self._asks, s.lv[i].key, s.lv[i].qty)
        self.stage_clear()
        self.update_id = update_id
        return 0

    cdef int commit_snapshot(self, int64_t update_id) except -1:
        """The staged levels become the whole book (absent levels are gone); valid."""
        cdef Side t
        side_normalize(&self._stage_bids)
        side_normalize(&self._stage_asks)
        t = self._bids
        self._bids = self._stage_bids
        self._stage_bids = t
        t = self._asks
        self._asks = self._stage_asks
        self._stage_asks = t
        self.stage_clear()
        self.update_id = update_id
        self.valid = True
        return 0

    # -- Python API: writing --

    def apply_snapshot(self, bids: object, asks: object, update_id: int) -> None:
        """Replace the whole book: levels absent from the snapshot are gone.

        Args:
            bids: ``(price, qty)`` decimal strings (str or bytes), any order.
            asks: Likewise.
            update_id: The snapshot's update id (the book's id afterwards).

        Raises:
            ValueError: A level that is not exact at the book's scales; the book is
                then invalid and its levels unchanged.
        """
        bid_list = [(_as_ascii(p), _as_ascii(q)) for p, q in bids]
        ask_list = [(_as_ascii(p), _as_ascii(q)) for p, q in asks]
        cdef int ps = self._price_scale, qs = self._qty_scale
        try:
            if ps < 0 or qs < 0:
                ps = max([_decimals_of(p) for p, _ in bid_list + ask_list], default=0) if ps < 0 else ps
                qs = max([_decimals_of(q) for _, q in bid_list + ask_list], default=0) if qs < 0 else qs
                _check_scale(ps)
                _check_scale(qs)
            self.stage_clear()
            for p, q in bid_list:
                self.stage_level(True, _fixed(p, ps), _fixed(q, qs))
            for p, q in ask_list:
                self.stage_level(False, _fixed(p, ps), _fixed(q, qs))
        except BaseException:
            self.stage_clear()
            self.valid = False
            raise
        self.set_scales(ps, qs)
        self.commit_snapshot(update_id)

    def apply_diff(self, bids: object, asks: object, update_id: int) -> None:
        """Apply absolute levels (qty ``"0"`` removes; an absent level's removal is a no-op).

        All levels are parsed before any is applied.

        Raises:
            ValueError: A level that does not parse, or a book with no scales yet;
                the book is then invalid and its levels unchanged.
        """
        self._require_scales()
        cdef int ps = self._price_scale, qs = self._qty_scale
        try:
            self.stage_clear()
            for p, q in bids:
                self.stage_level(True, _fixed(_as_ascii(p), ps), _fixed(_as_ascii(q), qs))
            for p, q in asks:
                self.stage_level(False, _fixed(_as_ascii(p), ps), _fixed(_as_ascii(q), qs))
        except BaseException:
            self.stage_clear()
            self.valid = False
            raise
        self.commit_diff(update_id)

    def apply_level(self, is_bid: bool, price: str | bytes, qty: str | bytes) -> None:
        """Apply one absolute level given as decimal strings (qty ``"0"`` removes)."""
        self._require_scales()
        self.set_level(is_bid, _fixed(_as_ascii(price), self._price_scale),
                       _fixed(_as_ascii(qty), self._qty_scale))

    def apply_level_fixed(self, is_bid: bool, price: int, qty: int) -> None:
        """Apply one absolute level given as fixed-point integers at the book's scales."""
        self.set_level(is_bid, price, qty)

    def commit_staged(self, update_id: int, exchange_time: int | None = None) -> None:
        """Apply the levels a reader staged (``JsonBookReader.stage_diff``); the id becomes ``update_id``."""
        self.commit_diff(update_id)
        if exchange_time is not None:
            self.exchange_time = exchange_time

    def discard_staged(self) -> None:
        """Forget the levels a reader staged, leaving the book as it is."""
        self.stage_clear()

    def clear(self) -> None:
        """Drop every level; the book becomes invalid (until the next snapshot)."""
        self._bids.n = self._bids.live = 0
        self._asks.n = self._asks.live = 0
        self.stage_clear()
        self.valid = False

    def invalidate(self) -> None:
        """Mark the book invalid (its levels stay readable)."""
        self.valid = False

    cdef int _require_scales(self) except -1:
        if self._price_scale < 0 or self._qty_scale < 0:
            raise ValueError(f"book {self.symbol}: no scales yet (give them or apply a snapshot first)")
        return 0

    # -- Python API: reading --

    @property
    def price_scale(self) -> int | None:
        """Decimals of prices (None until given or read from a snapshot)."""
        return None if self._price_scale < 0 else self._price_scale

    @property
    def qty_scale(self) -> int | None:
        """Decimals of quantities (None until given or read from a snapshot)."""
        return None if self._qty_scale < 0 else self._qty_scale

    @property
    def bid_count(self) -> int:
        """Number of bid levels."""
        return self._bids.live

    @property
    def ask_count(self) -> int:
        """Number of ask levels."""
        return self._asks.live

    cdef tuple _best(self, Side* s, int64_t sign):
        if s.n == 0:
            return None
        cdef Level* lv = &s.lv[s.n - 1]
        return (to_double(sign * lv.key, self._price_scale), to_double(lv.qty, self._qty_scale))

    def best_bid(self) -> tuple[float, float] | None:
        """The highest bid as ``(price, qty)`` floats, or None."""
        return self._best(&self._bids, 1)

    def best_ask(self) -> tuple[float, float] | None:
        """The lowest ask as ``(price, qty)`` floats, or None."""
        return self._best(&self._asks, -1)

    cdef list _top(self, Side* s, int64_t sign, Py_ssize_t n, int form):
        cdef Py_ssize_t i = s.n, count = min(max(n, 0), s.live)
        cdef int64_t price, qty
        cdef list out = []
        while len(out) < count:
            i -= 1
            qty = s.lv[i].qty
            if qty == 0:
                continue             # a tombstone
            price = sign * s.lv[i].key
            if form == FORM_FLOAT:
                out.append((to_double(price, self._price_scale), to_double(qty, self._qty_scale)))
            elif form == FORM_EXACT:
                out.append((format_fixed(price, self._price_scale), format_fixed(qty, self._qty_scale)))
            else:
                out.append((price, qty))
        return out

    def bids(self, n: int = 10) -> list[tuple[float, float]]:
        """The top ``n`` bids as ``(price, qty)`` floats, best first."""
        return self._top(&self._bids, 1, n, FORM_FLOAT)

    def asks(self, n: int = 10) -> list[tuple[float, float]]:
        """The top ``n`` asks as ``(price, qty)`` floats, best first."""
        return self._top(&self._asks, -1, n, FORM_FLOAT)

    def bids_exact(self, n: int = 10) -> list[tuple[str, str]]:
        """The top ``n`` bids as exact decimal strings (``scale`` decimals), best first."""
        return self._top(&self._bids, 1, n, FORM_EXACT)

    def asks_exact(self, n: int = 10) -> list[tuple[str, str]]:
        """The top ``n`` asks as exact decimal strings, best first."""
        return self._top(&self._asks, -1, n, FORM_EXACT)

    def bids_fixed(self, n: int = 10) -> list[tuple[int, int]]:
        """The top ``n`` bids as fixed-point integers at the book's scales, best first."""
        return self._top(&self._bids, 1, n, FORM_FIXED)

    def asks_fixed(self, n: int = 10) -> list[tuple[int, int]]:
        """The top ``n`` asks as fixed-point integers, best first."""
        return self._top(&self._asks, -1, n, FORM_FIXED)

    cdef object _buffer(self, Side* s, int64_t sign, Py_ssize_t n):
        cdef Py_ssize_t i = s.n, k = 0, count = min(max(n, 0), s.live)
        cdef LevelBuffer buf = LevelBuffer.__new__(LevelBuffer)
        buf._data = <double*>PyMem_Malloc(max(count, 1) * 2 * sizeof(double))
        if buf._data == NULL:
            raise MemoryError()
        while k < count:
            i -= 1
            if s.lv[i].qty == 0:
                continue             # a tombstone
            buf._data[2 * k] = to_double(sign * s.lv[i].key, self._price_scale)
            buf._data[2 * k + 1] = to_double(s.lv[i].qty, self._qty_scale)
            k += 1
        buf._n = count
        return buf

    def bids_buffer(self, n: int = 10) -> LevelBuffer:
        """The top ``n`` bids as a buffer of doubles ``[price, qty, ...]``, best first."""
        return self._buffer(&self._bids, 1, n)

    def asks_buffer(self, n: int = 10) -> LevelBuffer:
        """The top ``n`` asks as a buffer of doubles ``[price, qty, ...]``, best first."""
        return self._buffer(&self._asks, -1, n)

    def is_crossed(self) -> bool:
        """True when both sides have levels and the best bid >= the best ask."""
        return book_crossed(self)


cdef inline bint book_crossed(OrderBook book) noexcept:
    """True when both sides have levels and the best bid >= the best ask (the top slots are live)."""
    return (book._bids.n > 0 and book._asks.n > 0
            and book._bids.lv[book._bids.n - 1].key >= -book._asks.lv[book._asks.n - 1].key)


include "_json.pxi"
