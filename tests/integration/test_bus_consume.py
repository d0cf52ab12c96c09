"""The bus's consuming side against real nats-server processes and real Binance frames.

Frames come from the Binance simulator (recorded through a direct client's
frame tap, tests/bus_publisher.py) and are published in the bus's format; the
consumer is the same ``BinanceWebSocket`` with ``use_bus``.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import json
import sys
from typing import Any, AsyncIterator, Optional

import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from fastws import ConnectionState, ExchangeAPIError, ExchangeName, SequenceGapError
from fastws.bus.source import PURE_PYTHON_VARIABLE, BusLink, BusSource, parse_since
from fastws.bus.subjects import HEADER_MSG_ID, HEADER_OPCODE, message_id, stream_subject
from fastws.errors import InvalidMessageError
from fastws.testing.nats import NatsCluster, NatsServer
from tests.bus_publisher import EXCHANGE, Frame, Publisher, Recorder, headers_of, record, until
from tests.conftest import other_tasks, run_fastws

pytestmark = pytest.mark.asyncio

DEPTH = "btcusdt@depth@100ms"
STREAMS = [DEPTH, "btcusdt@trade", "ethusdt@depth@100ms"]


class Consumer:
    """A bus consumer: the Binance adapter with ``use_bus``, and what its handlers got."""

    def __init__(self, servers: Any, typed: bool = False, rest_url: Optional[str] = None, **bus: Any) -> None:
        self.outputs: list[Any] = []
        self.errors: list[ExchangeAPIError] = []
        self.states: list[ConnectionState] = []
        options: dict[str, Any] = {"reconnect_delay": 0.1, "max_reconnect_delay": 0.5, "timeout": 3.0,
                                   "max_reconnect_attempts": 100}
        if rest_url is not None:
            options["rest_url"] = rest_url
        # The exchange URL is never dialled: the bus replaces the WebSocket.
        config = binance_config("wss://stream.binance.com:9443", **options)
        self.client = BinanceWebSocket(ExchangeName(EXCHANGE), config, self._on_message, self.errors.append,
                                       typed=typed)
        self.client.add_state_listener(lambda old, new, reason: self.states.append(new))
        self.source: BusSource = self.client.use_bus(servers, **bus)

    def _on_message(self, *args: Any) -> None:
        self.outputs.append(args)

    async def start(self, streams: list[str]) -> None:
        await self.client.start(timeout=10)
        await self.client.subscribe(streams)


@contextlib.asynccontextmanager
async def consuming(servers: Any, streams: list[str], **options: Any) -> AsyncIterator[Consumer]:
    """A started consumer, stopped after the block, which must leave no task behind."""
    before = other_tasks()
    consumer = Consumer(servers, **options)
    try:
        await consumer.start(streams)
        yield consumer
    finally:
        await consumer.client.stop()
    await asyncio.sleep(0.05)
    assert other_tasks() - before == set(), "stop() left tasks behind"
    assert consumer.client.state is ConnectionState.CLOSED


@pytest.fixture
async def simulator() -> AsyncIterator[BinanceSimulator]:
    async with BinanceSimulator(rate=0, ping_interval=0) as sim:
        yield sim


def per_stream(outputs: list[Any]) -> dict[str, list[Any]]:
    """Handler outputs grouped by stream, in order: the bus keeps each stream's order, not the
    interleaving of streams (their subjects may come from different collectors)."""
    grouped: dict[str, list[Any]] = {}
    for args in outputs:
        stream = args[0] if len(args) == 2 else args[0]["stream"]
        grouped.setdefault(stream, []).append(args)
    return grouped


def sequence_ids(outputs: list[Any], stream: str = DEPTH) -> list[tuple[int, int]]:
    """(U, u) of every dict-mode depth update of ``stream`` the handler got."""
    return [(m["data"]["U"], m["data"]["u"]) for (m,) in outputs if m.get("stream") == stream]


@pytest.fixture(params=["compiled", "python"])
def read_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Live delivery through the compiled loop, and through its Python twin."""
    if request.param == "python":
        monkeypatch.setenv(PURE_PYTHON_VARIABLE, "1")
    return str(request.param)


