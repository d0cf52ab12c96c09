"""The base class and the core against a real picows server on 127.0.0.1."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional

import msgspec
import pytest

from fastws import (ConnectionState, ExchangeAPIError, ExchangeName, ExchangeTimeoutError,
                    InvalidMessageError, MessageHandlerError, RateLimitError, StreamType,
                    SubscriptionRejectedError, create_websocket_config)
from fastws.testing import FeedServer, LoopbackFeedClient
from tests.conftest import open_fds, other_tasks, until

STREAMS = ["btcusdt@depth", "ethusdt@depth"]


class Collector:
    """A message handler and an error handler that remember what they got."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.errors: list[ExchangeAPIError] = []

    async def on_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def on_error(self, error: ExchangeAPIError) -> None:
        self.errors.append(error)

    async def wait_messages(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} messages after {timeout} s"
            await asyncio.sleep(0.002)


def client(server: FeedServer, collector: Collector, cls: type = LoopbackFeedClient,
           **overrides: Any) -> LoopbackFeedClient:
    overrides.setdefault("max_messages_per_second", 100.0)
    config = create_websocket_config(server.url, **overrides)
    return cls(ExchangeName("loopback"), config, collector.on_message, collector.on_error)


async def test_connect_subscribe_receive(feed_server: FeedServer) -> None:
    got = Collector()
    async with client(feed_server, got) as ws:
        assert ws.state is ConnectionState.CONNECTED
        await ws.subscribe(STREAMS)
        assert feed_server.subscribed() == set(STREAMS)
        feed_server.publish(50)
        await got.wait_messages(100)
        assert [m["data"]["u"] for m in got.messages if m["stream"] == STREAMS[0]] == list(range(1, 51))
        health = await ws.health_check()
        assert health["metrics"]["messages_delivered"] == 100
        assert health["streams"][STREAMS[0]]["messages"] == 50
        assert health["streams"][STREAMS[0]]["type"] == StreamType.ORDERBOOK.value
    assert ws.state is ConnectionState.CLOSED
    assert got.errors == []


async def test_fragmented_message_is_reassembled(feed_server: FeedServer) -> None:
    got = Collector()
    async with client(feed_server, got) as ws:
        await ws.subscribe(STREAMS[:1])
        payload = msgspec.json.encode({"stream": "btcusdt@depth", "data": {"big": "x" * 5000}})
        feed_server.send_fragmented(payload, pieces=7)
        await got.wait_messages(1)
        assert got.messages[0]["data"]["big"] == "x" * 5000
        assert ws.metrics["messages_received"] >= 2   # the ack and this message


async def test_oversized_fragmented_message_closes_with_1009_and_reconnects(feed_server: FeedServer) -> None:
    got = Collector()
    async with client(feed_server, got, max_frame_size=4096) as ws:
        await ws.subscribe(STREAMS[:1])
        feed_server.send_fragmented(b'{"stream":"x","data":"' + b"y" * 10000 + b'"}', pieces=5)
        await feed_server.wait_connections(2)
        await ws.wait_for_state(ConnectionState.CONNECTED, timeout=5)
        assert any(isinstance(e, InvalidMessageError) and "max_message_size" in str(e) for e in got.errors)
        assert "1009" in ws.gaps[0].reason


class SyncClient(LoopbackFeedClient):
    """Plain ``def`` overrides instead of ``async def``."""

    def _parse_message(self, raw_message: Any) -> Optional[dict[str, Any]]:  # type: ignore[override]
        message = msgspec.json.decode(raw_message)
        if "id" in message:
            self._resolve_ack(message["id"])
            return None
        return message


async def test_sync_overrides_and_sync_handler(feed_server: FeedServer) -> None:
    received: list[dict[str, Any]] = []
    config = create_websocket_config(feed_server.url, max_messages_per_second=100.0)
    async with SyncClient(ExchangeName("sync"), config, received.append) as ws:
        await ws.subscribe(STREAMS)
        feed_server.publish(10)
        deadline = time.monotonic() + 5
        while len(received) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        assert len(received) == 20
        assert ws.metrics["suspensions"] == 0


