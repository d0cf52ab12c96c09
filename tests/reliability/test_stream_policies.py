"""Per-stream slow-consumer policies (issue 16 §2) against the Binance simulator on loopback.

A handler that suspends holds back only its own stream: that stream's later
messages wait (lossless), are conflated (latest) or keep the newest n
(drop_oldest), counted per stream and in the totals, while the other streams
of the connection go on to their handlers.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from exchanges.binance.streams import is_snapshot_stream
from exchanges.mexc import MexcWebSocket, mexc_config
from exchanges.mexc.channels import is_snapshot_channel
from exchanges.mexc.simulator import MexcSimulator
from fastws import ExchangeAPIError, ExchangeName, SlowConsumerError
from fastws.policy import DropOldest, Latest, Lossless, as_policy
from tests.conftest import other_tasks, until

TICKER = "btcusdt@bookTicker"
TRADES = "btcusdt@trade"


class Feed:
    """A bookTicker handler that can be held, a trade handler that records, and the errors."""

    def __init__(self) -> None:
        self.tickers: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []
        self.trade_lag: list[float] = []
        self.errors: list[ExchangeAPIError] = []
        self.release = asyncio.Event()
        self.ticker_delay = 0.0

    async def on_ticker(self, message: dict[str, Any]) -> None:
        self.tickers.append(message["data"])
        if len(self.tickers) == 1:
            await self.release.wait()
        if self.ticker_delay:
            await asyncio.sleep(self.ticker_delay)

    def on_trade(self, message: dict[str, Any]) -> None:
        self.trades.append(message["data"])
        self.trade_lag.append(time.time() - message["data"]["E"] / 1000)

    def on_other(self, message: dict[str, Any]) -> None:
        raise AssertionError(f"unexpected message {message!r}")


def connect(sim: BinanceSimulator, feed: Feed, **overrides: Any) -> BinanceWebSocket:
    overrides.setdefault("stale_timeout", None)
    config = binance_config(sim.url, **overrides)
    return BinanceWebSocket(ExchangeName("binance"), config, feed.on_other, feed.errors.append)


def newest_ticker_id(sim: BinanceSimulator) -> int:
    return int(sim.market.symbol("BTCUSDT").best().update_id)


def assert_totals_add_up(metrics: dict[str, Any]) -> None:
    """Every message received was delivered, a control message, or given up and counted."""
    assert metrics["messages_received"] == (
        metrics["messages_delivered"] + metrics["control_messages"] + metrics["conflated"]
        + metrics["policy_dropped"] + metrics["backlog_dropped"]), metrics


def assert_trades_complete(trades: list[dict[str, Any]]) -> None:
    ids = [t["t"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "trades lost or out of order"


async def hold_ticker_and_step(sim: BinanceSimulator, feed: Feed, steps: int) -> None:
    """Step the market while the first bookTicker's handler is held; then release it."""
    sim.step(1)
    await until(lambda: len(feed.tickers) == 1, 5, "the first bookTicker")
    for _ in range(steps):
        sim.step(1)
    await until(lambda: len(feed.trades) > 0 and feed.trades[-1]["t"] == sim.market.symbol("BTCUSDT").last_trade_id,
                5, "every trade while the bookTicker handler is held")
    feed.release.set()


async def test_latest_conflates_a_stream_behind_its_handler(binance_simulator: BinanceSimulator) -> None:
    sim, feed = binance_simulator, Feed()
    async with connect(sim, feed) as ws:
        await ws.subscribe([TICKER], handler=feed.on_ticker, policy=Latest())
        await ws.subscribe([TRADES], handler=feed.on_trade)
        await hold_ticker_and_step(sim, feed, 40)
        newest = newest_ticker_id(sim)
        await until(lambda: len(feed.tickers) == 2, 5, "the newest bookTicker")
        await asyncio.sleep(0.05)
        health = await ws.health_check()
    # The handler saw the one it was on and the newest; the 39 between were conflated.
    assert [t["u"] for t in feed.tickers][1:] == [newest]
    slow = health["streams"][TICKER]["slow_consumer"]
    assert slow["conflated"] == 39 and slow["dropped"] == 0 and slow["waiting"] == 0
    assert slow["policy"] == "Latest()"
    assert health["metrics"]["conflated"] == 39 and health["metrics"]["policy_dropped"] == 0
    assert health["streams"][TRADES]["slow_consumer"]["conflated"] == 0
    assert_trades_complete(feed.trades)
    assert_totals_add_up(health["metrics"])
    assert feed.errors == [] and ws.gaps == []