@pytest.mark.parametrize("typed", [False, True], ids=["dict", "typed"])
async def test_the_consumer_hands_over_what_a_direct_client_does(nats_server: NatsServer,
                                                                  simulator: BinanceSimulator, typed: bool,
                                                                  read_loop: str) -> None:
    recorded = await record(simulator, STREAMS, 40, typed=typed)
    assert len(recorded.frames) >= 80 and recorded.outputs
    async with consuming(nats_server.url, STREAMS, typed=typed) as consumer:
        assert (consumer.client._ws._reader._compiled is None) == (read_loop == "python")
        publisher = await Publisher.connect(nats_server.url)
        try:
            await publisher.publish_all(recorded.frames)
            await until(lambda: len(consumer.outputs) >= len(recorded.outputs), what="every frame consumed")
            await asyncio.sleep(0.05)
        finally:
            await publisher.close()
        assert per_stream(consumer.outputs) == per_stream(recorded.outputs)
        assert not consumer.errors
        health = await consumer.client.health_check()
        assert health["state"] == "connected"
        assert health["streams"][DEPTH]["messages"] == sum(1 for f in recorded.frames if f.stream == DEPTH)
        assert health["sequence_gaps"] == []


async def test_two_replicas_deliver_each_frame_once_in_order_and_one_may_stop(
        nats_server: NatsServer, simulator: BinanceSimulator) -> None:
    recorded = await record(simulator, STREAMS, 60)
    frames = recorded.frames
    async with consuming(nats_server.url, STREAMS) as consumer:
        a = await Publisher.connect(nats_server.url)
        b = await Publisher.connect(nats_server.url)
        try:
            # Replica A runs ahead of B by a few frames, then stops two thirds of the way.
            stop_a = 2 * len(frames) // 3
            for i, frame in enumerate(frames):
                if i < stop_a:
                    await a.publish(frame)
                if i >= 3:
                    await b.publish(frames[i - 3])
                if i == stop_a:
                    await a.nc.flush()
                    await a.close()
            for frame in frames[-3:]:
                await b.publish(frame)
            await b.nc.flush()
            await until(lambda: len(consumer.outputs) >= len(recorded.outputs), what="every frame consumed")
            await asyncio.sleep(0.1)
        finally:
            if not a.nc.is_closed:
                await a.close()
            await b.close()
        assert per_stream(consumer.outputs) == per_stream(recorded.outputs)   # each frame once, in order
        assert consumer.client.metrics["overlap_dropped"] == stop_a
        ids = sequence_ids(consumer.outputs)
        assert all(later[0] == earlier[1] + 1 for earlier, later in zip(ids, ids[1:]))
        assert not consumer.errors


async def test_frames_missing_from_every_replica_are_a_sequence_gap(nats_server: NatsServer,
                                                                     simulator: BinanceSimulator) -> None:
    recorded = await record(simulator, [DEPTH], 30)
    lost = recorded.frames[10:13]
    async with consuming(nats_server.url, [DEPTH]) as consumer:
        publisher = await Publisher.connect(nats_server.url)
        try:
            await publisher.publish_all([f for f in recorded.frames if f not in lost])
            await until(lambda: len(consumer.outputs) == len(recorded.frames) - 3, what="the frames published")
        finally:
            await publisher.close()
        gaps = [e for e in consumer.errors if isinstance(e, SequenceGapError)]
        assert len(gaps) == 1 and len(consumer.errors) == 1
        health = await consumer.client.health_check()
        first_lost = msgspec_json(lost[0].payload)["data"]["U"]
        last_lost = msgspec_json(lost[-1].payload)["data"]["u"]
        [gap] = health["sequence_gaps"]
        assert gap["stream"] == DEPTH and gap["expected"] == first_lost and gap["received"] == last_lost + 1
        assert gap["missing"] == last_lost - first_lost + 1


