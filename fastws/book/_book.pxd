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

How MEXC's protobuf depth plugs in (exchanges/mexc/_fastpb.pyx, not done here):
``cimport fastws.book._book``; for an aggregated depth push, read
``fromVersion``/``toVersion`` (strings) as integers, then, with the book's
``_price_scale``/``_qty_scale`` (a snapshot sets them), ``book.stage_clear()``,
for each asks/bids item ``parse_fixed`` its price and quantity bytes straight
from the wire (no str) and ``book.stage_level(is_bid, price, qty)``; after the
whole push decoded, the sync checks ``fromVersion == book.update_id + 1`` and
calls ``book.commit_diff(toVersion)`` (or ``stage_clear()`` to drop it). On an
error: ``stage_clear()``, ``book.valid = False``. A limit-depth push (a full
top N) stages the same way and ends with ``book.commit_snapshot(version)``.
"""
from libc.stdint cimport int64_t


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
