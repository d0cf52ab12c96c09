"""Tick-to-handler latency at a paced rate, fastws beside its peers.

``bench/binance_server.py`` (its own process) sends ``btcusdt@trade`` frames at
a set rate, each carrying in its trade id the server's ``time.monotonic_ns()``
at the moment it was written; every peer's handler subtracts that from its own
``time.monotonic_ns()`` (``CLOCK_MONOTONIC`` is one clock for all processes of
a machine). So a figure is server write -> kernel -> client read -> parse ->
classify -> handler, on one connection per peer, peers taking turns.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.binance_bench import rotated
from bench.binance_peers import LOOPBACK_PEERS, StreamCounter

__all__ = ["LatencySink", "paced_latency", "percentile"]

_monotonic_ns = time.monotonic_ns


class LatencySink(StreamCounter):
    """Handlers that keep each tick's latency in ns (dict route and typed route)."""

    def __init__(self) -> None:
        super().__init__()
        self.samples: list[int] = []

    def on_message(self, message: Any) -> None:
        self.samples.append(_monotonic_ns() - message["data"]["t"])
        self._counted()

    def on_stream_message(self, stream: str, message: Any) -> None:
        self.samples.append(_monotonic_ns() - message.trade_id)
        self._counted()

    def _counted(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set_result(None)  # type: ignore[union-attr]


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank; sorts a copy)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]


async def _paced_round(peer: Any, rate: float, count: int) -> None:
    done = peer.counter.arm(count)
    sent = peer.blast(f"PACE {rate:g} {count}".encode())
    if asyncio.iscoroutine(sent):
        await sent
    await asyncio.wait_for(done, count / rate + 10.0)


async def paced_latency(url: str, rate: float, count: int, rounds: int,
                        names: list[str]) -> dict[str, list[float]]:
    """Latencies in seconds of every tick, per peer.

    Args:
        url: Base URL of ``bench/binance_server.py``.
        rate: Ticks per second the server sends.
        count: Ticks per round and peer.
        rounds: Rounds per peer (peers take turns, the order rotating).
        names: Peers, by their ``LOOPBACK_PEERS`` name.

    Returns:
        Peer name -> every tick's latency (seconds), warm-up left out.
    """
    sinks = {name: LatencySink() for name in names}
    peers = [LOOPBACK_PEERS[name](url, sinks[name]) for name in names]
    for peer in peers:
        await peer.open()
    try:
        for peer in peers:                     # warm-up, not kept
            await _paced_round(peer, rate, min(count, 100))
            peer.counter.samples.clear()
        for index in range(rounds):
            for peer in rotated(peers, index):
                await _paced_round(peer, rate, count)
                peer.check()
        return {name: [ns / 1e9 for ns in sink.samples] for name, sink in sinks.items()}
    finally:
        for peer in peers:
            await peer.close()