def msgspec_json(payload: bytes) -> Any:
    import msgspec
    return msgspec.json.decode(payload)


async def test_malformed_messages_are_counted_and_reported_and_the_feed_goes_on(
        nats_server: NatsServer, simulator: BinanceSimulator, read_loop: str) -> None:
    recorded = await record(simulator, [DEPTH], 6)
    good = recorded.frames
    async with consuming(nats_server.url, [DEPTH]) as consumer:
        publisher = await Publisher.connect(nats_server.url)
        try:
            bad_id = dict(headers_of(good[1]))
            bad_id[HEADER_MSG_ID] = message_id(EXCHANGE, "ethusdt@trade", 1)
            bad_opcode = dict(headers_of(good[2]))
            bad_opcode[HEADER_OPCODE] = "9"
            not_a_frame = Frame(DEPTH, b'{"stream":"btcusdt@depth@100ms","data":{"e":', 1, 0)
            await publisher.publish(good[0])
            await publisher.publish(good[1], headers={})                 # no headers at all
            await publisher.publish(good[1], headers=bad_id)             # an id of another stream
            await publisher.publish(good[2], headers=bad_opcode)         # not text nor binary
            await publisher.publish(not_a_frame)                         # headers right, not a frame
            for frame in good[1:]:
                await publisher.publish(frame)
            await publisher.nc.flush()
            await until(lambda: len(consumer.outputs) == len(good), what="the good frames")
            await until(lambda: len(consumer.errors) == 4, what="four errors")
        finally:
            await publisher.close()
        assert consumer.outputs == recorded.outputs
        assert all(isinstance(e, InvalidMessageError) for e in consumer.errors)
        assert consumer.source.malformed == 3
        assert consumer.client.metrics["parse_errors"] == 1
        texts = " ".join(e.message for e in consumer.errors)
        assert "no headers" in texts and "Fastws-Opcode" in texts and "not a message id of" in texts


@pytest.mark.parametrize("start", ["sequence", "time"])
async def test_jetstream_replay_from_a_sequence_or_a_time_then_live_without_a_seam(
        nats_server: NatsServer, simulator: BinanceSimulator, start: str) -> None:
    recorded = await record(simulator, [DEPTH], 60)
    frames = recorded.frames
    publisher = await Publisher.connect(nats_server.url)
    try:
        await publisher.add_stream()
        await publisher.publish_all(frames[:20])
        await asyncio.sleep(0.3)
        since = datetime.datetime.now(datetime.timezone.utc)
        await asyncio.sleep(0.3)
        await publisher.publish_all(frames[20:40])
        # Stream sequences start at 1: from 21 on is frames[20:].
        where: dict[str, Any] = {"start_sequence": 21} if start == "sequence" else {"since": since}
        async with consuming(nats_server.url, [DEPTH], **where) as consumer:
            await until(lambda: len(consumer.outputs) == 20, what="the catch-up")
            await publisher.publish_all(frames[40:])        # live from here on
            await until(lambda: len(consumer.outputs) == 40, what="the live frames")
            await asyncio.sleep(0.1)
            assert consumer.outputs == recorded.outputs[20:]
            assert consumer.source.positions[DEPTH] == 61
            assert not consumer.errors
    finally:
        await publisher.close()


