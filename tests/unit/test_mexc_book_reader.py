"""MEXC depth pushes read from protobuf wire bytes into the compiled book (``MexcBookReader``).

Pushes are built with the protobuf classes of ``exchanges.mexc.pb`` (the
reference codec), so the reader is checked against the schema, not against
itself. A differential test applies random snapshots, limit pushes and
aggregated pushes to the compiled book and to a dict-of-Decimal reference.
"""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanges.mexc._fastpb import BookRoutes, MexcBookReader
from exchanges.mexc.pb import PublicAggreDepthV3ApiItem, PushDataV3ApiWrapper
from fastws.book import OrderBook, parse_decimal
from tests.unit.test_book import PRICE_SCALE, QTY_SCALE, ReferenceBook, assert_same, levels

CHANNEL = "spot@public.aggre.depth.v3.api.pb@10ms@BTCUSDT"
LIMIT_CHANNEL = "spot@public.limit.depth.v3.api.pb@BTCUSDT@20"
Levels = list[tuple[str, str]]


def aggre_push(first: Optional[str], last: Optional[str], bids: Levels = (), asks: Levels = (),  # type: ignore[assignment]
               send_time: Optional[int] = 1_700_000_000_123) -> bytes:
    """A serialized aggregated depth push (versions as MEXC writes them: strings)."""
    msg = PushDataV3ApiWrapper(channel=CHANNEL, symbol="BTCUSDT")
    if send_time is not None:
        msg.sendTime = send_time
    body = msg.publicAggreDepths
    body.eventType = "spot@public.aggre.depth.v3.api.pb@10ms"
    if first is not None:
        body.fromVersion = first
    if last is not None:
        body.toVersion = last
    add_levels(body, bids, asks)
    return msg.SerializeToString()


def limit_push(version: str, bids: Levels, asks: Levels) -> bytes:
    """A serialized limit depth push (a whole top N)."""
    msg = PushDataV3ApiWrapper(channel=LIMIT_CHANNEL, symbol="BTCUSDT", sendTime=1_700_000_000_456)
    body = msg.publicLimitDepths
    body.eventType = "spot@public.limit.depth.v3.api.pb"
    body.version = version
    add_levels(body, bids, asks)
    return msg.SerializeToString()


def add_levels(body: Any, bids: Levels, asks: Levels) -> None:
    """Append ``(price, quantity)`` items to a depth body's bids and asks."""
    for side, items in ((body.bids, bids), (body.asks, asks)):
        for price, qty in items:
            item = side.add()
            item.price = price
            item.quantity = qty


def snapshot(update_id: int, bids: Levels, asks: Levels) -> bytes:
    """A REST snapshot as MEXC answers ``GET /api/v3/depth``."""
    return json.dumps({"lastUpdateId": update_id, "bids": bids, "asks": asks}).encode()


SNAPSHOT = snapshot(100, [("10.00", "1.000"), ("9.00", "2.000")], [("11.00", "1.000"), ("12.00", "2.000")])


@pytest.fixture
def synced() -> tuple[MexcBookReader, OrderBook]:
    reader = MexcBookReader()
    book = OrderBook("BTCUSDT")
    assert reader.apply_snapshot(book, SNAPSHOT) == 100
    assert book.valid and (book.price_scale, book.qty_scale) == (2, 3)
    return reader, book


def test_a_push_is_staged_then_committed(synced: tuple[MexcBookReader, OrderBook]) -> None:
    reader, book = synced
    data = aggre_push("101", "103", bids=[("10.00", "0"), ("9.50", "1.5")], asks=[("11.00", "4")])
    assert reader.stage_diff(book, data) == (101, 103, 1_700_000_000_123)
    assert book.bids_exact(3) == [("10.00", "1.000"), ("9.00", "2.000")]     # staged, not applied
    book.commit_staged(103, 1_700_000_000_123)
    assert book.update_id == 103 and book.exchange_time == 1_700_000_000_123
    assert book.bids_exact(3) == [("9.50", "1.500"), ("9.00", "2.000")]
    assert book.asks_exact(3) == [("11.00", "4.000"), ("12.00", "2.000")]


