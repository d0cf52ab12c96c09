"""Slow-consumer isolation: trade latency beside a slow bookTicker handler on the same connection.

Issue 16 §2: one ``async`` handler awaiting 5 ms per message on
``btcusdt@bookTicker`` must not delay the ``btcusdt@trade`` handler of the
same connection by more than 1 ms against a lone trade stream. Three setups
take turns, round by round, in one run (the machine is shared and noisy):

- ``lone``: a connection with ``btcusdt@trade`` only;
- ``lossless``: the same connection also carries ``btcusdt@bookTicker``
  whose handler awaits 5 ms per message, policy ``Lossless()`` (it falls
  further and further behind the feed);
- ``latest``: the same with ``Latest()`` (the bookTicker backlog stays at one).

The ``BinanceSimulator`` serves on 127.0.0.1 in this process; the market is
stepped every ``--interval`` ms (each step: one bookTicker and 0-3 trades).
A trade's latency is its handler's ``time.monotonic_ns()`` minus the instant
its step was written to the socket (simulator -> kernel -> client read ->
route -> handler, all in one event loop). Run::

    python bench/slow_consumer_bench.py --rounds 5 --steps 300
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any, Optional

import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exchanges.binance import BinanceWebSocket, binance_config  # noqa: E402
from exchanges.binance.simulator import BinanceSimulator  # noqa: E402
from fastws import ExchangeName  # noqa: E402
from fastws.policy import Latest, Lossless, Policy  # noqa: E402

SETUPS: dict[str, Optional[Policy]] = {"lone": None, "lossless": Lossless(), "latest": Latest()}
"""Setup name -> the slow bookTicker stream's policy (None: no bookTicker stream)."""

_TRADES = "btcusdt@trade"
_TICKER = "btcusdt@bookTicker"
_now = time.monotonic_ns


class Round:
    """One setup's round: trade latencies, and what the slow handler got."""

    def __init__(self, handler_delay: float) -> None:
        self.sent_at: dict[int, int] = {}
        self.trade_ns: list[int] = []
        self.tickers = 0
        self.handler_delay = handler_delay
        self.unexpected = 0

    def on_trade(self, message: dict[str, Any]) -> None:
        sent = self.sent_at.get(message["data"]["t"])
        if sent is not None:
            self.trade_ns.append(_now() - sent)

    async def on_ticker(self, message: dict[str, Any]) -> None:
        self.tickers += 1
        await asyncio.sleep(self.handler_delay)

    def on_other(self, message: Any) -> None:
        self.unexpected += 1


async def run_round(sim: BinanceSimulator, policy: Optional[Policy], steps: int, interval: float,
                    handler_delay: float) -> tuple[Round, dict[str, Any]]:
    """One connection of the setup: subscribe, warm up, step the market ``steps`` times, measure."""
    result = Round(handler_delay)
    config = binance_config(sim.url, stale_timeout=None)
    market = sim.market.symbol("BTCUSDT")
    async with BinanceWebSocket(ExchangeName("binance"), config, result.on_other) as ws:
        await ws.subscribe([_TRADES], handler=result.on_trade)
        if policy is not None:
            await ws.subscribe([_TICKER], handler=result.on_ticker, policy=policy)
        for _ in range(20):
            sim.step(1)
            await asyncio.sleep(interval)
        for _ in range(steps):
            first = market.last_trade_id + 1
            sim.step(1)
            written = _now()
            for trade_id in range(first, market.last_trade_id + 1):
                result.sent_at[trade_id] = written
            await asyncio.sleep(interval)
        await asyncio.sleep(0.05)
        health = await ws.health_check()
    return result, health


def _percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))] / 1000.0


async def main(rounds: int, steps: int, interval: float, handler_delay: float) -> None:
    samples: dict[str, list[int]] = {name: [] for name in SETUPS}
    per_round: dict[str, list[tuple[float, float]]] = {name: [] for name in SETUPS}
    slow: dict[str, list[str]] = {name: [] for name in SETUPS}
    async with BinanceSimulator(rate=0) as sim:
        for index in range(rounds):
            names = list(SETUPS)
            # Interleaved, and each round starts with another setup.
            names = names[index % len(names):] + names[:index % len(names)]
            for name in names:
                result, health = await run_round(sim, SETUPS[name], steps, interval, handler_delay)
                samples[name].extend(result.trade_ns)
                per_round[name].append((_percentile(result.trade_ns, 0.5), _percentile(result.trade_ns, 0.99)))
                ticker = health["streams"].get(_TICKER, {}).get("slow_consumer")
                if ticker is not None:
                    slow[name].append(f"{result.tickers} handled, {ticker['conflated']} conflated, "
                                      f"{health['metrics']['messages_received']} received")
    print(f"trade latency, simulator write -> trade handler, us ({rounds} rounds x {steps} steps "
          f"every {interval * 1000:g} ms; bookTicker handler awaits {handler_delay * 1000:g} ms)")
    print(f"{'setup':<10} {'trades':>7} {'p50':>8} {'p99':>8} {'median p50':>11} {'median p99':>11}"
          f" {'p50 - lone':>11} {'p99 - lone':>11}")
    lone50 = statistics.median(p for p, _ in per_round["lone"])
    lone99 = statistics.median(p for _, p in per_round["lone"])
    for name in SETUPS:
        med50 = statistics.median(p for p, _ in per_round[name])
        med99 = statistics.median(p for _, p in per_round[name])
        print(f"{name:<10} {len(samples[name]):>7} {_percentile(samples[name], 0.5):>8.1f} "
              f"{_percentile(samples[name], 0.99):>8.1f} {med50:>11.1f} {med99:>11.1f} "
              f"{med50 - lone50:>11.1f} {med99 - lone99:>11.1f}")
    for name, lines in slow.items():
        if lines:
            print(f"{name}: bookTicker per round: {'; '.join(lines)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300, help="market steps per round")
    parser.add_argument("--interval", type=float, default=2.0, help="ms between market steps")
    parser.add_argument("--handler-delay", type=float, default=5.0, help="ms the bookTicker handler awaits")
    args = parser.parse_args()
    uvloop.run(main(args.rounds, args.steps, args.interval / 1000, args.handler_delay / 1000))