@pytest.mark.parametrize("delivery", ["core", "jetstream"])
async def test_nats_gone_for_10_s_the_consumer_reconnects_by_itself_and_reports_the_gap(
        tmp_path: Any, simulator: BinanceSimulator, delivery: str) -> None:
    recorded = await record(simulator, [DEPTH], 20)
    frames = recorded.frames
    server = NatsServer(tmp_path / "nats").start()
    try:
        publisher = await Publisher.connect(server.url)
        if delivery == "jetstream":
            await publisher.add_stream()
        async with consuming(server.url, [DEPTH], jetstream=delivery == "jetstream") as consumer:
            await publisher.publish_all(frames[:10])
            await until(lambda: len(consumer.outputs) == 10, what="the first frames")
            server.stop()
            await until(lambda: consumer.client.state is ConnectionState.RECONNECTING, what="RECONNECTING")
            await asyncio.sleep(10.0)
            assert consumer.client.state is not ConnectionState.FAILED
            server.start()
            await until(lambda: publisher.nc.is_connected, timeout=15.0, what="publisher reconnected")
            if delivery == "jetstream":
                # Stored while the consumer is still away: it resumes after the last stream sequence it had.
                await publisher.publish_all(frames[10:])
            await until(lambda: consumer.client.state is ConnectionState.CONNECTED, timeout=15.0,
                        what="reconnected")
            if delivery == "core":
                await asyncio.sleep(0.2)      # the subscriptions are made once CONNECTED: let them be
                await publisher.publish_all(frames[10:])
            await until(lambda: len(consumer.outputs) == 20, what="frames after the outage")
            await publisher.close()
            assert consumer.outputs == recorded.outputs
            [gap] = consumer.client.gaps
            assert gap.end is not None and gap.duration is not None and gap.duration >= 10.0
            assert "NATS connection" in gap.reason
            assert ConnectionState.RECONNECTING in consumer.states
    finally:
        if not publisher.nc.is_closed:
            await publisher.close()
        server.stop()


async def test_a_killed_cluster_node_loses_nothing_with_jetstream(tmp_path: Any,
                                                                  simulator: BinanceSimulator) -> None:
    recorded = await record(simulator, [DEPTH], 80)
    frames = recorded.frames
    with NatsCluster.started(tmp_path) as cluster:
        publisher = await Publisher.connect(cluster.urls)
        try:
            await publisher.add_stream(replicas=3)
            async with consuming(cluster.urls, [DEPTH], jetstream=True) as consumer:
                link = consumer.client._ws
                # Acked JetStream publishes: a core publish right after the R3 stream was
                # created can land before its leader is ready (seen under load: never stored).
                for frame in frames[:30]:
                    await _publish_retrying(publisher, frame)
                await until(lambda: len(consumer.outputs) == 30, timeout=20.0, what="frames before the kill")
                killed = next(i for i, node in enumerate(cluster.nodes) if node.url == link.server)
                cluster.kill(killed)
                await until(lambda: consumer.client._ws is not link and consumer.client.is_connected,
                            timeout=20.0, what="the consumer on another node")
                for frame in frames[30:]:
                    await _publish_retrying(publisher, frame)
                await until(lambda: len(consumer.outputs) == len(frames), timeout=20.0, what="every frame")
                await asyncio.sleep(0.2)
                assert consumer.outputs == recorded.outputs
                ids = sequence_ids(consumer.outputs)
                assert all(later[0] == earlier[1] + 1 for earlier, later in zip(ids, ids[1:]))
                # The outage is reported (as one gap, or more while the new leader was elected).
                gaps = consumer.client.gaps
                assert gaps and all(gap.end is not None for gap in gaps)
                assert "NATS connection to " + cluster.nodes[killed].url + " lost" == gaps[0].reason
                # Its reconnection made new tasks: closed before the consumer's check for leftovers.
                await publisher.close()
        finally:
            if not publisher.nc.is_closed:
                await publisher.close()


async def _publish_retrying(publisher: Publisher, frame: Frame) -> None:
    """A JetStream publish (acked), retried while the cluster elects a new leader."""
    js = publisher.nc.jetstream()
    for _ in range(100):
        try:
            await js.publish(stream_subject(EXCHANGE, frame.stream), frame.payload, headers=headers_of(frame),
                             timeout=1.0)
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise AssertionError("the cluster did not take a publish")