def test_any_buffer_is_read_in_place(synced: tuple[MexcBookReader, OrderBook]) -> None:
    reader, book = synced
    data = aggre_push("101", "101", bids=[("9.99", "1")])
    assert reader.stage_diff(book, memoryview(bytearray(data))) == (101, 101, 1_700_000_000_123)
    book.discard_staged()
    assert book.bids_exact(1) == [("10.00", "1.000")]


def test_no_send_time_gives_event_time_zero(synced: tuple[MexcBookReader, OrderBook]) -> None:
    reader, book = synced
    assert reader.stage_diff(book, aggre_push("101", "101", send_time=None)) == (101, 101, 0)


def test_unknown_fields_and_wrapper_fields_are_skipped(synced: tuple[MexcBookReader, OrderBook]) -> None:
    reader, book = synced
    msg = PushDataV3ApiWrapper.FromString(aggre_push("101", "102", asks=[("11.50", "1")]))
    msg.symbolId = "abc"
    msg.createTime = 5
    msg.publicAggreDepths.lastOrderCreateTime = 7
    # An unknown field (number 20, varint 1: tag 0xA0 0x01) at the end of the wrapper.
    data = msg.SerializeToString() + bytes([0xA0, 0x01, 0x01])
    assert reader.stage_diff(book, data) == (101, 102, 1_700_000_000_123)
    book.commit_staged(102)
    assert book.asks_exact(2) == [("11.00", "1.000"), ("11.50", "1.000")]


BAD_PUSHES = [
    (aggre_push("101", "101", bids=[("abc", "1")]), "not a decimal"),
    (aggre_push("101", "101", bids=[("-1", "1")]), "negative"),
    (aggre_push("101", "101", asks=[("11", "12345678901234567890")]), "too many digits"),
    (aggre_push("101", "101", asks=[("11", "")]), "without a price or a quantity"),   # proto3 leaves "" out
    (aggre_push("101", "101", asks=[("", "1")]), "without a price or a quantity"),
    (aggre_push("101", "101", bids=[("10.001", "1")]), "more decimals"),
    (aggre_push(None, "101"), "without fromVersion"),
    (aggre_push("101", "x1"), "not a version"),
    (aggre_push("101", "101")[:-3], "truncated|does not parse"),
    (PushDataV3ApiWrapper(channel=CHANNEL, publicAggreDeals={}).SerializeToString(), "not a depth push"),
    (limit_push("5", [("10", "1")], []), "limit depth push on a diff stream"),
    (b"\x0a\xff", "does not parse"),
]


@pytest.mark.parametrize("data, message", BAD_PUSHES)
def test_a_bad_push_raises_and_leaves_the_levels(synced: tuple[MexcBookReader, OrderBook], data: bytes,
                                                 message: str) -> None:
    reader, book = synced
    reader.stage_diff(book, aggre_push("101", "101", bids=[("9.75", "3")]))    # staged before: dropped
    with pytest.raises(ValueError, match=message):
        reader.stage_diff(book, data)
    assert not book.valid
    book.commit_staged(102)                   # nothing was left staged
    assert book.bids_exact(3) == [("10.00", "1.000"), ("9.00", "2.000")]


def test_a_book_without_scales_refuses_a_push() -> None:
    with pytest.raises(ValueError, match="no scales"):
        MexcBookReader().stage_diff(OrderBook("BTCUSDT"), aggre_push("1", "1"))


def test_a_level_finer_than_the_scale_makes_the_next_snapshot_rescale(
        synced: tuple[MexcBookReader, OrderBook]) -> None:
    reader, book = synced
    with pytest.raises(ValueError, match="more decimals"):
        reader.stage_diff(book, aggre_push("101", "101", bids=[("10.005", "1.25")], asks=[("11", "0.0001")]))
    assert reader.needed_scales == {"BTCUSDT": (3, 4)}
    # The same snapshot again (2 and 3 decimals): the book is rebuilt at 3 and 4.
    assert reader.apply_snapshot(book, SNAPSHOT) == 100
    assert (book.price_scale, book.qty_scale) == (3, 4) and book.valid
    assert reader.needed_scales == {}
    assert book.bids_exact(2) == [("10.000", "1.0000"), ("9.000", "2.0000")]
    assert reader.stage_diff(book, aggre_push("101", "101", bids=[("10.005", "1.25")])) == (101, 101,
                                                                                           1_700_000_000_123)
    book.commit_staged(101)
    assert book.bids_exact(1) == [("10.005", "1.2500")]


