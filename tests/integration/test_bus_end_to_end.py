"""The whole bus: collectors (``fastws collect --fleet``) on a 3-node cluster, and a strategy's
consumer (``use_bus``) on the same adapter, through the faults issue 14 names.

The collectors and the cluster come from ``test_bus_fleet``; the consumer is a
``BinanceWebSocket`` reading the subjects live (core NATS). Its handler must see every
depth update once and in order (``U`` = previous ``u`` + 1, the exchange's own updates),
or, where the bus lost updates (R=1 and its collector killed), the gap reported to it as
a sequence gap naming the stream and the missing ids.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fastws.bus.fleet import slot_key
from fastws.registry import get_exchange
from fastws.testing.nats import NatsCluster, NatsServer
from fastws.types import ExchangeName
from tests.conftest import until
from tests.integration.test_bus_fleet import DEPTH, TTL, _breaks, _Fleet, _running, non_leader_node

pytestmark = pytest.mark.asyncio


class _Consumer:
    """A strategy reading the fleet's subjects with the exchange's own adapter."""

    def __init__(self, urls: list[str]) -> None:
        entry = get_exchange("binance")
        self.updates: dict[str, list[tuple[int, int]]] = {}
        self.errors: list[Any] = []
        self.client = entry.client(ExchangeName("binance"), entry.config("wss://stream.binance.com:9443"),
                                   self._on_message, self.errors.append)
        self.client.use_bus(urls)

    def _on_message(self, message: Any) -> None:
        data = message["data"]
        self.updates.setdefault(message["stream"], []).append((data["U"], data["u"]))

    async def start(self, streams: list[str]) -> None:
        await self.client.start(timeout=15)
        await self.client.subscribe(streams)

    async def stop(self) -> None:
        await self.client.stop()


@pytest.mark.timeout(120)
async def test_r2_consumer_sees_every_update_once_in_order_through_a_killed_collector_and_node(
        tmp_path: Path, nats_cluster: NatsCluster, binance_simulator: Any) -> None:
    fleet = _Fleet(tmp_path, nats_cluster.urls, str(binance_simulator.url), DEPTH, replicas=2, storage_replicas=3)
    async with _running(fleet, binance_simulator, 3) as run:
        victim = await non_leader_node(fleet, nats_cluster)
        # The consumer reads from the nodes that stay up (a core subscription on the
        # killed node would miss what was published while it reconnects: a reported gap).
        consumer = _Consumer([n.url for i, n in enumerate(nats_cluster.nodes) if i != victim])
        await consumer.start(DEPTH)
        try:
            await until(lambda: all(len(consumer.updates.get(s, [])) > 20 for s in DEPTH), 15,
                        "the consumer receives every stream")
            nats_cluster.kill(victim)
            await asyncio.sleep(1.0)
            _, moved = await run.kill_collector(0)
            assert moved <= TTL + 1.0, f"leases moved in {moved:.2f} s"
            await asyncio.sleep(1.0)
            await run.end_feed()
            await asyncio.sleep(0.5)
            for stream in DEPTH:
                got = consumer.updates[stream]
                assert len(got) > 100
                assert _breaks(got) == [], f"{stream}: the consumer lost or repeated updates"
                truth = run.observer.updates[stream]
                start = truth.index(got[0])
                assert got == truth[start:start + len(got)], f"{stream}: not the exchange's updates"
            assert consumer.client.sequence_gaps == [] and consumer.client.gaps == []
        finally:
            await consumer.stop()


@pytest.mark.timeout(90)
async def test_r1_a_killed_collector_is_a_gap_the_consumer_is_told_of(
        tmp_path: Path, nats_server: NatsServer, binance_simulator: Any) -> None:
    streams = DEPTH[:2]
    fleet = _Fleet(tmp_path, [nats_server.url], str(binance_simulator.url), streams, replicas=1)
    async with _running(fleet, binance_simulator, 2) as run:
        consumer = _Consumer([nats_server.url])
        await consumer.start(streams)
        try:
            await until(lambda: all(len(consumer.updates.get(s, [])) > 20 for s in streams), 15,
                        "the consumer receives every stream")
            dead, moved = await run.kill_collector(0)
            lost_stream = next(s for s in streams if run.held[slot_key(s, 0)] == dead)
            assert moved <= TTL + 1.0, f"lease moved in {moved:.2f} s"
            # The new owner publishes the stream again: the consumer's feed goes on.
            count = len(consumer.updates[lost_stream])
            await until(lambda: len(consumer.updates[lost_stream]) > count + 20, 15, "the stream resumes")
            await run.end_feed()
            breaks = _breaks(consumer.updates[lost_stream])
            assert len(breaks) == 1, breaks
            last_before, first_after = breaks[0]
            # Told as a gap: the stream, the first missing id, the first id after it.
            gaps = [g for g in consumer.client.sequence_gaps if g.stream == lost_stream]
            assert len(gaps) == 1, consumer.client.sequence_gaps
            assert gaps[0].expected == last_before + 1 and gaps[0].received == first_after
            assert gaps[0].missing == first_after - last_before - 1 > 0
            kept = next(s for s in streams if s != lost_stream)
            assert _breaks(consumer.updates[kept]) == []
        finally:
            await consumer.stop()