async def test_a_consumer_that_cannot_reach_nats_keeps_trying_and_stop_leaves_nothing(tmp_path: Any) -> None:
    before = other_tasks()
    server = NatsServer(tmp_path / "nats")     # not started: its port refuses
    consumer = Consumer(server.url)
    task = asyncio.get_running_loop().create_task(consumer.client.start())
    await until(lambda: any("NATS" in e.message for e in consumer.errors), what="a reported failed attempt")
    assert consumer.client.state in (ConnectionState.CONNECTING, ConnectionState.RECONNECTING)
    await consumer.client.stop()
    with contextlib.suppress(Exception):
        await task
    await asyncio.sleep(0.05)
    assert other_tasks() - before == set()


async def test_parse_since_takes_iso_times_and_durations_ago() -> None:
    assert parse_since("2026-11-30T05:00:00Z") == datetime.datetime(2026, 11, 30, 5, tzinfo=datetime.timezone.utc)
    assert parse_since("2026-11-30T05:00:00") == datetime.datetime(2026, 11, 30, 5, tzinfo=datetime.timezone.utc)
    assert parse_since("90s", now=1000.0).timestamp() == 910.0
    assert parse_since("2h", now=10000.0).timestamp() == 2800.0
    with pytest.raises(ValueError, match="not a time"):
        parse_since("yesterday")


@pytest.mark.parametrize("mode", [["--json"], ["--typed"]], ids=["json", "typed"])
async def test_stream_from_the_bus_prints_what_stream_from_the_exchange_prints(
        nats_server: NatsServer, simulator: BinanceSimulator, mode: list[str]) -> None:
    from fastws.commands.stream import run_stream

    steps = 25
    relay = Recorder(simulator.url)
    relay.relay = await Publisher.connect(nats_server.url)
    await relay.relay.add_stream()
    direct_out = io.StringIO()
    try:
        await relay.start([DEPTH])
        direct = asyncio.get_running_loop().create_task(run_stream(
            EXCHANGE, [DEPTH], url=simulator.url, as_json="--json" in mode, typed="--typed" in mode,
            max_messages=steps, out=direct_out, err=io.StringIO()))
        await until(lambda: sum(len(c.subscriptions) for c in simulator.connections) == 2, what="both subscribed")
        for _ in range(steps):
            simulator.step(1)
            await asyncio.sleep(0.002)
        assert await asyncio.wait_for(direct, 10) == steps
    finally:
        await relay.stop()
        await relay.relay.close()
    assert len(relay.frames) == steps
    status, out, err = await run_fastws("stream", EXCHANGE, DEPTH, "--from-bus", nats_server.url, "--since", "1h",
                                        "--max-messages", str(steps), *mode)
    assert status == 0, err
    assert out == direct_out.getvalue()
    assert len(out.splitlines()) == steps
    if "--json" in mode:
        assert [json.loads(line)["stream"] for line in out.splitlines()] == [DEPTH] * steps
    assert f"{EXCHANGE} {nats_server.url}: {DEPTH}" in err


async def test_since_needs_from_bus_and_a_time() -> None:
    status, _, err = await run_fastws("stream", EXCHANGE, DEPTH, "--since", "5m")
    assert status == 2 and "--from-bus" in err
    status, _, err = await run_fastws("stream", EXCHANGE, DEPTH, "--from-bus", "nats://127.0.0.1:1", "--since", "soon")
    assert status == 2 and "not a time" in err


async def test_fastws_imports_and_refuses_the_bus_clearly_without_nats_py() -> None:
    code = ("import sys; sys.modules['nats'] = None\n"
            "import fastws, fastws.bus.source\n"
            "from exchanges.binance import BinanceWebSocket, binance_config\n"
            "client = BinanceWebSocket('binance', binance_config(), print)\n"
            "try:\n    client.use_bus('nats://127.0.0.1:4222')\n"
            "except ImportError as exc:\n    print(exc)\n")
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    assert "pip install 'fastws[nats]'" in out.decode()


