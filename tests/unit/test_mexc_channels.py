"""MEXC channel names: parsing, classification, event types, control texts."""
from __future__ import annotations

import pytest

from exchanges.mexc import channels
from exchanges.mexc.channels import (KLINE_INTERVALS, ChannelKind, body_field, channel_kind, event_type,
                                     is_private, is_rejection, is_retired, is_valid_channel, parse_channel,
                                     rejection_msg, stream_type, symbol_of)
from exchanges.mexc.reference import BODY_FIELDS
from fastws.types import StreamType

K = ChannelKind
T = StreamType

# channel, kind, symbol, event type, stream type, body field
VALID = [
    ("spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", K.AGGRE_DEPTH, "BTCUSDT",
     "spot@public.aggre.depth.v3.api.pb@100ms", T.ORDERBOOK, "publicAggreDepths"),
    ("spot@public.aggre.depth.v3.api.pb@10ms@ETHUSDT", K.AGGRE_DEPTH, "ETHUSDT",
     "spot@public.aggre.depth.v3.api.pb@10ms", T.ORDERBOOK, "publicAggreDepths"),
    ("spot@public.increase.depth.v3.api.pb@BTCUSDT", K.INCREASE_DEPTH, "BTCUSDT",
     "spot@public.increase.depth.v3.api.pb", T.ORDERBOOK, "publicIncreaseDepths"),
    ("spot@public.increase.depth.batch.v3.api.pb@BTCUSDT", K.INCREASE_DEPTH_BATCH, "BTCUSDT",
     "spot@public.increase.depth.batch.v3.api.pb", T.ORDERBOOK, "publicIncreaseDepthsBatch"),
    ("spot@public.limit.depth.v3.api.pb@BTCUSDT@5", K.LIMIT_DEPTH, "BTCUSDT",
     "spot@public.limit.depth.v3.api.pb", T.ORDERBOOK, "publicLimitDepths"),
    ("spot@public.limit.depth.v3.api.pb@1INCHUSDT@20", K.LIMIT_DEPTH, "1INCHUSDT",
     "spot@public.limit.depth.v3.api.pb", T.ORDERBOOK, "publicLimitDepths"),
    ("spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT", K.AGGRE_DEALS, "BTCUSDT",
     "spot@public.aggre.deals.v3.api.pb@100ms", T.TRADES, "publicAggreDeals"),
    ("spot@public.deals.v3.api.pb@BTCUSDT", K.DEALS, "BTCUSDT",
     "spot@public.deals.v3.api.pb", T.TRADES, "publicDeals"),
    ("spot@private.deals.v3.api.pb", K.PRIVATE_DEALS, None,
     "spot@private.deals.v3.api.pb", T.TRADES, "privateDeals"),
    ("spot@public.aggre.bookTicker.v3.api.pb@10ms@BTCUSDT", K.AGGRE_BOOK_TICKER, "BTCUSDT",
     "spot@public.aggre.bookTicker.v3.api.pb@10ms", T.TICKER, "publicAggreBookTicker"),
    ("spot@public.bookTicker.v3.api.pb@BTCUSDT", K.BOOK_TICKER, "BTCUSDT",
     "spot@public.bookTicker.v3.api.pb", T.TICKER, "publicBookTicker"),
    ("spot@public.bookTicker.batch.v3.api.pb@BTCUSDT", K.BOOK_TICKER_BATCH, "BTCUSDT",
     "spot@public.bookTicker.batch.v3.api.pb", T.TICKER, "publicBookTickerBatch"),
    ("spot@public.miniTicker.v3.api.pb@BTCUSDT@UTC+8", K.MINI_TICKER, "BTCUSDT",
     "spot@public.miniTicker.v3.api.pb@UTC+8", T.TICKER, "publicMiniTicker"),
    ("spot@public.miniTickers.v3.api.pb@UTC+5:30", K.MINI_TICKERS, None,
     "spot@public.miniTickers.v3.api.pb@UTC+5:30", T.TICKER, "publicMiniTickers"),
    ("spot@public.kline.v3.api.pb@BTCUSDT@Min15", K.KLINE, "BTCUSDT",
     "spot@public.kline.v3.api.pb@Min15", T.KLINE, "publicSpotKline"),
    ("spot@private.orders.v3.api.pb", K.PRIVATE_ORDERS, None,
     "spot@private.orders.v3.api.pb", T.OTHER, "privateOrders"),
    ("spot@private.account.v3.api.pb", K.PRIVATE_ACCOUNT, None,
     "spot@private.account.v3.api.pb", T.OTHER, "privateAccount"),
]

