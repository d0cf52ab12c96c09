"""The bus's subject and message-id format (fastws.bus.subjects)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from fastws.bus.subjects import (
    message_id,
    parse_message_id,
    parse_subject,
    stream_from_token,
    stream_subject,
    stream_token,
)


@given(st.text(min_size=1, max_size=60))
def test_any_stream_name_round_trips_through_a_subject_safe_token(stream: str) -> None:
    token = stream_token(stream)
    assert not any(c in token for c in ".*> \t\r\n@")
    assert stream_from_token(token) == stream
    subject = stream_subject("binance", stream)
    assert subject.count(".") == 2
    assert parse_subject(subject) == ("binance", stream)


@given(st.text(min_size=1, max_size=40), st.integers(min_value=0, max_value=2**64 - 1))
def test_message_ids_carry_exchange_stream_and_digest(stream: str, digest: int) -> None:
    assert parse_message_id(message_id("mexc", stream, digest)) == ("mexc", stream, digest)


def test_exchange_stream_names_read_as_expected() -> None:
    assert stream_subject("binance", "btcusdt@depth@100ms") == "md.binance.btcusdt%40depth%40100ms"
    assert stream_subject("mexc", "spot@public.deals.v3.api.pb@BTCUSDT", prefix="x") == (
        "x.mexc.spot%40public%2Edeals%2Ev3%2Eapi%2Epb%40BTCUSDT"
    )


@pytest.mark.parametrize("token", ["", "%41", "a%4", "%zz", "a.b", "a b", "a%2e"])
def test_tokens_that_no_stream_makes_are_refused(token: str) -> None:
    with pytest.raises(ValueError):
        stream_from_token(token)


@pytest.mark.parametrize(
    "subject", ["md.binance", "md.Binance.x", "xx.binance.x", "md.binance.x.y", "md.bin ance.x"]
)
def test_subjects_that_are_not_stream_subjects_are_refused(subject: str) -> None:
    with pytest.raises(ValueError):
        parse_subject(subject)