def test_a_snapshot_finer_than_the_books_scale_is_measured_again(synced: tuple[MexcBookReader, OrderBook]) -> None:
    reader, book = synced
    finer = snapshot(200, [("10.005", "1")], [("11.25", "0.00001")])
    assert reader.apply_snapshot(book, finer) == 200
    assert (book.price_scale, book.qty_scale) == (3, 5)
    assert book.asks_exact(1) == [("11.250", "0.00001")]


@pytest.mark.parametrize("body, message", [
    (b"<html>", "malformed depth JSON"),
    (b'{"bids": [], "asks": []}', "no update id"),
    (b'{"lastUpdateId": 5, "bids": [["x", "1"]], "asks": []}', "not a decimal"),
])
def test_a_bad_snapshot_raises_and_the_book_is_invalid(body: bytes, message: str) -> None:
    book = OrderBook("BTCUSDT")
    with pytest.raises(ValueError, match=message):
        MexcBookReader().apply_snapshot(book, body)
    assert not book.valid


def test_a_limit_push_replaces_the_book_and_sets_its_scales() -> None:
    reader = MexcBookReader()
    book = OrderBook("BTCUSDT")
    assert reader.apply_limit(book, limit_push("7", [("10.5", "1"), ("10.25", "2")], [("11", "3")])) == 7
    assert book.valid and book.update_id == 7 and book.exchange_time == 1_700_000_000_456
    assert (book.price_scale, book.qty_scale) == (2, 0)
    assert book.bids_exact(3) == [("10.50", "1"), ("10.25", "2")]
    # A finer push: the book is rebuilt at its scales; absent levels are gone.
    assert reader.apply_limit(book, limit_push("8", [("10.125", "0.5")], [])) == 8
    assert book.bids_exact(3) == [("10.125", "0.5")] and book.ask_count == 0
    assert (book.price_scale, book.qty_scale) == (3, 1)
    with pytest.raises(ValueError, match="aggregated depth push on a limit"):
        reader.apply_limit(book, aggre_push("9", "9", bids=[("10", "1")]))
    assert not book.valid and book.update_id == 8


def test_book_routes_add_and_remove() -> None:
    routes = BookRoutes()
    assert len(routes) == 0 and CHANNEL not in routes
    for n in range(40):                                   # past the first table size
        routes.add(f"{CHANNEL}{n}", lambda data: None)
    routes.add(CHANNEL, print)
    assert len(routes) == 41 and CHANNEL in routes
    routes.remove(CHANNEL)
    routes.remove(CHANNEL)
    assert len(routes) == 40 and CHANNEL not in routes


# ---------------------------------------------------------------- differential
# Steps: a REST snapshot (JSON), a limit push (protobuf, a whole book) or an
# aggregated push (protobuf diff); the compiled book and the reference agree
# level by level after each.

steps = st.lists(st.tuples(st.sampled_from(["snapshot", "limit", "push", "push", "push"]), levels, levels),
                 min_size=1, max_size=25)


@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_pushes_agree_with_the_reference_after_every_step(steps: list[tuple[str, Levels, Levels]]) -> None:
    reader = MexcBookReader()
    book = OrderBook("BTCUSDT", PRICE_SCALE, QTY_SCALE)
    ref = ReferenceBook()
    reader.apply_snapshot(book, snapshot(1, [], []))
    for version, (kind, bids, asks) in enumerate(steps, start=2):
        if kind == "snapshot":
            assert reader.apply_snapshot(book, snapshot(version, bids, asks)) == version
            ref.snapshot(bids, asks)
        elif kind == "limit":
            assert reader.apply_limit(book, limit_push(str(version), bids, asks)) == version
            ref.snapshot(bids, asks)
        else:
            first, last, _ = reader.stage_diff(book, aggre_push(str(version), str(version), bids, asks))
            assert (first, last) == (version, version)
            book.commit_staged(last)
            ref.diff(bids, asks)
        assert book.update_id == version and book.valid
        assert_same(book, ref)


