"""The report's other measurements as pytest-benchmark suites (``pytest bench/ --benchmark-only``).

Groups: ``throughput`` (one connection, client-bound, every peer), ``latency``
(tick-to-handler at a paced rate, every peer), ``mexc <push>`` (per push,
fastws beside protobuf), ``ack`` (subscription acknowledgment) and ``scale``
(20, 200 and 1000 connections in one process). Each puts its figures in
``extra_info``; ``scripts/benchmark_websocket_performance.py`` measures the
same with rounds interleaved and writes the report.
"""
from __future__ import annotations

import dataclasses
import statistics
from typing import Any, Iterator

import pytest
from picows.picows import _make_test_ws_frame

from bench import mexc_bench
from bench.ack import ack_times
from bench.binance_payloads import MIX
from bench.binance_peers import LOOPBACK_PEERS, binance_server, run_blast
from bench.latency import paced_latency, percentile
from bench.scale import scale

MESSAGES = 20_000
LATENCY_RATE = 2000
LATENCY_TICKS = 2000
PEER_NAMES = list(LOOPBACK_PEERS)


@pytest.fixture(scope="module")
def binance_url() -> Iterator[str]:
    """Base URL of ``bench/binance_server.py`` running in its own process."""
    with binance_server(64) as url:
        yield url


@pytest.mark.parametrize("name", PEER_NAMES)
def test_throughput(benchmark: Any, loop: Any, binance_url: str, name: str) -> None:
    benchmark.group = "throughput"
    peer = LOOPBACK_PEERS[name](binance_url, None)
    loop.run_until_complete(peer.open())
    try:
        loop.run_until_complete(run_blast(peer, MIX, MESSAGES))    # warm-up
        benchmark.pedantic(lambda: loop.run_until_complete(run_blast(peer, MIX, MESSAGES)), rounds=5, iterations=1)
        benchmark.extra_info["messages_per_second"] = MESSAGES / benchmark.stats.stats.median
    finally:
        loop.run_until_complete(peer.close())


@pytest.mark.parametrize("name", PEER_NAMES)
def test_latency(benchmark: Any, loop: Any, binance_url: str, name: str) -> None:
    benchmark.group = "latency"
    samples: list[float] = []

    def measure() -> None:
        got = loop.run_until_complete(paced_latency(binance_url, LATENCY_RATE, LATENCY_TICKS, 1, [name]))
        samples.extend(got[name])

    benchmark.pedantic(measure, rounds=1, iterations=1)
    assert len(samples) == LATENCY_TICKS
    for label, fraction in (("p50_us", 0.5), ("p99_us", 0.99), ("p99_9_us", 0.999)):
        benchmark.extra_info[label] = percentile(samples, fraction) * 1e6


@pytest.mark.parametrize("peer", ["reference", "raw picows + protobuf", "fast decoder", "fastws path"])
@pytest.mark.parametrize("kind", list(mexc_bench.PUSHES))
def test_mexc_push(benchmark: Any, kind: str, peer: str) -> None:
    benchmark.group = f"mexc {kind}"
    payload = mexc_bench.PUSHES[kind]()
    item = (payload, _make_test_ws_frame(mexc_bench._BINARY, payload, True, False))
    sink = mexc_bench.Count()
    call = mexc_bench.peers()[peer](sink)
    benchmark(call, item)
    assert sink.count > 0


def test_subscription_ack(benchmark: Any, loop: Any, bench_url: str) -> None:
    benchmark.group = "ack"
    times: list[float] = []
    benchmark.pedantic(lambda: times.extend(loop.run_until_complete(ack_times(bench_url, 200))),
                       rounds=1, iterations=1)
    benchmark.extra_info["median_ms"] = statistics.median(times) * 1e3
    benchmark.extra_info["p99_ms"] = percentile(times, 0.99) * 1e3


@pytest.mark.parametrize("count", [20, 200, 1000])
def test_scale(benchmark: Any, bench_url: str, count: int) -> None:
    benchmark.group = "scale"
    results: list[Any] = []
    benchmark.pedantic(lambda: results.extend(scale(bench_url, [count], 20, 2.0, clients=("fastws",))),
                       rounds=1, iterations=1)
    benchmark.extra_info.update(dataclasses.asdict(results[0]))
