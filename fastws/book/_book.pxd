# cython: language_level=3
"""C-level API of the compiled order book, for ``cimport fastws.book._book``.

A compiled reader (an adapter's frame parser) applies levels with no Python
object per level: ``book.set_level(is_bid, price, qty)`` for a single level, or
``book.stage_clear()`` / ``book.stage_level(...)`` then ``book.commit_diff(id)``
/ ``book.commit_snapshot(id)`` to apply a whole message at once (nothing
reaches the book until the commit, so a message that fails to parse half-way
leaves the levels untouched). Prices and quantities are fixed-point int64:
``value * 10**price_scale`` and ``value * 10**qty_scale``; ``parse_fixed``
turns a decimal string's bytes into one, exactly, or raises ValueError.

How MEXC's protobuf depth plugs in (exchanges/mexc/_bookpb.pxi):
``cimport fastws.book._book``; for an aggregated depth push, read
``fromVersion``/``toVersion`` (strings) as integers, then, with the book's
``_price_scale``/``_qty_scale`` (a snapshot sets them), ``book.stage_clear()``,
for each asks/bids item parse its price and quantity bytes straight from the
wire (no str) with the inline ``parse_fixed_in_frame`` (reads may run past a
string up to the end of the frame), or ``parse_fixed`` when it declines, and
``stage_level_fast`` (inline) / ``book.stage_level(is_bid, price, qty)``; after the
whole push decoded, the sync checks ``fromVersion == book.update_id + 1`` and
calls ``book.commit_diff(toVersion)`` (or ``stage_clear()`` to drop it). On an
error: ``stage_clear()``, ``book.valid = False``. A limit-depth push (a full
top N) stages the same way and ends with ``book.commit_snapshot(version)``.
"""
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy


cdef int parse_fixed(const unsigned char* text, Py_ssize_t size, int scale, int64_t* out) except -1


cdef struct Level:
    # Sort key: the price for bids, minus the price for asks, so both sides
    # are ascending with the best level last (top-of-book changes move little).
    int64_t key
    int64_t qty


cdef struct Side:
    Level* lv
    Py_ssize_t n         # slots in use, tombstones (qty 0) included
    Py_ssize_t live      # levels (slots with a quantity)
    Py_ssize_t cap


cdef struct DiffIds:
    int64_t first_id
    int64_t last_id
    int64_t event_time


cdef class OrderBook:
    cdef readonly str symbol
    cdef public int64_t update_id
    cdef public int64_t exchange_time
    cdef public bint valid
    cdef int _price_scale     # -1 until given or read from the first snapshot
    cdef int _qty_scale
    cdef Side _bids
    cdef Side _asks
    cdef Side _stage_bids     # staged levels (raw prices, not keys)
    cdef Side _stage_asks

    cdef int set_scales(self, int price_scale, int qty_scale) except -1
    cdef int set_level(self, bint is_bid, int64_t price, int64_t qty) except -1
    cdef void stage_clear(self) noexcept
    cdef int stage_level(self, bint is_bid, int64_t price, int64_t qty) except -1
    cdef int commit_diff(self, int64_t update_id) except -1
    cdef int commit_snapshot(self, int64_t update_id) except -1
    cdef int _require_scales(self) except -1
    cdef tuple _best(self, Side* s, int64_t sign)
    cdef list _top(self, Side* s, int64_t sign, Py_ssize_t n, int form)
    cdef object _buffer(self, Side* s, int64_t sign, Py_ssize_t n)


cdef class JsonBookReader:
    cdef bytes _bids_key
    cdef bytes _asks_key
    cdef bytes _first_key
    cdef bytes _last_key
    cdef bytes _time_key
    cdef bytes _snap_bids_key
    cdef bytes _snap_asks_key
    cdef bytes _snap_id_key

    cdef int read_diff(self, OrderBook book, const unsigned char* data, Py_ssize_t size,
                       DiffIds* ids) except -1
    cdef int read_snapshot(self, OrderBook book, const unsigned char* data, Py_ssize_t size,
                           int64_t* update_id) except -1


# ---------------------------------------------------------------- inline fast paths
#
# Defined here so a reader in another extension (MEXC's protobuf walker)
# compiles them into its own loop: no call per level. Each one covers the
# common case only and says so; the caller then takes the general route
# (``parse_fixed``, ``stage_level``), which also words any error.

