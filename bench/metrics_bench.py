"""What the Prometheus export costs: per message while scraped, and per scrape.

Usage: ``python bench/metrics_bench.py [--messages N] [--blasts B] [--rounds R] [--scrape-interval S]
[--streams S]``.

1. **Per message.** Two ``BinanceWebSocket`` clients (typed route), each with
   its own connection to ``bench/binance_server.py`` (its own process), take
   blasts of the ``mix`` payloads. ``fastws`` is registered nowhere;
   ``fastws + collector`` is registered and served by ``fastws.metrics.serve``
   while a scraper process GETs ``/metrics`` every 100 ms (``--scrape-interval``)
   during its rounds only (the scraper is stopped with SIGSTOP in between).
   Rounds are interleaved, the order alternating; the figures are the median
   nanoseconds per message of each, in wall time and in this process's CPU
   time (the machine is shared: CPU time leaves out the waits for a core).
2. **Per scrape.** One client subscribed to S ``<symbol>@depth`` streams of
   ``BinanceSimulator`` (every stream with messages and event latencies);
   the time of what ``/metrics`` does (``refresh()``: each client's
   ``health_check()``, then ``prometheus_client``'s exposition), median of
   30 in wall and CPU time, with the default ``metrics_max_streams`` and with
   every stream given its own series; and the size of the scrape.

Prints one JSON document.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

import uvloop

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from bench.binance_bench import rotated  # noqa: E402
from bench.binance_payloads import MIX  # noqa: E402
from bench.binance_peers import FastwsPeer, binance_server, run_blast  # noqa: E402
from exchanges.binance import BinanceWebSocket, binance_config  # noqa: E402
from exchanges.binance.simulator import BinanceSimulator  # noqa: E402
from fastws import ExchangeName  # noqa: E402
from fastws.metrics import ClientRegistry, MetricsServer, serve  # noqa: E402

# The scraper: GET the URL every INTERVAL seconds until killed (Prometheus's side, in its own process).
_SCRAPER = """
import sys, time, urllib.request
url, interval = sys.argv[1], float(sys.argv[2])
while True:
    urllib.request.urlopen(url).read()
    time.sleep(interval)
