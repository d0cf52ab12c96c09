"""Binance payload structs: the typed route gives what the dict route gives."""
from __future__ import annotations

import gc

import msgspec
import pytest

from exchanges.binance.messages import (
    EVENT_TYPES,
    AggTrade,
    BookTicker,
    DepthUpdate,
    Kline,
    KlineData,
    MiniTicker,
    PartialDepth,
    Ticker24h,
    Trade,
    WindowTicker,
)

# Payloads as Binance sends them, written from the layouts in PROTOCOLS.md. Where two
# samples of a type differ in E/T/O/C magnitude, the second is in microseconds
# (?timeUnit=MICROSECOND).
SAMPLES: dict[type, list[bytes]] = {
    DepthUpdate: [
        b'{"e":"depthUpdate","E":1718035200123,"s":"BTCUSDT","U":49186392001,'
        b'"u":49186392017,"b":[["67120.01000000","0.41500000"],["67119.50000000","0.00000000"]],'
        b'"a":[["67120.02000000","1.20301000"]]}',
        b'{"e":"depthUpdate","E":1718035200123456,"s":"ETHUSDT","U":35012001,"u":35012001,'
        b'"b":[],"a":[["3501.10000000","0.00000000"]]}',
        b'{"e":"depthUpdate","E":1718035200223,"s":"BNBBTC","U":157,"u":160,'
        b'"b":[["0.00935900","12.50000000"],["0.00935800","0.00000000"],["0.00935700","3.10000000"]],'
        b'"a":[]}',
    ],
    PartialDepth: [
        b'{"lastUpdateId":49186392017,"bids":[["67120.01000000","0.41500000"],'
        b'["67120.00000000","2.00010000"],["67119.99000000","0.00150000"],'
        b'["67119.98000000","0.10000000"],["67119.90000000","0.50000000"]],'
        b'"asks":[["67120.02000000","1.20301000"],["67120.03000000","0.00017000"],'
        b'["67120.10000000","0.30000000"],["67120.20000000","0.01000000"],'
        b'["67121.00000000","4.00000000"]]}',
        b'{"lastUpdateId":160,"bids":[["0.00935900","12.50000000"]],"asks":[]}',
    ],
    Trade: [
        b'{"e":"trade","E":1718035200123,"s":"BTCUSDT","t":3640012345,"p":"67120.02000000",'
        b'"q":"0.00150000","T":1718035200122,"m":false,"M":true}',
        b'{"e":"trade","E":1718035200123456,"s":"ETHUSDT","t":1498765432,"p":"3501.10000000",'
        b'"q":"2.50000000","T":1718035200122999,"m":true,"M":true}',
    ],
    AggTrade: [
        b'{"e":"aggTrade","E":1718035200123,"s":"BTCUSDT","a":3101234567,"p":"67120.02000000",'
        b'"q":"0.02100000","f":3640012340,"l":3640012345,"T":1718035200122,"m":false,"M":true}',
        b'{"e":"aggTrade","E":1718035200123456,"s":"BNBBTC","a":12345,"p":"0.00935900",'
        b'"q":"100.00000000","f":100,"l":105,"T":1718035200122001,"m":true,"M":true}',
    ],
    BookTicker: [
        b'{"u":49186392017,"s":"BTCUSDT","b":"67120.01000000","B":"0.41500000",'
        b'"a":"67120.02000000","A":"1.20301000"}',
        b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",'
        b'"a":"25.36520000","A":"40.66000000"}',
    ],
    Ticker24h: [
        b'{"e":"24hrTicker","E":1718035200123,"s":"BTCUSDT","p":"-512.34000000","P":"-0.758",'
        b'"w":"67402.11731043","x":"67632.36000000","c":"67120.02000000","Q":"0.00150000",'
        b'"b":"67120.01000000","B":"0.41500000","a":"67120.02000000","A":"1.20301000",'
        b'"o":"67632.36000000","h":"68101.00000000","l":"66950.00000000",'
        b'"v":"18234.55123000","q":"1229034567.21990730","O":1717948800123,'
        b'"C":1718035200122,"F":3638012345,"L":3640012345,"n":2000001}',
        b'{"e":"24hrTicker","E":1718035200123456,"s":"ETHBTC","p":"0.00012000","P":"0.231",'
        b'"w":"0.05211000","x":"0.05199000","c":"0.05211000","Q":"0.12000000",'
        b'"b":"0.05210000","B":"10.00000000","a":"0.05211000","A":"3.50000000",'
        b'"o":"0.05199000","h":"0.05230000","l":"0.05180000","v":"31234.12000000",'
        b'"q":"1627.31000000","O":1717948800123456,"C":1718035200122999,"F":0,"L":18150,'
        b'"n":18151}',
    ],
    WindowTicker: [
        b'{"e":"1hTicker","E":1718035200123,"s":"BTCUSDT","p":"12.34000000","P":"0.018",'
        b'"o":"67107.68000000","h":"67250.00000000","l":"67001.00000000",'
        b'"c":"67120.02000000","w":"67121.50010000","v":"812.55000000",'
        b'"q":"54539811.12000000","O":1718031600123,"C":1718035200122,'
        b'"F":3639912345,"L":3640012345,"n":100001}',
    ],
    MiniTicker: [
        b'{"e":"24hrMiniTicker","E":1718035200123,"s":"BTCUSDT","c":"67120.02000000",'
        b'"o":"67632.36000000","h":"68101.00000000","l":"66950.00000000",'
        b'"v":"18234.55123000","q":"1229034567.21990730"}',
        b'{"e":"24hrMiniTicker","E":1718035200123456,"s":"BNBBTC","c":"0.00935900",'
        b'"o":"0.00931000","h":"0.00940000","l":"0.00929000","v":"123456.00000000",'
        b'"q":"1152.12000000"}',
    ],
    Kline: [
        b'{"e":"kline","E":1718035200123,"s":"BTCUSDT","k":{"t":1718035200000,'
        b'"T":1718035259999,"s":"BTCUSDT","i":"1m","f":3640012300,"L":3640012345,'
        b'"o":"67110.00000000","c":"67120.02000000","h":"67125.00000000",'
        b'"l":"67105.10000000","v":"3.21000000","n":46,"x":false,'
        b'"q":"215441.12300000","V":"1.50000000","Q":"100674.03000000","B":"0"}}',
        b'{"e":"kline","E":1718035260000123,"s":"ETHUSDT","k":{"t":1718031600000000,'
        b'"T":1718035199999999,"s":"ETHUSDT","i":"1h","f":-1,"L":-1,'
        b'"o":"3501.10000000","c":"3501.10000000","h":"3501.10000000",'
        b'"l":"3501.10000000","v":"0.00000000","n":0,"x":true,'
        b'"q":"0.00000000","V":"0.00000000","Q":"0.00000000","B":"0"}}',
    ],
}

