"""Handlers slower than the feed (issue 17, items 1 and 2): nothing lost unsaid, the loop keeps running."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from fastws import ExchangeAPIError, ExchangeName, SlowConsumerError, create_websocket_config
from fastws.testing import FeedServer, LoopbackFeedClient
from tests.conftest import until

STREAM = "btcusdt@depth"


class LoopLag:
    """Measures how late the event loop runs a 10 ms timer: the longest stall seen."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + 0.01
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.monotonic() - due)

    def __enter__(self) -> "LoopLag":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()


def sequences(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["u"] for m in messages]


async def test_a_slow_async_handler_is_not_taken_for_a_dead_peer(feed_server: FeedServer) -> None:
    """Frames waiting behind a suspended handler are not "stale"; pongs are still read.

    ~1000 messages/s for 2 s to a handler that awaits ~3 ms each: it falls
    seconds behind. The socket is still read, so the live feed is not taken
    for a silent one (stale_timeout 1 s, pings every 0.5 s), and every message
    is delivered, in order, on the one connection.
    """
    got: list[dict[str, Any]] = []
    errors: list[ExchangeAPIError] = []

    async def slow(message: dict[str, Any]) -> None:
        got.append(message)
        await asyncio.sleep(0.003)

    config = create_websocket_config(feed_server.url, stale_timeout=1.0, ping_interval=0.5,
                                     pong_timeout=0.5, max_messages_per_second=100.0)
    ws = LoopbackFeedClient(ExchangeName("slow"), config, slow, errors.append)
    backlog_seen: list[tuple[int, float]] = []
    async with ws:
        await ws.subscribe([STREAM])
        sent = 0
        for step in range(200):
            sent += feed_server.publish(10)
            await asyncio.sleep(0.01)
            if step % 10 == 0:
                backlog = (await ws.health_check())["backlog"]
                backlog_seen.append((backlog["messages"], backlog["oldest_age"] or 0.0))
        # The feed goes on, slower, until the handler has caught up.
        deadline = time.monotonic() + 60
        while len(got) < sent and time.monotonic() < deadline:
            backlog = (await ws.health_check())["backlog"]
            backlog_seen.append((backlog["messages"], backlog["oldest_age"] or 0.0))
            sent += feed_server.publish(1)
            await asyncio.sleep(0.2)
        assert sequences(got) == list(range(1, sent + 1))
        assert feed_server.connection_count == 1 and ws.gaps == [] and errors == []
    assert max(n for n, _ in backlog_seen) > 100
    # The oldest waiting message was older than stale_timeout: still not "stale".
    assert max(age for _, age in backlog_seen) > 1.0


async def test_an_abandoned_backlog_is_a_reported_gap_with_its_exact_count(feed_server: FeedServer) -> None:
    """Past its bound the backlog is dropped: counted, reported as a "slow consumer" gap, never silent."""
    got: list[dict[str, Any]] = []
    errors: list[ExchangeAPIError] = []
    release = asyncio.Event()

    async def stuck(message: dict[str, Any]) -> None:
        got.append(message)
        if len(got) == 1:
            await release.wait()

    config = create_websocket_config(feed_server.url, max_backlog=200, stale_timeout=None,
                                     max_messages_per_second=100.0)
    ws = LoopbackFeedClient(ExchangeName("stuck"), config, stuck, errors.append)
    async with ws:
        await ws.subscribe([STREAM])
        sent = feed_server.publish(1000)
        await until(lambda: any("slow consumer" in str(e) for e in errors), 10, "the slow-consumer error")
        release.set()
        feed_server.publish(10)
        sent += 10
        await until(lambda: got and got[-1]["data"]["u"] == sent, 10, "the feed going on")
        health = await ws.health_check()
    dropped = sent - len(got)
    assert dropped > 0
    # Each time the backlog passed its bound it was dropped whole: one gap
    # and one error each, with exact counts that add up to what never came.
    refusals = [e for e in errors if isinstance(e, SlowConsumerError)]
    gaps = [g for g in ws.gaps if "slow consumer" in g.reason]
    assert len(refusals) == len(gaps) > 0 and sum(e.dropped for e in refusals) == dropped
    assert all(f": {e.dropped} message(s)" in g.reason for e, g in zip(refusals, gaps))
    assert all(e.dropped > 200 for e in refusals)
    assert health["metrics"]["backlog_dropped"] == dropped
    assert feed_server.connection_count == 1


async def test_a_slow_sync_handler_does_not_freeze_the_event_loop(feed_server: FeedServer) -> None:
    """The core yields to the loop after a bounded amount of work per read."""
    got: list[dict[str, Any]] = []

    def slow(message: dict[str, Any]) -> None:
        got.append(message)
        time.sleep(0.002)

    config = create_websocket_config(feed_server.url, stale_timeout=None, max_messages_per_second=100.0)
    ws = LoopbackFeedClient(ExchangeName("sync"), config, slow, None)
    async with ws:
        await ws.subscribe([STREAM])
        with LoopLag() as lag:
            sent = feed_server.publish(1500)
            await until(lambda: len(got) == sent, 30, "every message handled")
            health = await ws.health_check()
        assert sequences(got) == list(range(1, sent + 1))
    # 1500 messages x 2 ms is 3 s of handler time; the loop must not stall for
    # a large part of it (it did for the whole of each read buffer).
    assert lag.worst < 0.5, f"event loop stalled {lag.worst:.3f} s"
    assert health["slow_handler"]["handler_seconds_per_second"] > 0.5
