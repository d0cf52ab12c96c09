"""What a proxy costs per message: the same stream direct, through tinyproxy and through dante.

    python bench/proxy_bench.py [--messages 20000] [--rounds 9] [--rate 2000] [--ticks 2000]

``bench/binance_server.py`` (its own process) serves the Binance-shaped feed;
four ``BinanceWebSocket`` clients (dict route, all streams subscribed) read it
over loopback: one directly, one through a tinyproxy HTTP CONNECT tunnel, one
through a dante SOCKS5 tunnel, one through dante told to set ``TCP_NODELAY``
on its sockets (``fastws.testing.proxies``, real processes on free ports;
tinyproxy has no such setting and leaves Nagle's algorithm on). The clients take turns in every round, the order rotating.

- receive cost: the server writes ``--messages`` frames of the mixed stream in
  one go (``BLAST mix``); per message, the wall time until the last reached the
  handler (the proxy relays every byte, so its copy shows here) and this
  process's CPU time (the client's own cost, which a tunnel should not change:
  the socket is an ordinary TCP socket either way);
- latency: the server sends ``--ticks`` trades at ``--rate`` a second, each
  stamped with ``time.monotonic_ns()`` when written; the handler subtracts it
  from its own clock (one clock for every process of the machine): server write
  -> (proxy) -> client handler, p50 and p99.

Figures are medians over the rounds, printed as a markdown table with the
ratio to the direct connection.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from contextlib import AsyncExitStack
from typing import Any, Optional

import uvloop

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from bench.binance_bench import rotated  # noqa: E402
from bench.binance_payloads import MIX, stream_names  # noqa: E402
from bench.binance_peers import binance_server, run_blast  # noqa: E402
from bench.latency import LatencySink, percentile  # noqa: E402
from exchanges.binance import BinanceWebSocket, binance_config  # noqa: E402
from fastws import ExchangeName  # noqa: E402
from fastws.testing.proxies import DanteProxy, TinyProxy  # noqa: E402

__all__ = ["PathSink", "ProxiedPeer", "main"]


_monotonic_ns = time.monotonic_ns


class PathSink(LatencySink):
    """Counts every message; keeps latencies only while ``stamped`` (the blast's frames carry no stamp)."""

    def __init__(self) -> None:
        super().__init__()
        self.stamped = False

    def on_message(self, message: Any) -> None:
        if self.stamped:
            self.samples.append(_monotonic_ns() - message["data"]["t"])
        self._counted()


class ProxiedPeer:
    """A ``BinanceWebSocket`` (dict route) on every stream, through ``proxy`` or directly."""

    def __init__(self, name: str, url: str, proxy: Optional[str], sink: PathSink) -> None:
        self.name = name
        self.counter = sink
        config = binance_config(url, stale_timeout=None, proxy=proxy)
        self.ws = BinanceWebSocket(ExchangeName("binance"), config, sink.on_message)

    async def open(self) -> None:
        await self.ws.start()
        await self.ws.subscribe(stream_names())

    def blast(self, command: bytes) -> None:
        # The core's own send: a benchmark command is not paced like Binance's control messages.
        self.ws._core.send_text(command)  # type: ignore[union-attr]

    def check(self) -> None:
        counters = self.ws._core.counters()  # type: ignore[union-attr]
        errors = {k: v for k, v in counters.items() if k.endswith("_errors") and v}
        assert not errors, f"{self.name}: {errors}"

    async def close(self) -> None:
        await self.ws.stop()


async def _paced(peer: ProxiedPeer, sink: PathSink, rate: float, count: int) -> None:
    done = sink.arm(count)
    sink.stamped = True
    try:
        peer.blast(f"PACE {rate:g} {count}".encode())
        await asyncio.wait_for(done, count / rate + 10.0)
    finally:
        sink.stamped = False
    peer.check()


async def measure(url: str, server_port: int, messages: int, rounds: int, rate: float,
                  ticks: int) -> dict[str, dict[str, float]]:
    """Per peer: ``wall_ns`` and ``cpu_ns`` per message, ``p50_us`` and ``p99_us`` of the latency."""
    async with AsyncExitStack() as stack:
        tiny = await stack.enter_async_context(TinyProxy(allow_ports=[server_port]))
        dante = await stack.enter_async_context(DanteProxy())
        dante_nodelay = await stack.enter_async_context(DanteProxy(nodelay=True))
        proxies = {"direct": None, "tinyproxy (HTTP)": tiny.url, "dante (SOCKS5)": dante.url,
                   "dante, tcp_nodelay": dante_nodelay.url}
        sinks = {name: PathSink() for name in proxies}
        peers = [ProxiedPeer(name, url, proxies[name], sinks[name]) for name in sinks]
        for peer in peers:
            await peer.open()
            stack.push_async_callback(peer.close)
        for peer in peers:                       # warm-up, not kept
            await run_blast(peer, MIX, messages)
            await _paced(peer, sinks[peer.name], rate, min(ticks, 200))
        wall: dict[str, list[float]] = {p.name: [] for p in peers}
        cpu: dict[str, list[float]] = {p.name: [] for p in peers}
        latency: dict[str, list[float]] = {p.name: [] for p in peers}
        for index in range(rounds):
            for peer in rotated(peers, index):
                sink = sinks[peer.name]
                sink.samples.clear()
                start, start_cpu = time.perf_counter(), time.process_time()
                await run_blast(peer, MIX, messages)
                wall[peer.name].append((time.perf_counter() - start) / messages)
                cpu[peer.name].append((time.process_time() - start_cpu) / messages)
                await _paced(peer, sink, rate, ticks)
                latency[peer.name].extend(sink.samples)
        assert tiny.log_text().count(f"CONNECT 127.0.0.1:{server_port} ") >= 1, "tinyproxy carried nothing"
        assert f"127.0.0.1.{server_port}" in dante.log_text(), "dante carried nothing"
        return {name: {"wall_ns": statistics.median(wall[name]) * 1e9,
                       "cpu_ns": statistics.median(cpu[name]) * 1e9,
                       "p50_us": percentile(latency[name], 0.50) / 1e3,
                       "p99_us": percentile(latency[name], 0.99) / 1e3} for name in wall}


def table(results: dict[str, dict[str, float]]) -> str:
    """Markdown: the figures per path and their ratio to the direct connection."""
    direct = results["direct"]
    lines = ["| path | wall ns/msg | client CPU ns/msg | latency p50 µs | latency p99 µs |"
             " wall vs direct | CPU vs direct | p50 vs direct | p99 vs direct |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in results.items():
        ratios = " | ".join(f"{row[key] / direct[key]:.2f}x" for key in ("wall_ns", "cpu_ns", "p50_us", "p99_us"))
        lines.append(f"| {name} | {row['wall_ns']:.0f} | {row['cpu_ns']:.0f} | {row['p50_us']:.1f} "
                     f"| {row['p99_us']:.1f} | {ratios} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="frames per receive-cost round and path")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--rate", type=float, default=2_000.0, help="trades per second in the latency rounds")
    parser.add_argument("--ticks", type=int, default=2_000, help="trades per latency round and path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with binance_server(64) as url:
        port = int(url.rsplit(":", 1)[1])
        results: Any = uvloop.run(measure(url, port, args.messages, args.rounds, args.rate, args.ticks))
    print(f"## Proxy overhead, loopback, BinanceWebSocket dict route (median of {args.rounds} rounds; "
          f"receive: {args.messages} mixed frames per round; latency: {args.ticks} trades at "
          f"{args.rate:g}/s per round)\n")
    print(table(results))


if __name__ == "__main__":
    main()
