"""Hypothesis strategies for MEXC pushes: valid wrappers of every body, and mutated bytes.

For differential tests of a decoder against ``exchanges.mexc.reference.decode_reference``:

- ``wrappers(body_fields=None)``: ``PushDataV3ApiWrapper`` objects, always with a body
  (one of ``body_fields``, default: all 15). Strategies are derived from the message
  descriptors, so every field of every message is covered: empty and absent repeated
  fields, int64 over the whole signed range, negative int32, empty, unicode and long
  strings, up to 200 depth levels or deals, optional fields absent, set to their
  default, or set.
- ``push_bytes(body_fields=None)``: the same, serialized.
- ``mutated_push_bytes(body_fields=None)``: serialized wrappers after wire-level
  mutations, at any nesting level: unknown fields of every wire type (varint, i64,
  len, group, i32), duplicated fields (scalars: last wins; messages: merged), a second
  body of another oneof field (last wins), known field numbers with the wrong wire type
  (skipped as unknown), over-long varints; then, for about half of them, byte damage:
  truncation, bit flips, inserted or deleted bytes. Some results are still valid
  pushes, some are not: a decoder must either fail like the reference or return the
  same dict.

Example::

    @given(mutated_push_bytes())
    def test_same_as_reference(data: bytes) -> None:
        assert outcome(fast_decode, data) == outcome(decode_reference, data)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import strategies as st

from exchanges.mexc import pb
from exchanges.mexc.reference import BODY_FIELDS, decode_reference

__all__ = ["BODY_FIELDS", "CHANNELS", "WireField", "mutated_push_bytes", "parse_wire", "push_bytes",
           "reference_or_refused",
           "serialize_wire", "wrappers"]

Descriptor = Any     # a message descriptor: the upb and the pure-Python classes differ

_WRAPPER: Descriptor = pb.PushDataV3ApiWrapper.DESCRIPTOR
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1

CHANNELS = (
    "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT",
    "spot@public.aggre.deals.v3.api.pb@10ms@ETHUSDT",
    "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT",
    "spot@public.limit.depth.v3.api.pb@BTCUSDT@20",
    "spot@public.kline.v3.api.pb@BTCUSDT@Min15",
    "spot@public.increase.depth.v3.api.pb@BTCUSDT",
    "spot@public.deals.v3.api.pb@BTCUSDT",
    "spot@public.bookTicker.batch.v3.api.pb@BTCUSDT",
    "spot@private.orders.v3.api.pb",
)
"""Realistic channel names (the wrapper's channel is also drawn as any text)."""

# ---------------------------------------------------------------------- scalar values

_INT64 = st.one_of(
    st.sampled_from([0, 1, -1, 127, 128, 16_383, 16_384, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 1_736_411_507_002,
                     _INT64_MAX, _INT64_MIN, _INT64_MAX - 1, _INT64_MIN + 1]),
    st.integers(_INT64_MIN, _INT64_MAX),
)
_INT32 = st.one_of(
    st.sampled_from([0, 1, 2, -1, 127, 128, _INT32_MAX, _INT32_MIN]),
    st.integers(_INT32_MIN, _INT32_MAX),
)
_DECIMAL = st.from_regex(r"-?[0-9]{1,9}\.[0-9]{1,8}", fullmatch=True)
_CHARS = st.characters(codec="utf-8")      # no lone surrogates: protobuf strings are valid UTF-8
_STRING = st.one_of(
    st.just(""),
    st.sampled_from(["0", "0.00000000", "65012.34000000", "BTCUSDT", "USDT", "Min15", "é", "价格", "🚀"]),
    _DECIMAL,
    st.text(_CHARS, max_size=12),
    st.text(st.characters(min_codepoint=0x80, codec="utf-8"), max_size=6),
    st.text(_CHARS, min_size=1, max_size=4).map(lambda s: s * 60),      # long: a 2-byte length prefix
)
_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: _STRING,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
}
_DEFAULTS: dict[int, Any] = {
    FieldDescriptor.TYPE_STRING: "",
    FieldDescriptor.TYPE_INT64: 0,
    FieldDescriptor.TYPE_INT32: 0,
    FieldDescriptor.TYPE_BOOL: False,
}
_MANY = 200     # most items in one repeated field