CASES = [
    pytest.param(t, payload, id=f"{t.__name__}-{i}")
    for t, payloads in SAMPLES.items()
    for i, payload in enumerate(payloads)
]


@pytest.mark.parametrize("struct_type, payload", CASES)
def test_typed_decode_equals_dict_decode(struct_type: type, payload: bytes) -> None:
    typed = msgspec.json.decode(payload, type=struct_type)
    assert msgspec.to_builtins(typed) == msgspec.json.decode(payload)


@pytest.mark.parametrize("struct_type, payload", CASES)
def test_decodes_from_memoryview(struct_type: type, payload: bytes) -> None:
    decoder = msgspec.json.Decoder(struct_type)
    assert decoder.decode(memoryview(payload)) == decoder.decode(payload)


@pytest.mark.parametrize("struct_type, payload", CASES)
def test_unknown_fields_are_ignored(struct_type: type, payload: bytes) -> None:
    extra = b'{"zz":1,"X":{"nested":[1,2]},"Z":"new",' + payload[1:]
    typed = msgspec.json.decode(extra, type=struct_type)
    assert msgspec.to_builtins(typed) == msgspec.json.decode(payload)


@pytest.mark.parametrize("struct_type", SAMPLES)
def test_fields_are_declared_in_binance_key_order(struct_type: type) -> None:
    # msgspec matches keys fastest in declaration order (about 2x on a ticker).
    encoded = [f.encode_name for f in msgspec.structs.fields(struct_type)]
    for payload in SAMPLES[struct_type]:
        assert encoded == list(msgspec.json.decode(payload))


def test_unknown_fields_inside_kline_are_ignored() -> None:
    payload = SAMPLES[Kline][0]
    extra = payload.replace(b'"k":{', b'"k":{"newField":"1","w":[],')
    assert msgspec.json.decode(extra, type=Kline) == msgspec.json.decode(payload, type=Kline)


def test_kline_data_fields_are_declared_in_binance_key_order() -> None:
    encoded = [f.encode_name for f in msgspec.structs.fields(KlineData)]
    assert encoded == list(msgspec.json.decode(SAMPLES[Kline][0])["k"])


