"""The report's PNG plots, drawn with matplotlib (Agg: no display needed)."""
from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402
import numpy as np  # noqa: E402

from bench.report import BOOK_FASTWS, Results  # noqa: E402

__all__ = ["PLOTS", "draw_all"]

PLOTS = ("latency.png", "throughput.png", "per_message.png", "memory.png", "books.png")
"""File names of the plots, in the order of the report."""


def _plain_ticks(axis: "matplotlib.axis.Axis") -> None:
    """Plain numbers on a log axis (not 2x10^1)."""
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _latency(results: Results, path: str) -> None:
    figure, (hist, tail) = plt.subplots(1, 2, figsize=(12, 4.5))
    every = np.concatenate([np.asarray(v) for v in results.latency.values()]) * 1e6
    bins = np.logspace(np.log10(max(every.min(), 1.0)), np.log10(every.max()), 60)
    for name, values in results.latency.items():
        micros = np.sort(np.asarray(values) * 1e6)
        hist.hist(micros, bins=bins, histtype="step", linewidth=1.5, label=name)
        # Tail plot: latency against "nines" (x = -log10(1 - quantile)).
        quantiles = (np.arange(1, len(micros) + 1) - 0.5) / len(micros)
        tail.plot(-np.log10(1 - quantiles), micros, label=name)
    hist.set_xscale("log")
    _plain_ticks(hist.xaxis)
    hist.set_xlabel("tick-to-handler latency (us)")
    hist.set_ylabel("ticks")
    hist.set_title(f"Latency distribution at {results.settings['latency_rate']:g} msg/s")
    hist.legend(fontsize=8)
    tail.set_yscale("log")
    _plain_ticks(tail.yaxis)
    tail.set_xticks([0, 1, 2, 3], ["p0", "p90", "p99", "p99.9"])
    tail.set_ylabel("latency (us)")
    tail.set_title("Latency by percentile")
    tail.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _throughput(results: Results, path: str) -> None:
    figure, axes = plt.subplots(figsize=(8, 4))
    names = list(results.throughput)
    values = [results.throughput[name] / 1e3 for name in names]
    colors = ["tab:green" if name.startswith("fastws") else "tab:gray" for name in names]
    axes.barh(names[::-1], values[::-1], color=colors[::-1])
    for index, value in enumerate(values[::-1]):
        axes.text(value, index, f" {value:,.0f}k", va="center", fontsize=8)
    axes.set_xlabel("messages per second, one connection (thousands)")
    axes.set_title("Single-connection throughput, Binance mix, client-bound")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _per_message(results: Results, path: str) -> None:
    costs = results.binance_loopback
    kinds = list(costs)
    peers = list(costs[kinds[0]])
    figure, axes = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / len(peers)
    positions = np.arange(len(kinds))
    for index, peer in enumerate(peers):
        axes.bar(positions + index * width, [costs[kind][peer] * 1e9 for kind in kinds], width, label=peer)
    axes.set_xticks(positions + width * (len(peers) - 1) / 2, kinds)
    axes.set_ylabel("ns per message")
    axes.set_title("Per-message cost over loopback, Binance stream types")
    axes.legend(fontsize=8, ncols=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _memory(results: Results, path: str) -> None:
    figure, (per, total) = plt.subplots(1, 2, figsize=(11, 4))
    for client in sorted({row.client for row in results.scale}):
        rows = sorted((row for row in results.scale if row.client == client), key=lambda row: row.connections)
        counts = [row.connections for row in rows]
        per.plot(counts, [row.rss_per_connection_kb for row in rows], marker="o", label=client)
        total.plot(counts, [row.rss_total_mb for row in rows], marker="o", label=client)
    per.axhline(150, color="tab:red", linestyle="--", linewidth=1, label="issue target 150 KB")
    counts = sorted({row.connections for row in results.scale})
    for axes in (per, total):
        axes.set_xscale("log")
        axes.set_xticks(counts, [str(count) for count in counts])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("concurrent connections in one process")
        axes.legend(fontsize=8)
        axes.grid(True, alpha=0.3)
    per.set_ylabel("RSS per idle connection (KB)")
    per.set_title("Memory per connection")
    total.set_ylabel("process RSS (MB)")
    total.set_title("Process memory")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _bars(axes: Any, costs: dict[str, float], base: str, title: str, label: str) -> None:
    """Horizontal bars of ``costs`` (seconds) in us, each labelled with its ratio to ``base``."""
    names = list(costs)[::-1]
    values = [costs[name] * 1e6 for name in names]
    colors = ["tab:green" if name.startswith("fastws") else "tab:gray" for name in names]
    axes.barh(names, values, color=colors)
    for index, name in enumerate(names):
        axes.text(values[index], index, f" {values[index]:.1f} us ({costs[name] / costs[base]:.1f}x)",
                  va="center", fontsize=8)
    axes.set_xlim(0, max(values) * 1.45)
    axes.set_xlabel(label)
    axes.set_title(title)


def _books(results: Results, path: str) -> None:
    loop = results.book_loopback
    assert loop is not None
    panels = 2 if results.book_in_process else 1
    figure, axes = plt.subplots(1, panels, figsize=(7 * panels, 3.6), squeeze=False)
    _bars(axes[0][0], loop.cpu, BOOK_FASTWS,
          f"Order book over loopback, ~{loop.levels_per_frame:.0f} levels per frame", "CPU us per depthUpdate frame")
    if results.book_in_process:
        costs = {name: cost for name, cost in results.book_in_process.items() if name != "fastws empty diff"}
        _bars(axes[0][1], costs, BOOK_FASTWS, "Order book in process (raw frames, no socket)", "us per update")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_all(results: Results, out_dir: str) -> list[str]:
    """Write every plot into ``out_dir`` (the books' when measured); return their file names."""
    drawn = []
    for name, draw in zip(PLOTS, (_latency, _throughput, _per_message, _memory, _books)):
        if draw is _books and results.book_loopback is None:
            continue
        draw(results, os.path.join(out_dir, name))
        drawn.append(name)
    return drawn