async def test_order_books_sync_over_the_bus_as_over_the_exchange(nats_server: NatsServer,
                                                                   simulator: BinanceSimulator) -> None:
    from tests.integration.test_binance_book import agrees, stepping

    relay = Recorder(simulator.url)
    relay.relay = await Publisher.connect(nats_server.url)
    updates: list[int] = []
    try:
        await relay.start([DEPTH])          # a collector of btcusdt@depth@100ms, publishing live
        async with consuming(nats_server.url, [], rest_url=simulator.rest_url) as consumer, \
                stepping(simulator) as stepper:
            books = await consumer.client.subscribe_books(["BTCUSDT"], lambda book: updates.append(book.update_id))
            for _ in range(3):
                await asyncio.sleep(0.1)
                await agrees(simulator, stepper, consumer.client, ["BTCUSDT"])
            assert books["BTCUSDT"].valid and len(updates) > 10
            health = await consumer.client.health_check()
            assert health["books"]["BTCUSDT"]["resyncs"] == 0
            assert not consumer.errors
    finally:
        await relay.stop()
        await relay.relay.close()


async def test_a_killed_cluster_node_is_a_reported_gap_with_core_delivery(tmp_path: Any,
                                                                         simulator: BinanceSimulator) -> None:
    recorded = await record(simulator, [DEPTH], 300)
    frames = recorded.frames
    with NatsCluster.started(tmp_path) as cluster:
        async with consuming(cluster.urls, [DEPTH]) as consumer:
            link = consumer.client._ws
            killed = next(i for i, node in enumerate(cluster.nodes) if node.url == link.server)
            publisher = await Publisher.connect(cluster.nodes[(killed + 1) % 3].url)
            try:
                # Publishing goes on at a steady pace while the consumer moves to another node.
                for i, frame in enumerate(frames):
                    if i == 50:
                        # Killed, and a burst published before the consumer can even see it: lost.
                        cluster.kill(killed)
                    await publisher.publish(frame)
                    if not 50 <= i < 80:
                        await publisher.nc.flush()
                        await asyncio.sleep(0.003)
                assert consumer.client._ws is not link and consumer.client.is_connected
                last = msgspec_json(frames[-1].payload)["data"]["u"]
                await until(lambda: sequence_ids(consumer.outputs)[-1][1] == last, what="the last frame")
            finally:
                await publisher.close()
            ids = sequence_ids(consumer.outputs)
            assert len(set(ids)) == len(ids) and len(ids) < len(frames)      # some lost, none repeated
            print(f"core delivery, node killed: {len(frames) - len(ids)} of {len(frames)} frames lost, "
                  f"in {len(consumer.client.sequence_gaps)} reported sequence gap(s)")
            # Every update lost is inside a reported sequence gap, and the outage is a reported gap.
            reported = [e for e in consumer.errors if isinstance(e, SequenceGapError)]
            gaps = (await consumer.client.health_check())["sequence_gaps"]
            assert len(reported) == len(gaps) >= 1
            for earlier, later in zip(ids, ids[1:]):
                if later[0] != earlier[1] + 1:
                    assert any(g["expected"] == earlier[1] + 1 and g["received"] == later[0] for g in gaps)
            assert consumer.client.gaps and consumer.client.gaps[0].reason.startswith("NATS connection to")