def varint(value: int) -> bytes:
    """``value`` as a protobuf varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_levels_in_another_layout_read_the_same(synced: tuple[MexcBookReader, OrderBook]) -> None:
    """Quantity before price, a field repeated (the last wins), an unknown field, long strings:
    the general path reads what the fast one would."""
    reader, book = synced
    long_qty = "0" * 150 + "1.5"         # a quantity whose length takes two varint bytes
    items = [
        b"\x12\x011" + b"\x0a\x0510.25",                          # quantity first
        b"\x0a\x059.999" + b"\x0a\x0510.50" + b"\x12\x012",       # price twice: 10.50
        PublicAggreDepthV3ApiItem(price="10.75", quantity=long_qty).SerializeToString() + b"\x18\x07",
    ]
    msg = PushDataV3ApiWrapper.FromString(aggre_push("101", "101"))
    body = msg.publicAggreDepths.SerializeToString()
    for item in items:                   # as bids (field 2)
        body += b"\x12" + varint(len(item)) + item
    # The wrapper: channel (1), then publicAggreDepths (313: tag 0xCA 0x13).
    wrapper = b"\x0a" + varint(len(CHANNEL)) + CHANNEL.encode() + b"\xca\x13" + varint(len(body)) + body
    assert reader.stage_diff(book, wrapper) == (101, 101, 0)
    book.commit_staged(101)
    assert book.bids_exact(4) == [("10.75", "1.500"), ("10.50", "2.000"), ("10.25", "1.000"), ("10.00", "1.000")]


def level_item(price: str, qty: str) -> bytes:
    """One ``PublicAggreDepthV3ApiItem`` as MEXC writes it: price (0x0A), then quantity (0x12)."""
    return b"\x0a" + varint(len(price)) + price.encode() + b"\x12" + varint(len(qty)) + qty.encode()


def push_ending_with(items: list[tuple[bool, bytes]], tail: bytes = b"") -> bytes:
    """A push whose body comes last in the frame and whose ``(is_bid, item)`` levels come last in the body
    (then ``tail``): the last item's quantity ends at the very end of the frame when ``tail`` is empty."""
    body = b"\x22\x03101\x2a\x03101"                 # fromVersion (4), toVersion (5)
    for is_bid, item in items:
        body += (b"\x12" if is_bid else b"\x0a") + varint(len(item)) + item
    body += tail
    return b"\x0a" + varint(len(CHANNEL)) + CHANNEL.encode() + b"\xca\x13" + varint(len(body)) + body


# Bytes after a level inside the frame, digits among them: an unknown body field
# (number 6, length-delimited: tag 0x32 is "2") holding digits, so a parser that
# ran past a string's end would read digits that continue the number.
TAILS = [b"", b"\x32\x0512345", b"\x32\x31" + b"7" * 0x31]


def fast_or_general(text: str, scale: int) -> Optional[int]:
    """What the general parser (``parse_decimal``) makes of ``text``, or None when it refuses it."""
    try:
        return parse_decimal(text, scale)
    except ValueError:
        return None


def staged_level(text: str, price_scale: int, qty_scale: int, as_price: bool, tail: bytes,
                 last: bool) -> Optional[int]:
    """``text`` as the price (quantity "1") or the quantity (price "5") of a bid, read by the
    reader; the fixed-point value it staged, or None when the push raised ValueError."""
    book = OrderBook("BTCUSDT", price_scale, qty_scale)
    book.apply_snapshot([], [], 100)
    item = level_item(text, "1") if as_price else level_item("5", text)
    items = [(True, item)] if last else [(True, item), (False, level_item("1", "1"))]
    try:
        MexcBookReader().stage_diff(book, push_ending_with(items, tail))
    except ValueError:
        assert not book.valid
        return None
    book.commit_staged(101)
    bids = dict(book.bids_fixed(2))
    if as_price:
        return next(iter(bids), 0)        # a price of quantity 1: absent only when the price is refused
    return bids.get(5 * 10**price_scale, 0)


