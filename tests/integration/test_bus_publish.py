"""The bus's publishing side against real nats-server processes and the Binance simulator.

What a collector publishes is what the exchange sent, byte for byte, on the stream's
subject with the bus headers; JetStream keeps one copy when two collectors publish the
same frames; NATS going away never holds up the exchange feed, and publishing resumes
by itself when NATS is back.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable

import nats
import pytest

from fastws._core import FramePublisher, payload_digest
from fastws.bus.publisher import BusPublisher
from fastws.bus.storage import StorageSettings, StreamSettingsError, ensure_stream, stream_name
from fastws.bus.subjects import (HEADER_EVENT_MS, HEADER_MSG_ID, HEADER_OPCODE, HEADER_RECV_NS, message_id,
                                 parse_subject)
from fastws.registry import get_exchange
from fastws.testing.nats import NatsServer
from fastws.types import ExchangeName

STREAMS = ["btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@trade"]


async def _until(condition: Callable[[], bool], timeout: float, what: Any) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.02)


def _sent(sim: Any) -> int:
    """Data frames the simulator has sent so far."""
    return sum(sim.sent_counts.values())


def _client(sim: Any, on_message: Callable[..., Any], *, typed: bool = False) -> Any:
    entry = get_exchange("binance")
    options = {"typed": True} if typed else {}
    return entry.client(ExchangeName("binance"), entry.config(str(sim.url)), on_message, lambda e: None, **options)


async def _subscribe(url: str) -> tuple[Any, list[Any]]:
    """A NATS connection keeping every message of the exchange's subjects in the list."""
    nc = await nats.connect(url)
    received: list[Any] = []

    async def keep(msg: Any) -> None:
        received.append(msg)
    await nc.subscribe("md.binance.*", cb=keep)
    await nc.flush()
    return nc, received


# ------------------------------------------------------------------ the core part alone

def test_the_core_writes_one_hpub_frame_per_message_with_the_bus_headers() -> None:
    pending: list[int] = []
    frames = FramePublisher(lambda s: (f"md.x.{s}".encode(), f"x.{s}.".encode()), lambda: pending.append(1))
    frames.publish_frame("a", b'{"E":1}', 1_700_000_000_123_456_789, 1_700_000_000_123_000_000, 1)
    frames.publish_frame("b", b"\x00\x01", 5, 0, 2)
    data, count = frames.take()
    assert count == 2 and pending == [1]
    first_header = (b"NATS/1.0\r\nNats-Msg-Id: x.a." + b"%016x" % payload_digest(b'{"E":1}') +
                    b"\r\nFastws-Recv-Ns: 1700000000123456789\r\nFastws-Event-Ms: 1700000000123"
                    b"\r\nFastws-Opcode: 1\r\n\r\n")
    second_header = (b"NATS/1.0\r\nNats-Msg-Id: x.b." + b"%016x" % payload_digest(b"\x00\x01") +
                     b"\r\nFastws-Recv-Ns: 5\r\nFastws-Opcode: 2\r\n\r\n")
    assert data == (b"HPUB md.x.a %d %d\r\n" % (len(first_header), len(first_header) + 7) + first_header +
                    b'{"E":1}\r\n' +
                    b"HPUB md.x.b %d %d\r\n" % (len(second_header), len(second_header) + 2) + second_header +
                    b"\x00\x01\r\n")
    assert frames.take() == (b"", 0)
    frames.publish_frame("a", b"x", 1)
    assert pending == [1, 1]     # a new batch calls again


def test_the_core_drops_and_counts_past_its_bound_and_skips_streams_without_a_subject() -> None:
    frames = FramePublisher(lambda s: None if s == "off" else (b"s." + s.encode(), b"i."), lambda: None,
                            max_buffer_bytes=1024)
    payload = b"p" * 300
    for _ in range(5):
        frames.publish_frame("on", payload, 1)
    frames.publish_frame("off", payload, 1)
    assert frames.published == 2 and frames.dropped == 3 and frames.unrouted == 1
    assert frames.buffered_bytes <= 1024
    frames.take()
    frames.publish_frame("on", payload, 1)
    assert frames.published == 3 and frames.dropped == 3


# ------------------------------------------------------------------ through real NATS