async def test_suspending_async_handler_keeps_order(feed_server: FeedServer) -> None:
    order: list[int] = []

    async def slow_then_fast(message: dict[str, Any]) -> None:
        sequence = message["data"]["u"]
        if sequence % 10 == 1:
            await asyncio.sleep(0.01)   # really suspends: finished in a Task
        order.append(sequence)

    config = create_websocket_config(feed_server.url, max_messages_per_second=100.0)
    async with LoopbackFeedClient(ExchangeName("order"), config, slow_then_fast) as ws:
        await ws.subscribe(STREAMS[:1])
        feed_server.publish(50)
        deadline = time.monotonic() + 5
        while len(order) < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert order == list(range(1, 51))
        assert ws.metrics["suspensions"] >= 1
        assert ws.metrics["messages_delivered"] == 50


async def test_parse_and_handler_errors_are_counted_while_the_feed_goes_on(feed_server: FeedServer) -> None:
    got = Collector()

    async def flaky(message: dict[str, Any]) -> None:
        if message["data"]["u"] == 2:
            raise RuntimeError("handler bug")
        got.messages.append(message)

    config = create_websocket_config(feed_server.url, max_messages_per_second=100.0)
    async with LoopbackFeedClient(ExchangeName("errs"), config, flaky, got.on_error) as ws:
        await ws.subscribe(STREAMS[:1])
        feed_server.send_raw(b"{definitely not json")
        feed_server.publish(3)
        await got.wait_messages(2)
        metrics = ws.metrics
        assert metrics["parse_errors"] == 1 and metrics["handler_errors"] == 1
        assert metrics["errors"] == 2
        kinds = {type(e) for e in got.errors}
        assert kinds == {InvalidMessageError, MessageHandlerError}
        parse_error = next(e for e in got.errors if isinstance(e, InvalidMessageError))
        assert parse_error.code == 400 and parse_error.payload == b"{definitely not json"
        assert ws.state is ConnectionState.CONNECTED


async def test_error_handler_that_raises_does_not_break_the_client(feed_server: FeedServer) -> None:
    got = Collector()

    def bad_error_handler(error: ExchangeAPIError) -> None:
        raise RuntimeError("error handler bug")

    config = create_websocket_config(feed_server.url, max_messages_per_second=100.0)
    async with LoopbackFeedClient(ExchangeName("eh"), config, got.on_message, bad_error_handler) as ws:
        await ws.subscribe(STREAMS[:1])
        feed_server.send_raw(b"garbage")
        feed_server.publish(2)
        await got.wait_messages(2)
        assert ws.metrics["parse_errors"] == 1


async def test_async_error_handler(feed_server: FeedServer) -> None:
    seen: list[ExchangeAPIError] = []

    async def on_error(error: ExchangeAPIError) -> None:
        await asyncio.sleep(0)
        seen.append(error)

    config = create_websocket_config(feed_server.url, max_messages_per_second=100.0)
    async with LoopbackFeedClient(ExchangeName("aeh"), config, Collector().on_message, on_error):
        feed_server.send_raw(b"garbage")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert isinstance(seen[0], InvalidMessageError)


async def test_subscribe_rejection_raises_403(feed_server: FeedServer) -> None:
    got = Collector()
    async with client(feed_server, got) as ws:
        with pytest.raises(SubscriptionRejectedError) as info:
            await ws.subscribe(["badcoin@depth"])
        assert info.value.code == 403 and info.value.exchange_code == 2
        assert "invalid stream" in info.value.exchange_message
        assert "badcoin@depth" not in ws.subscriptions


