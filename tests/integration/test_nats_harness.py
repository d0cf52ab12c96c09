"""The test harness's real nats-server processes (fastws.testing.nats)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from fastws.testing.nats import NatsCluster, NatsServer

pytestmark = pytest.mark.asyncio


async def _jetstream_round_trip(urls: list[str], stream: str, replicas: int) -> int:
    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=5)
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"], num_replicas=replicas)
        ack = await js.publish(f"{stream}.x", b"hello", headers={"Nats-Msg-Id": "one"})
        again = await js.publish(f"{stream}.x", b"hello", headers={"Nats-Msg-Id": "one"})
        assert again.duplicate and again.seq == ack.seq
        info = await js.stream_info(stream)
        return int(info.state.messages)
    finally:
        await nc.close()


async def test_the_fixture_server_serves_jetstream(nats_server: NatsServer) -> None:
    assert await _jetstream_round_trip([nats_server.url], "FIX", 1) == 1


async def test_a_single_server_serves_jetstream_and_leaves_no_process(tmp_path: Path) -> None:
    with NatsServer.started(tmp_path) as server:
        assert server.running
        assert await _jetstream_round_trip([server.url], "ONE", 1) == 1
        process = server._process
    assert not server.running and process is not None and process.poll() is not None


async def test_a_cluster_keeps_serving_replicated_streams_when_a_node_is_killed(tmp_path: Path) -> None:
    with NatsCluster.started(tmp_path, size=3) as cluster:
        assert await _jetstream_round_trip(cluster.urls, "REP", 3) == 1
        cluster.kill(0)
        survivors = cluster.urls[1:]
        # The stream (R3) keeps accepting writes with two of three nodes.
        for _ in range(50):
            try:
                nc = await nats.connect(servers=survivors, connect_timeout=2)
                try:
                    js = nc.jetstream()
                    await js.publish("REP.y", b"after", timeout=2)
                    info = await js.stream_info("REP")
                    assert info.state.messages == 2
                    break
                finally:
                    await nc.close()
            except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError,
                    nats.js.errors.ServiceUnavailableError):
                await asyncio.sleep(0.2)
        else:
            pytest.fail("the cluster did not accept a write after losing one node")
        cluster.restart(0)
        assert cluster.nodes[0].running
    assert not any(node.running for node in cluster.nodes)
