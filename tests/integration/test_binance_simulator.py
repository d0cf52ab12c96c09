"""BinanceSimulator against a plain picows client on 127.0.0.1 (real sockets, no mocks)."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Optional

import msgspec
import pytest
from picows import WSError, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from exchanges.binance import is_valid_stream
from exchanges.binance.simulator import BinanceSimulator
from exchanges.binance.streams import MAX_STREAMS_PER_CONNECTION
from tests.conftest import other_tasks

Factory = Callable[..., Awaitable[BinanceSimulator]]
TIMEOUT = 2.0

EVENT_KEYS = {
    "depth": ["e", "E", "s", "U", "u", "b", "a"],
    "partial": ["lastUpdateId", "bids", "asks"],
    "trade": ["e", "E", "s", "t", "p", "q", "T", "m", "M"],
    "aggTrade": ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"],
    "bookTicker": ["u", "s", "b", "B", "a", "A"],
    "ticker": ["e", "E", "s", "p", "P", "w", "x", "c", "Q", "b", "B", "a", "A", "o", "h", "l", "v", "q",
               "O", "C", "F", "L", "n"],
    "miniTicker": ["e", "E", "s", "c", "o", "h", "l", "v", "q"],
    "kline": ["e", "E", "s", "k"],
}
KLINE_KEYS = ["t", "T", "s", "i", "f", "L", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "B"]


class Client(WSListener):
    """A test client: queues data frames, remembers pings and the server's CLOSE."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: asyncio.Queue[tuple[WSMsgType, bytes]] = asyncio.Queue()
        self.pings: list[bytes] = []
        self.pongs: list[bytes] = []
        self.answer_pings = True
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self.disconnected = asyncio.Event()
        self.transport: Optional[WSTransport] = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.close_code, self.close_reason = frame.get_close_code().value, frame.get_close_reason()
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type == WSMsgType.PING:
            self.pings.append(frame.get_payload_as_bytes())
            if self.answer_pings:
                transport.send_pong(frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.PONG:
            self.pongs.append(frame.get_payload_as_bytes())
        else:
            self.frames.put_nowait((frame.msg_type, frame.get_payload_as_bytes()))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected.set()

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, payload)

    async def receive(self, timeout: float = TIMEOUT) -> bytes:
        msg_type, payload = await asyncio.wait_for(self.frames.get(), timeout)
        assert msg_type == WSMsgType.TEXT
        return payload

    async def receive_json(self, timeout: float = TIMEOUT) -> Any:
        return msgspec.json.decode(await self.receive(timeout))

    async def request(self, method: str, params: Any = None, request_id: Any = 1) -> Any:
        message: dict[str, Any] = {"method": method, "id": request_id}
        if params is not None:
            message["params"] = params
        self.send(msgspec.json.encode(message))
        return await self.receive_json()

    async def receive_all(self, count: int) -> list[Any]:
        return [await self.receive_json() for _ in range(count)]

    async def wait_closed(self, timeout: float = TIMEOUT) -> None:
        await asyncio.wait_for(self.disconnected.wait(), timeout)

    def assert_silent(self) -> None:
        assert self.frames.empty(), self.frames.get_nowait()


async def connect(url: str, **kwargs: Any) -> Client:
    kwargs.setdefault("enable_auto_pong", False)
    _, client = await asyncio.wait_for(ws_connect(Client, url, **kwargs), TIMEOUT)
    assert isinstance(client, Client)
    return client