def _message_class(descriptor: Descriptor) -> type[Message]:
    cls: type[Message] = getattr(pb, descriptor.name)
    return cls


def _is_flat(descriptor: Descriptor) -> bool:
    """A message of scalars only (a depth level, a deal): cheap enough to repeat 200 times."""
    return all(f.type != FieldDescriptor.TYPE_MESSAGE for f in descriptor.fields)


def _many_items(descriptor: Descriptor) -> st.SearchStrategy[list[Message]]:
    """50 to 200 items derived from one drawn item (little entropy: no data-too-large)."""
    cls = _message_class(descriptor)

    def build(args: tuple[Message, int]) -> list[Message]:
        template, count = args
        items = []
        for i in range(count):
            item = cls()
            item.CopyFrom(template)
            for field in descriptor.fields:
                if field.type == FieldDescriptor.TYPE_STRING and field.name in ("price", "bidPrice"):
                    setattr(item, field.name, f"{65000 + i}.{i % 100:02d}")
                elif field.type == FieldDescriptor.TYPE_INT64:
                    setattr(item, field.name, (getattr(item, field.name) + i) % (_INT64_MAX + 1))
            items.append(item)
        return items
    return st.tuples(_messages(descriptor), st.integers(50, _MANY)).map(build)


_cache: dict[str, st.SearchStrategy[Message]] = {}