def test_strings_of_1_to_20_digits_read_as_the_general_parser_reads_them() -> None:
    # Every length 1..20, with a point at every place, at scales around the
    # in-frame route's bounds (8 decimals, 18 digits), last in the frame or not.
    texts = []
    for length in range(1, 21):
        digits = "".join(str((7 * i + 3) % 10) for i in range(length))
        texts.append(digits)
        texts += [digits[:at] + "." + digits[at:] for at in range(length + 1)]
    for text in texts:
        for scale in (0, 2, 8, 9, 18):
            want = fast_or_general(text, scale)
            for as_price in (True, False):
                for last in (True, False):
                    got = staged_level(text, scale, scale, as_price, b"", last)
                    assert got == want, (text, scale, as_price, last)


@pytest.mark.parametrize("text", ["", ".", "7", "1234567", "5.", ".5", "-1", "+1", "1e3", "12a", "1.2.3", "1,5", " 1", "1 ",
                                  "0.12345678", "0.123456789", "1.50", "1.55", "12345678", "123456789",
                                  "00000000000000000001", "9223372036854775807", "9223372036854775808",
                                  "1" * 19, "0" * 30 + "1"])
@pytest.mark.parametrize("tail", TAILS)
def test_awkward_strings_next_to_the_end_of_the_frame(text: str, tail: bytes) -> None:
    # Malformed digits, decimals beyond the scale (1.50 is exact at 1 decimal,
    # 1.55 is not), values at int64's edge: as the general parser says, at the
    # end of the frame and with digits right after the string.
    for scale in (0, 1, 8):
        want = fast_or_general(text, scale) if text else None     # proto3 leaves "" out: no level
        for as_price in (True, False):
            for last in (True, False):
                got = staged_level(text, scale, scale, as_price, tail, last)
                assert got == want, (text, scale, as_price, tail, last)


decimal_texts = st.one_of(
    st.builds(lambda whole, fraction: whole + "." + fraction,
              st.text("0123456789", max_size=12), st.text("0123456789", max_size=12)),
    st.text("0123456789", min_size=1, max_size=20),
    st.text("0123456789.-+e x", min_size=1, max_size=12))


@settings(max_examples=400, deadline=None)
@given(text=decimal_texts, price_scale=st.integers(0, 18), qty_scale=st.integers(0, 18),
       as_price=st.booleans(), tail=st.sampled_from(TAILS), last=st.booleans())
def test_a_level_reads_as_the_general_parser_and_decimal_read_it(text: str, price_scale: int, qty_scale: int,
                                                                 as_price: bool, tail: bytes, last: bool) -> None:
    scale = price_scale if as_price else qty_scale
    want = fast_or_general(text, scale)
    if want is not None:
        assert want == Decimal(text).scaleb(scale)
    assert staged_level(text, price_scale, qty_scale, as_price, tail, last) == want


def test_apply_diff_applies_a_push_in_one_call(synced: tuple[MexcBookReader, OrderBook]) -> None:
    # The base class's apply_diff read the push as JSON; the MEXC reader applies the protobuf push.
    reader, book = synced
    push = aggre_push("101", "102", bids=[("10.00", "0"), ("9.50", "4")], asks=[("11.00", "3.5")])
    assert reader.apply_diff(book, push) == (101, 102, 1_700_000_000_123)
    assert (book.update_id, book.exchange_time, book.valid) == (102, 1_700_000_000_123, True)
    assert book.bids_exact(3) == [("9.50", "4.000"), ("9.00", "2.000")]
    assert book.asks_exact(3) == [("11.00", "3.500"), ("12.00", "2.000")]
    assert reader.apply_diff(book, memoryview(aggre_push("103", "103", asks=[("11.00", "0")]))) == (
        103, 103, 1_700_000_000_123)
    assert book.asks_exact(3) == [("12.00", "2.000")]


@pytest.mark.parametrize("data, message", BAD_PUSHES)
def test_apply_diff_of_a_bad_push_raises_and_leaves_the_levels(synced: tuple[MexcBookReader, OrderBook],
                                                                data: bytes, message: str) -> None:
    reader, book = synced
    with pytest.raises(ValueError, match=message):
        reader.apply_diff(book, data)
    assert not book.valid and book.update_id == 100
    assert book.bids_exact(3) == [("10.00", "1.000"), ("9.00", "2.000")]
