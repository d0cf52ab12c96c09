"""``fastws book`` in subprocesses against the Binance simulator's stream and REST snapshots on 127.0.0.1.

The simulator here is stepped by the test (``rate=0``), which records the
simulator's own book after every step: each line ``--json`` prints must equal
the truth at that line's update id, level by level, as exact strings.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
import pytest

from exchanges.binance.simulator import BinanceSimulator
from tests.conftest import installed_distribution, run_fastws

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "ETHUSDT")
DEPTH = 5


class Truth:
    """Steps the simulator every ``period`` seconds and keeps its book (top ``DEPTH``) after each step."""

    def __init__(self, sim: BinanceSimulator, period: float = 0.01) -> None:
        self.sim = sim
        self.period = period
        self.books: dict[tuple[str, int], tuple[list[list[str]], list[list[str]]]] = {}
        self.record()

    def record(self) -> None:
        for symbol in SYMBOLS:
            book = self.sim.book(symbol, DEPTH)
            self.books[(symbol, book.last_update_id)] = ([list(level) for level in book.bids],
                                                         [list(level) for level in book.asks])

    async def run(self) -> None:
        while True:
            self.sim.step(1)
            self.record()
            await asyncio.sleep(self.period)


@contextlib.asynccontextmanager
async def stepping(sim: BinanceSimulator) -> AsyncIterator[Truth]:
    truth = Truth(sim)
    task = asyncio.get_running_loop().create_task(truth.run())
    try:
        yield truth
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def sim(binance_simulator_factory: Any) -> BinanceSimulator:
    simulator: BinanceSimulator = await binance_simulator_factory(rate=0)
    return simulator


def _lines(out: str) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in out.splitlines()]


async def test_json_lines_equal_the_simulators_book_at_each_update(sim: BinanceSimulator) -> None:
    async with stepping(sim) as truth:
        code, out, err = await run_fastws("book", "binance", *SYMBOLS, "--url", sim.url, "--rest-url",
                                          sim.rest_url, "--json", "--depth", str(DEPTH), "--max-updates", "60")
    assert code == 0, err
    lines = _lines(out)
    assert len(lines) == 60 and all(line["valid"] for line in lines)
    assert {line["symbol"] for line in lines} == set(SYMBOLS)
    assert set(lines[0]) == {"exchange", "symbol", "update_id", "valid", "bids", "asks"}
    for line in lines:
        assert line["exchange"] == "binance"
        assert (line["bids"], line["asks"]) == truth.books[(line["symbol"], line["update_id"])], line
        assert len(line["bids"]) == DEPTH and len(line["asks"]) == DEPTH
    for symbol in SYMBOLS:
        ids = [line["update_id"] for line in lines if line["symbol"] == symbol]
        assert ids == sorted(set(ids)), "each update once, in order"
    assert err.strip().splitlines()[-1].startswith("fastws book: 60 update(s) applied in ")
    assert {symbol for symbol, _ in sim.rest_requests} == set(SYMBOLS)


async def test_duration_ends_it_and_the_live_view_shows_the_books(sim: BinanceSimulator) -> None:
    async with stepping(sim):
        started = time.monotonic()
        code, out, err = await run_fastws("book", "binance", "BTCUSDT", "--url", sim.url, "--rest-url",
                                          sim.rest_url, "--duration", "1.5", "--depth", "3")
        elapsed = time.monotonic() - started
    assert code == 0, err
    assert elapsed < 20
    assert "binance BTCUSDT: valid, update " in out and "resyncs 0" in out and "spread " in out
    last = out.split("t = ")[-1].splitlines()
    assert last[2].split() == ["bid", "qty", "bid", "|", "ask", "ask", "qty"]
    assert len(last) == 3 + 3       # t line, status line, header, 3 levels
    updates = int(err.strip().splitlines()[-1].split("fastws book: ")[1].split()[0])
    assert updates > 10


async def test_a_gap_invalidates_the_book_in_the_output_and_it_resyncs(sim: BinanceSimulator) -> None:
    async with stepping(sim) as truth:
        process = asyncio.create_task(run_fastws(
            "book", "binance", "BTCUSDT", "--url", sim.url, "--rest-url", sim.rest_url, "--json",
            "--depth", str(DEPTH), "--duration", "4"))
        deadline = time.monotonic() + 10
        while not sim.rest_requests:
            assert time.monotonic() < deadline, "no snapshot asked for"
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.0)
        sim.send_crossed_diff("BTCUSDT")     # the book crosses: invalid, then synced again
        code, out, err = await process
    assert code == 0, err
    lines = _lines(out)
    invalid = [index for index, line in enumerate(lines) if not line["valid"]]
    assert invalid, "the crossed book was not reported"
    assert any(line["valid"] for line in lines[invalid[-1]:]), "not synced again"
    for line in lines:
        if line["valid"]:
            assert (line["bids"], line["asks"]) == truth.books[(line["symbol"], line["update_id"])]
    assert "book crossed" in err and len(sim.rest_requests) >= 2


async def test_an_unreachable_rest_endpoint_is_one_line_and_status_1(sim: BinanceSimulator) -> None:
    async with stepping(sim):
        code, out, err = await run_fastws("book", "binance", "BTCUSDT", "--url", sim.url,
                                          "--rest-url", "http://127.0.0.1:9", "--sync-timeout", "2", "--json")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert all(line.startswith("fastws book: ") for line in lines), lines
    assert lines[-1].startswith("fastws book: error: no synced book of BTCUSDT within 2 s: ")
    assert "127.0.0.1:9" in lines[-1]
    assert "Traceback" not in err


async def test_a_ban_stops_at_once_with_status_1(sim: BinanceSimulator) -> None:
    sim.rest_fault("418", 120)
    async with stepping(sim):
        started = time.monotonic()
        code, out, err = await run_fastws("book", "binance", "BTCUSDT", "--url", sim.url, "--rest-url",
                                          sim.rest_url, "--json", "--sync-timeout", "20")
        elapsed = time.monotonic() - started
    assert code == 1
    assert [line["valid"] for line in _lines(out)] == [False]      # the handler is told, once
    assert err.strip().splitlines()[-1].startswith("fastws book: error: stopped: ")
    assert "418" in err and "Traceback" not in err
    assert elapsed < 15        # not the sync timeout: a ban ends it
    assert len(sim.rest_requests) == 1


@pytest.mark.parametrize("args, message", [
    (["--url", "ws://127.0.0.1:9"], "fastws book: error: --url ws://127.0.0.1:9 needs --rest-url too"),
    (["--rest-url", "ftp://x"], "fastws book: error: --rest-url ftp://x: must be an http:// or https:// base URL"),
    (["--url", "http://x", "--rest-url", "http://127.0.0.1:9"],
     "fastws book: error: --url http://x: url must start with ws:// or wss://"),
    (["--depth", "0"], "fastws book: error: --depth must be >= 1, got 0"),
    (["--max-updates", "-1"], "fastws book: error: --max-updates must be > 0, got -1"),
])
async def test_bad_arguments_are_one_line_and_status_2(args: list[str], message: str) -> None:
    code, out, err = await run_fastws("book", "binance", "BTCUSDT", *args)
    assert code == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith(message), err


async def test_an_unknown_exchange_is_refused_by_the_parser() -> None:
    code, out, err = await run_fastws("book", "nosuch", "BTCUSDT")
    assert code == 2 and out == ""
    assert "invalid choice: 'nosuch'" in err


THIRD_ENTRY_POINTS = """\
[fastws.exchanges]
third = tests.third_exchange.entry:EXCHANGE
"""


async def test_an_exchange_without_books_is_one_line_and_status_1(tmp_path: Path) -> None:
    # The third exchange (tests/third_exchange) keeps no books; port 9 would
    # refuse a connection the command should never try.
    with installed_distribution(tmp_path / "site", "fastws-third", THIRD_ENTRY_POINTS) as site:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
        code, out, err = await run_fastws("book", "third", "BTC", "--url", "ws://127.0.0.1:9",
                                          "--rest-url", "http://127.0.0.1:9", env=env, cwd=str(REPO))
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "fastws book: error: third keeps no order books (its client has no subscribe_books; "
        "exchanges with books: binance)"] or "exchanges with books: binance, mexc)" in err, err
