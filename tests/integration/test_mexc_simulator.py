"""MexcSimulator against a plain picows client on 127.0.0.1 (real sockets, no mocks)."""
from __future__ import annotations

import asyncio
import time
import subprocess
import sys
from typing import Any, Awaitable, Callable

import msgspec
import pytest
from google.protobuf.message import DecodeError
from picows import WSError, WSMsgType, ws_connect

from exchanges.mexc import channels
from exchanges.mexc.channels import body_field, channel_kind, event_type, parse_channel, rejection_msg
from exchanges.mexc.reference import decode_reference
from exchanges.mexc.simulator import MexcSimulator
from tests.integration.test_binance_simulator import TIMEOUT, Client, connect, until

Factory = Callable[..., Awaitable[MexcSimulator]]

SYM = "BTCUSDT"
AGGRE_DEPTH = f"spot@public.aggre.depth.v3.api.pb@100ms@{SYM}"
AGGRE_DEALS = f"spot@public.aggre.deals.v3.api.pb@100ms@{SYM}"
PUBLIC = [
    AGGRE_DEPTH,
    f"spot@public.aggre.depth.v3.api.pb@10ms@{SYM}",
    f"spot@public.increase.depth.v3.api.pb@{SYM}",
    f"spot@public.increase.depth.batch.v3.api.pb@{SYM}",
    f"spot@public.limit.depth.v3.api.pb@{SYM}@5",
    f"spot@public.limit.depth.v3.api.pb@{SYM}@20",
    AGGRE_DEALS,
    f"spot@public.deals.v3.api.pb@{SYM}",
    f"spot@public.aggre.bookTicker.v3.api.pb@10ms@{SYM}",
    f"spot@public.bookTicker.v3.api.pb@{SYM}",
    f"spot@public.bookTicker.batch.v3.api.pb@{SYM}",
    f"spot@public.kline.v3.api.pb@{SYM}@Min1",
    f"spot@public.kline.v3.api.pb@{SYM}@Min15",
]
PRIVATE = ["spot@private.orders.v3.api.pb", "spot@private.deals.v3.api.pb", "spot@private.account.v3.api.pb"]
AGGREGATED = ("aggre_depth", "aggre_deals", "aggre_book_ticker")


