"""A fleet of collectors (``python -m fastws collect ... --fleet``) sharing streams by leases.

Real processes: ``fastws collect`` subprocesses against the Binance simulator (stepped by
the test), real nats-server processes (a 3-node JetStream cluster for the failover
test). What JetStream stores is read back and checked: every depth update once, with
``U`` = previous ``u`` + 1, or a gap exactly where R=1 lost its only collector.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Optional

import nats
import pytest

from fastws.bus.fleet import bucket_name, slot_key
from fastws.bus.storage import stream_name
from fastws.bus.subjects import HEADER_MSG_ID, stream_subject
from fastws.registry import get_exchange
from fastws.testing.nats import NatsCluster, NatsServer
from fastws.types import ExchangeName

DEPTH = ["btcusdt@depth@100ms", "ethusdt@depth@100ms", "bnbusdt@depth@100ms"]
TTL = 2.0


class _Fleet:
    """``fastws collect --fleet`` subprocesses, their leases read from the bucket."""

    def __init__(self, tmp_path: Path, nats_urls: list[str], sim_url: str, streams: list[str], replicas: int,
                 storage_replicas: int = 1) -> None:
        self.tmp_path = tmp_path
        self.nats_urls = nats_urls
        self.sim_url = sim_url
        self.streams = streams
        self.replicas = replicas
        self.storage_replicas = storage_replicas
        self.processes: list[asyncio.subprocess.Process] = []
        self.nc: Any = None
        self.kv: Any = None

    async def spawn(self) -> asyncio.subprocess.Process:
        log = open(self.tmp_path / f"collector-{len(self.processes)}.log", "wb")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fastws", "collect", "binance", *self.streams,
                "--nats", ",".join(self.nats_urls), "--url", self.sim_url, "--fleet", "test",
                "--replicas", str(self.replicas), "--lease-ttl", str(TTL), "--status-interval", "0.5",
                "--storage-replicas", str(self.storage_replicas), "--duplicate-window", "5",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        self.processes.append(process)
        return process

    async def connect(self) -> None:
        self.nc = await nats.connect(self.nats_urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.kv = await self.nc.jetstream().key_value(bucket_name("test"))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def holders(self) -> dict[str, str]:
        """``{slot key: member id}`` of the slots held now."""
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import NotFoundError

        for _ in range(20):     # a NATS node just killed: the reads are retried
            try:
                held = {}
                for stream in self.streams:
                    for slot in range(self.replicas):
                        key = slot_key(stream, slot)
                        try:
                            held[key] = (await self.kv.get(key)).value.decode()
                        except NotFoundError:
                            pass
                return held
            except (NatsTimeout, asyncio.TimeoutError):
                await asyncio.sleep(0.1)
        raise AssertionError("the lease bucket cannot be read")

    async def wait_settled(self, members: int, timeout: float) -> dict[str, str]:
        """Until every slot is held, each stream's slots by different live members, ``members`` in all."""
        deadline = time.monotonic() + timeout
        while True:
            held = await self.holders()
            by_stream: dict[str, set[str]] = {}
            for key, member in held.items():
                by_stream.setdefault(key.rsplit(".", 1)[0], set()).add(member)
            if len(held) == len(self.streams) * self.replicas \
                    and all(len(m) == self.replicas for m in by_stream.values()) \
                    and len(set(held.values())) == members and all(self._alive(m) for m in held.values()):
                return held
            if time.monotonic() > deadline:
                raise AssertionError(f"fleet not settled in {timeout} s: {held}\n{self.logs()}")
            await asyncio.sleep(0.1)

    def _alive(self, member: str) -> bool:
        return any(f"-{p.pid}-" in member for p in self.processes if p.returncode is None)

    def member_of(self, process: asyncio.subprocess.Process, held: dict[str, str]) -> Optional[str]:
        return next((m for m in held.values() if f"-{process.pid}-" in m), None)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-1500:]
                         for p in sorted(self.tmp_path.glob("collector-*.log")))

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 15)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        if self.nc is not None:
            await self.nc.close()


class _Observer:
    """An in-test client subscribed to every stream: the exchange's truth, and it keeps the
    simulator's markets moving while no collector holds a stream (as a real exchange's do)."""

    def __init__(self, sim: Any, streams: list[str]) -> None:
        entry = get_exchange("binance")
        self.streams = streams
        self.updates: dict[str, list[tuple[int, int]]] = {s: [] for s in streams}
        self.client = entry.client(ExchangeName("binance"), entry.config(str(sim.url)), lambda *m: None,
                                   lambda e: None)
        self.client.set_frame_tap(self._tap)

    def _tap(self, payload: bytes, receive_ns: int, opcode: int) -> None:
        message = json.loads(payload)
        if "stream" in message:
            self.updates[message["stream"]].append((message["data"]["U"], message["data"]["u"]))

    async def __aenter__(self) -> "_Observer":
        await self.client.start()
        await self.client.subscribe(self.streams)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.stop()


