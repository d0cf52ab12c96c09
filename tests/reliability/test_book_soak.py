"""Order books under faults, for as long as asked: ``--soak SECONDS`` (a few seconds by default).

One ``BinanceWebSocket`` keeps the books of two symbols from the Binance
simulator (its stream and its REST snapshots) while the market moves
(~200 steps a second) and a fault comes every few seconds, each kind once
per round of ten in a random (seeded) order:

- ``drop``, ``reset``: the connection closes (1001) or is cut: every book is
  invalid, then synced again after the reconnection;
- ``gap``: the simulator skips a depth update of every symbol;
- ``crossed``: a diff puts a bid above the best ask of one symbol;
- ``rest 429``, ``rest 500``, ``rest garbage``, ``rest slow``, ``rest stale``
  (the snapshot is older than the stream), ``rest ahead`` (far ahead of it):
  queued on the REST endpoint, then a gap, so the resync meets them.

After each fault the test waits until every book is valid again and at the
simulator's last update id with the market paused, then compares the top 20
levels of each with the simulator's own book, exactly (the checkpoint);
between faults it keeps streaming for the sync's healthy period (so each
resync starts with its shortest delay) with another checkpoint. At the end:
every fault recovered, every checkpoint equal, each resync accounted for,
nothing left running after ``stop()``.

The full soak: ``pytest tests/reliability/test_book_soak.py --soak 600 -s``
(prints the figures).
"""
from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from exchanges.binance.simulator import BinanceSimulator
from fastws.errors import MessageHandlerError
from tests.conftest import other_tasks
from tests.integration.test_binance_book import Books, agrees, client, stepping

DEFAULT_SECONDS = 8.0
MAX_SECONDS = 1800.0
SYMBOLS = ["BTCUSDT", "ETHUSDT"]
FAULTS = ("drop", "reset", "gap", "crossed", "rest 429", "rest 500", "rest garbage", "rest slow", "rest stale",
          "rest ahead")
RECOVERY_TIMEOUT = 20.0
# A book valid this long resets its resync delays (BookSync.healthy_after).
HEALTHY_AFTER = 5.0

pytestmark = pytest.mark.timeout(MAX_SECONDS + 300)


@dataclass
class SoakReport:
    """What the book soak saw."""

    seconds: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    recovery: dict[str, list[float]] = field(default_factory=dict)
    checkpoints: int = 0
    resyncs: int = 0
    updates: int = 0
    error_codes: Counter[int] = field(default_factory=Counter)

    def lines(self) -> list[str]:
        """The figures, one line each."""
        every = [t for times in self.recovery.values() for t in times]
        lines = [f"book soak: {self.seconds:.0f} s, {sum(self.faults.values())} faults, {self.checkpoints} "
                 f"checkpoints equal to the simulator's books, {self.resyncs} resyncs, {self.updates} updates "
                 f"applied, errors by code {dict(sorted(self.error_codes.items()))}"]
        if every:
            lines.append(f"  recovery (fault to a valid book at the simulator's id): p50 "
                         f"{statistics.median(every) * 1000:.0f} ms, max {max(every) * 1000:.0f} ms")
        for kind in sorted(self.recovery):
            times = self.recovery[kind]
            lines.append(f"  {kind:<13} x{len(times):<4} median {statistics.median(times) * 1000:6.0f} ms, "
                         f"max {max(times) * 1000:6.0f} ms")
        return lines


def _inject(sim: BinanceSimulator, kind: str, rng: random.Random) -> None:
    if kind == "drop":
        sim.drop(1001)
    elif kind == "reset":
        sim.reset()
    elif kind == "gap":
        sim.skip_sequence(1)
    elif kind == "crossed":
        sim.send_crossed_diff(rng.choice(SYMBOLS))
    else:
        rest = kind.split()[1]
        value = {"429": 0.3, "500": 500, "slow": 0.8, "stale": rng.choice(SYMBOLS), "ahead": 10_000}.get(rest)
        sim.rest_fault("status" if rest == "500" else rest, value)
        sim.skip_sequence(1)        # a resync meets the fault


async def _resyncs(ws: Any) -> int:
    """Resyncs of every book of ``ws`` so far."""
    return sum(book["resyncs"] for book in (await ws.health_check())["books"].values())


async def run_book_soak(seconds: float, seed: int = 13) -> SoakReport:
    """Keep two books through random faults for ``seconds``; checkpoints after and between faults."""
    rng = random.Random(seed)
    report = SoakReport()
    before = other_tasks()
    books = Books()
    async with BinanceSimulator(rate=0, ping_interval=0) as sim:
        for symbol in SYMBOLS:
            sim.market.symbol(symbol)
        # Short snapshot timeouts (the slow fault) and catch-up waits (the ahead fault).
        ws = client(sim, books, timeout=0.5, book_catch_up_timeout=0.5, reconnect_delay=0.05)
        async with ws, stepping(sim) as stepper:
            await ws.subscribe_books(SYMBOLS, books.on_book)
            await agrees(sim, stepper, ws, SYMBOLS, timeout=RECOVERY_TIMEOUT)
            started = time.monotonic()
            coming: list[str] = []
            while time.monotonic() - started < seconds:
                if not coming:          # every kind once per round, in a random order
                    coming = rng.sample(FAULTS, len(FAULTS))
                kind = coming.pop()
                report.faults[kind] += 1
                injected = time.monotonic()
                resyncs = await _resyncs(ws)
                _inject(sim, kind, rng)
                while await _resyncs(ws) == resyncs:     # the fault reached the client: a book resyncs
                    assert time.monotonic() - injected < RECOVERY_TIMEOUT, f"{kind}: no book resynced"
                    await asyncio.sleep(0.005)
                await agrees(sim, stepper, ws, SYMBOLS, timeout=RECOVERY_TIMEOUT)
                report.recovery.setdefault(kind, []).append(time.monotonic() - injected)
                report.checkpoints += 1
                await asyncio.sleep(HEALTHY_AFTER / 2)
                await agrees(sim, stepper, ws, SYMBOLS, timeout=RECOVERY_TIMEOUT)
                report.checkpoints += 1
                await asyncio.sleep(HEALTHY_AFTER / 2 + 0.2)
            report.seconds = time.monotonic() - started
            report.resyncs = await _resyncs(ws)
        report.updates = sum(1 for _, _, valid in books.updates if valid)
        report.error_codes = Counter(books.codes())
        assert not any(isinstance(e, MessageHandlerError) or "sync failed" in str(e) for e in books.errors), \
            books.errors
        assert other_tasks() == before, other_tasks() - before     # nothing left running
    return report


async def test_books_recover_from_every_fault_and_equal_the_simulators(request: pytest.FixtureRequest) -> None:
    seconds = request.config.getoption("--soak") or DEFAULT_SECONDS
    assert seconds <= MAX_SECONDS, f"--soak {seconds}: at most {MAX_SECONDS:g} s for this soak"
    report = await asyncio.wait_for(run_book_soak(seconds), seconds + 240)
    print("\n" + "\n".join(report.lines()))
    faults = sum(report.faults.values())
    assert faults >= 2
    assert report.checkpoints == 2 * faults       # every checkpoint met (agrees() asserts equality)
    # Every fault makes at least one book resync (a REST fault: the gap that leads to it); no resync
    # comes from nowhere: at most every book per fault, plus the retries a REST fault causes.
    assert faults <= report.resyncs <= len(SYMBOLS) * faults * 2
    assert report.updates > 100 * faults