async def test_subscribe_timeout_raises_408(feed_server: FeedServer) -> None:
    feed_server.ignore_requests = True
    got = Collector()
    async with client(feed_server, got, subscription_timeout=0.2) as ws:
        start = time.monotonic()
        with pytest.raises(ExchangeTimeoutError) as info:
            await ws.subscribe(STREAMS)
        assert info.value.code == 408
        assert 0.19 <= time.monotonic() - start < 2.0   # uvloop timers have 1 ms granularity


async def test_pending_subscriptions_are_sent_in_order_after_connect(feed_server: FeedServer) -> None:
    got = Collector()
    ws = client(feed_server, got)
    await ws.subscribe(["a@depth", "b@depth"])
    await ws.subscribe(["c@depth"])
    assert (await ws.health_check())["pending_subscriptions"] == ["a@depth", "b@depth", "c@depth"]
    await ws.start()
    try:
        await feed_server.wait_subscribed(["a@depth", "b@depth", "c@depth"])
        subscribe_params = [p for r in feed_server.requests for p in r["params"]]
        assert subscribe_params == ["a@depth", "b@depth", "c@depth"]
    finally:
        await ws.stop()


async def test_pending_queue_is_bounded(feed_server: FeedServer) -> None:
    ws = client(feed_server, Collector(), max_pending_subscriptions=3)
    await ws.subscribe(["a", "b"])
    with pytest.raises(RateLimitError, match="pending subscription queue full"):
        await ws.subscribe(["c", "d"])
    await ws.stop()


async def test_unsubscribe(feed_server: FeedServer) -> None:
    async with client(feed_server, Collector()) as ws:
        await ws.subscribe(STREAMS)
        await ws.unsubscribe(STREAMS[:1])
        assert ws.subscriptions == STREAMS[1:]
        assert feed_server.subscribed() == set(STREAMS[1:])


async def test_resubscribe_after_server_drop_reports_the_gap(feed_server: FeedServer) -> None:
    got = Collector()
    async with client(feed_server, got) as ws:
        await ws.subscribe(STREAMS)
        feed_server.publish(1)
        await got.wait_messages(2)
        feed_server.drop_all(code=1011)
        await feed_server.wait_connections(2)
        await feed_server.wait_subscribed(STREAMS)
        await ws.wait_for_state(ConnectionState.CONNECTED, timeout=5)
        feed_server.publish(1)
        await got.wait_messages(4)
        health = await ws.health_check()
        assert health["metrics"]["reconnections"] == 1
        assert health["metrics"]["messages_delivered"] == 4   # totals survive the reconnect
        gap = ws.gaps[0]
        assert "1011" in gap.reason and gap.end is not None and gap.duration < 2.0


async def test_reset_without_close_frame_reconnects(feed_server: FeedServer) -> None:
    async with client(feed_server, Collector()) as ws:
        await ws.subscribe(STREAMS[:1])
        feed_server.drop_all(code=None)
        await feed_server.wait_connections(2)
        await feed_server.wait_subscribed(STREAMS[:1])
        # A reset is told apart from a close: the reason says no close frame came.
        assert ws.gaps and ws.gaps[0].reason == "connection lost (no close frame)"


async def test_backoff_delays_between_refused_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fastws")
    states: list[tuple[float, ConnectionState]] = []
    async with FeedServer() as server:
        url = server.url
    # The server is gone: every attempt is refused.
    got = Collector()
    config = create_websocket_config(url, reconnect_delay=0.1, reconnect_backoff=2.0,
                                     max_reconnect_delay=0.4, reconnect_jitter=0.0,
                                     max_reconnect_attempts=4, timeout=1.0)
    ws = LoopbackFeedClient(ExchangeName("backoff"), config, got.on_message, got.on_error)
    ws.add_state_listener(lambda old, new, reason: states.append((time.monotonic(), new)))
    with pytest.raises(ExchangeAPIError):
        await ws.start()
    assert ws.state is ConnectionState.FAILED
    attempts = [t for t, s in states if s is ConnectionState.CONNECTING]
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    # The policy's delays, as the supervisor chose them: 0.1, 0.2, 0.4, 0.4 (capped), no jitter.
    delays = [r.delay for r in caplog.records if r.getMessage().startswith("reconnecting in")]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.4], abs=1e-9)
    # Each was waited in full: an attempt never comes early (a busy machine only makes it late).
    assert len(attempts) == 5
    for measured, expected in zip(gaps, delays):
        assert measured >= expected - 0.002     # uvloop timers have 1 ms granularity
    assert sum(1 for e in got.errors if e.code == 500) >= 5   # each refusal and the final failure
    await ws.stop()