async def test_drop_oldest_keeps_the_newest_n(binance_simulator: BinanceSimulator) -> None:
    sim, feed = binance_simulator, Feed()
    async with connect(sim, feed) as ws:
        await ws.subscribe([TICKER], handler=feed.on_ticker, policy=DropOldest(3))
        await ws.subscribe([TRADES], handler=feed.on_trade)
        ids = []
        sim.step(1)
        await until(lambda: len(feed.tickers) == 1, 5, "the first bookTicker")
        for _ in range(30):
            sim.step(1)
            ids.append(newest_ticker_id(sim))
        await until(lambda: bool(feed.trades) and feed.trades[-1]["t"] == sim.market.symbol("BTCUSDT").last_trade_id, 5, "every trade")
        feed.release.set()
        await until(lambda: len(feed.tickers) == 4, 5, "the newest three bookTickers")
        await asyncio.sleep(0.05)
        health = await ws.health_check()
    assert [t["u"] for t in feed.tickers][1:] == ids[-3:]
    slow = health["streams"][TICKER]["slow_consumer"]
    assert slow["dropped"] == 27 and slow["conflated"] == 0
    assert health["metrics"]["policy_dropped"] == 27 and health["metrics"]["backlog_dropped"] == 0
    assert_trades_complete(feed.trades)
    assert_totals_add_up(health["metrics"])
    assert feed.errors == [] and ws.gaps == []