@pytest.mark.parametrize("typed", [False, True], ids=["dict-route", "typed-route"])
async def test_published_frames_equal_the_exchange_frames_byte_for_byte(
        nats_server: NatsServer, binance_simulator: Any, typed: bool) -> None:
    tapped: list[bytes] = []
    delivered: list[Any] = []
    client = _client(binance_simulator, lambda *m: delivered.append(m), typed=typed)
    client.set_frame_tap(lambda payload, ns, opcode: tapped.append(payload))
    pub_nc = await nats.connect(nats_server.url)
    sub_nc, received = await _subscribe(nats_server.url)
    publisher = BusPublisher("binance", pub_nc)
    publisher.attach(client)
    await publisher.start()
    before = time.time_ns()
    try:
        async with client:
            await client.subscribe(STREAMS)
            await binance_simulator.wait_subscribed(STREAMS, timeout=5)
            binance_simulator.step(20)
            await _until(lambda: len(delivered) >= 60 and len(received) >= len(delivered), 10,
                         "the frames on NATS")
    finally:
        await publisher.stop()
        await pub_nc.close()
        await sub_nc.close()
    # Every data frame the exchange sent (the tap also saw the acks, which are not data).
    data_frames = [f for f in tapped if b'"stream"' in f]
    assert len(data_frames) == len(delivered) == len(received) == publisher.counters()["published"]
    assert [m.data for m in received] == data_frames
    for msg in received:
        envelope = json.loads(msg.data)
        exchange, stream = parse_subject(msg.subject)
        assert (exchange, stream) == ("binance", envelope["stream"])
        headers = msg.headers
        assert headers[HEADER_MSG_ID] == message_id("binance", stream, payload_digest(msg.data))
        assert before <= int(headers[HEADER_RECV_NS]) <= time.time_ns()
        assert headers[HEADER_OPCODE] == "1"
        assert int(headers[HEADER_EVENT_MS]) == envelope["data"]["E"]
    assert publisher.dropped == 0 and publisher.failed == 0


async def test_jetstream_keeps_one_copy_of_what_two_collectors_publish(
        nats_server: NatsServer, binance_simulator: Any) -> None:
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_stream(js, "binance", StorageSettings(duplicate_window=10))
    counts = [0, 0]
    clients, publishers, connections = [], [], []
    for i in range(2):
        def count(*_: Any, i: int = i) -> None:
            counts[i] += 1
        client = _client(binance_simulator, count)
        conn = await nats.connect(nats_server.url)
        publisher = BusPublisher("binance", conn)
        publisher.attach(client)
        await publisher.start()
        clients.append(client)
        publishers.append(publisher)
        connections.append(conn)
    try:
        for client in clients:
            await client.start()
            await client.subscribe(STREAMS)
        await _until(lambda: len(binance_simulator.connections) == 2 and all(
            set(STREAMS) <= set(c.subscriptions) for c in binance_simulator.connections), 5, "two subscribers")
        for _ in range(10):
            binance_simulator.step(3)
            await asyncio.sleep(0.02)
        await _until(lambda: counts[0] == counts[1] >= 90, 10, lambda: f"both collectors' frames: {counts}")
        sent = counts[0]
        await _until(lambda: all(p.counters()["published"] == sent for p in publishers), 5, "publishing")
        for conn in connections:
            await conn.flush()
        info = await js.stream_info(stream_name("binance"))
        assert info.state.messages == sent
        # Each stored message once: its id is unique in the stream.
        sub = await js.subscribe("md.binance.*", ordered_consumer=True)
        ids = set()
        for _ in range(sent):
            msg = await sub.next_msg(timeout=5)
            ids.add(msg.headers[HEADER_MSG_ID])
        assert len(ids) == sent
    finally:
        for client in clients:
            await client.stop()
        for publisher in publishers:
            await publisher.stop()
        for conn in connections + [nc]:
            await conn.close()


