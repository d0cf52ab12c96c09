"""The order book in process as pytest-benchmark suites (``pytest bench/ --benchmark-only``).

Group ``book-per-update``: fastws's compiled book applying raw ``depthUpdate``
frames beside msgspec dicts (no book), msgspec + a Decimal dict book and
msgspec + the ``order-book`` package, on one stream (see ``bench/book_bench.py``);
each round applies every frame from the snapshot. ``ns_per_update`` and
``ns_per_level`` are in each result's extra info.
"""
from __future__ import annotations

from typing import Any

import pytest

from bench.book_bench import EmptyDiffs, Peer, Stream, build_stream, check, make_peers

UPDATES = 2000
LEVELS = 2000

_STREAM: Stream = build_stream(LEVELS, UPDATES)
_PEERS: list[Peer] = [p for p in make_peers(_STREAM) if not isinstance(p, EmptyDiffs)]


def test_every_book_peer_ends_with_the_reference_book() -> None:
    check(_PEERS, _STREAM)


@pytest.mark.benchmark(group="book-per-update")
@pytest.mark.parametrize("peer", _PEERS, ids=[p.name for p in _PEERS])
def test_book_per_update(benchmark: Any, peer: Peer) -> None:
    benchmark.pedantic(peer.run, args=(_STREAM.diffs,), setup=lambda: peer.reset(_STREAM.snapshot),
                       rounds=15, iterations=1, warmup_rounds=1)
    per_update = benchmark.stats.stats.median / UPDATES
    benchmark.extra_info["ns_per_update"] = per_update * 1e9
    benchmark.extra_info["ns_per_level"] = per_update * 1e9 / _STREAM.levels_per_diff