async def test_stale_feed_reconnects(feed_server: FeedServer) -> None:
    async with client(feed_server, Collector(), stale_timeout=0.3) as ws:
        start = time.monotonic()
        await feed_server.wait_connections(2, timeout=3)
        await ws.wait_for_state(ConnectionState.CONNECTED, timeout=3)
        assert 0.25 <= time.monotonic() - start < 2.0
        assert "stale" in ws.gaps[0].reason


async def test_missing_pong_reconnects(feed_server: FeedServer) -> None:
    feed_server.answer_pings = False
    async with client(feed_server, Collector(), ping_interval=0.2, pong_timeout=0.2,
                      stale_timeout=None) as ws:
        start = time.monotonic()
        await feed_server.wait_connections(2, timeout=3)
        elapsed = time.monotonic() - start
        assert 0.35 <= elapsed < 2.0   # ping after 0.2 s idle, then 0.2 s for the pong
        await ws.wait_for_state(ConnectionState.CONNECTED, timeout=3)
        assert ws.metrics["reconnections"] >= 1


async def test_answered_pings_keep_the_connection(feed_server: FeedServer) -> None:
    # Four pings answered, each awaited (not a fixed sleep): a ping goes out
    # only after the previous one was answered and read.
    async with client(feed_server, Collector(), ping_interval=0.25, pong_timeout=0.25,
                      stale_timeout=None) as ws:
        await until(lambda: feed_server.pings_received >= 4, 10, "four pings answered")
        assert feed_server.connection_count == 1 and ws.state is ConnectionState.CONNECTED
        assert ws.metrics["reconnections"] == 0


async def test_max_connection_age_rotates_after_a_break(feed_server: FeedServer) -> None:
    async with client(feed_server, Collector(), max_connection_age=0.3, make_before_break=False) as ws:
        await ws.subscribe(STREAMS[:1])
        await feed_server.wait_connections(2, timeout=3)
        await feed_server.wait_subscribed(STREAMS[:1])
        assert "max_connection_age" in ws.gaps[0].reason


async def test_max_connection_age_rotates_before_the_break(feed_server: FeedServer) -> None:
    async with client(feed_server, Collector(), max_connection_age=0.3) as ws:
        await ws.subscribe(STREAMS[:1])
        await feed_server.wait_connections(3, timeout=3)
        await feed_server.wait_subscribed(STREAMS[:1])
        assert ws.metrics["rotations"] >= 1 and ws.is_connected
        assert ws.gaps == []


async def test_reconnect_attempts_exhausted_means_failed(feed_server: FeedServer) -> None:
    got = Collector()
    ws = client(feed_server, got, max_reconnect_attempts=2, reconnect_delay=0.05,
                reconnect_jitter=0.0, timeout=1.0)
    await ws.start()
    await feed_server.stop()
    await ws.wait_for_state(ConnectionState.FAILED, timeout=5)
    assert any("gave up" in str(e) for e in got.errors)
    await ws.stop()
    assert ws.state is ConnectionState.CLOSED


async def test_handshake_that_never_completes_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(10)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    got = Collector()
    config = create_websocket_config(f"ws://127.0.0.1:{port}/", timeout=0.3, max_reconnect_attempts=1,
                                     reconnect_delay=0.05, reconnect_jitter=0.0)
    ws = LoopbackFeedClient(ExchangeName("hs"), config, got.on_message, got.on_error)
    start = time.monotonic()
    with pytest.raises(ExchangeAPIError):
        await ws.start()
    assert time.monotonic() - start < 3.0
    assert any(e.code == 408 for e in got.errors)
    await ws.stop()
    server.close()


