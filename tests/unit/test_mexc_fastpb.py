"""The fast MEXC decoder against protobuf's own parser and json_format, push for push."""
from __future__ import annotations

from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchanges.mexc._fastpb import PushDecoder
from exchanges.mexc.pb import PushDataV3ApiWrapper
from exchanges.mexc.reference import BODY_FIELDS, decode_reference, encode_push
from tests.mexc_strategies import mutated_push_bytes, push_bytes

DECODER = PushDecoder(PushDataV3ApiWrapper.DESCRIPTOR)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(data: bytes) -> Optional[dict[str, Any]]:
    """The reference result, or None where the reference refuses the bytes."""
    try:
        return decode_reference(data)
    except Exception:   # DecodeError, UnicodeDecodeError, "push without a body"
        return None


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