def test_attribute_names() -> None:
    depth = msgspec.json.decode(SAMPLES[DepthUpdate][0], type=DepthUpdate)
    assert depth.event_type == "depthUpdate"
    assert depth.event_time == 1718035200123
    assert depth.symbol == "BTCUSDT"
    assert (depth.first_update_id, depth.final_update_id) == (49186392001, 49186392017)
    assert depth.bids[1] == ["67119.50000000", "0.00000000"]
    assert depth.asks == [["67120.02000000", "1.20301000"]]

    partial = msgspec.json.decode(SAMPLES[PartialDepth][1], type=PartialDepth)
    assert partial.last_update_id == 160
    assert partial.bids == [["0.00935900", "12.50000000"]]

    trade = msgspec.json.decode(SAMPLES[Trade][1], type=Trade)
    assert trade.event_time == 1718035200123456  # microseconds
    assert (trade.trade_id, trade.price, trade.quantity) == (1498765432, "3501.10000000", "2.50000000")
    assert trade.trade_time == 1718035200122999
    assert trade.is_buyer_maker is True

    agg = msgspec.json.decode(SAMPLES[AggTrade][0], type=AggTrade)
    assert (agg.agg_trade_id, agg.first_trade_id, agg.last_trade_id) == (3101234567, 3640012340, 3640012345)

    book = msgspec.json.decode(SAMPLES[BookTicker][0], type=BookTicker)
    assert (book.update_id, book.bid_price, book.ask_quantity) == (49186392017, "67120.01000000", "1.20301000")

    ticker = msgspec.json.decode(SAMPLES[Ticker24h][0], type=Ticker24h)
    assert (ticker.last_price, ticker.trade_count, ticker.open_time) == ("67120.02000000", 2000001, 1717948800123)

    kline = msgspec.json.decode(SAMPLES[Kline][1], type=Kline)
    assert isinstance(kline.kline, KlineData)
    assert (kline.kline.interval, kline.kline.is_closed, kline.kline.first_trade_id) == ("1h", True, -1)
    assert kline.kline.start_time == 1718031600000000


@pytest.mark.parametrize("struct_type", [t for t in SAMPLES if t not in (PartialDepth, BookTicker)])
def test_event_time_and_event_types(struct_type: type) -> None:
    for payload in SAMPLES[struct_type]:
        message = msgspec.json.decode(payload, type=struct_type)
        assert isinstance(message.event_time, int)
        assert EVENT_TYPES[message.event_type] is struct_type


def test_event_types_cover_the_documented_events() -> None:
    documented = {"depthUpdate", "trade", "aggTrade", "24hrTicker", "24hrMiniTicker", "kline"}
    assert documented <= EVENT_TYPES.keys()


@pytest.mark.parametrize("struct_type", [*SAMPLES, KlineData])
def test_structs_are_not_gc_tracked(struct_type: type) -> None:
    assert struct_type.__struct_config__.gc is False  # type: ignore[attr-defined]
    if struct_type in SAMPLES:
        assert not gc.is_tracked(msgspec.json.decode(SAMPLES[struct_type][0], type=struct_type))


MALFORMED = [
    pytest.param(Trade, b"", id="empty"),
    pytest.param(Trade, b"\xff\xfe", id="invalid-utf8"),
    pytest.param(Trade, b'{"e":"trade","E":1718035200123,"s":"BTC', id="truncated"),
    pytest.param(Trade, b"[]", id="array"),
    pytest.param(Trade, b"null", id="null"),
    pytest.param(Trade, SAMPLES[Trade][0] + b"x", id="trailing-garbage"),
    pytest.param(Trade, SAMPLES[Trade][0].replace(b',"M":true', b""), id="missing-field"),
    pytest.param(Trade, SAMPLES[Trade][0].replace(b'"p":"67120.02000000"', b'"p":67120.02'), id="price-as-number"),
    pytest.param(Trade, SAMPLES[Trade][0].replace(b'"m":false', b'"m":"false"'), id="bool-as-string"),
    pytest.param(Trade, SAMPLES[Trade][0].replace(b'"E":1718035200123', b'"E":"1718035200123"'), id="time-as-string"),
    pytest.param(AggTrade, SAMPLES[Trade][0], id="trade-as-aggtrade"),
    pytest.param(DepthUpdate, SAMPLES[DepthUpdate][0].replace(b'"b":[[', b'"b":[', 1).replace(b'"]],"a"', b'"],"a"', 1), id="flat-levels"),
    pytest.param(PartialDepth, b'{"lastUpdateId":1,"bids":[["1.0",2]],"asks":[]}', id="level-qty-as-number"),
    pytest.param(PartialDepth, b'{"lastUpdateId":1,"bids":null,"asks":[]}', id="null-levels"),
    pytest.param(BookTicker, b'{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2"}', id="bookticker-missing-A"),
    pytest.param(Kline, SAMPLES[Kline][0].replace(b'"x":false', b'"x":0'), id="kline-closed-as-int"),
    pytest.param(Kline, b'{"e":"kline","E":1,"s":"BTCUSDT","k":[]}', id="kline-k-array"),
    pytest.param(Ticker24h, SAMPLES[WindowTicker][0], id="window-as-24h"),
    pytest.param(MiniTicker, b'{"e":"24hrMiniTicker","E":1e3,"s":"X","c":"1","o":"1","h":"1","l":"1","v":"1","q":"1"}', id="float-time"),
]


@pytest.mark.parametrize("struct_type, payload", MALFORMED)
def test_malformed_payloads_raise_decode_error(struct_type: type, payload: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(payload, type=struct_type)