async def test_lossless_keeps_every_message_and_raises_its_alarm(binance_simulator: BinanceSimulator,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    sim, feed = binance_simulator, Feed()
    async with connect(sim, feed) as ws:
        await ws.subscribe([TICKER], handler=feed.on_ticker, policy=Lossless(alarm_age=0.05))
        await ws.subscribe([TRADES], handler=feed.on_trade)
        with caplog.at_level(logging.WARNING, logger="fastws"):
            sim.step(1)
            await until(lambda: len(feed.tickers) == 1, 5, "the first bookTicker")
            ids = []
            for _ in range(10):
                sim.step(1)
                ids.append(newest_ticker_id(sim))
                await asyncio.sleep(0.01)
            await until(lambda: any(TICKER in r.getMessage() and "behind the feed" in r.getMessage()
                                    for r in caplog.records), 5, "the alarm")
            health = await ws.health_check()
            feed.release.set()
            await until(lambda: len(feed.tickers) == 11, 5, "every bookTicker")
    slow = health["streams"][TICKER]["slow_consumer"]
    assert slow["waiting"] == 10 and slow["oldest_age"] >= 0.05
    assert [t["u"] for t in feed.tickers][1:] == ids
    # The trade stream's default alarm (1 s) did not ring.
    assert not any(TRADES in r.getMessage() for r in caplog.records)
    assert_trades_complete(feed.trades)
    assert feed.errors == [] and ws.gaps == []


async def test_a_stream_past_its_bound_is_a_gap_of_that_stream_only(binance_simulator: BinanceSimulator) -> None:
    sim, feed = binance_simulator, Feed()
    async with connect(sim, feed, max_backlog=20) as ws:
        await ws.subscribe([TICKER], handler=feed.on_ticker)
        await ws.subscribe([TRADES], handler=feed.on_trade)
        await hold_ticker_and_step(sim, feed, 50)
        await until(lambda: len(feed.tickers) > 1, 5, "the bookTickers after the gap")
        await asyncio.sleep(0.05)
        metrics = ws.metrics
    refusals = [e for e in feed.errors if isinstance(e, SlowConsumerError)]
    assert refusals and all(TICKER in g.reason for g in ws.gaps) and len(ws.gaps) == len(refusals)
    assert sum(e.dropped for e in refusals) == metrics["backlog_dropped"] == 50 - (len(feed.tickers) - 1)
    assert_trades_complete(feed.trades)
    assert_totals_add_up(metrics)


async def test_a_slow_handler_does_not_hold_back_the_other_streams(binance_simulator: BinanceSimulator) -> None:
    """bookTicker's handler awaits 5 ms a message, slower than the feed; trades stay prompt and in order."""
    sim, feed = binance_simulator, Feed()
    feed.release.set()
    feed.ticker_delay = 0.005
    deepest = 0
    async with connect(sim, feed) as ws:
        await ws.subscribe([TICKER], handler=feed.on_ticker)
        await ws.subscribe([TRADES], handler=feed.on_trade)
        for _ in range(150):
            sim.step(1)
            await asyncio.sleep(0.002)
            deepest = max(deepest, ws._core.backlog_size if ws._core is not None else 0)
        await until(lambda: len(feed.tickers) == 150, 10, "every bookTicker")
        await asyncio.sleep(0.05)
        health = await ws.health_check()
    # The bookTicker handler fell well behind (lossless: nothing lost)...
    assert deepest > 10
    assert health["metrics"]["messages_delivered"] == health["metrics"]["messages_received"] - \
        health["metrics"]["control_messages"]
    # ... while each trade reached its handler at once (a generous bound:
    # behind the bookTickers, as before per-stream backlogs, trades waited
    # 0.3 s at the median and 0.6 s at p99 in bench/slow_consumer_bench.py).
    assert_trades_complete(feed.trades)
    assert max(feed.trade_lag) < 0.15, f"a trade waited {max(feed.trade_lag):.3f} s"
    assert feed.errors == []


async def test_lossy_policies_are_refused_on_diff_streams(binance_simulator: BinanceSimulator) -> None:
    sim, feed = binance_simulator, Feed()
    async with connect(sim, feed, stream_policies={"btcusdt@aggTrade": "latest"}) as ws:
        for stream, policy in ((TRADES, Latest()), ("btcusdt@depth@100ms", DropOldest(5)),
                               ("!bookTicker", "latest")):
            with pytest.raises(ValueError, match="not a snapshot-like stream"):
                await ws.subscribe([stream, TICKER], policy=policy)
        # The config's per-stream policy is checked when its stream is subscribed.
        with pytest.raises(ValueError, match="btcusdt@aggTrade"):
            await ws.subscribe(["btcusdt@aggTrade"])
        assert ws.subscriptions == [] and sim.subscribed() == set()
        await ws.subscribe([TICKER, TRADES], policy=Lossless())
        assert sim.subscribed() == {TICKER, TRADES}
    assert feed.errors == []


async def test_a_lossy_default_applies_to_snapshot_streams_only(binance_simulator: BinanceSimulator) -> None:
    sim, feed = binance_simulator, Feed()
    async with connect(sim, feed, slow_consumer_policy="latest") as ws:
        await ws.subscribe([TICKER], handler=feed.on_ticker)
        await ws.subscribe([TRADES], handler=feed.on_trade)
        await hold_ticker_and_step(sim, feed, 5)
        await until(lambda: len(feed.tickers) == 2, 5, "the newest bookTicker")
        health = await ws.health_check()
    assert health["streams"][TICKER]["slow_consumer"]["policy"] == "Latest()"
    assert health["streams"][TICKER]["slow_consumer"]["conflated"] == 4
    assert health["streams"][TRADES]["slow_consumer"]["policy"] == "Lossless()"


async def test_a_subscribed_stream_changes_its_policy(binance_simulator: BinanceSimulator) -> None:
    sim, feed = binance_simulator, Feed()
    async with connect(sim, feed) as ws:
        await ws.subscribe([TICKER], handler=feed.on_ticker)
        await ws.subscribe([TRADES], handler=feed.on_trade)
        await ws.subscribe([TICKER], policy="latest")
        with pytest.raises(ValueError, match="not a snapshot-like stream"):
            await ws.subscribe([TRADES], policy="drop_oldest:2")
        assert ws.subscriptions == [TICKER, TRADES]
        await hold_ticker_and_step(sim, feed, 10)
        await until(lambda: len(feed.tickers) == 2, 5, "the newest bookTicker")
        health = await ws.health_check()
    assert health["streams"][TICKER]["slow_consumer"]["policy"] == "Latest()"
    assert health["streams"][TICKER]["slow_consumer"]["conflated"] == 9
    assert health["streams"][TRADES]["slow_consumer"]["policy"] == "Lossless()"


async def test_stop_while_a_stream_is_behind_leaves_no_task(binance_simulator: BinanceSimulator) -> None:
    sim, feed = binance_simulator, Feed()
    before = other_tasks()
    ws = connect(sim, feed)
    async with ws:
        await ws.subscribe([TICKER], handler=feed.on_ticker)
        sim.step(5)
        await until(lambda: ws._core is not None and ws._core.backlog_size == 4, 5, "four waiting")
        assert len(ws._core.pending_tasks()) == 1
    await asyncio.sleep(0)
    assert other_tasks() - before == set()


async def test_mexc_one_message_handler_conflates_limit_depth_while_deals_flow(
        mexc_simulator: MexcSimulator) -> None:
    """The default route (compiled parser, one message handler for every channel) is per stream too."""
    sim = mexc_simulator
    limit = "spot@public.limit.depth.v3.api.pb@BTCUSDT@5"
    deals_channel = "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"
    books: list[dict[str, Any]] = []
    deals: list[dict[str, Any]] = []
    errors: list[ExchangeAPIError] = []
    release = asyncio.Event()

    async def on_message(message: dict[str, Any]) -> None:
        if message["channel"] == limit:
            books.append(message)
            if len(books) == 1:
                await release.wait()
        else:
            deals.append(message)

    config = mexc_config(sim.ws_url(), stale_timeout=None)
    async with MexcWebSocket(ExchangeName("mexc"), config, on_message, errors.append) as ws:
        with pytest.raises(ValueError, match="not a snapshot-like stream"):
            await ws.subscribe([deals_channel], policy=Latest())
        await ws.subscribe([limit], policy=Latest())
        await ws.subscribe([deals_channel])
        sim.step(1)
        await until(lambda: len(books) == 1, 5, "the first limit depth push")
        sim.step(30)
        await until(lambda: len(deals) == sim.sent_counts.get(deals_channel, 0), 5,
                    "every deals push while the limit depth handler is held")
        assert len(books) == 1 and len(deals) > 5
        release.set()
        await until(lambda: len(books) == 2, 5, "the newest limit depth push")
        await asyncio.sleep(0.05)
        health = await ws.health_check()
    assert sim.sent_counts[limit] == 31
    assert health["streams"][limit]["slow_consumer"]["conflated"] == 29
    assert_totals_add_up(health["metrics"])
    assert errors == []


def test_snapshot_kinds_of_the_exchanges() -> None:
    assert all(is_snapshot_stream(s) for s in (TICKER, "btcusdt@depth5", "btcusdt@depth20@100ms",
                                               "btcusdt@ticker", "btcusdt@miniTicker", "btcusdt@kline_1m"))
    assert not any(is_snapshot_stream(s) for s in (TRADES, "btcusdt@aggTrade", "btcusdt@depth",
                                                   "btcusdt@depth@100ms", "!ticker@arr", "!bookTicker"))
    assert all(is_snapshot_channel(c) for c in ("spot@public.limit.depth.v3.api.pb@BTCUSDT@5",
                                                "spot@public.aggre.bookTicker.v3.api.pb@100ms@BTCUSDT",
                                                "spot@public.kline.v3.api.pb@BTCUSDT@Min1"))
    assert not any(is_snapshot_channel(c) for c in ("spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT",
                                                    "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT",
                                                    "spot@private.orders.v3.api.pb", "nonsense"))


def test_policy_names_and_bad_values() -> None:
    assert as_policy("latest") == Latest() and as_policy("drop_oldest:7") == DropOldest(7)
    assert as_policy("lossless") == Lossless()
    for bad in ("fastest", "drop_oldest", "drop_oldest:0", "latest:3"):
        with pytest.raises(ValueError):
            as_policy(bad)
    with pytest.raises(ValueError):
        DropOldest(0)
    with pytest.raises(ValueError):
        Lossless(alarm_age=-1)
    with pytest.raises(TypeError):
        as_policy(3)
    with pytest.raises(ValueError, match="slow-consumer policy"):
        binance_config("ws://127.0.0.1:1", slow_consumer_policy="fastest")