async def until(done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async def poll() -> None:
        while not done():
            await asyncio.sleep(0.002)
    await asyncio.wait_for(poll(), timeout)


@pytest.fixture
async def sim(binance_simulator_factory: Factory) -> BinanceSimulator:
    """A simulator whose rate limit stays out of the way of tests about something else."""
    return await binance_simulator_factory(max_incoming_per_second=1000)


# ---------------------------------------------------------------------- requests

async def test_subscribe_list_unsubscribe(sim: BinanceSimulator) -> None:
    client = await connect(sim.raw_url())
    assert await client.request("SUBSCRIBE", ["btcusdt@depth", "ethusdt@trade"], 1) == {"result": None, "id": 1}
    assert await client.request("LIST_SUBSCRIPTIONS", request_id=2) == {
        "result": ["btcusdt@depth", "ethusdt@trade"], "id": 2}
    assert await client.request("UNSUBSCRIBE", ["btcusdt@depth"], 3) == {"result": None, "id": 3}
    assert await client.request("LIST_SUBSCRIPTIONS", request_id="four") == {
        "result": ["ethusdt@trade"], "id": "four"}
    assert sim.subscribed() == {"ethusdt@trade"}
    (connection,) = sim.connections
    assert [r["method"] for r in connection.requests] == ["SUBSCRIBE", "LIST_SUBSCRIPTIONS", "UNSUBSCRIBE",
                                                          "LIST_SUBSCRIPTIONS"]
    assert connection.path == "/ws" and not connection.combined and connection.connected_at > 0


async def test_properties(sim: BinanceSimulator) -> None:
    client = await connect(sim.raw_url())
    assert await client.request("GET_PROPERTY", ["combined"], 1) == {"result": False, "id": 1}
    assert await client.request("SET_PROPERTY", ["combined", True], 2) == {"result": None, "id": 2}
    assert await client.request("GET_PROPERTY", ["combined"], 3) == {"result": True, "id": 3}
    assert sim.connections[0].combined
    reply = await client.request("SET_PROPERTY", ["combined", "yes"], 4)
    assert reply["error"]["code"] == 1 and reply["id"] == 4
    assert (await client.request("GET_PROPERTY", ["colour"], 5))["error"]["code"] == 0
    assert (await client.request("GET_PROPERTY", None, 6))["error"]["code"] == 2


@pytest.mark.parametrize("stream", [
    "BTCUSDT@depth", "btcusdt@depth7", "btcusdt@depth@500ms", "btcusdt@kline_2m", "btcusdt@kline_1M@x",
    "btcusdt", "btc-usdt@trade", "btcusdt@aggtrade", "!ticker", "@trade", ""])
async def test_invalid_stream_is_refused_and_nothing_subscribed(sim: BinanceSimulator, stream: str) -> None:
    assert not is_valid_stream(stream)
    client = await connect(sim.raw_url())
    reply = await client.request("SUBSCRIBE", ["ethusdt@trade", stream], 7)
    assert reply == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 7}
    assert sim.subscribed() == set()


def test_valid_stream_names() -> None:
    intervals = ["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"]
    names = ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@depth", "btcusdt@depth@100ms", "1000satsusdt@depth5",
             "btcusdt@depth10@100ms", "btcusdt@depth20", "btcusdt@bookTicker", "btcusdt@ticker",
             "btcusdt@miniTicker", "!ticker@arr", "!miniTicker@arr", "!bookTicker", "btcusdt@kline_1m@+08:00",
             *(f"ethbtc@kline_{i}" for i in intervals)]
    assert [n for n in names if not is_valid_stream(n)] == []
    assert not is_valid_stream(None) and not is_valid_stream(["btcusdt@trade"])


async def test_names_valid_in_the_adapters_grammar_are_accepted(sim: BinanceSimulator) -> None:
    # One grammar (exchanges.binance.streams): what the adapter may send, the simulator takes.
    names = ["btcusdt@depth@1000ms", "btcusdt@depth5@1000ms", "btcusdt@ticker_1h", "!ticker_4h@arr"]
    assert all(is_valid_stream(n) for n in names)
    client = await connect(sim.raw_url())
    assert await client.request("SUBSCRIBE", names, 1) == {"result": None, "id": 1}
    sim.step(1)
    events = await client.receive_all(2)       # the depth streams; no window tickers are simulated
    assert sorted(e.get("e", "partial") for e in events) == ["depthUpdate", "partial"]
    await asyncio.sleep(0.05)
    client.assert_silent()


async def test_malformed_requests(sim: BinanceSimulator) -> None:
    client = await connect(sim.raw_url())
    client.send(b'{"method": "SUBSCRIBE", "params": [')
    reply = await client.receive_json()
    assert reply["id"] is None and reply["error"]["code"] == 3
    assert reply["error"]["msg"].startswith("Invalid JSON: ")
    for method, params in [("SUBSCRIBE", "btcusdt@depth"), ("SUBSCRIBE", [1]), ("PING", None),
                           (None, ["btcusdt@depth"])]:
        reply = await client.request(method, params, 9)  # type: ignore[arg-type]
        assert reply["error"]["code"] == 2 and reply["error"]["msg"].startswith("Invalid request: ")
        assert reply["id"] == 9
    client.send(b"[1, 2]")
    assert (await client.receive_json())["error"]["code"] == 2
    assert sim.subscribed() == set()