INVALID = [
    "",
    "spot",
    "BTCUSDT",
    "btcusdt@depth",
    "spot@public.aggre.depth.v3.api.pb@100ms@btcusdt",       # lower-case symbol
    "spot@public.aggre.depth.v3.api.pb@100ms@BtcUSDT",
    "spot@public.aggre.depth.v3.api.pb@1000ms@BTCUSDT",      # speed
    "spot@public.aggre.depth.v3.api.pb@BTCUSDT@100ms",       # order of the parameters
    "spot@public.aggre.depth.v3.api.pb@BTCUSDT",             # speed missing
    "spot@public.aggre.depth.v3.api.pb@100ms@",
    "spot@public.aggre.depth.v3.api.pb@100ms@BTC-USDT",
    "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT@5",
    "spot@public.aggre.depth.v3.api@100ms@BTCUSDT",          # JSON channel: retired long ago
    "spot@public.deals.v3.api@BTCUSDT",
    "spot@public.limit.depth.v3.api.pb@BTCUSDT@15",          # levels
    "spot@public.limit.depth.v3.api.pb@BTCUSDT",
    "spot@public.limit.depth.v3.api.pb@5@BTCUSDT",
    "spot@public.kline.v3.api.pb@BTCUSDT@Min3",              # interval
    "spot@public.kline.v3.api.pb@BTCUSDT@1m",
    "spot@public.kline.v3.api.pb@BTCUSDT",
    "spot@private.orders.v3.api.pb@BTCUSDT",
    "spot@public.miniTickers.v3.api.pb@UTC+88",
    "spot@public.miniTickers.v3.api.pb",
    "futures@public.aggre.depth.v3.api.pb@100ms@BTCUSDT",
    "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT ",
    "spot@public.aggre.depth.v3.api.pb@100ms@ＢＴＣ",         # full-width letters
]


@pytest.mark.parametrize("name, kind, symbol, event, stype, field", VALID)
def test_valid_channels(name: str, kind: ChannelKind, symbol: str | None, event: str, stype: StreamType,
                        field: str) -> None:
    assert is_valid_channel(name)
    assert channel_kind(name) is kind
    assert symbol_of(name) == symbol
    assert event_type(name) == event
    assert stream_type(name) is stype
    assert body_field(kind) == field
    channel = parse_channel(name)
    assert channel is not None and channel.name == name and channel.body_field == field
    assert channel.stream_type is stype


@pytest.mark.parametrize("name", INVALID)
def test_invalid_channels(name: str) -> None:
    assert not is_valid_channel(name)
    assert parse_channel(name) is None and channel_kind(name) is None
    assert symbol_of(name) is None and event_type(name) is None
    assert stream_type(name) is StreamType.OTHER
    assert not is_private(name) and not is_retired(name)


def test_every_kind_has_a_valid_example_and_a_body_field() -> None:
    assert {kind for _, kind, *_ in VALID} == set(ChannelKind)
    assert sorted(body_field(kind) for kind in ChannelKind) == sorted(BODY_FIELDS)


def test_parameters() -> None:
    aggre = parse_channel("spot@public.aggre.deals.v3.api.pb@10ms@BTCUSDT")
    assert aggre is not None and aggre.speed == "10ms" and aggre.levels == 0 and aggre.interval is None
    for levels in (5, 10, 20):
        limit = parse_channel(f"spot@public.limit.depth.v3.api.pb@BTCUSDT@{levels}")
        assert limit is not None and limit.levels == levels and limit.speed is None
    for interval in KLINE_INTERVALS:
        kline = parse_channel(f"spot@public.kline.v3.api.pb@ETHUSDT@{interval}")
        assert kline is not None and kline.interval == interval and kline.symbol == "ETHUSDT"
    assert list(KLINE_INTERVALS) == ["Min1", "Min5", "Min15", "Min30", "Min60", "Hour4", "Hour8", "Day1",
                                     "Week1", "Month1"]
    assert KLINE_INTERVALS["Min15"] == 900 and KLINE_INTERVALS["Day1"] == 86_400
    mini = parse_channel("spot@public.miniTicker.v3.api.pb@BTCUSDT@UTC-3")
    assert mini is not None and mini.timezone == "UTC-3"


def test_private_and_retired() -> None:
    private = {name for name, kind, *_ in VALID if is_private(name)}
    assert private == {"spot@private.deals.v3.api.pb", "spot@private.orders.v3.api.pb",
                       "spot@private.account.v3.api.pb"}
    retired = {kind for name, kind, *_ in VALID if is_retired(name)}
    assert retired == {K.MINI_TICKER, K.MINI_TICKERS}


def test_constants() -> None:
    assert channels.WS_URL == "wss://wbs-api.mexc.com/ws"
    assert channels.MAX_SUBSCRIPTIONS_PER_CONNECTION == 30
    assert channels.MAX_MESSAGES_PER_SECOND == 100
    assert channels.MAX_CONNECTION_AGE == 86_400.0
    assert channels.NO_SUBSCRIPTION_TIMEOUT == 30.0 and channels.IDLE_TIMEOUT == 60.0
    assert channels.UPDATE_SPEEDS == ("100ms", "10ms") and channels.DEPTH_LEVELS == (5, 10, 20)


def test_rejection_text() -> None:
    one = "spot@public.deals.v3.api@BTCUSDT"
    assert rejection_msg([one]) == f"Not Subscribed successfully! [{one}].  Reason： Blocked! "
    assert rejection_msg(["a", "b"]) == "Not Subscribed successfully! [a,b].  Reason： Blocked! "
    assert is_rejection(rejection_msg([one]))
    assert not is_rejection(one) and not is_rejection(channels.PONG_MSG)


def test_parse_cache_is_consistent() -> None:
    name = VALID[0][0]
    assert parse_channel(name) is parse_channel(name)
    assert parse_channel(123) is None      # type: ignore[arg-type]