def _messages(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Messages of one type; each field absent, at its default, or drawn."""
    strategy = _cache.get(descriptor.full_name)
    if strategy is not None:
        return strategy
    cls = _message_class(descriptor)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            item = field.message_type
            if _is_flat(item):
                fields[field.name] = st.one_of(st.lists(_messages(item), max_size=6), _many_items(item))
            else:
                fields[field.name] = st.lists(_messages(item), max_size=3)
        else:
            value = _SCALARS[field.type]
            # Optional fields at their default are present on the wire and in the dict.
            fields[field.name] = st.one_of(st.just(_DEFAULTS[field.type]), value) if field.has_presence else value
    strategy = st.fixed_dictionaries({}, optional=fields).map(lambda kwargs: cls(**kwargs))
    _cache[descriptor.full_name] = strategy
    return strategy


def _bodies(body_fields: Optional[Iterable[str]]) -> st.SearchStrategy[tuple[str, Message]]:
    names = list(BODY_FIELDS if body_fields is None else body_fields)
    unknown = set(names) - set(BODY_FIELDS)
    if unknown or not names:
        raise ValueError(f"not body fields of PushDataV3ApiWrapper: {sorted(unknown) or names}")
    return st.one_of([st.tuples(st.just(name), _messages(_WRAPPER.fields_by_name[name].message_type))
                      for name in names])


def wrappers(body_fields: Optional[Iterable[str]] = None) -> st.SearchStrategy[Message]:
    """``PushDataV3ApiWrapper`` messages whose body is one of ``body_fields`` (default: any).

    The channel is absent, empty, a realistic name or any text; ``symbol``,
    ``symbolId``, ``createTime`` and ``sendTime`` are each absent, at their default
    (present: they are ``optional``) or drawn.
    """
    header = st.fixed_dictionaries({}, optional={
        "channel": st.one_of(st.sampled_from(CHANNELS), _STRING),
        "symbol": st.one_of(st.just(""), st.sampled_from(["BTCUSDT", "ETHUSDT"]), _STRING),
        "symbolId": st.one_of(st.just(""), _STRING),
        "createTime": st.one_of(st.just(0), _INT64),
        "sendTime": st.one_of(st.just(0), _INT64),
    })

    def build(args: tuple[dict[str, Any], tuple[str, Message]]) -> Message:
        fields, (name, body) = args
        kwargs: dict[str, Any] = {**fields, name: body}
        return pb.PushDataV3ApiWrapper(**kwargs)
    return st.tuples(header, _bodies(body_fields)).map(build)


def push_bytes(body_fields: Optional[Iterable[str]] = None) -> st.SearchStrategy[bytes]:
    """Serialized ``wrappers(body_fields)``: valid pushes."""
    return wrappers(body_fields).map(lambda m: m.SerializeToString())


# ---------------------------------------------------------------------- wire level

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_MAX_FIELD = 2 ** 29 - 1


@dataclass
class WireField:
    """One field as it is on the wire.

    ``value`` is an int (varint, i64, i32), bytes (len), a list of ``WireField`` (len of
    a known message field, parsed; or a group's contents). ``pad`` adds over-long
    varint bytes to a varint value (still valid up to 10 bytes in all).
    """

    number: int
    wire_type: int
    value: Union[int, bytes, list["WireField"]]
    descriptor: Optional[Descriptor] = None     # of a parsed message value
    pad: int = 0


def _varint(value: int, pad: int = 0) -> bytes:
    value &= 2 ** 64 - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value or pad:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            break
        if not value:
            # Over-long form: continuation bytes carrying zeros, ending with a 0x00.
            out.extend(b"\x80" * (pad - 1) + b"\x00")
            break
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def parse_wire(data: bytes, descriptor: Descriptor = _WRAPPER) -> list[WireField]:
    """Parse valid serialized bytes into wire fields, known message fields recursively."""
    fields: list[WireField] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: Union[int, bytes, list[WireField]]
        nested: Optional[Descriptor] = None
        if wire_type == _VARINT:
            value, pos = _read_varint(data, pos)
        elif wire_type == _I64:
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire_type == _I32:
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        elif wire_type == _LEN:
            length, pos = _read_varint(data, pos)
            raw, pos = data[pos:pos + length], pos + length
            known = descriptor.fields_by_number.get(number)
            if known is not None and known.type == FieldDescriptor.TYPE_MESSAGE:
                nested = known.message_type
                value = parse_wire(raw, nested)
            else:
                value = raw
        else:
            raise ValueError(f"unexpected wire type {wire_type} in generated bytes")
        fields.append(WireField(number, wire_type, value, nested))
    return fields


def serialize_wire(fields: Sequence[WireField]) -> bytes:
    """The bytes of wire fields (the inverse of ``parse_wire``)."""
    out = bytearray()
    for field in fields:
        out += _varint(field.number << 3 | field.wire_type)
        value = field.value
        if field.wire_type == _VARINT:
            assert isinstance(value, int)
            out += _varint(value, field.pad)
        elif field.wire_type == _I64:
            assert isinstance(value, int)
            out += value.to_bytes(8, "little")
        elif field.wire_type == _I32:
            assert isinstance(value, int)
            out += value.to_bytes(4, "little")
        elif field.wire_type == _LEN:
            raw = value if isinstance(value, bytes) else serialize_wire(value)  # type: ignore[arg-type]
            out += _varint(len(raw)) + raw
        elif field.wire_type == _SGROUP:
            assert isinstance(value, list)
            out += serialize_wire(value) + _varint(field.number << 3 | _EGROUP)
    return bytes(out)


def _containers(fields: list[WireField]) -> list[tuple[list[WireField], Optional[Descriptor]]]:
    """Every field list of the tree (the top level, each parsed message) with its descriptor."""
    found: list[tuple[list[WireField], Optional[Descriptor]]] = [(fields, _WRAPPER)]
    index = 0
    while index < len(found):
        for field in found[index][0]:
            if isinstance(field.value, list) and field.descriptor is not None:
                found.append((field.value, field.descriptor))
        index += 1
    return found


def _clone(field: WireField) -> WireField:
    value = [_clone(f) for f in field.value] if isinstance(field.value, list) else field.value
    return WireField(field.number, field.wire_type, value, field.descriptor, field.pad)


def _unknown_number(descriptor: Optional[Descriptor]) -> st.SearchStrategy[int]:
    known = set() if descriptor is None else set(descriptor.fields_by_number)
    return st.one_of(st.sampled_from([2, 7, 15, 16, 99, 300, 316, 2047, 2048, _MAX_FIELD]),
                     st.integers(1, _MAX_FIELD)).filter(lambda n: n not in known)


def _unknown_field(number: int) -> st.SearchStrategy[WireField]:
    group_body = st.lists(st.tuples(st.integers(1, 50), st.integers(0, 2 ** 64 - 1)), max_size=3).map(
        lambda pairs: [WireField(n, _VARINT, v) for n, v in pairs])
    return st.one_of(
        st.integers(0, 2 ** 64 - 1).map(lambda v: WireField(number, _VARINT, v)),
        st.integers(0, 2 ** 64 - 1).map(lambda v: WireField(number, _I64, v)),
        st.binary(max_size=40).map(lambda v: WireField(number, _LEN, v)),
        group_body.map(lambda v: WireField(number, _SGROUP, v)),
        st.integers(0, 2 ** 32 - 1).map(lambda v: WireField(number, _I32, v)),
    )


@st.composite
def _mutate_tree(draw: st.DrawFn, fields: list[WireField]) -> None:
    """Apply one structural mutation somewhere in the tree (the bytes stay well-formed)."""
    containers = _containers(fields)
    target, descriptor = draw(st.sampled_from(containers))
    position = draw(st.integers(0, len(target)))
    action = draw(st.sampled_from(["unknown", "duplicate", "wrong_wire_type", "long_varint", "other_body"]))
    if action == "duplicate" and target:
        copy = _clone(draw(st.sampled_from(target)))
        if isinstance(copy.value, int):
            copy.value = draw(st.integers(0, 2 ** 64 - 1)) if copy.wire_type == _VARINT else copy.value
        elif isinstance(copy.value, bytes):
            copy.value = draw(_STRING).encode()
        target.insert(position, copy)
    elif action == "wrong_wire_type" and descriptor is not None and descriptor.fields:
        known = draw(st.sampled_from(list(descriptor.fields)))
        right = _LEN if known.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE) else _VARINT
        wrong = draw(_unknown_field(known.number).filter(lambda f: f.wire_type != right))
        target.insert(position, wrong)
    elif action == "long_varint" and any(f.wire_type == _VARINT for f in target):
        varint = draw(st.sampled_from([f for f in target if f.wire_type == _VARINT]))
        length = len(_varint(varint.value))     # type: ignore[arg-type]
        if length < 10:
            varint.pad = draw(st.integers(1, 10 - length))
    elif action == "other_body" and target is fields:
        name, body = draw(_bodies(None))
        number = _WRAPPER.fields_by_name[name].number
        target.insert(position, WireField(number, _LEN, parse_wire(body.SerializeToString(), body.DESCRIPTOR),
                                          body.DESCRIPTOR))
    else:
        target.insert(position, draw(_unknown_field(draw(_unknown_number(descriptor)))))


@st.composite
def _damage(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte-level damage: truncation, bit flips, an inserted or a deleted byte run."""
    action = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
    if action == "truncate" or not data:
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    buffer = bytearray(data)
    if action == "flip":
        for _ in range(draw(st.integers(1, 4))):
            index = draw(st.integers(0, len(buffer) - 1))
            buffer[index] ^= 1 << draw(st.integers(0, 7))
    elif action == "insert":
        index = draw(st.integers(0, len(buffer)))
        buffer[index:index] = draw(st.binary(min_size=1, max_size=8))
    else:
        index = draw(st.integers(0, len(buffer) - 1))
        del buffer[index:index + draw(st.integers(1, 8))]
    return bytes(buffer)


@st.composite
def _mutated(draw: st.DrawFn, body_fields: Optional[Iterable[str]]) -> bytes:
    message = draw(wrappers(body_fields))
    fields = parse_wire(message.SerializeToString())
    for _ in range(draw(st.integers(0, 3))):
        draw(_mutate_tree(fields))
    data = serialize_wire(fields)
    if draw(st.booleans()):
        data = draw(_damage(data))
    return data


def mutated_push_bytes(body_fields: Optional[Iterable[str]] = None) -> st.SearchStrategy[bytes]:
    """Serialized wrappers after structural mutations and, half of the time, byte damage."""
    return _mutated(body_fields)


def reference_or_refused(data: bytes) -> Optional[dict[str, Any]]:
    """The reference decoder's dict of ``data``, or None where it refuses the bytes.

    Only the refusals ``decode_reference`` documents count as one (a
    ``DecodeError``, a ``UnicodeDecodeError``, "push without a body"); any
    other exception is a bug of the oracle and propagates, so a differential
    test cannot mistake it for a refusal that agrees with the decoder's.
    """
    try:
        return decode_reference(data)
    except (DecodeError, UnicodeDecodeError):
        return None
    except ValueError as exc:
        if str(exc) != "push without a body":
            raise
        return None