async def test_an_unsubscribed_stream_is_no_longer_delivered_and_can_come_back(
        nats_server: NatsServer, simulator: BinanceSimulator) -> None:
    recorded = await record(simulator, [DEPTH, "btcusdt@trade"], 30)
    depth = [f for f in recorded.frames if f.stream == DEPTH]
    trades = [f for f in recorded.frames if f.stream != DEPTH]
    assert len(depth) >= 30 and len(trades) >= 3
    async with consuming(nats_server.url, [DEPTH, "btcusdt@trade"]) as consumer:
        publisher = await Publisher.connect(nats_server.url)
        try:
            await publisher.publish_all(depth[:10] + trades[:1])
            await until(lambda: len(consumer.outputs) == 11, what="both streams")
            await consumer.client.unsubscribe(DEPTH)
            assert consumer.client.subscriptions == ["btcusdt@trade"]
            await publisher.publish_all(depth[10:20] + trades[1:2])
            await until(lambda: len(consumer.outputs) == 12, what="the trade")
            await asyncio.sleep(0.1)
            assert [args[0]["stream"] for args in consumer.outputs[10:]] == ["btcusdt@trade"] * 2
            await consumer.client.subscribe(DEPTH)       # starts afresh: no gap against the old ids
            await publisher.publish_all(depth[20:])
            await until(lambda: len(consumer.outputs) == 12 + len(depth) - 20, what="depth again")
            assert not consumer.errors and consumer.client.sequence_gaps == []
        finally:
            await publisher.close()


async def test_binary_protobuf_pushes_of_mexc_reach_its_adapter_as_over_its_websocket(
        nats_server: NatsServer, mexc_simulator: Any) -> None:
    from exchanges.mexc import MexcWebSocket, mexc_config
    from exchanges.mexc.reference import decode_reference

    channels = ["spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"]
    frames: list[Frame] = []
    direct: list[Any] = []

    def tap(payload: bytes, recv_ns: int, opcode: int) -> None:
        if opcode == 2:     # the pushes; acks and PONGs are JSON text
            frames.append(Frame(decode_reference(payload)["channel"], payload, opcode, recv_ns))

    recorder = MexcWebSocket(ExchangeName("mexc"), mexc_config(mexc_simulator.ws_url()), direct.append)
    recorder.set_frame_tap(tap)
    async with recorder:
        await recorder.subscribe(channels)
        mexc_simulator.step(30)
        await until(lambda: len(direct) >= 40 and len(direct) == len(frames), what="the pushes")
        await asyncio.sleep(0.1)
    got: list[Any] = []
    consumer = MexcWebSocket(ExchangeName("mexc"), mexc_config("wss://wbs-api.mexc.com/ws"), got.append)
    consumer.use_bus(nats_server.url)
    publisher = await Publisher.connect(nats_server.url, exchange="mexc")
    try:
        async with consumer:
            await consumer.subscribe(channels)
            await publisher.publish_all(frames)
            await until(lambda: len(got) == len(direct), what="every push from the bus")
            health = await consumer.health_check()
            assert health["sequence_gaps"] == [] and health["streams"][channels[0]]["last_sequence"] > 0
    finally:
        await publisher.close()
    assert {c: [m for m in got if m["channel"] == c] for c in channels} == \
        {c: [m for m in direct if m["channel"] == c] for c in channels}


async def test_a_pool_past_its_per_connection_cap_reads_every_connection_from_the_bus(
        nats_server: NatsServer, simulator: BinanceSimulator) -> None:
    class SmallPool(BinanceWebSocket):
        max_streams_per_connection = 2

    recorded = await record(simulator, STREAMS, 20)
    outputs: list[Any] = []
    pool = SmallPool(ExchangeName(EXCHANGE), binance_config("wss://stream.binance.com:9443"),
                     lambda message: outputs.append((message,)))
    pool.use_bus(nats_server.url)
    publisher = await Publisher.connect(nats_server.url)
    try:
        async with pool:
            await pool.subscribe(STREAMS)
            assert len(pool.connections) == 2
            assert all(isinstance(c._ws, BusLink) for c in pool.connections)   # NATS links, no socket
            await publisher.publish_all(recorded.frames)
            await until(lambda: len(outputs) == len(recorded.outputs), what="every frame")
    finally:
        await publisher.close()
    assert per_stream(outputs) == per_stream(recorded.outputs)
