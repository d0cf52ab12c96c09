"""Every measurement of the benchmark report, in one run: ``run_report(out_dir, quick)``.

Each measurement lives in its own module (``binance_bench``, ``mexc_bench``,
``seed_bench``, ``throughput``, ``latency``, ``peers.reconnect_times``, ``ack``, ``scale``,
``book_loopback`` and ``book_bench`` for order books);
this one picks the counts (``SETTINGS``), starts the feed servers in their own
processes, runs the measurements one after another, then writes
``report.md`` and the plots (``bench/report.py``, ``bench/plots.py``).
"""
from __future__ import annotations

import logging
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Optional, TypeVar

import uvloop

from bench import (ack, binance_bench, book_bench, book_loopback, latency, mexc_bench, plots, report, scale,
                   seed_bench, throughput)
from bench.binance_payloads import build_payloads
from bench.binance_peers import LOOPBACK_PEERS, all_loopback_peers, binance_server
from bench.peers import bench_server, reconnect_times

__all__ = ["SETTINGS", "run_report"]

SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "per_stream": 64,
        "in_process_messages": 5000, "in_process_rounds": 15,
        "loopback_messages": 3000, "loopback_rounds": 11,
        "mexc_pushes": 20_000, "mexc_rounds": 9,
        "throughput_messages": 50_000, "throughput_rounds": 5,
        "latency_rate": 2000, "latency_count": 4000, "latency_rounds": 3,
        "reconnect_drops": 200,
        "ack_generic": 500, "ack_binance": 10,
        "scale_counts": [20, 200, 1000], "scale_rate": 20, "scale_window": 3.0,
        "book_levels": 1000, "book_updates": 2000, "book_rounds": 11,
    },
    "quick": {
        "per_stream": 8,
        "in_process_messages": 300, "in_process_rounds": 3,
        "loopback_messages": 300, "loopback_rounds": 3,
        "mexc_pushes": 300, "mexc_rounds": 3,
        "throughput_messages": 3000, "throughput_rounds": 3,
        "latency_rate": 2000, "latency_count": 300, "latency_rounds": 1,
        "reconnect_drops": 10,
        "ack_generic": 20, "ack_binance": 2,
        "scale_counts": [20, 50], "scale_rate": 20, "scale_window": 0.5,
        "book_levels": 200, "book_updates": 200, "book_rounds": 3,
    },
}
"""The counts of a full run and of a ``--quick`` smoke run."""

T = TypeVar("T")


def _step(name: str, work: Callable[[], T]) -> T:
    """Run one measurement, its progress on stderr."""
    print(f"[bench] {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    result = work()
    print(f"[bench] {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return result


def _machine() -> str:
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}")


def measure(quick: bool, settings: Optional[dict[str, Any]] = None) -> report.Results:
    """Run every measurement; the results, not yet written."""
    s = settings if settings is not None else SETTINGS["quick" if quick else "full"]
    started = time.perf_counter()
    results = report.Results(quick=quick, settings=s, machine=_machine())
    payloads = build_payloads(s["per_stream"])
    results.payload_bytes = {kind: statistics.median(len(p) for p in items) for kind, items in payloads.items()}
    results.binance_in_process, results.binance_harness = _step(
        "Binance per-message cost, in-process",
        lambda: binance_bench.in_process(payloads, s["in_process_messages"], s["in_process_rounds"]))
    results.mexc = _step("MEXC per-push cost, in-process",
                         lambda: mexc_bench.measure(s["mexc_pushes"], s["mexc_rounds"]))
    results.mexc_bytes = {kind: len(build()) for kind, build in mexc_bench.PUSHES.items()}
    with binance_server(s["per_stream"]) as url:
        results.binance_loopback = _step("Binance per-message cost, loopback", lambda: uvloop.run(
            binance_bench.loopback(url, s["loopback_messages"], s["loopback_rounds"], all_loopback_peers(url))))
        results.seed_loopback = _step("seed-style adapter, loopback", lambda: uvloop.run(
            seed_bench.loopback(url, s["loopback_messages"], s["loopback_rounds"])))
        results.throughput = _step("throughput, one connection", lambda: uvloop.run(
            throughput.throughput(all_loopback_peers(url), s["throughput_messages"], s["throughput_rounds"])))
        results.latency = _step("tick-to-handler latency", lambda: uvloop.run(latency.paced_latency(
            url, s["latency_rate"], s["latency_count"], s["latency_rounds"], list(LOOPBACK_PEERS))))
        results.ack_binance = _step("subscription ack, BinanceWebSocket",
                                    lambda: uvloop.run(ack.binance_ack_times(url, s["ack_binance"])))
    results.book_loopback = _step("order books, loopback", lambda: book_loopback.run(
        s["book_levels"], s["book_updates"], s["book_rounds"]))
    results.book_in_process, results.book_levels_per_update = _step(
        "order books, in-process", lambda: _book_in_process(s["book_levels"], s["book_updates"], s["book_rounds"]))
    with bench_server() as url:
        results.reconnect = _step("reconnection", lambda: uvloop.run(reconnect_times(url, s["reconnect_drops"])))
        results.ack_generic = _step("subscription ack, generic",
                                    lambda: uvloop.run(ack.ack_times(url, s["ack_generic"])))
        results.scale = _step(f"scale {s['scale_counts']} connections", lambda: scale.scale(
            url, s["scale_counts"], s["scale_rate"], s["scale_window"]))
    results.elapsed = time.perf_counter() - started
    return results


def _book_in_process(levels: int, updates: int, rounds: int) -> tuple[dict[str, float], float]:
    """``bench/book_bench.py``'s peers (checked against the Decimal reference first): CPU seconds per update,
    and levels per update."""
    stream = book_bench.build_stream(levels, updates)
    peers = book_bench.make_peers(stream)
    book_bench.check(peers, stream)
    return book_bench.measure(peers, stream, rounds, clock=time.process_time), stream.levels_per_diff


def run_report(out_dir: str, quick: bool = False) -> str:
    """Measure everything, write ``out_dir/report.md`` and the plots; return the report."""
    logging.basicConfig(level=logging.ERROR)
    os.makedirs(out_dir, exist_ok=True)
    results = measure(quick)
    names = _step("plots", lambda: plots.draw_all(results, out_dir))
    text = report.markdown(results, names)
    with open(os.path.join(out_dir, "report.md"), "w") as file:
        file.write(text)
    print(f"[bench] wrote {os.path.join(out_dir, 'report.md')} and {len(names)} plots", file=sys.stderr)
    return text