async def test_stream_cap(binance_simulator_factory: Factory) -> None:
    assert BinanceSimulator().max_streams_per_connection == MAX_STREAMS_PER_CONNECTION == 1024
    sim = await binance_simulator_factory(max_streams_per_connection=3, max_incoming_per_second=100)
    client = await connect(sim.raw_url())
    assert (await client.request("SUBSCRIBE", ["a@trade", "b@trade"], 1))["result"] is None
    reply = await client.request("SUBSCRIBE", ["c@trade", "d@trade"], 2)
    assert reply["error"]["code"] == 2 and "3" in reply["error"]["msg"]
    assert sim.subscribed() == {"a@trade", "b@trade"}
    # Streams already held do not count twice.
    assert (await client.request("SUBSCRIBE", ["a@trade", "c@trade", "c@trade"], 3))["result"] is None
    assert sim.connections[0].streams == ["a@trade", "b@trade", "c@trade"]
    with pytest.raises(WSError):
        await connect(sim.combined_url(["a@trade", "b@trade", "c@trade", "d@trade"]))


# ---------------------------------------------------------------------- paths and payloads

async def test_paths(sim: BinanceSimulator) -> None:
    assert sim.url == f"ws://127.0.0.1:{sim.port}"
    assert sim.combined_url() == f"{sim.url}/stream"
    assert sim.combined_url(["a@trade", "b@trade"]) == f"{sim.url}/stream?streams=a@trade/b@trade"
    assert sim.raw_url("a@trade") == f"{sim.url}/ws/a@trade"
    for url in (f"{sim.url}/", f"{sim.url}/api/v3", sim.raw_url("BTCUSDT@trade"), sim.combined_url(["x"])):
        with pytest.raises(WSError):
            await connect(url)
    await connect(sim.combined_url(["btcusdt@depth", "ethusdt@depth"]))
    await connect(sim.raw_url("btcusdt@trade"))
    await connect(sim.combined_url())
    await connect(sim.combined_url(["btcusdt@kline_1m@+08:00"]) + "&timeUnit=MICROSECOND")
    await sim.wait_subscribed(["btcusdt@depth", "ethusdt@depth", "btcusdt@trade"])
    assert [(c.combined, c.streams) for c in sim.connections] == [
        (True, ["btcusdt@depth", "ethusdt@depth"]), (False, ["btcusdt@trade"]), (True, []),
        (True, ["btcusdt@kline_1m@+08:00"])]
    assert sim.connection_count == 4


