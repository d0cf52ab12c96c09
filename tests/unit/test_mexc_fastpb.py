"""The fast MEXC decoder against protobuf's own parser and json_format, push for push."""
from __future__ import annotations

from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchanges.mexc._fastpb import PushDecoder
from exchanges.mexc.pb import PushDataV3ApiWrapper
from exchanges.mexc.reference import BODY_FIELDS, encode_push
from tests.mexc_strategies import mutated_push_bytes, push_bytes, reference_or_refused

DECODER = PushDecoder(PushDataV3ApiWrapper.DESCRIPTOR)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# The reference result, or None where it refuses the bytes (its documented refusals only).
reference = reference_or_refused


def fast(data: Any) -> Optional[dict[str, Any]]:
    errors = DECODER.parse_errors
    result = DECODER.decode(data)
    assert (result is None) == (DECODER.parse_errors == errors + 1)
    return result


@pytest.mark.parametrize("body_field", BODY_FIELDS)
@SETTINGS
@given(data=st.data())
def test_every_body_type_decodes_as_the_reference_does(body_field: str, data: st.DataObject) -> None:
    payload = data.draw(push_bytes([body_field]))
    expected = reference(payload)
    assert expected is not None
    assert fast(payload) == expected
    assert fast(memoryview(payload)) == expected          # read in place from any buffer


@SETTINGS
@given(payload=mutated_push_bytes())
def test_mutated_and_truncated_pushes_fail_or_agree(payload: bytes) -> None:
    assert fast(payload) == reference(payload)


@SETTINGS
@given(payload=st.binary(max_size=64))
def test_random_bytes_fail_or_agree(payload: bytes) -> None:
    assert fast(payload) == reference(payload)


def test_a_push_without_a_body_is_refused() -> None:
    assert fast(b"") is None and DECODER.last_error == "push without a body"
    assert fast(b"\x0a\x03abc") is None


def test_invalid_utf8_is_refused_whole() -> None:
    good = encode_push("spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT", "publicAggreDeals",
                       {"deals": [{"price": "1", "quantity": "2"}]})
    bad = good.replace(b"BTCUSDT", b"BTC\xffSDT")
    assert reference(bad) is None
    assert fast(bad) is None and DECODER.last_error == "invalid UTF-8 in a string field"


def test_captured_event_time_and_versions() -> None:
    payload = encode_push("spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "publicAggreDepths",
                          {"asks": [{"price": "1", "quantity": "2"}], "fromVersion": "101", "toVersion": "104"},
                          symbol="BTCUSDT", send_time=1_700_000_000_123)
    assert fast(payload) == reference(payload)
    assert (DECODER.send_time_ms, DECODER.first_version, DECODER.last_version) == (1_700_000_000_123, 101, 104)
    deals = encode_push("spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT", "publicAggreDeals", {"deals": []})
    assert fast(deals) is not None
    assert (DECODER.send_time_ms, DECODER.first_version, DECODER.last_version) == (-1, -1, -1)


def varint(value: int, pad_to: int = 0) -> bytes:
    """A varint, padded with continuation bytes to ``pad_to`` bytes (protobuf allows up to 10)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value or len(out) + 1 < pad_to:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


BODY = encode_push("spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT", "publicAggreDeals",
                   {"deals": [{"price": "1", "quantity": "2"}]})


def group(number: int, depth: int) -> bytes:
    """``depth`` unknown groups nested in one another."""
    return varint(number << 3 | 3) * depth + varint(number << 3 | 4) * depth


@pytest.mark.parametrize("name, payload", [
    ("tag padded to 5 bytes", varint(1 << 3 | 2, 5) + b"\x01c" + BODY),
    ("tag padded to 6 bytes", varint(1 << 3 | 2, 6) + b"\x01c" + BODY),
    ("length padded to 5 bytes", b"\x0a" + varint(1, 5) + b"c" + BODY),
    ("length padded to 6 bytes", b"\x0a" + varint(1, 6) + b"c" + BODY),
    ("value padded to 10 bytes", varint(5 << 3, 1) + varint(7, 10) + BODY),
    ("100 nested unknown groups", group(100, 100) + BODY),
    ("101 nested unknown groups", group(100, 101) + BODY),
    ("field 0 inside a group", varint(100 << 3 | 3) + b"\x00\x01" + varint(100 << 3 | 4) + BODY),
    ("mismatched end group", varint(100 << 3 | 3) + varint(101 << 3 | 4) + BODY),
    ("end group at top level", varint(100 << 3 | 4) + BODY),
])
def test_wire_format_edges_agree_with_upb(name: str, payload: bytes) -> None:
    assert fast(payload) == reference(payload), name


def test_a_replaced_body_does_not_leave_its_versions_behind() -> None:
    depth = encode_push("spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "publicAggreDepths",
                        {"fromVersion": "100", "toVersion": "105"})
    combined = depth + BODY            # a later oneof member replaces the depth body
    assert fast(combined) == reference(combined)
    assert (DECODER.first_version, DECODER.last_version) == (-1, -1)