@pytest.mark.parametrize("when", ["never-started", "connecting", "connected", "reconnecting", "failed"])
async def test_stop_from_every_state_leaves_nothing_behind(when: str) -> None:
    tasks_before = other_tasks()
    fds_before = open_fds()
    async with FeedServer() as server:
        got = Collector()
        ws = client(server, got, reconnect_delay=5.0, max_reconnect_delay=5.0, timeout=2.0,
                    max_reconnect_attempts=1 if when == "failed" else 10)
        if when == "connecting":
            server.ignore_requests = True
            start = asyncio.get_running_loop().create_task(ws.start())
            await ws.wait_for_state(ConnectionState.CONNECTING, timeout=2)
        elif when in ("connected", "reconnecting", "failed"):
            await ws.start()
            await ws.subscribe(STREAMS)
            if when in ("reconnecting", "failed"):
                server.drop_all()
                await server.stop()
                await ws.wait_for_state(ConnectionState.RECONNECTING if when == "reconnecting"
                                        else ConnectionState.FAILED, timeout=5)
        await ws.stop()
        assert ws.state is ConnectionState.CLOSED
        if when == "connecting":
            with pytest.raises(ExchangeAPIError):
                await start
        await ws.stop()   # twice is fine
    await until(lambda: other_tasks() - tasks_before == set() and open_fds() <= fds_before, 5,
                "every task ended and every socket closed")


async def test_stop_while_handshake_pending_closes_the_socket() -> None:
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read(65536)
        await asyncio.sleep(10)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fds_before = open_fds()
    tasks_before = other_tasks()
    config = create_websocket_config(f"ws://127.0.0.1:{port}/", timeout=5.0)
    ws = LoopbackFeedClient(ExchangeName("hs"), config, Collector().on_message)
    start = asyncio.get_running_loop().create_task(ws.start())
    await asyncio.wait_for(accepted.wait(), 2)
    await ws.stop()
    with pytest.raises(ExchangeAPIError):
        await start
    # The server's own accepted socket (and its handler task) may linger.
    await until(lambda: open_fds() <= fds_before + 1
                and other_tasks() - tasks_before <= {t for t in asyncio.all_tasks() if "silent" in repr(t)},
                5, "the client's socket closed and its tasks ended")
    server.close()


async def test_health_check_keys_and_values(feed_server: FeedServer) -> None:
    got = Collector()
    ws = client(feed_server, got)
    health = await ws.health_check()
    assert health["state"] == "disconnected" and health["is_connected"] is False
    assert health["last_message_age"] is None
    async with ws:
        await ws.subscribe(STREAMS)
        feed_server.publish(1)
        await got.wait_messages(len(STREAMS))
        health = await ws.health_check()
        assert {"exchange", "state", "is_connected", "subscriptions", "reconnect_attempts",
                "last_message_age", "metrics"} <= set(health)
        assert health["exchange"] == "loopback" and health["state"] == "connected"
        assert health["is_connected"] is True and health["subscriptions"] == STREAMS
        assert health["reconnect_attempts"] == 0
        assert 0 <= health["last_message_age"] < 1.0
        metrics = health["metrics"]
        for key in ("messages_received", "messages_sent", "connections", "reconnections", "errors",
                    "connection_uptime", "bytes_received", "parse_errors", "handler_errors", "latency_us"):
            assert key in metrics
        assert metrics["messages_sent"] == 1 and metrics["connections"] == 1
        assert metrics["latency_us"]["p50"] is not None


async def test_state_transitions_are_observable(feed_server: FeedServer) -> None:
    seen: list[tuple[str, str]] = []
    ws = client(feed_server, Collector())
    ws.add_state_listener(lambda old, new, reason: seen.append((old.value, new.value)))
    async with ws:
        pass
    assert seen == [("disconnected", "connecting"), ("connecting", "connected"),
                    ("connected", "closing"), ("closing", "closed")]