async def _stepping(sim: Any, stop: asyncio.Event, per_second: float = 50.0) -> None:
    while not stop.is_set():
        sim.step(1)
        await asyncio.sleep(1.0 / per_second)


async def _stored_updates(nc: Any, stream: str) -> list[tuple[int, int]]:
    """``(U, u)`` of every depth update JetStream holds for ``stream``, in stored order; ids unique.

    Read again from the start if the cluster is slow to answer (a node was just killed).
    """
    from nats.errors import TimeoutError as NatsTimeout

    for attempt in range(3):
        try:
            return await _read_updates(nc, stream)
        except (NatsTimeout, asyncio.TimeoutError):
            if attempt == 2:
                raise
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


async def _read_updates(nc: Any, stream: str) -> list[tuple[int, int]]:
    js = nc.jetstream()
    subject = stream_subject("binance", stream)
    info = await js.stream_info(stream_name("binance"), subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    sub = await js.subscribe(subject, ordered_consumer=True)
    updates, ids = [], set()
    try:
        for _ in range(count):
            msg = await sub.next_msg(timeout=5)
            ids.add(msg.headers[HEADER_MSG_ID])
            data = json.loads(msg.data)["data"]
            updates.append((data["U"], data["u"]))
    finally:
        await sub.unsubscribe()
    assert len(ids) == len(updates), "a message stored twice"
    return updates


def _breaks(updates: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(previous u, next U)`` where ``U`` != previous ``u`` + 1."""
    return [(a[1], b[0]) for a, b in zip(updates, updates[1:]) if b[0] != a[1] + 1]


async def _wait_moved(fleet: _Fleet, dead: str, timeout: float) -> float:
    """Seconds until no slot is the dead member's and every slot is held again."""
    started = time.monotonic()
    while True:
        held = await fleet.holders()
        if dead not in held.values() and len(held) == len(fleet.streams) * fleet.replicas:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"leases of {dead} not moved in {timeout} s: {held}\n{fleet.logs()}")
        await asyncio.sleep(0.05)


class _Run:
    """A settled fleet fed by the stepped simulator, and the exchange's truth beside it."""

    def __init__(self, fleet: _Fleet, observer: _Observer, held: dict[str, str]) -> None:
        self.fleet = fleet
        self.observer = observer
        self.held = held
        self.stop = asyncio.Event()
        self.stepper: Optional[asyncio.Task[None]] = None

    async def kill_collector(self, index: int) -> tuple[str, float]:
        """SIGKILL collector ``index``; return its member id and the seconds its leases took to move."""
        doomed = self.fleet.processes[index]
        dead = self.fleet.member_of(doomed, self.held)
        assert dead is not None
        doomed.kill()
        await doomed.wait()
        return dead, await _wait_moved(self.fleet, dead, TTL + 3.0)

    async def end_feed(self) -> None:
        """Stop stepping; give the last frames time to reach JetStream."""
        self.stop.set()
        if self.stepper is not None:
            await self.stepper
            self.stepper = None
        await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def _running(fleet: _Fleet, sim: Any, collectors: int) -> AsyncIterator[_Run]:
    observer = _Observer(sim, fleet.streams)
    await observer.__aenter__()
    run: Optional[_Run] = None
    try:
        for _ in range(collectors):
            await fleet.spawn()
        await fleet.connect()
        run = _Run(fleet, observer, await fleet.wait_settled(collectors, 30))
        run.stepper = asyncio.get_running_loop().create_task(_stepping(sim, run.stop))
        await asyncio.sleep(1.0)
        yield run
    finally:
        if run is not None:
            await run.end_feed()
        await fleet.stop()
        await observer.__aexit__()


async def non_leader_node(fleet: _Fleet, cluster: NatsCluster) -> int:
    """A node of ``cluster`` that leads neither the exchange's stream nor the fleet's bucket."""
    js = fleet.nc.jetstream()
    leaders = {(await js.stream_info(stream_name("binance"))).cluster.leader,
               (await js.stream_info(f"KV_{bucket_name('test')}")).cluster.leader}
    return next(i for i, node in enumerate(cluster.nodes) if node.name not in leaders)


@pytest.mark.timeout(90)
async def test_r2_on_a_cluster_a_killed_collector_and_a_killed_node_lose_and_repeat_nothing(
        tmp_path: Path, nats_cluster: NatsCluster, binance_simulator: Any) -> None:
    fleet = _Fleet(tmp_path, nats_cluster.urls, str(binance_simulator.url), DEPTH, replicas=2, storage_replicas=3)
    async with _running(fleet, binance_simulator, 3) as run:
        # A NATS node that leads neither the stream nor the bucket goes down.
        nats_cluster.kill(await non_leader_node(fleet, nats_cluster))
        await asyncio.sleep(1.5)
        # A collector is SIGKILLed: its slots go to the others within the TTL + 1 s.
        _, moved = await run.kill_collector(0)
        print(f"R=2: leases moved in {moved:.2f} s")
        assert moved <= TTL + 1.0, f"leases moved in {moved:.2f} s"
        await asyncio.sleep(1.0)
        await run.end_feed()
        for stream in DEPTH:
            updates = await _stored_updates(fleet.nc, stream)
            assert len(updates) > 100
            assert _breaks(updates) == [], f"{stream}: updates lost or repeated"
            # Up to the last update the exchange sent, from where the fleet began storing.
            truth = run.observer.updates[stream]
            start = truth.index(updates[0])
            assert updates == truth[start:], f"{stream}: the stored updates are not the exchange's"


@pytest.mark.timeout(60)
async def test_r1_a_killed_collector_leaves_a_measurable_gap_and_a_new_owner_takes_over(
        tmp_path: Path, nats_server: NatsServer, binance_simulator: Any) -> None:
    streams = DEPTH[:2]
    fleet = _Fleet(tmp_path, [nats_server.url], str(binance_simulator.url), streams, replicas=1)
    async with _running(fleet, binance_simulator, 2) as run:
        dead, moved = await run.kill_collector(0)
        lost_stream = next(s for s in streams if run.held[slot_key(s, 0)] == dead)
        print(f"R=1: lease moved in {moved:.2f} s")
        assert moved <= TTL + 1.0, f"lease moved in {moved:.2f} s"
        await asyncio.sleep(1.0)
        await run.end_feed()
        updates = await _stored_updates(fleet.nc, lost_stream)
        breaks = _breaks(updates)
        # One gap, while nobody held the stream: its extent is known from the stored ids.
        assert len(breaks) == 1, breaks
        last_before, first_after = breaks[0]
        missing = first_after - last_before - 1
        print(f"R=1: gap of {missing} update ids, after u={last_before}")
        assert missing > 0
        # The exchange sent every one of them (the observer saw no break): only the bus lost them.
        assert _breaks(run.observer.updates[lost_stream]) == []
        kept = next(s for s in streams if s != lost_stream)
        assert _breaks(await _stored_updates(fleet.nc, kept)) == []


async def test_members_share_the_slots_rebalance_on_join_and_leave_and_give_up_without_nats(
        tmp_path: Path) -> None:
    from fastws.bus.fleet import FleetMember

    server = NatsServer(tmp_path / "nats").start()
    connections: list[Any] = []
    members: list[FleetMember] = []
    reported: dict[str, list[frozenset[str]]] = {}

    async def join(name: str) -> FleetMember:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        connections.append(nc)
        reported[name] = []
        member = FleetMember(nc.jetstream(), "join", DEPTH, 2, reported[name].append, ttl=TTL, member_id=name)
        await member.start()
        members.append(member)
        return member

    async def settled(live: list[FleetMember], timeout: float = 6.0, each: Optional[int] = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            held = [key for m in live for key in m.leases()]
            per_stream = [sum(1 for m in live if stream in m.owned) for stream in DEPTH]
            if sorted(held) == sorted(set(held)) and len(held) == 6 and per_stream == [2, 2, 2] \
                    and (each is None or all(len(m.leases()) == each for m in live)):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled: {[m.health() for m in live]}")
            await asyncio.sleep(0.05)

    try:
        a = await join("a")
        assert a.owned == frozenset(DEPTH) and len(a.leases()) == 3      # one slot per stream, never two
        b = await join("b")
        await settled([a, b])
        c = await join("c")
        # The two give one copy each back (two different streams), and c takes them.
        await settled([a, b, c], each=2)
        # A clean stop gives its leases back at once; the others take them.
        await c.stop()
        members.remove(c)
        assert reported["c"][-1] == frozenset()
        await settled([a, b], timeout=TTL, each=3)
        # NATS gone for longer than the TTL: a member gives its streams up by itself.
        server.kill()
        deadline = time.monotonic() + TTL * 2 + 2
        while a.owned or b.owned:
            assert time.monotonic() < deadline, [a.health(), b.health()]
            await asyncio.sleep(0.1)
        assert reported["a"][-1] == reported["b"][-1] == frozenset()
        # And joins again when it is back.
        server.start()
        await settled([a, b], timeout=15, each=3)
    finally:
        for member in members:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(member.stop(), 3)
        for nc in connections:
            with contextlib.suppress(Exception):
                await nc.close()
        server.stop()
