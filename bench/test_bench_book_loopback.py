"""Order books over loopback as pytest-benchmark suites (``pytest bench/ --benchmark-only``).

Group ``book-loopback``: per ``depthUpdate`` frame (~20 changed levels per
side) from ``bench/book_loopback.py``'s server in its own process, until the
book is updated and the handler called: fastws's ``subscribe_books`` beside raw
picows + msgspec + ``order-book``, raw picows + msgspec dicts (no book) and
websockets + json + a dict book. ``ns_per_frame`` and ``cpu_ns_per_frame``
are in each result's extra info; ``python bench/book_loopback.py`` measures
the same with rounds interleaved and prints the ratios.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from bench.book_loopback import PEER_NAMES, book_server, close_session, measure, open_session

LEVELS = 1000
UPDATES = 1000
ROUNDS = 10


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, str]]:
    """``(ws_url, rest_url)`` of the book server, for a warm-up and ``ROUNDS`` rounds per connection."""
    with book_server(LEVELS, UPDATES, ROUNDS + 2) as urls:
        yield urls


def test_every_peer_keeps_up_and_the_books_agree(loop: Any) -> None:
    # A short run of the whole measurement: every peer sees every frame of its
    # rounds with no gap, ends each at the server's last id, and the book
    # peers' top levels equal fastws's exact book.
    with book_server(200, 100, 3) as (url, rest_url):
        result = loop.run_until_complete(measure(url, rest_url, 2))
    names = [name for name in PEER_NAMES if name in result.wall]
    assert names[0] == "fastws book" and {"picows + msgspec dicts", "websockets + json + dict book"} <= set(names)
    assert result.frames == 100 and result.rounds == 2
    assert 30 <= result.levels_per_frame <= 50
    assert all(result.wall[name] > 0 and result.cpu[name] > 0 for name in names)


@pytest.mark.benchmark(group="book-loopback")
@pytest.mark.parametrize("name", PEER_NAMES)
def test_book_loopback(benchmark: Any, loop: Any, server: tuple[str, str], name: str) -> None:
    session = loop.run_until_complete(open_session(*server, names=[name]))
    if not session.peers:
        loop.run_until_complete(close_session(session))
        pytest.skip(f"{name}: its package is not installed (the bench extra brings it)")
    peer = session.peers[0]
    cpu: list[float] = []
    try:
        def one_round() -> None:
            cpu.append(loop.run_until_complete(session.round(peer))[1])
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    finally:
        loop.run_until_complete(close_session(session))
    benchmark.extra_info["ns_per_frame"] = benchmark.stats.stats.median / UPDATES * 1e9
    benchmark.extra_info["cpu_ns_per_frame"] = sorted(cpu)[len(cpu) // 2] * 1e9
