"""Binance per-message cost per stream type: fastws's typed and dict routes beside
raw picows listeners (msgspec, ``json.loads``).

Run with ``pytest bench/ --benchmark-only``. One group per measurement and
stream type (``binance in-process trade``, ``binance loopback mix``...) holds
the four peers; ``extra_info["ns_per_message"]`` is the median round over the
round's message count. ``python bench/binance_bench.py`` measures the same
with rounds interleaved across peers and prints the ratios.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from bench.binance_payloads import KINDS, build_payloads
from bench.binance_peers import (IN_PROCESS_PEERS, StreamCounter, binance_server, check_in_process, feed_all,
                                 frames_of, loopback_peers, run_blast)

MESSAGES = 2_000
ROUNDS = 10
PEER_NAMES = list(IN_PROCESS_PEERS)


@pytest.fixture(scope="module")
def payloads() -> dict[str, list[bytes]]:
    """The payloads of every kind, after checking that every peer decodes them alike."""
    built = build_payloads()
    check_in_process(frames_of(built["mix"], len(built["mix"])))
    return built


@pytest.fixture(scope="module")
def binance_url() -> Iterator[str]:
    """Base URL of ``bench/binance_server.py`` running in its own process."""
    with binance_server(64) as url:
        yield url


def _record(benchmark: Any) -> None:
    benchmark.extra_info["messages_per_round"] = MESSAGES
    benchmark.extra_info["ns_per_message"] = benchmark.stats.stats.median / MESSAGES * 1e9


@pytest.mark.parametrize("peer", PEER_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_binance_in_process(benchmark: Any, payloads: dict[str, list[bytes]], kind: str, peer: str) -> None:
    benchmark.group = f"binance in-process {kind}"
    counter = StreamCounter()
    feed = IN_PROCESS_PEERS[peer](counter)
    frames = frames_of(payloads[kind], MESSAGES)
    benchmark.pedantic(feed_all, args=(feed, frames), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert counter.count == MESSAGES * (ROUNDS + 1)
    _record(benchmark)


@pytest.mark.parametrize("peer_index", range(len(PEER_NAMES)), ids=PEER_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_binance_loopback(benchmark: Any, loop: Any, binance_url: str, kind: str, peer_index: int) -> None:
    benchmark.group = f"binance loopback {kind}"
    peer = loopback_peers(binance_url)[peer_index]
    loop.run_until_complete(peer.open())
    try:
        loop.run_until_complete(run_blast(peer, kind, MESSAGES))    # warm-up
        benchmark.pedantic(lambda: loop.run_until_complete(run_blast(peer, kind, MESSAGES)),
                           rounds=ROUNDS, iterations=1)
        _record(benchmark)
    finally:
        loop.run_until_complete(peer.close())
