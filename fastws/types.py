"""Enumerations and names shared by the base class, the core and the adapters.

The enums are ordinary ``str`` enums for their users (iteration, ``.name``,
``.value``, ``isinstance``, ``StreamType("orderbook")``, pickling, ``==`` with
the value). Their metaclass only makes ``StreamType.ORDERBOOK`` cost what any
class attribute costs, so an adapter may write it inline in
``_extract_stream_info``, as the interface standard does (see
``_FastEnumType``).
"""
from __future__ import annotations

import sys
from enum import Enum, EnumMeta
from typing import NewType

__all__ = ["ConnectionState", "ExchangeName", "StreamType", "SubscriptionAction"]

ExchangeName = NewType("ExchangeName", str)
"""The name of an exchange, e.g. ``ExchangeName("binance")``."""

_PY_TP_GETATTRO = 58
"""``Py_tp_getattro`` in CPython's ``typeslots.h`` (a stable ABI number)."""

# Words of a type object searched for its tp_getattro slot (it is the 19th
# word of PyTypeObject on every CPython 3.x; this stays inside the struct).
_SLOT_SEARCH_WORDS = 40


class _FastEnumType(EnumMeta):
    """``EnumMeta`` whose classes look attributes up exactly as ``type`` does.

    A member is a plain entry of its class's dict on every CPython from 3.10.
    What makes ``StreamType.ORDERBOOK`` slow on 3.10 and 3.11 is that
    ``EnumMeta`` defines ``__getattr__`` (for members a ``name`` or ``value``
    property would shadow): a metaclass with ``__getattr__`` gets CPython's
    generic attribute hook, which calls ``type.__getattribute__`` through a
    bound method wrapper on every access, hit or miss (~900 machine
    instructions against ~170 for a plain class's attribute on 3.11). 3.12
    dropped that ``__getattr__``. On 3.10 and 3.11 this private metaclass gets
    ``type``'s own lookup back (``_use_type_getattro``): the same answer for
    every name, without the wrapper call. Only the ``__getattr__`` fallback is
    gone, and no member of these enums needs it (the test suite checks).
    """


def _use_type_getattro(metaclass: type) -> bool:
    """Give ``metaclass`` the ``tp_getattro`` slot of ``type``; whether it did.

    Only where ``EnumMeta`` has ``__getattr__`` (CPython 3.10, 3.11). The
    slot's place is found, not assumed: the one word that holds, in ``object``,
    ``type`` and ``metaclass`` alike, what ``PyType_GetSlot`` reports for
    ``Py_tp_getattro``. If anything does not match (another interpreter or
    layout), nothing is written: lookups stay correct, only slower.
    """
    if sys.implementation.name != "cpython" or "__getattr__" not in vars(EnumMeta):
        return False
    import ctypes  # only here: 3.12 and later never need it

    try:
        get_slot = ctypes.pythonapi.PyType_GetSlot
    except AttributeError:
        return False
    get_slot.restype = ctypes.c_void_p
    get_slot.argtypes = (ctypes.py_object, ctypes.c_int)
    owners = (object, type, metaclass)
    slots = [get_slot(owner, _PY_TP_GETATTRO) for owner in owners]
    if None in slots or len(set(slots)) != 3:
        return False
    word = ctypes.sizeof(ctypes.c_void_p)
    for offset in range(word, _SLOT_SEARCH_WORDS * word, word):
        cells = [ctypes.c_void_p.from_address(id(owner) + offset) for owner in owners]
        if [cell.value for cell in cells] == slots:
            cells[2].value = slots[1]
            return bool(get_slot(metaclass, _PY_TP_GETATTRO) == slots[1])
    return False


_use_type_getattro(_FastEnumType)


class ConnectionState(str, Enum, metaclass=_FastEnumType):
    """Where a connection is in its life cycle."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


class SubscriptionAction(str, Enum, metaclass=_FastEnumType):
    """What a subscription message asks the exchange to do."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class StreamType(str, Enum, metaclass=_FastEnumType):
    """The kind of market data a stream carries.

    ``StreamType.ORDERBOOK`` may be written inline on the per-message path
    (in ``_extract_stream_info``): it costs a class attribute, not more.
    """

    ORDERBOOK = "orderbook"
    TRADES = "trades"
    TICKER = "ticker"
    KLINE = "kline"
    OTHER = "other"