"""


class Scraper:
    """A process that scrapes ``url`` every ``interval`` seconds while resumed."""

    def __init__(self, url: str, interval: float) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _SCRAPER, url, str(interval)])
        self.pause()

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def _count_refreshes(server: MetricsServer) -> list[int]:
    """A one-item list counting the scrapes ``server`` answers (each refreshes the collector once)."""
    count = [0]
    refresh = server.collector.refresh

    async def counted() -> dict[str, dict[str, Any]]:
        count[0] += 1
        return await refresh()

    server.collector.refresh = counted  # type: ignore[method-assign]
    return count


async def per_message(messages: int, rounds: int, blasts: int, interval: float) -> dict[str, Any]:
    """Median ns per message of a plain client and of a registered, scraped one.

    A round is ``blasts`` blasts of ``messages`` in a row (one blast stays
    within the client's backlog bound; a round lasts long enough for scrapes).
    """
    with binance_server(64) as url:      # payloads per stream type, cycled
        plain = FastwsPeer(url, typed=True)
        scraped = FastwsPeer(url, typed=True)
        scraped.name = "fastws + collector"
        for peer in (plain, scraped):
            await peer.open()
        registry = ClientRegistry()
        registry.register(scraped.ws)
        server = await serve(0, clients=registry)
        scrapes = _count_refreshes(server)
        scraper = Scraper(server.url + "/metrics", interval)
        try:
            for peer in (plain, scraped):
                await run_blast(peer, MIX, messages)       # warm-up
            samples: dict[str, list[float]] = {plain.name: [], scraped.name: []}
            cpu: dict[str, list[float]] = {plain.name: [], scraped.name: []}
            scrapes_per_round: list[int] = []
            for index in range(rounds):
                for peer in rotated([plain, scraped], index):
                    if peer is scraped:
                        scraper.resume()
                        scrapes_before = scrapes[0]
                    start, start_cpu = time.perf_counter(), time.process_time()
                    for _ in range(blasts):
                        await run_blast(peer, MIX, messages)
                    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
                    if peer is scraped:
                        scraper.pause()
                        scrapes_per_round.append(scrapes[0] - scrapes_before)
                    samples[peer.name].append(elapsed / (messages * blasts) * 1e9)
                    cpu[peer.name].append(elapsed_cpu / (messages * blasts) * 1e9)
        finally:
            scraper.close()
            await server.close()
            for peer in (plain, scraped):
                await peer.close()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    return {"messages_per_round": messages * blasts, "rounds": rounds, "scrape_interval_s": interval,
            "scrapes_per_collector_round": statistics.median(scrapes_per_round),
            "wall_ns_per_message": medians,
            "cpu_ns_per_message": cpu_medians,
            "wall_ratio": medians[scraped.name] / medians[plain.name],
            "cpu_ratio": cpu_medians[scraped.name] / cpu_medians[plain.name],
            # The extra CPU of a collector round over its scrapes: what one scrape costs the loop.
            "implied_cpu_ms_per_scrape": (cpu_medians[scraped.name] - cpu_medians[plain.name]) * messages * blasts
            / max(1.0, statistics.median(scrapes_per_round)) / 1e6,
            "wall_spread_ns": {name: [min(v), max(v)] for name, v in samples.items()},
            "cpu_spread_ns": {name: [min(v), max(v)] for name, v in cpu.items()}}


async def _time_scrapes(server: MetricsServer, repeats: int) -> dict[str, float]:
    """Median wall and CPU ms of refresh(), of the exposition and of both; the scrape's size in bytes."""
    from prometheus_client import generate_latest
    times: dict[str, list[float]] = {}
    size = 0
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        await server.collector.refresh()
        w1, c1 = time.perf_counter(), time.process_time()
        body = generate_latest(server.registry)
        w2, c2 = time.perf_counter(), time.process_time()
        for key, value in (("refresh_wall_ms", w1 - w0), ("refresh_cpu_ms", c1 - c0),
                           ("exposition_wall_ms", w2 - w1), ("exposition_cpu_ms", c2 - c1),
                           ("scrape_wall_ms", w2 - w0), ("scrape_cpu_ms", c2 - c0)):
            times.setdefault(key, []).append(value * 1e3)
        size = len(body)
        await asyncio.sleep(0)
    result = {key: statistics.median(values) for key, values in times.items()}
    result["bytes"] = size
    return result


async def per_scrape(stream_count: int, repeats: int = 30) -> dict[str, Any]:
    """Scrape time of one client with ``stream_count`` streams, capped (default) and uncapped."""
    streams = [f"s{index:04d}usdt@depth" for index in range(stream_count)]
    results: dict[str, Any] = {"streams": stream_count}
    async with BinanceSimulator(rate=0) as sim:
        ws = BinanceWebSocket(ExchangeName("binance"),
                              binance_config(sim.url, max_messages_per_second=50, stale_timeout=None),
                              lambda *args: None, typed=True)
        async with ws:
            await ws.subscribe(streams)
            await sim.wait_subscribed(streams, timeout=60.0)
            sim.step(3)
            expected = 3 * stream_count
            deadline = time.monotonic() + 30.0
            while ws.metrics["messages_delivered"] < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for cap in (ws.config.metrics_max_streams, stream_count):
                # The cap is read at each scrape: a config with another one.
                ws.config = binance_config(sim.url, max_messages_per_second=50, stale_timeout=None,
                                           metrics_max_streams=cap)
                registry = ClientRegistry()
                registry.register(ws)
                server = await serve(0, clients=registry)
                try:
                    results[f"cap {cap}"] = await _time_scrapes(server, repeats)
                finally:
                    await server.close()
    return results


async def main(args: argparse.Namespace) -> None:
    report = {"per_message": await per_message(args.messages, args.rounds, args.blasts, args.scrape_interval),
              "per_scrape": await per_scrape(args.streams)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=40_000, help="messages per blast (default 40000)")
    parser.add_argument("--blasts", type=int, default=5,
                        help="blasts per timed round (default 5: rounds of about a second, several scrapes)")
    parser.add_argument("--rounds", type=int, default=11, help="timed rounds per client (default 11)")
    parser.add_argument("--scrape-interval", type=float, default=0.1,
                        help="seconds between two scrapes of the scraped client (default 0.1)")
    parser.add_argument("--streams", type=int, default=1000, help="streams of the scrape benchmark (default 1000)")
    uvloop.run(main(parser.parse_args()))