class MexcClient(Client):
    """The Binance simulator tests' client, with MEXC's JSON requests and binary pushes."""

    async def frame(self, timeout: float = TIMEOUT) -> tuple[WSMsgType, bytes]:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def reply(self, timeout: float = TIMEOUT) -> Any:
        msg_type, payload = await self.frame(timeout)
        assert msg_type == WSMsgType.TEXT, payload
        return msgspec.json.decode(payload)

    async def push(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg_type, payload = await self.frame(timeout)
        assert msg_type == WSMsgType.BINARY, payload
        return decode_reference(payload)

    def call(self, method: str, params: Any = None, **extra: Any) -> None:
        message: dict[str, Any] = {"method": method, **extra}
        if params is not None:
            message["params"] = params
        self.send(msgspec.json.encode(message))

    async def subscribe(self, names: list[str]) -> list[Any]:
        self.call("SUBSCRIPTION", names)
        return [await self.reply() for _ in names]

    def drain(self) -> list[tuple[WSMsgType, bytes]]:
        frames = []
        while not self.frames.empty():
            frames.append(self.frames.get_nowait())
        return frames


async def mexc_connect(url: str) -> MexcClient:
    _, client = await asyncio.wait_for(ws_connect(MexcClient, url, enable_auto_pong=False), TIMEOUT)
    assert isinstance(client, MexcClient)
    return client


def ack(channel: str) -> dict[str, Any]:
    return {"id": 0, "code": 0, "msg": channel}


async def pushes(client: MexcClient, count: int) -> list[dict[str, Any]]:
    return [await client.push() for _ in range(count)]


@pytest.fixture
async def sim(mexc_simulator_factory: Factory) -> MexcSimulator:
    return await mexc_simulator_factory()


# ---------------------------------------------------------------------- control messages

async def test_subscribe_ack_unsubscribe(mexc_simulator: MexcSimulator) -> None:
    sim = mexc_simulator
    client = await mexc_connect(sim.ws_url())
    assert await client.subscribe([AGGRE_DEPTH, AGGRE_DEALS]) == [ack(AGGRE_DEPTH), ack(AGGRE_DEALS)]
    assert sim.subscribed() == {AGGRE_DEPTH, AGGRE_DEALS}
    client.call("UNSUBSCRIPTION", [AGGRE_DEPTH])
    assert await client.reply() == ack(AGGRE_DEPTH)
    (connection,) = sim.connections
    assert connection.channels == [AGGRE_DEALS] and sim.subscribed() == {AGGRE_DEALS}
    assert [r["method"] for r in connection.requests] == ["SUBSCRIPTION", "UNSUBSCRIPTION"]
    assert connection.path == "/ws" and connection.listen_key is None and connection.connected_at > 0
    # Subscribing twice acks twice and holds the channel once; an integer id is echoed.
    client.call("SUBSCRIPTION", [AGGRE_DEALS], id=7)
    assert await client.reply() == {"id": 7, "code": 0, "msg": AGGRE_DEALS}
    assert connection.channels == [AGGRE_DEALS]


@pytest.mark.parametrize("refused", [
    "spot@public.miniTickers.v3.api.pb@UTC+8",                  # retired
    f"spot@public.miniTicker.v3.api.pb@{SYM}@UTC+8",            # retired
    "spot@private.orders.v3.api.pb",                            # private without a listenKey
    "spot@public.deals.v3.api@BTCUSDT",                         # JSON channel
    "spot@public.aggre.depth.v3.api.pb@100ms@btcusdt",          # lower-case symbol
    "spot@public.limit.depth.v3.api.pb@BTCUSDT@7",
    "nonsense",
])
async def test_rejection_text(sim: MexcSimulator, refused: str) -> None:
    client = await mexc_connect(sim.ws_url())
    client.call("SUBSCRIPTION", [AGGRE_DEALS, refused])
    assert await client.reply() == ack(AGGRE_DEALS)
    rejection = await client.reply()
    assert rejection == {"id": 0, "code": 0,
                         "msg": f"Not Subscribed successfully! [{refused}].  Reason： Blocked! "}
    assert sim.subscribed() == {AGGRE_DEALS} and sim.connections[0].rejected == [refused]


async def test_rejection_names_every_refused_channel(sim: MexcSimulator) -> None:
    client = await mexc_connect(sim.ws_url())
    client.call("SUBSCRIPTION", ["a", AGGRE_DEALS, "b", 5])
    assert await client.reply() == ack(AGGRE_DEALS)
    assert (await client.reply())["msg"] == rejection_msg(["a", "b", "5"])
    client.call("UNSUBSCRIPTION", ["c", AGGRE_DEALS])
    assert await client.reply() == ack(AGGRE_DEALS)
    assert (await client.reply())["msg"] == rejection_msg(["c"])


async def test_private_channels_need_a_listen_key(sim: MexcSimulator) -> None:
    client = await mexc_connect(sim.ws_url("abc123"))
    assert await client.subscribe(PRIVATE) == [ack(name) for name in PRIVATE]
    (connection,) = sim.connections
    assert connection.listen_key == "abc123" and connection.path == "/ws?listenKey=abc123"
    assert sim.step(5) == 0         # private channels carry nothing here
    other = await mexc_connect(sim.ws_url())
    other.call("SUBSCRIPTION", PRIVATE[:1])
    assert (await other.reply())["msg"] == rejection_msg(PRIVATE[:1])


async def test_ping_pong_and_odd_requests(sim: MexcSimulator) -> None:
    client = await mexc_connect(sim.ws_url())
    client.call("PING")
    assert await client.reply() == {"id": 0, "code": 0, "msg": "PONG"}
    client.call("PING", id=3)
    assert await client.reply() == {"id": 3, "code": 0, "msg": "PONG"}
    assert sim.pings_received == sim.connections[0].pings_received == 2
    client.send(b'{"method": "SUBSCRIPTION", "params": [')
    assert await client.reply() == {"id": 0, "code": 0, "msg": "Invalid JSON"}
    for message in (b'{"method": "ping"}', b'{"params": []}', b"[1, 2]", b'"PING"'):
        client.send(message)
        assert await client.reply() == {"id": 0, "code": 0, "msg": "Unknown method"}
    assert sim.subscribed() == set()


async def test_paths(sim: MexcSimulator) -> None:
    assert sim.ws_url() == f"ws://127.0.0.1:{sim.port}/ws"
    assert sim.ws_url("k") == f"ws://127.0.0.1:{sim.port}/ws?listenKey=k"
    for url in (sim.url, f"{sim.url}/", f"{sim.url}/ws/x", f"{sim.url}/stream"):
        with pytest.raises(WSError):
            await connect(url)
    await mexc_connect(f"{sim.url}/ws?listenKey=")      # an empty key is no key
    await sim.wait_connections(1)
    assert sim.connections[0].listen_key is None


# ---------------------------------------------------------------------- limits

async def test_subscription_cap(sim: MexcSimulator) -> None:
    assert sim.max_subscriptions_per_connection == channels.MAX_SUBSCRIPTIONS_PER_CONNECTION == 30
    names = [f"spot@public.aggre.deals.v3.api.pb@100ms@S{i}USDT" for i in range(31)]
    client = await mexc_connect(sim.ws_url())
    assert await client.subscribe(names[:30]) == [ack(n) for n in names[:30]]
    assert sim.violations == []
    # One too many: refused with "Blocked!" and recorded.
    client.call("SUBSCRIPTION", [names[0], names[30]])
    assert await client.reply() == ack(names[0])       # held already: no new slot
    assert (await client.reply())["msg"] == rejection_msg([names[30]])
    assert len(sim.connections[0].channels) == 30
    assert len(sim.violations) == 1 and "over the cap of 30" in sim.violations[0]
    # A freed slot can be used again.
    client.call("UNSUBSCRIPTION", [names[1]])
    assert await client.reply() == ack(names[1])
    assert await client.subscribe([names[30]]) == [ack(names[30])]


async def test_message_rate_is_recorded(sim: MexcSimulator) -> None:
    assert sim.max_messages_per_second == channels.MAX_MESSAGES_PER_SECOND == 100
    client = await mexc_connect(sim.ws_url())
    for _ in range(100):
        client.call("PING")
    for _ in range(100):
        await client.reply()
    (connection,) = sim.connections
    assert connection.max_incoming_in_window == 100 and sim.violations == []
    client.call("PING")
    assert (await client.reply())["msg"] == "PONG"       # recorded, not punished
    assert sim.max_incoming_in_window == 101 and len(sim.violations) == 1
    assert "101 frames within 1 s, limit 100" in sim.violations[0]


async def test_no_subscription_close(mexc_simulator_factory: Factory) -> None:
    assert MexcSimulator().no_subscription_timeout == channels.NO_SUBSCRIPTION_TIMEOUT
    sim = await mexc_simulator_factory(no_subscription_timeout=0.15, idle_timeout=None)
    idle = await mexc_connect(sim.ws_url())
    busy = await mexc_connect(sim.ws_url())
    rejected = await mexc_connect(sim.ws_url())
    await busy.subscribe([AGGRE_DEALS])
    rejected.call("SUBSCRIPTION", ["nonsense"])         # no valid subscription: still closed
    await idle.wait_closed()
    await rejected.wait_closed()
    assert (idle.close_code, idle.close_reason) == (1000, "No valid subscription")
    assert sim.no_subscription_closes == 2 and sim.connection_count == 3
    # Unsubscribing the last channel starts the clock again.
    await asyncio.sleep(0.1)
    assert not busy.disconnected.is_set()
    busy.call("UNSUBSCRIPTION", [AGGRE_DEALS])
    await busy.wait_closed()
    assert sim.no_subscription_closes == 3


async def test_idle_close_and_pings_keep_alive(mexc_simulator_factory: Factory) -> None:
    assert MexcSimulator().idle_timeout == channels.IDLE_TIMEOUT
    # The pings come 10x more often than the idle timeout: a loaded machine does not close the pinging one.
    sim = await mexc_simulator_factory(idle_timeout=0.5, no_subscription_timeout=None)
    pinging = await mexc_connect(sim.ws_url())
    silent = await mexc_connect(sim.ws_url())
    await silent.subscribe([AGGRE_DEALS])       # subscribed, then silent: closed all the same
    deadline = time.monotonic() + 10
    pongs = 0
    while not silent.disconnected.is_set():     # ping (each answered) until the silent one is closed
        assert time.monotonic() < deadline, "the silent connection was not closed"
        pinging.call("PING")
        assert (await pinging.reply())["msg"] == "PONG"
        pongs += 1
        await asyncio.sleep(0.05)
    await silent.wait_closed(timeout=5)
    assert (silent.close_code, silent.close_reason) == (1000, "Idle timeout")
    assert pongs >= 2 and not pinging.disconnected.is_set() and sim.idle_closes == 1
    await pinging.wait_closed(timeout=5)
    assert (pinging.close_code, pinging.close_reason) == (1000, "Idle timeout")
    assert sim.idle_closes == 2


async def test_max_connection_age(mexc_simulator_factory: Factory) -> None:
    sim = await mexc_simulator_factory(max_connection_age=0.1)
    client = await mexc_connect(sim.ws_url())
    await client.wait_closed()
    assert (client.close_code, client.close_reason) == (1001, "Connection age limit reached")


# ---------------------------------------------------------------------- pushes

async def test_every_public_push_type(sim: MexcSimulator) -> None:
    client = await mexc_connect(sim.ws_url())
    await client.subscribe(PUBLIC)
    sent = sim.step(40)
    received = await pushes(client, sent)
    assert sim.sent_counts == sim.connections[0].sent_counts
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for push in received:
        by_channel.setdefault(push["channel"], []).append(push)
    assert {c: len(p) for c, p in by_channel.items()} == sim.sent_counts
    assert set(by_channel) == set(PUBLIC)
    for channel, items in by_channel.items():
        parsed = parse_channel(channel)
        assert parsed is not None
        kind = parsed.kind.value
        for push in items:
            assert push["symbol"] == SYM and int(push["sendTime"]) > 1_600_000_000_000
            assert ("createTime" in push) is (kind not in AGGREGATED)
            assert set(push) - {"channel", "symbol", "sendTime", "createTime"} == {body_field(parsed.kind)}
            _check_body(kind, channel, push[parsed.body_field])


def _check_body(kind: str, channel: str, body: dict[str, Any]) -> None:
    def levels(side: list[dict[str, str]]) -> None:
        for level in side:
            assert set(level) <= {"price", "quantity"} and float(level["price"]) > 0

    if "depth" in kind:
        for part in body.get("items", [body]):
            levels(part.get("asks", []))
            levels(part.get("bids", []))
        if kind != "increase_depth_batch":
            assert body["eventType"] == event_type(channel)
    if kind == "aggre_depth":
        assert int(body["toVersion"]) >= int(body["fromVersion"]) > 0
    if kind == "limit_depth":
        count = int(channel.rsplit("@", 1)[1])
        assert len(body["asks"]) == len(body["bids"]) == count
        assert body["eventType"] == "spot@public.limit.depth.v3.api.pb"
        assert [float(b["price"]) for b in body["bids"]] == sorted((float(b["price"]) for b in body["bids"]),
                                                                   reverse=True)
    if kind in ("aggre_deals", "deals"):
        assert body["eventType"] == event_type(channel) and body["deals"]
        for deal in body["deals"]:
            assert deal["tradeType"] in (1, 2) and int(deal["time"]) > 0
            assert ("tradeId" in deal) is (kind == "aggre_deals")
    if "book_ticker" in kind:
        for ticker in body.get("items", [body]):
            assert float(ticker["bidPrice"]) < float(ticker["askPrice"])
            assert float(ticker["bidQuantity"]) > 0 and float(ticker["askQuantity"]) > 0
    if kind == "kline":
        seconds = channels.KLINE_INTERVALS[body["interval"]]
        assert channel.endswith("@" + body["interval"])
        assert int(body["windowEnd"]) - int(body["windowStart"]) == seconds
        assert int(body["windowStart"]) % seconds == 0
        assert float(body["lowestPrice"]) <= float(body["closingPrice"]) <= float(body["highestPrice"])
        assert {"openingPrice", "volume", "amount"} <= set(body)


async def test_depth_versions_continue_and_jump_after_skip(sim: MexcSimulator) -> None:
    legacy = f"spot@public.increase.depth.v3.api.pb@{SYM}"
    limit = f"spot@public.limit.depth.v3.api.pb@{SYM}@5"
    client = await mexc_connect(sim.ws_url())
    await client.subscribe([AGGRE_DEPTH, legacy, limit])
    assert sim.step(300) == 900
    received = await pushes(client, 900)
    depth = [p["publicAggreDepths"] for p in received if p["channel"] == AGGRE_DEPTH]
    versions = [(int(d["fromVersion"]), int(d["toVersion"])) for d in depth]
    assert all(first == previous[1] + 1 for previous, first in zip(versions, (v[0] for v in versions[1:])))
    legacy_versions = [int(p["publicIncreaseDepths"]["version"]) for p in received if p["channel"] == legacy]
    assert legacy_versions == [v[1] for v in versions]
    # The market's U..u, exactly.
    assert versions[-1][1] == sim.market.symbol(SYM).last_update_id
    sim.skip_sequence(2)
    assert sim.step(3) == 3 + 2         # limit depth (a snapshot) is never skipped
    after = await pushes(client, 5)
    (jumped,) = [p["publicAggreDepths"] for p in after if p["channel"] == AGGRE_DEPTH]
    assert int(jumped["fromVersion"]) > versions[-1][1] + 1
    assert sim.sent_counts == {AGGRE_DEPTH: 301, legacy: 301, limit: 303}


async def test_connections_share_the_same_pushes(sim: MexcSimulator) -> None:
    first = await mexc_connect(sim.ws_url())
    second = await mexc_connect(sim.ws_url())
    for client in (first, second):
        await client.subscribe([AGGRE_DEPTH])
    assert sim.step(10) == 20
    frames = [[await c.frame() for _ in range(10)] for c in (first, second)]
    assert frames[0] == frames[1]


async def test_paced_publisher(mexc_simulator_factory: Factory) -> None:
    sim = await mexc_simulator_factory(rate=200.0)
    client = await mexc_connect(sim.ws_url())
    await client.subscribe([AGGRE_DEPTH])
    first = (await client.push())["publicAggreDepths"]
    second = (await client.push(timeout=0.5))["publicAggreDepths"]
    assert int(second["fromVersion"]) == int(first["toVersion"]) + 1


# ---------------------------------------------------------------------- faults

async def test_malformed_oversized_raw(sim: MexcSimulator) -> None:
    client = await mexc_connect(sim.ws_url())
    await sim.wait_connections(1)
    sim.send_malformed()
    msg_type, payload = await client.frame()
    assert msg_type == WSMsgType.BINARY
    with pytest.raises(DecodeError):
        decode_reference(payload)
    sim.send_oversized(200_000)
    push = await client.push()
    assert push["channel"] == AGGRE_DEALS and len(push["publicAggreDeals"]["eventType"]) > 199_900
    sim.send_oversized(10)
    assert await client.frame() == (WSMsgType.BINARY, bytes(10))
    sim.send_raw(b'{"id":0,"code":0,"msg":"x"}', binary=False)
    assert await client.reply() == {"id": 0, "code": 0, "msg": "x"}


async def test_oversized_push_sizes(sim: MexcSimulator) -> None:
    valid_from = None
    for size in [*range(0, 400), 16_383, 16_384, 16_385, 2_097_151, 2_097_152]:
        data = sim.oversized_push(size)
        assert len(data) == size
        if data != bytes(size):
            valid_from = size if valid_from is None else valid_from
            assert channel_kind(decode_reference(data)["channel"]) is channels.ChannelKind.AGGRE_DEALS
        else:
            assert valid_from is None, size
    assert valid_from is not None and valid_from < 70


async def test_mute_unmute(sim: MexcSimulator) -> None:
    client = await mexc_connect(sim.ws_url())
    await client.subscribe([AGGRE_DEPTH])
    sim.mute()
    assert sim.step(3) == 0
    client.call("PING")
    await until(lambda: sim.pings_received == 1)
    await asyncio.sleep(0.05)
    client.assert_silent()
    sim.unmute()
    assert sim.step(1) == 1
    push = (await client.push())["publicAggreDepths"]
    client.call("PING")
    assert (await client.reply())["msg"] == "PONG"
    assert int(push["fromVersion"]) > 0


@pytest.mark.parametrize("fault, code, reason", [
    (lambda s: s.drop(), 1001, ""),
    (lambda s: s.close_with(4000, "bye"), 4000, "bye"),
    (lambda s: s.reset(), None, ""),
])
async def test_closes(sim: MexcSimulator, fault: Callable[[MexcSimulator], None], code: Any, reason: str) -> None:
    client = await mexc_connect(sim.ws_url())
    await sim.wait_connections(1)
    fault(sim)
    await client.wait_closed()
    assert (client.close_code, client.close_reason or "") == (code, reason)
    await until(lambda: sim.connections == [])


async def test_reject_next_subscription(sim: MexcSimulator) -> None:
    client = await mexc_connect(sim.ws_url())
    sim.reject_next_subscription()
    client.call("SUBSCRIPTION", [AGGRE_DEPTH, AGGRE_DEALS])
    assert (await client.reply())["msg"] == rejection_msg([AGGRE_DEPTH, AGGRE_DEALS])
    assert sim.subscribed() == set()
    assert await client.subscribe([AGGRE_DEPTH]) == [ack(AGGRE_DEPTH)]


# ---------------------------------------------------------------------- layering

def test_fastws_does_not_import_exchanges() -> None:
    code = ("import sys, fastws, fastws.testing, fastws.testing.fixtures, fastws.registry, fastws.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'exchanges'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "[]"


def test_simulator_loads_the_schema_without_the_client() -> None:
    code = ("import sys; from exchanges.mexc import simulator; "
            "print(sorted(m for m in sys.modules if m.startswith('exchanges.mexc.') and 'pb' not in m)); "
            "from exchanges.mexc import MexcWebSocket; print(MexcWebSocket.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.split("\n")[:2] == [
        "['exchanges.mexc.channels', 'exchanges.mexc.reference', 'exchanges.mexc.simulator']",
        "exchanges.mexc.client"]