async def test_send_message_kinds_and_not_connected(feed_server: FeedServer) -> None:
    ws = client(feed_server, Collector())
    with pytest.raises(ExchangeAPIError, match="not connected"):
        await ws.send_message({"method": "PING"})
    async with ws:
        await ws.send_message({"method": "SUBSCRIBE", "params": ["x@depth"], "id": 99})
        await ws.send_message('{"method": "SUBSCRIBE", "params": ["y@depth"], "id": 100}')
        await ws.send_message(b"\x00\x01")
        await feed_server.wait_subscribed(["x@depth", "y@depth"])
        assert ws.metrics["messages_sent"] == 3


async def test_tests_run_on_uvloop() -> None:
    import uvloop
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


class FailsAfterOpening(LoopbackFeedClient):
    """An adapter whose _connect opens the socket and then fails."""

    async def _connect(self) -> None:
        await self._open_websocket()
        raise RuntimeError("login step failed")


async def test_connect_failing_after_the_socket_opened_closes_it(feed_server: FeedServer) -> None:
    fds_before = open_fds()
    got = Collector()
    config = create_websocket_config(feed_server.url, max_reconnect_attempts=2, reconnect_delay=0.01,
                                     reconnect_jitter=0.0)
    ws = FailsAfterOpening(ExchangeName("half"), config, got.on_message, got.on_error)
    with pytest.raises(ExchangeAPIError):
        await ws.start()
    assert ws.state is ConnectionState.FAILED
    assert any("login step failed" in str(e) for e in got.errors)
    await ws.stop()
    # The server sees every socket close; none is left open here.
    await until(lambda: feed_server.connections == [] and open_fds() <= fds_before, 5, "every socket closed")


class BrokenReconnectClient(LoopbackFeedClient):
    """An adapter with a bug: its hook raises on every attempt after the first."""

    attempts = 0

    async def _before_connect(self) -> None:
        self.attempts += 1
        if self.attempts > 1:
            raise RuntimeError("adapter bug")


async def test_a_supervisor_that_dies_of_a_bug_is_not_a_silent_feed(feed_server: FeedServer) -> None:
    got = Collector()
    tasks_before = other_tasks()
    ws = client(feed_server, got, cls=BrokenReconnectClient, reconnect_delay=0.05)
    await ws.start()
    feed_server.drop_all(1001)
    state = await ws.wait_for_state(ConnectionState.FAILED, timeout=3)
    assert state is ConnectionState.FAILED
    assert any("internal error in the supervisor: RuntimeError: adapter bug" in e.message for e in got.errors)
    await ws.stop()
    await until(lambda: other_tasks() - tasks_before == set(), 5, "every task ended")


async def test_the_frame_tap_sees_every_message_as_received(feed_server: FeedServer) -> None:
    got = Collector()
    tapped: list[tuple[bytes, int, int]] = []
    async with client(feed_server, got) as ws:
        ws.set_frame_tap(lambda payload, receive_ns, opcode: tapped.append((payload, receive_ns, opcode)))
        await ws.subscribe(STREAMS[:1])
        feed_server.publish(5)
        payload = msgspec.json.encode({"stream": "btcusdt@depth", "data": {"big": "x" * 3000}})
        feed_server.send_fragmented(payload, pieces=3)
        await got.wait_messages(6)
        ws.set_frame_tap(None)
        feed_server.publish(1)
        await got.wait_messages(7)
    data = [msgspec.json.decode(p) for p, _, _ in tapped if b'"stream"' in p]
    assert data == got.messages[:6]                    # the same messages, in order, whole
    assert any(b'"result"' in p for p, _, _ in tapped)  # the subscription's ack too
    assert all(opcode == 1 for _, _, opcode in tapped)
    now = time.time_ns()
    assert all(now - 5_000_000_000 < receive_ns <= now for _, receive_ns, _ in tapped)