async def test_combined_and_raw_payload_layouts(sim: BinanceSimulator) -> None:
    combined = await connect(sim.combined_url(["btcusdt@depth"]))
    raw = await connect(sim.raw_url("btcusdt@depth"))
    await sim.wait_connections(2)
    assert sim.step() == 2
    wrapped, bare = await combined.receive(), await raw.receive()
    assert wrapped.startswith(b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate",')
    assert wrapped == msgspec.json.encode({"stream": "btcusdt@depth", "data": msgspec.json.decode(bare)})
    assert bare.startswith(b'{"e":"depthUpdate","E":')


async def test_every_stream_type_produces_its_event(sim: BinanceSimulator) -> None:
    kinds = {"btcusdt@depth": "depth", "btcusdt@depth@100ms": "depth", "btcusdt@depth5": "partial",
             "btcusdt@depth10@100ms": "partial", "btcusdt@depth20": "partial", "btcusdt@trade": "trade",
             "btcusdt@aggTrade": "aggTrade", "btcusdt@bookTicker": "bookTicker", "btcusdt@ticker": "ticker",
             "btcusdt@miniTicker": "miniTicker", "btcusdt@kline_1m": "kline", "btcusdt@kline_1s": "kline",
             "ethusdt@bookTicker": "bookTicker", "!ticker@arr": "ticker", "!miniTicker@arr": "miniTicker",
             "!bookTicker": "bookTicker"}
    client = await connect(sim.combined_url(kinds))
    await sim.wait_connections(1)
    sent = sim.step(30)
    received: dict[str, list[Any]] = {}
    for message in await client.receive_all(sent):
        received.setdefault(message["stream"], []).append(message["data"])
    assert received.keys() == kinds.keys()
    assert {k: len(v) for k, v in received.items()} == sim.sent_counts == sim.connections[0].sent_counts
    for stream, events in received.items():
        for event in events:
            for item in event if stream.endswith("@arr") else [event]:
                assert list(item) == EVENT_KEYS[kinds[stream]], stream
                if "s" in item:
                    assert item["s"] in ("BTCUSDT", "ETHUSDT")
    assert [len(e["bids"]) for e in received["btcusdt@depth5"]] == [5] * 30
    assert len(received["btcusdt@depth20"][-1]["asks"]) == 20
    assert {e["s"] for e in received["!bookTicker"]} == {"BTCUSDT", "ETHUSDT"}
    assert [len(e) for e in received["!ticker@arr"]] == [2] * 30
    kline = received["btcusdt@kline_1m"][-1]["k"]
    assert list(kline) == KLINE_KEYS and kline["i"] == "1m" and kline["T"] - kline["t"] == 59_999
    assert received["btcusdt@kline_1s"][-1]["k"]["i"] == "1s"
    trades = received["btcusdt@trade"]
    assert [t["t"] for t in trades] == list(range(trades[0]["t"], trades[0]["t"] + len(trades)))
    assert [t["t"] for t in trades] == [a["a"] for a in received["btcusdt@aggTrade"]]
    assert received["btcusdt@bookTicker"][-1]["u"] == received["btcusdt@depth5"][-1]["lastUpdateId"]


async def test_depth_continuity_and_skip_sequence(sim: BinanceSimulator) -> None:
    client = await connect(sim.raw_url("btcusdt@depth"))
    other = await connect(sim.combined_url(["btcusdt@depth@100ms"]))
    await sim.wait_connections(2)
    sim.step(2000)
    events = await client.receive_all(2000)
    assert [e["U"] for e in events[1:]] == [e["u"] + 1 for e in events[:-1]]
    assert [m["data"]["u"] for m in await other.receive_all(2000)] == [e["u"] for e in events]
    sim.skip_sequence(2)
    assert sim.step(3) == 2
    (after,) = await client.receive_all(1)
    assert after["U"] > events[-1]["u"] + 1
    assert sim.sent_counts == {"btcusdt@depth": 2001, "btcusdt@depth@100ms": 2001}


async def test_paced_publisher(binance_simulator_factory: Factory) -> None:
    sim = await binance_simulator_factory(rate=200.0)
    client = await connect(sim.raw_url("btcusdt@bookTicker"))
    first = await client.receive_json()
    second = await client.receive_json(timeout=0.5)
    assert second["u"] > first["u"]


# ---------------------------------------------------------------------- limits and keepalive

async def test_rate_limit_closes_with_1008(binance_simulator_factory: Factory) -> None:
    sim = await binance_simulator_factory()
    client = await connect(sim.raw_url())
    await sim.wait_connections(1)
    connection = sim.connections[0]
    assert client.transport is not None
    for _ in range(3):
        client.transport.send_ping(b"p")
    client.transport.send_pong(b"unsolicited")
    client.send(b'{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
    assert (await client.receive_json())["id"] == 1
    assert sim.violations == [] and connection.max_incoming_in_window == 5
    client.send(b'{"method": "LIST_SUBSCRIPTIONS", "id": 2}')
    await client.wait_closed()
    assert (client.close_code, client.close_reason) == (1008, "Too many requests")
    assert len(sim.violations) == 1 and sim.max_incoming_in_window == 6
    assert client.pongs == [b"p"] * 3      # the server answers pings


async def test_rate_limit_window_slides(binance_simulator_factory: Factory) -> None:
    sim = await binance_simulator_factory()
    client = await connect(sim.raw_url())
    await sim.wait_connections(1)
    for burst in range(2):
        for _ in range(5):
            client.send(b'{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
        await client.receive_all(5)
        if burst == 0:
            await asyncio.sleep(1.05)
    assert sim.violations == [] and sim.connections[0].max_incoming_in_window == 5


async def test_missing_pong_closes(binance_simulator_factory: Factory) -> None:
    sim = await binance_simulator_factory(ping_interval=0.05, pong_timeout=0.2, max_incoming_per_second=1000)
    client = await connect(sim.raw_url())
    client.answer_pings = False
    await sim.wait_connections(1)
    connection = sim.connections[0]
    assert client.transport is not None
    client.transport.send_pong(b"1")        # unsolicited: keeps nothing alive
    await client.wait_closed()
    assert sim.pong_timeouts == 1 and connection.pong_timeouts == 1
    assert connection.pongs_received == 0 and connection.pings_sent == len(client.pings) >= 2
    assert client.pings[:2] == [b"1", b"2"]
    assert sim.connections == []


@pytest.mark.parametrize("auto_pong", [False, True])
async def test_answered_pings_keep_the_connection(binance_simulator_factory: Factory, auto_pong: bool) -> None:
    sim = await binance_simulator_factory(ping_interval=0.03, pong_timeout=0.3, max_incoming_per_second=1000)
    await connect(sim.raw_url(), enable_auto_pong=auto_pong)
    await sim.wait_connections(1)
    await asyncio.sleep(0.35)
    (connection,) = sim.connections
    assert connection.pings_sent >= 3 and connection.pongs_received >= connection.pings_sent - 1
    assert sim.pong_timeouts == 0 and sim.pings_sent == connection.pings_sent


async def test_max_connection_age(binance_simulator_factory: Factory) -> None:
    sim = await binance_simulator_factory(max_connection_age=0.1)
    client = await connect(sim.raw_url())
    await client.wait_closed()
    assert client.close_code == 1001


# ---------------------------------------------------------------------- faults

async def test_drop_and_close_with(sim: BinanceSimulator) -> None:
    first, second = await connect(sim.raw_url()), await connect(sim.raw_url())
    await sim.wait_connections(2)
    sim.drop(connection=sim.connections[0])
    await first.wait_closed()
    assert first.close_code == 1001 and not second.disconnected.is_set()
    sim.close_with(4000, "bye")
    await second.wait_closed()
    assert (second.close_code, second.close_reason) == (4000, "bye")


async def test_reset(sim: BinanceSimulator) -> None:
    client = await connect(sim.raw_url())
    await sim.wait_connections(1)
    sim.reset()
    await client.wait_closed()
    assert client.close_code is None


async def test_mute_and_unmute(binance_simulator_factory: Factory) -> None:
    sim = await binance_simulator_factory(ping_interval=0.02, pong_timeout=0.05, max_incoming_per_second=1000)
    client = await connect(sim.raw_url("btcusdt@trade"))
    client.answer_pings = False
    await until(lambda: bool(client.pings))     # a ping waits for its pong: muting forgets it
    sim.mute()
    pings = len(client.pings)
    client.send(b'{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
    sim.step(20)
    await asyncio.sleep(0.15)
    client.assert_silent()
    assert len(client.pings) <= pings + 1 and not client.disconnected.is_set()
    assert sim.connections[0].requests == [{"method": "LIST_SUBSCRIPTIONS", "id": 1}]
    client.answer_pings = True
    sim.unmute()
    assert sim.step(20) > 0
    assert (await client.receive_json())["e"] == "trade"


async def test_malformed_oversized_and_raw_frames(sim: BinanceSimulator) -> None:
    client = await connect(sim.combined_url(["btcusdt@depth"]))
    await sim.wait_connections(1)
    sim.send_malformed()
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(await client.receive())
    sim.send_oversized(100_000)
    payload = await client.receive()
    assert len(payload) == 100_000 and msgspec.json.decode(payload)["pad"]
    sim.send_raw(b"\x00\x01", binary=True)
    assert await asyncio.wait_for(client.frames.get(), TIMEOUT) == (WSMsgType.BINARY, b"\x00\x01")
    sim.send_raw(b"hello")
    assert await client.receive() == b"hello"


async def test_reject_next_subscription(sim: BinanceSimulator) -> None:
    client = await connect(sim.combined_url())
    sim.reject_next_subscription()
    assert await client.request("SUBSCRIBE", ["btcusdt@depth"], 1) == {
        "error": {"code": 2, "msg": "Invalid request: rejected by test"}, "id": 1}
    assert sim.subscribed() == set()
    assert await client.request("SUBSCRIBE", ["btcusdt@depth"], 2) == {"result": None, "id": 2}
    sim.reject_next_subscription(code=1, msg="nope")
    assert (await client.request("SUBSCRIBE", ["ethusdt@depth"], 3))["error"] == {"code": 1, "msg": "nope"}


async def test_server_shutdown(sim: BinanceSimulator) -> None:
    combined = await connect(sim.combined_url(["btcusdt@depth"]))
    raw = await connect(sim.raw_url("btcusdt@depth"))
    await sim.wait_connections(2)
    sim.server_shutdown(delay=0.05)
    notice = await combined.receive()
    assert notice.startswith(b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":')
    assert list(msgspec.json.decode(await raw.receive())) == ["e", "E"]
    for client in (combined, raw):
        await client.wait_closed()
        assert client.close_code == 1001


async def test_stop_leaves_nothing_behind() -> None:
    tasks_before = other_tasks()
    sim = BinanceSimulator(rate=100.0, ping_interval=0.01, max_connection_age=30.0)
    async with sim:
        client = await connect(sim.combined_url(["btcusdt@depth"]))
        await client.receive()
        sim.server_shutdown(delay=30.0)
        connection = sim.connections[0]
    await client.wait_closed()
    assert sim.connections == [] and connection._timers == set() and sim._timers == set()
    assert sim._publisher is None and sim._server is None
    assert other_tasks() <= tasks_before


async def test_fixture(binance_simulator: BinanceSimulator) -> None:
    assert binance_simulator.rate == 0 and binance_simulator.port > 0
    client = await connect(binance_simulator.raw_url("btcusdt@depth"))
    await binance_simulator.wait_connections(1)
    await asyncio.sleep(0.02)
    client.assert_silent()