async def test_a_second_collector_refuses_a_stream_with_other_settings(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        first = await ensure_stream(js, "binance", StorageSettings(max_age=60, duplicate_window=2))
        again = await ensure_stream(js, "binance", StorageSettings(max_age=60, duplicate_window=2))
        assert first.config.max_age == again.config.max_age == 60
        with pytest.raises(StreamSettingsError, match=r"max_age 60 \(ours: 120\)"):
            await ensure_stream(js, "binance", StorageSettings(max_age=120, duplicate_window=2))
        info = await js.stream_info("MD_BINANCE")
        assert info.config.max_age == 60          # not changed
    finally:
        await nc.close()


async def test_nats_going_away_never_holds_up_the_exchange_feed(
        nats_server: NatsServer, binance_simulator: Any) -> None:
    delivered: list[Any] = []
    client = _client(binance_simulator, lambda *m: delivered.append(m))
    pub_nc = await nats.connect(nats_server.url, reconnect_time_wait=0.2, max_reconnect_attempts=-1,
                                connect_timeout=1, pending_size=64 * 1024)
    publisher = BusPublisher("binance", pub_nc, max_pending_bytes=64 * 1024)
    publisher.attach(client)
    await publisher.start()
    payloads: list[Any] = []
    sub_nc = None
    try:
        async with client:
            await client.subscribe(STREAMS)
            await binance_simulator.wait_subscribed(STREAMS, timeout=5)
            nats_server.kill()
            # The feed goes on while NATS is away: each step is delivered at once.
            for _ in range(60):
                binance_simulator.step(5)
                await _until(lambda: len(delivered) == _sent(binance_simulator), 2, "the exchange's frames")
            assert publisher.dropped > 0        # past the pending bound: counted, not waited for
            dropped = publisher.dropped
            nats_server.start()
            sub_nc, payloads = await _subscribe(nats_server.url)
            await _until(lambda: pub_nc.is_connected, 10, "the publisher's reconnection")
            before = len(delivered)
            binance_simulator.step(5)
            await _until(lambda: len(delivered) == _sent(binance_simulator), 2, "the exchange's frames")
            await _until(lambda: len(payloads) >= len(delivered) - before > 0, 10, "frames published after the return")
            assert publisher.dropped == dropped
    finally:
        await publisher.stop()
        await pub_nc.close()
        if sub_nc is not None:
            await sub_nc.close()
    counters = publisher.counters()
    assert counters["published"] + counters["dropped"] == len(delivered)


async def test_a_collector_started_while_nats_is_unreachable_counts_and_recovers_by_itself(
        tmp_path: Any, binance_simulator: Any) -> None:
    from fastws.bus.collector import Collector

    server = NatsServer(tmp_path / "late")          # ports chosen, not started yet
    collector = Collector("binance", STREAMS[:2], [server.url], url=str(binance_simulator.url),
                          storage=StorageSettings(duplicate_window=2))
    sub_nc = None
    try:
        await collector.start(connect_timeout=5)
        await binance_simulator.wait_subscribed(STREAMS[:2], timeout=5)
        binance_simulator.step(10)
        await _until(lambda: collector.messages == _sent(binance_simulator) > 0, 5, "the exchange's frames")
        await _until(lambda: collector.publisher.dropped == collector.messages, 5, "the unpublished ones counted")
        assert collector.nc is None and collector.nats_errors > 0
        server.start()
        await collector.wait_nats(10)
        sub_nc, received = await _subscribe(server.url)
        binance_simulator.step(10)
        await _until(lambda: len(received) == _sent(binance_simulator) - collector.publisher.dropped, 10,
                     lambda: f"frames published once NATS answered: {len(received)}, sent {_sent(binance_simulator)}, "
                             f"{collector.publisher.counters()}")
        health = await collector.health()
        assert health["publisher"]["nats"] == "connected" and health["publisher"]["published"] == len(received)
    finally:
        await collector.stop()
        if sub_nc is not None:
            await sub_nc.close()
        server.stop()


async def test_the_collect_command_refuses_a_stream_with_other_settings_and_bad_arguments(
        nats_server: NatsServer, binance_simulator: Any) -> None:
    import sys

    nc = await nats.connect(nats_server.url)
    try:
        await ensure_stream(nc.jetstream(), "binance", StorageSettings(max_age=60, duplicate_window=2))
    finally:
        await nc.close()

    async def collect(*extra: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastws", "collect", "binance", "btcusdt@trade", "--nats", nats_server.url,
            "--url", str(binance_simulator.url), "--status-interval", "0.2", "--duration", "10", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 30)
        return process.returncode or 0, err.decode()

    status, err = await collect("--max-age", "120")
    assert status == 1 and "MD_BINANCE exists with other settings: max_age 60 (ours: 120)" in err, err
    status, err = await collect("--replicas", "2")
    assert status == 2 and "--replicas needs --fleet" in err, err


def _hpub_payloads(data: bytes) -> list[bytes]:
    """The payloads of a buffer of HPUB frames."""
    payloads = []
    while data:
        line, _, rest = data.partition(b"\r\n")
        _, _, header_size, total_size = line.split(b" ")
        payloads.append(rest[int(header_size):int(total_size)])
        assert rest[int(total_size):int(total_size) + 2] == b"\r\n"
        data = rest[int(total_size) + 2:]
    return payloads


async def test_a_message_whose_async_parser_suspended_is_counted_not_published_from_a_stale_buffer() -> None:
    from fastws.config import WebSocketConfig
    from fastws.testing.feed import FeedServer, LoopbackFeedClient

    class SometimesSuspending(LoopbackFeedClient):
        parsed = 0

        async def _parse_message(self, raw_message: Any) -> Any:
            message = await super()._parse_message(raw_message)
            if message is not None and "stream" in message:
                SometimesSuspending.parsed += 1
                if SometimesSuspending.parsed % 3 == 0:
                    await asyncio.sleep(0)       # suspends: the read buffer moves on
            return message

    delivered: list[Any] = []
    frames = FramePublisher(lambda s: (b"md.feed." + s.encode(), b"feed." + s.encode() + b"."), lambda: None)
    async with FeedServer() as server:
        client = SometimesSuspending(ExchangeName("feed"), WebSocketConfig(url=server.url),
                                     lambda m: delivered.append(m))
        client.set_frame_publisher(frames)
        async with client:
            await client.subscribe(["a@depth", "b@depth"])
            await server.wait_subscribed(["a@depth", "b@depth"])
            sent = server.publish(30)
            await _until(lambda: len(delivered) == sent, 5, "every message delivered")
    payloads = _hpub_payloads(frames.take()[0])
    # A parser that suspended on a message in the read buffer leaves it unpublishable
    # (counted); every other message was published from its own bytes: those waiting
    # behind it are copies, and a parser suspending on a copy keeps it alive.
    assert frames.unpublishable >= 1
    assert len(payloads) == frames.published == sent - frames.unpublishable
    assert {json.dumps(json.loads(p), sort_keys=True) for p in payloads} <= \
        {json.dumps(m, sort_keys=True) for m in delivered}
    assert len(set(payloads)) == len(payloads)


async def test_every_connection_of_a_pool_publishes_those_opened_before_and_after(binance_simulator: Any) -> None:
    from exchanges.binance import BinanceWebSocket, binance_config

    class TwoPerConnection(BinanceWebSocket):
        max_streams_per_connection = 2

    streams = ["a@trade", "b@trade", "c@trade", "d@trade", "e@trade"]
    delivered: list[Any] = []
    frames = FramePublisher(lambda s: (b"md.binance." + s.encode(), b"binance." + s.encode() + b"."), lambda: None)
    ws = TwoPerConnection(ExchangeName("binance"), binance_config(str(binance_simulator.url)),
                          lambda m: delivered.append(m), lambda e: None)
    async with ws:
        await ws.subscribe(streams[:4])              # two connections, before the publisher
        ws.set_frame_publisher(frames)
        await ws.subscribe(streams[4:])              # a third one, after it
        await binance_simulator.wait_subscribed(streams, timeout=5)
        assert len(binance_simulator.connections) == 3
        binance_simulator.step(10)
        await _until(lambda: len(delivered) == _sent(binance_simulator) > 0, 5, "the frames")
        while_set = len(delivered)
        ws.set_frame_publisher(None)
        binance_simulator.step(5)
        await _until(lambda: len(delivered) == _sent(binance_simulator), 5, "the frames after")
    payloads = _hpub_payloads(frames.take()[0])
    # Every frame of every connection while the publisher was set, none after.
    assert frames.published == len(payloads) == while_set < len(delivered)
    assert {json.loads(p)["stream"] for p in payloads} == set(streams)
