"""fastws's enums: every Enum behaviour a user relies on, and the cheap member lookup.

Each enum is compared with a twin built by the stock ``enum`` machinery (same
name, same members, ``str`` mix-in): whatever the twin does, ours must do the
same, on every Python the package supports.
"""
from __future__ import annotations

import copy
import ctypes
import enum
import json
import pickle
import sys
from typing import Any

import msgspec
import pytest

from fastws.types import ConnectionState, StreamType, SubscriptionAction

ENUMS = [ConnectionState, StreamType, SubscriptionAction]
ids = [cls.__name__ for cls in ENUMS]

_PY_TP_GETATTRO = 58       # typeslots.h


def twin(cls: Any) -> Any:
    """The same enum built by the stock metaclass."""
    return enum.Enum(cls.__name__, [(m.name, m.value) for m in cls], type=str, module=cls.__module__,
                     qualname=cls.__qualname__)


def getattro_slot(cls: type) -> int:
    get_slot = ctypes.pythonapi.PyType_GetSlot
    get_slot.restype = ctypes.c_void_p
    get_slot.argtypes = (ctypes.py_object, ctypes.c_int)
    return int(get_slot(cls, _PY_TP_GETATTRO))


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_is_an_enum(cls: Any) -> None:
    assert issubclass(cls, enum.Enum) and issubclass(cls, str)
    assert isinstance(cls, enum.EnumMeta)
    member: Any
    for member in cls:
        assert type(member) is cls
        assert isinstance(member, cls) and isinstance(member, str) and isinstance(member, enum.Enum)
        assert not isinstance(member.value, enum.Enum)


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_members_names_values_lookups(cls: Any) -> None:
    reference = twin(cls)
    assert [(m.name, m.value) for m in cls] == [(m.name, m.value) for m in reference]
    assert len(cls) == len(reference) and list(cls.__members__) == list(reference.__members__)
    assert [m.name for m in reversed(cls)] == [m.name for m in reversed(reference)]
    for member in cls:
        assert getattr(cls, member.name) is member
        assert cls[member.name] is member
        assert cls(member.value) is member
        assert cls(member) is member
        assert member in cls
        assert member.value in [m.value for m in cls]
        assert member._name_ == member.name and member._value_ == member.value


def test_attribute_access_in_source_form() -> None:
    # Written as adapters write it; the parametrized tests use getattr().
    assert StreamType.ORDERBOOK.value == "orderbook" and StreamType.ORDERBOOK.name == "ORDERBOOK"
    assert StreamType.TRADES is StreamType("trades")
    connected: object = ConnectionState.CONNECTED
    assert connected == "connected"
    assert SubscriptionAction.UNSUBSCRIBE is SubscriptionAction["UNSUBSCRIBE"]


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_equal_to_and_hashed_as_the_str_value(cls: Any) -> None:
    for member in cls:
        assert member == member.value and member.value == member
        assert hash(member) == hash(member.value)
        assert {member.value: 1}[member] == 1 and {member: 1}[member.value] == 1
        assert member != member.value + "x"
        assert member.upper() == member.value.upper()


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_text_forms_match_the_stock_enum(cls: Any) -> None:
    reference = twin(cls)
    for member, other in zip(cls, reference):
        assert repr(member) == repr(other)
        assert str(member) == str(other)
        assert format(member) == format(other) and f"{member}" == f"{other}"
        assert json.dumps(member) == json.dumps(other)
    assert repr(cls) == repr(reference)


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_pickle_and_copy_keep_identity(cls: Any) -> None:
    for member in cls:
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            assert pickle.loads(pickle.dumps(member, protocol)) is member
        assert copy.copy(member) is member and copy.deepcopy(member) is member
    assert pickle.loads(pickle.dumps(cls)) is cls


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_msgspec_round_trip(cls: Any) -> None:
    for member in cls:
        encoded = msgspec.json.encode(member)
        assert encoded == msgspec.json.encode(member.value)
        assert msgspec.json.decode(encoded, type=cls) is member
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'"no such value"', type=cls)


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_misses_and_protection(cls: Any) -> None:
    with pytest.raises(ValueError):
        cls("no such value")
    with pytest.raises(KeyError):
        cls["NO_SUCH_NAME"]
    with pytest.raises(AttributeError):
        getattr(cls, "NO_SUCH_NAME")
    assert not hasattr(cls, "__no_such_dunder__")
    first = next(iter(cls))
    with pytest.raises(AttributeError):
        setattr(cls, first.name, "other")
    with pytest.raises(AttributeError):
        delattr(cls, first.name)
    assert getattr(cls, first.name) is first
    with pytest.raises(TypeError):
        class Sub(cls):  # type: ignore[misc]  # an enum with members cannot be extended
            pass


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_class_attributes_resolve_as_on_the_stock_enum(cls: Any) -> None:
    # Inherited and metaclass attributes: the lookup must find what the
    # stock one finds, not only the members.
    reference = twin(cls)
    assert dir(cls) == dir(reference)
    assert cls.upper is str.upper and cls.__len__ is reference.__len__
    assert cls.__members__ == {m.name: getattr(cls, m.name) for m in cls}
    assert cls._missing_.__func__ is reference._missing_.__func__
    assert cls.__new__ is reference.__new__ and cls.__repr__ is reference.__repr__
    for name in ("__str__", "__format__", "__reduce_ex__", "__hash__", "__dir__", "__init__", "__contains__"):
        assert getattr(cls, name) == getattr(reference, name), name
    assert cls.__doc__ and cls.__name__ == reference.__name__ and cls.__module__ == "fastws.types"


@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_every_member_is_reached_without_the_enum_getattr_fallback(cls: Any) -> None:
    # On 3.10 and 3.11 the metaclass skips EnumMeta.__getattr__: a member that
    # only it could find (one named like a ``name``/``value`` property) would
    # be lost.
    for member in cls:
        assert type.__getattribute__(cls, member.name) is member


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's type slots")
@pytest.mark.parametrize("cls", ENUMS, ids=ids)
def test_member_lookup_is_types_own(cls: Any) -> None:
    # The speed: ``Enum.X`` goes through the same C lookup as any class
    # attribute, not through the generic hook a metaclass ``__getattr__``
    # brings (3.10, 3.11: ~900 instructions instead of ~170).
    assert getattro_slot(type(cls)) == getattro_slot(type)
    if "__getattr__" in vars(enum.EnumMeta):
        assert getattro_slot(enum.EnumMeta) != getattro_slot(type)   # what the stock enums pay
