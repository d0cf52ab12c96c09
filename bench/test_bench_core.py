"""End-to-end per-message cost over loopback: fastws beside its peers.

Run with ``pytest bench/ --benchmark-only``; the group ``per-message`` puts
fastws, a raw picows listener and ``websockets`` side by side in one run. Each
benchmark round receives ``MESSAGES`` ~250-byte depth messages; divide the
round time by ``MESSAGES`` for the cost per message.
"""
from __future__ import annotations

import statistics
from typing import Any

import pytest

from bench.peers import PEERS, reconnect_times

MESSAGES = 20_000


@pytest.mark.benchmark(group="per-message")
@pytest.mark.parametrize("make_peer", PEERS, ids=[p.name for p in PEERS])
def test_per_message_cost(benchmark: Any, loop: Any, bench_url: str, make_peer: Any) -> None:
    peer = make_peer(bench_url)
    loop.run_until_complete(peer.open())
    try:
        loop.run_until_complete(peer.run(MESSAGES))   # warm-up
        benchmark.pedantic(lambda: loop.run_until_complete(peer.run(MESSAGES)), rounds=10, iterations=1)
        benchmark.extra_info["messages_per_round"] = MESSAGES
        benchmark.extra_info["ns_per_message"] = benchmark.stats.stats.median / MESSAGES * 1e9
    finally:
        loop.run_until_complete(peer.close())


@pytest.mark.benchmark(group="reconnection")
def test_reconnection_drop_to_first_message(benchmark: Any, loop: Any, bench_url: str) -> None:
    times: list[float] = []

    def measure() -> None:
        times.extend(loop.run_until_complete(reconnect_times(bench_url, 20)))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["median_ms"] = statistics.median(times) * 1e3
    benchmark.extra_info["max_ms"] = max(times) * 1e3
