"""Single-connection throughput: messages per second until the client is the bottleneck.

Each peer has one connection to ``bench/binance_server.py`` (its own process),
which writes a blast of pre-built Binance frames (the ``mix`` of every stream
type) in one write; the figure is messages over the time until the handler has
counted them all. Rounds are interleaved across peers, the order rotating.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

from bench.binance_bench import rotated
from bench.binance_payloads import MIX
from bench.binance_peers import run_blast

__all__ = ["throughput"]


async def throughput(peers: list[Any], messages: int, rounds: int, kind: str = MIX) -> dict[str, float]:
    """Messages per second of each peer (median of ``rounds``), one connection each.

    Args:
        peers: Loopback peers (``bench.binance_peers``), not yet opened.
        messages: Messages per blast.
        rounds: Timed blasts per peer, after one warm-up blast.
        kind: The payload kind blasted.

    Returns:
        Peer name -> messages per second.
    """
    for peer in peers:
        await peer.open()
    try:
        for peer in peers:
            await run_blast(peer, kind, messages)
        samples: dict[str, list[float]] = {peer.name: [] for peer in peers}
        for index in range(rounds):
            for peer in rotated(peers, index):
                start = time.perf_counter()
                await run_blast(peer, kind, messages)
                samples[peer.name].append(messages / (time.perf_counter() - start))
        return {name: statistics.median(values) for name, values in samples.items()}
    finally:
        for peer in peers:
            await peer.close()