cdef extern from *:
    """
    static const int64_t fastws_book_pow10[19] = {
        1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL, 100000000LL,
        1000000000LL, 10000000000LL, 100000000000LL, 1000000000000LL, 10000000000000LL,
        100000000000000LL, 1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
        1000000000000000000LL};
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTWS_BOOK_LITTLE_ENDIAN (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
    #define fastws_book_ctz64(x) __builtin_ctzll(x)
    #else
    #define FASTWS_BOOK_LITTLE_ENDIAN 0
    #define fastws_book_ctz64(x) 0
    #endif
    """
    const int64_t fastws_book_pow10[19]
    const bint FASTWS_BOOK_LITTLE_ENDIAN
    int fastws_book_ctz64(uint64_t x) nogil


cdef inline int first_non_digit(uint64_t v) noexcept nogil:
    """Index (0-8) of the first byte of eight (little-endian) that is not an ASCII digit.

    Every byte before it is exactly judged: a digit's high nibble is 3 and stays
    3 after adding 6; a carry only reaches the bytes after the first non-digit.
    """
    cdef uint64_t other = (((v & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL)
                           | (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL))
    if other == 0:
        return 8
    return fastws_book_ctz64(other) >> 3


cdef inline uint64_t leading_digits_value(uint64_t v, int n) noexcept nogil:
    """The value of the first ``n`` (0-8) bytes of ``v``, all ASCII digits.

    The digits go to the top of the word (two shifts, so n = 0 is defined),
    zeros fill below, then pairs, fours and eights combine (SWAR).
    """
    cdef int shift = 4 * (8 - n)
    v = ((v - 0x3030303030303030ULL) << shift) << shift
    v = (v * 10 + (v >> 8)) & 0x00FF00FF00FF00FFULL
    v = (v * 100 + (v >> 16)) & 0x0000FFFF0000FFFFULL
    return (v * 10000 + (v >> 32)) & 0xFFFFFFFFULL


cdef inline bint parse_fixed_in_frame(const unsigned char* text, Py_ssize_t size,
                                      const unsigned char* limit, int scale, int64_t* out) noexcept nogil:
    """``parse_fixed``'s common case, reading up to 16 bytes past ``text`` when ``limit`` allows.

    For a string inside a larger buffer (a frame) that ends at ``limit``: the
    bytes after the string are readable and ignored. Covers at most 7 integer
    digits before a point (8 without one) and at most 8 decimals after it, no
    more decimals than ``scale``, and no more than 18 digits at the scale.
    Returns True with ``out`` set when it did; False otherwise (not an error: the caller then
    runs ``parse_fixed``, which parses the rest or raises the ValueError).
    """
    cdef uint64_t v, w
    cdef int n, f
    cdef int64_t m
    if not FASTWS_BOOK_LITTLE_ENDIAN or limit - text < 16 or size <= 0:
        return False
    memcpy(&v, text, 8)
    n = first_non_digit(v)
    if n >= size:
        m = <int64_t>leading_digits_value(v, <int>size)
        f = 0
        n = <int>size
    elif n < 8 and text[n] == 46:           # '.'
        f = <int>(size - n - 1)
        if f > 8 or f > scale or size == 1:
            return False
        memcpy(&w, text + n + 1, 8)
        if first_non_digit(w) < f:
            return False
        m = (<int64_t>leading_digits_value(v, n) * fastws_book_pow10[f]
             + <int64_t>leading_digits_value(w, f))
    else:
        return False
    # Below 10**18 after scaling: n integer digits and ``scale`` decimals.
    if n + scale > 18:
        return False
    out[0] = m * fastws_book_pow10[scale - f]
    return True


cdef inline int stage_level_fast(OrderBook book, bint is_bid, int64_t price, int64_t qty) except -1:
    """``book.stage_level`` inlined when the staging array has room (the usual case)."""
    cdef Side* s = &book._stage_bids if is_bid else &book._stage_asks
    if s.n == s.cap:
        return book.stage_level(is_bid, price, qty)
    s.lv[s.n].key = price if is_bid else -price
    s.lv[s.n].qty = qty
    s.n += 1
    return 0
