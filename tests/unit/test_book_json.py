"""Depth levels read from raw JSON bytes into the compiled book.

Frames have the real Binance shapes (PROTOCOLS.md): the ``depthUpdate`` diff
(bare and in a combined-stream wrapper), the partial depth and the REST
snapshot (also pretty-printed and with keys reordered). The differential test
feeds random diffs as encoded frames to the book and the same levels to the
reference book of ``test_book``; malformed frames raise ``ValueError``, leave
the levels untouched and the book invalid.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastws.book import JsonBookReader, OrderBook, apply_json_diff, apply_json_snapshot
from tests.unit.test_book import ReferenceBook, assert_same, steps


def depth_update(first_id: int, last_id: int, bids: list, asks: list, *, combined: bool = False,
                 symbol: str = "BTCUSDT", event_time: int = 1_700_000_000_123) -> bytes:
    """A Binance ``depthUpdate`` frame (optionally in the ``/stream`` wrapper)."""
    data = {"e": "depthUpdate", "E": event_time, "s": symbol, "U": first_id, "u": last_id,
            "b": [list(level) for level in bids], "a": [list(level) for level in asks]}
    if combined:
        data = {"stream": f"{symbol.lower()}@depth@100ms", "data": data}
    return json.dumps(data, separators=(",", ":")).encode()


def snapshot(last_update_id: int, bids: list, asks: list, **dumps: object) -> bytes:
    """A Binance REST ``/api/v3/depth`` body (the partial depth stream has the same shape)."""
    body = {"lastUpdateId": last_update_id, "bids": [list(level) for level in bids],
            "asks": [list(level) for level in asks]}
    return json.dumps(body, **dumps).encode()   # type: ignore[arg-type]


BIDS = [("4.00000000", "431.00000000"), ("3.99000000", "12.50000000")]
ASKS = [("4.00000200", "12.00000000"), ("4.10000000", "0.00100000")]


def synced_book() -> OrderBook:
    book = OrderBook("BTCUSDT")
    assert apply_json_snapshot(book, snapshot(1027024, BIDS, ASKS)) == 1027024
    return book


def test_rest_snapshot_sets_the_book_its_id_and_its_scales() -> None:
    book = synced_book()
    assert book.valid and book.update_id == 1027024
    assert (book.price_scale, book.qty_scale) == (8, 8)
    assert book.bids_exact() == BIDS and book.asks_exact() == ASKS
    assert book.best_bid() == (4.0, 431.0)


@pytest.mark.parametrize("combined", [False, True])
def test_depth_update_applies_levels_and_returns_ids(combined: bool) -> None:
    book = synced_book()
    frame = depth_update(1027025, 1027030, [("4.00000000", "0.00000000"), ("4.00000100", "1.00000000")],
                         [("4.10000000", "0.00000000"), ("4.20000000", "3.00000000")], combined=combined)
    assert apply_json_diff(book, frame) == (1027025, 1027030, 1_700_000_000_123)
    assert book.update_id == 1027030 and book.exchange_time == 1_700_000_000_123
    assert book.bids_exact() == [("4.00000100", "1.00000000"), ("3.99000000", "12.50000000")]
    assert book.asks_exact() == [("4.00000200", "12.00000000"), ("4.20000000", "3.00000000")]


def test_whitespace_and_key_order_do_not_matter() -> None:
    book = OrderBook("BTCUSDT")
    pretty = snapshot(7, BIDS, ASKS, indent=4)
    assert b"\n    " in pretty
    reordered = json.dumps({"asks": ASKS, "bids": BIDS, "lastUpdateId": 7}, indent="\t").encode()
    for body in (pretty, reordered, b" \r\n" + pretty + b"\n "):
        book.clear()
        assert apply_json_snapshot(book, body) == 7
        assert book.bids_exact() == BIDS and book.asks_exact() == ASKS
    diff = (b'{ "a" : [ [ "4.10000000" , "0" ] ] , "u":9,\n "b":[],"s":"BTC\\"USDT",'
            b'"x":{"y":[1,2.5e3,true,null,{"z":"\\u0041"}]},"U" : 8 , "E":"123"}')
    assert apply_json_diff(book, diff) == (8, 9, 123)
    assert book.asks_exact() == ASKS[:1]


def test_partial_depth_is_a_snapshot_and_extra_level_fields_are_skipped() -> None:
    book = OrderBook("X", 2, 1)
    body = b'{"lastUpdateId":160,"bids":[["0.01","5","ignored"]],"asks":[["0.02","7",[1],{"k":2}]]}'
    assert apply_json_snapshot(book, body) == 160
    assert book.bids_exact() == [("0.01", "5.0")] and book.asks_exact() == [("0.02", "7.0")]
    # the partial depth stream on a combined connection
    wrapped = b'{"stream":"bnbbtc@depth5","data":' + snapshot(161, [("0.03", "1")], []) + b"}"
    assert apply_json_snapshot(book, wrapped) == 161
    assert book.bids_exact() == [("0.03", "1.0")] and book.asks() == []


def test_any_buffer_is_read() -> None:
    frame = depth_update(1027025, 1027025, [("3.98000000", "1.00000000")], [])
    for data in (bytearray(frame), memoryview(frame), memoryview(b"xx" + frame)[2:]):
        book = synced_book()
        apply_json_diff(book, data)
        assert book.bid_count == 3


def test_stage_then_commit_or_discard() -> None:
    book = synced_book()
    reader = JsonBookReader()
    frame = depth_update(1027025, 1027026, [("3.00000000", "1.00000000")], [])
    assert reader.stage_diff(book, frame) == (1027025, 1027026, 1_700_000_000_123)
    assert book.bid_count == 2 and book.update_id == 1027024     # nothing applied yet
    book.discard_staged()
    book.commit_staged(1027026)
    assert book.bid_count == 2 and book.update_id == 1027026
    reader.stage_diff(book, frame)
    book.commit_staged(1027026, exchange_time=5)
    assert book.bid_count == 3 and book.exchange_time == 5


def test_keys_are_configuration() -> None:
    reader = JsonBookReader(bids="bids", asks="asks", first_id="fromVersion", last_id="toVersion",
                            event_time="ts", snapshot_bids="b", snapshot_asks="a", snapshot_id="version")
    book = OrderBook("BTCUSDT", 2, 4)
    assert reader.apply_snapshot(book, b'{"version":"10","b":[["1.50","2"]],"a":[]}') == 10
    frame = b'{"fromVersion":"11","toVersion":"12","ts":99,"bids":[["1.50","0"]],"asks":[["1.60","0.5"]]}'
    assert apply_json_diff(book, frame, reader) == (11, 12, 99)
    assert book.bids() == [] and book.asks_exact() == [("1.60", "0.5000")]
    # without a first id the first is the last
    assert reader.apply_diff(book, b'{"toVersion":13,"bids":[],"asks":[]}') == (13, 13, 0)


GOOD_DIFF = depth_update(1027025, 1027026, [("3.98000000", "1.00000000")], [("4.20000000", "1.00000000")])


@pytest.mark.parametrize("frame, message", [
    (b"", "truncated"),
    (b"not json", "expected '{'"),
    (b"[]", "expected '{'"),
    (b'{"U":1,"u":2,"b":[],"a":[]} x', "trailing bytes"),
    (b'{"U":1,"u":2,"b":[]}', "no bids or no asks"),
    (b'{"U":1,"b":[],"a":[]}', "no update id"),
    (b'{"U":1,"u":-2,"b":[],"a":[]}', "non-negative integer"),
    (b'{"U":1,"u":2.5,"b":[],"a":[]}', "expected an integer"),
    (b'{"U":1,"u":99999999999999999999,"b":[],"a":[]}', "integer too large"),
    (b'{"U":1,"u":2,"b":[["1.000000001","1"]],"a":[]}', "more decimals than the scale"),
    (b'{"U":1,"u":2,"b":[["-1","1"]],"a":[]}', "negative"),
    (b'{"U":1,"u":2,"b":[["abc","1"]],"a":[]}', "not a decimal"),
    (b'{"U":1,"u":2,"b":[[1.5,"1"]],"a":[]}', "expected '\"'"),
    (b'{"U":1,"u":2,"b":[["1"]],"a":[]}', "expected ','"),
    (b'{"U":1,"u":2,"b":[["1","1"]],"a":{}}', "expected '\\['"),
    (b'{"U":1,"u":2,"b":[["1 ","1"]],"a":[]}', "not a decimal string"),
    (b'{"U":1,"u":2,"b":[["1","1"],],"a":[]}', "expected '\\['"),
    (b'{"U":1,"u":2,"b":[["1","1"]] "a":[]}', "expected '}'"),
    (b'{"x":' + b"[" * 40 + b"]" * 40 + b',"U":1,"u":2,"b":[],"a":[]}', "nested too deep"),
])
def test_malformed_diffs_raise_and_leave_the_levels_and_the_book_invalid(frame: bytes, message: str) -> None:
    book = synced_book()
    before = (book.bids_exact(), book.asks_exact(), book.update_id)
    with pytest.raises(ValueError, match=message):
        apply_json_diff(book, frame)
    assert not book.valid
    assert (book.bids_exact(), book.asks_exact(), book.update_id) == before


def test_every_truncation_of_a_diff_and_a_snapshot_is_refused() -> None:
    body = snapshot(1027024, BIDS, ASKS, indent=2)
    for frame, apply in ((GOOD_DIFF, apply_json_diff), (body, apply_json_snapshot)):
        for cut in range(len(frame)):
            book = synced_book()
            before = (book.bids_exact(), book.asks_exact(), book.update_id)
            with pytest.raises(ValueError, match="malformed depth JSON"):
                apply(book, frame[:cut])
            assert not book.valid
            assert (book.bids_exact(), book.asks_exact(), book.update_id) == before


@pytest.mark.parametrize("body, message", [
    (b'{"bids":[],"asks":[]}', "no update id"),
    (b'<html>502 Bad Gateway</html>', "expected '{'"),
    (b'{"code":-1121,"msg":"Invalid symbol."}', "no bids or no asks"),
    (b'{"lastUpdateId":1,"bids":[["1.0","x"]],"asks":[]}', "not a decimal"),
])
def test_bad_snapshots_raise_and_leave_the_book_invalid(body: bytes, message: str) -> None:
    for book in (synced_book(), OrderBook("BTCUSDT")):
        before = (book.bids_exact(), book.asks_exact(), book.update_id, book.price_scale)
        with pytest.raises(ValueError, match=message):
            apply_json_snapshot(book, body)
        assert not book.valid
        assert (book.bids_exact(), book.asks_exact(), book.update_id, book.price_scale) == before


def test_a_diff_needs_the_scales_first() -> None:
    with pytest.raises(ValueError, match="no scales yet"):
        apply_json_diff(OrderBook("X"), GOOD_DIFF)


@settings(max_examples=200, deadline=None)
@given(steps=steps, combined=st.booleans(), indent=st.sampled_from([None, 1]))
def test_json_frames_agree_with_the_reference_after_every_step(steps: list, combined: bool,
                                                               indent: int | None) -> None:
    book = OrderBook("BTCUSDT")
    ref = ReferenceBook()
    first = ([("100.00", "1.000")], [("100.01", "0.000")])
    apply_json_snapshot(book, snapshot(1, *first, indent=indent))
    ref.snapshot(*first)
    for update_id, (kind, bids, asks) in enumerate(steps, start=2):
        if kind == "snapshot":
            assert apply_json_snapshot(book, snapshot(update_id, bids, asks, indent=indent)) == update_id
            ref.snapshot(bids, asks)
        else:
            frame = depth_update(update_id, update_id, bids, asks, combined=combined)
            assert apply_json_diff(book, frame)[:2] == (update_id, update_id)
            ref.diff(bids, asks)
        assert book.valid and book.update_id == update_id
        assert_same(book, ref)
