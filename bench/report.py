"""The benchmark report: the measurements of one run as Markdown tables.

``Results`` holds what ``bench/suite.py`` measured; ``markdown(results)``
writes the report: the interface standard's targets and the issue's fastws
targets first (measured value, limit, margin, pass or fail), then one table
per measurement, fastws beside its peers of the same run.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Optional

from bench.book_loopback import PEER_NAMES as BOOK_PEERS
from bench.book_loopback import BookLoopback
from bench.latency import percentile
from bench.scale import ScaleResult

__all__ = ["Results", "Target", "book_targets", "issue_targets", "markdown", "seed_targets", "standard_targets"]

Costs = dict[str, dict[str, float]]        # kind -> peer -> seconds per message

BASE = "raw msgspec"
"""The raw picows listener with msgspec: the peer the ratios are taken against."""


@dataclass
class Results:
    """Everything one run measured (seconds unless a name says otherwise)."""

    quick: bool
    settings: dict[str, Any]
    binance_in_process: Costs = field(default_factory=dict)
    binance_harness: float = 0.0
    binance_loopback: Costs = field(default_factory=dict)
    seed_loopback: Costs = field(default_factory=dict)      # the seed-style adapter beside raw picows
    payload_bytes: dict[str, float] = field(default_factory=dict)
    mexc: Costs = field(default_factory=dict)
    mexc_bytes: dict[str, int] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)       # peer -> messages/s
    latency: dict[str, list[float]] = field(default_factory=dict)    # peer -> every tick's latency
    reconnect: list[float] = field(default_factory=list)
    ack_generic: list[float] = field(default_factory=list)
    ack_binance: list[float] = field(default_factory=list)
    scale: list[ScaleResult] = field(default_factory=list)
    book_loopback: Optional[BookLoopback] = None       # order books over loopback (bench/book_loopback.py)
    book_in_process: dict[str, float] = field(default_factory=dict)   # peer -> seconds per update (book_bench)
    book_levels_per_update: float = 0.0
    elapsed: float = 0.0
    machine: str = ""


@dataclass
class Target:
    """One target row: ``measured`` against ``limit``, ``upper`` if the limit is a ceiling."""

    name: str
    measured: float
    limit: float
    unit: str
    upper: bool
    detail: str = ""

    @property
    def passed(self) -> bool:
        """Whether the measured value is within the limit."""
        return self.measured <= self.limit if self.upper else self.measured >= self.limit

    @property
    def margin(self) -> float:
        """How many times within the limit (above 1: passed with room)."""
        if self.upper:
            return self.limit / self.measured if self.measured > 0 else float("inf")
        return self.measured / self.limit


def _fmt(value: float) -> str:
    if value == 0 or 0.01 <= abs(value) < 100_000:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value:.3g}"


def _pcts(values: list[float], scale: float = 1e3) -> tuple[float, float, float]:
    return tuple(percentile(values, f) * scale for f in (0.5, 0.99, 0.999))  # type: ignore[return-value]


def _fastws_costs(results: Results) -> list[tuple[float, str]]:
    costs = [(cost, f"Binance {where} {kind}, {peer}")
             for where, table in (("in-process", results.binance_in_process), ("loopback", results.binance_loopback))
             for kind, row in table.items() for peer, cost in row.items() if peer.startswith("fastws")]
    costs += [(row["fastws path"], f"MEXC {kind}") for kind, row in results.mexc.items()]
    return costs


def _fastws_scale(results: Results) -> list[ScaleResult]:
    return [row for row in results.scale if row.client == "fastws"]


def standard_targets(results: Results) -> list[Target]:
    """The interface standard's targets, each with the measured value it is judged on."""
    worst_cost, worst_where = max(_fastws_costs(results))
    scale = _fastws_scale(results)
    largest = max(scale, key=lambda row: row.connections)
    slowest_connect = max(scale, key=lambda row: row.connect_max_ms)
    worst_cpu = max(scale, key=lambda row: row.cpu_percent_per_connection)
    worst_rss = max(scale, key=lambda row: row.rss_per_connection_kb)
    acks = [("generic", results.ack_generic), ("BinanceWebSocket", results.ack_binance)]
    ack_name, ack_values = max(acks, key=lambda item: percentile(item[1], 0.99))
    slowest_route = min(("fastws dict", "fastws typed"), key=lambda name: results.throughput[name])
    return [
        Target("message processing < 1 ms", worst_cost * 1e3, 1.0, "ms", True,
               f"worst per-message cost: {worst_where}"),
        Target("connection < 2 s", slowest_connect.connect_max_ms / 1e3, 2.0, "s", True,
               f"slowest connect of {slowest_connect.connections} concurrent connections"),
        Target("reconnection < 5 s", percentile(results.reconnect, 0.99), 5.0, "s", True,
               f"p99 of {len(results.reconnect)} drops, drop to first message after resubscribe"),
        Target("acknowledgment < 100 ms", percentile(ack_values, 0.99) * 1e3, 100.0, "ms", True,
               f"p99, {ack_name} client (the slower of the two)"),
        Target(">= 1000 messages/s per connection", results.throughput[slowest_route], 1000.0, "msg/s", False,
               f"{slowest_route}, one connection, client-bound"),
        Target(">= 20 connections", float(largest.connections), 20.0, "connections", False,
               "largest count run in one process, every connection fed"),
        Target("< 100 MB per connection", worst_rss.rss_per_connection_kb / 1024, 100.0, "MB", True,
               f"RSS per idle connection at {worst_rss.connections} connections"),
        Target("< 10 % CPU per connection", worst_cpu.cpu_percent_per_connection, 10.0, "%", True,
               f"{worst_cpu.connections} connections at {worst_cpu.rate_per_connection:g} msg/s each"),
    ]


def issue_targets(results: Results) -> list[Target]:
    """Issue 6's own targets for fastws."""
    loop = results.binance_loopback
    mix = loop["mix"]
    worst_dict = max(loop, key=lambda kind: loop[kind]["fastws dict"] / loop[kind][BASE])
    worst_typed = max(loop, key=lambda kind: loop[kind]["fastws typed"] / loop[kind][BASE])
    websockets = "websockets json"
    slowest_vs_ws = min(loop, key=lambda kind: loop[kind][websockets] / loop[kind]["fastws dict"])
    largest = max(_fastws_scale(results), key=lambda row: row.connections)
    return [
        Target("dict route <= 1.0x raw picows + msgspec (mix)", mix["fastws dict"] / mix[BASE], 1.0, "x", True,
               "loopback, Binance mix of every stream type"),
        Target("dict route <= 1.0x raw picows + msgspec (worst type)",
               loop[worst_dict]["fastws dict"] / loop[worst_dict][BASE], 1.0, "x", True, f"loopback, {worst_dict}"),
        Target("typed route <= 0.67x raw picows + msgspec (mix)", mix["fastws typed"] / mix[BASE], 0.67, "x", True,
               "loopback, Binance mix of every stream type"),
        Target("typed route <= 0.67x raw picows + msgspec (worst type)",
               loop[worst_typed]["fastws typed"] / loop[worst_typed][BASE], 0.67, "x", True,
               f"loopback, {worst_typed}"),
        Target(">= 4x faster than websockets (dict route, mix)", mix[websockets] / mix["fastws dict"], 4.0, "x",
               False, "loopback, websockets + json.loads / fastws dict route"),
        Target(">= 4x faster than websockets (dict route, worst type)",
               loop[slowest_vs_ws][websockets] / loop[slowest_vs_ws]["fastws dict"], 4.0, "x", False,
               f"loopback, {slowest_vs_ws}"),
        Target(">= 4x faster than websockets (typed route, mix)", mix[websockets] / mix["fastws typed"], 4.0, "x",
               False, "loopback, websockets + json.loads / fastws typed route"),
        Target("reconnection median <= 5 ms", statistics.median(results.reconnect) * 1e3, 5.0, "ms", True,
               f"median of {len(results.reconnect)} drops on loopback"),
        Target("<= 150 KB RSS per idle connection", largest.rss_per_connection_kb, 150.0, "KB", True,
               f"at {largest.connections} connections"),
    ]


def seed_targets(results: Results) -> list[Target]:
    """Issue 12's target: an adapter written as the interface standard shows is <= 1.0x raw picows."""
    loop = results.seed_loopback
    seed, raw = "seed adapter", "raw picows"
    worst = max(loop, key=lambda kind: loop[kind][seed] / loop[kind][raw])
    name = "seed-style adapter <= 1.0x raw picows + msgspec"
    return [Target(f"{name} (mix)", loop["mix"][seed] / loop["mix"][raw], 1.0, "x", True,
                   "loopback, Binance mix of every stream type"),
            Target(f"{name} (worst type)", loop[worst][seed] / loop[worst][raw], 1.0, "x", True,
                   f"loopback, {worst}")]


BOOK_FASTWS = BOOK_PEERS[0]
_BOOK_GOALS = ((BOOK_PEERS[1], 4.0), (BOOK_PEERS[2], 2.0), (BOOK_PEERS[3], 10.0))
_EMPTY_DIFF = "fastws empty diff"      # bench/book_bench.py's EmptyDiffs: one apply_diff's fixed cost


def book_level_cost(results: Results) -> float:
    """Seconds per level of the compiled apply in process: (an update - an empty diff) / levels."""
    costs = results.book_in_process
    return (costs[BOOK_FASTWS] - costs.get(_EMPTY_DIFF, 0.0)) / results.book_levels_per_update


def book_targets(results: Results) -> list[Target]:
    """Issue 13's order book targets: fastws's book beside each peer over loopback (CPU time), and per level."""
    loop = results.book_loopback
    assert loop is not None
    targets = [Target(f">= {goal:g}x faster than {peer}", loop.cpu[peer] / loop.cpu[BOOK_FASTWS], goal, "x", False,
                      f"loopback, CPU per frame (wall: {loop.wall[peer] / loop.wall[BOOK_FASTWS]:.2f}x)")
               for peer, goal in _BOOK_GOALS if peer in loop.cpu]
    if results.book_in_process:
        targets.append(Target("<= 60 ns per level, in process", book_level_cost(results) * 1e9, 60.0, "ns", True,
                              f"apply_diff of ~{results.book_levels_per_update:.0f} levels, minus an empty diff"))
    return targets


def _book_section(results: Results) -> list[str]:
    loop = results.book_loopback
    if loop is None:
        return []
    s = results.settings
    lines = [
        "## Order books", "",
        f"Binance `depthUpdate` frames (`btcusdt@depth@100ms`, ~{loop.levels_per_frame:.0f} changed levels per frame, "
        f"both sides) from a server process over 127.0.0.1 into a {s['book_levels']}-level book, per frame until "
        "the book is updated and the handler called (`bench/book_loopback.py`). **fastws book**: "
        "`BinanceWebSocket.subscribe_books` (the frame core's route, levels read from the bytes into the compiled "
        "fixed-point book, the sync's `U`/`u` check); **picows + msgspec + order-book**: a raw picows listener, "
        "msgspec to dicts, the `U`/`u` check, float levels into cryptofeed's author's C `order-book`; **picows + "
        "msgspec dicts**: the same listener handing on dicts, no book; **websockets + json + dict book**: the "
        "websockets client, `json.loads`, a dict per side. Each round returns the book to the snapshot (the diffs "
        "then their inverses, ids always increasing); after the rounds every book peer's top 20 levels equal "
        f"fastws's. Medians of {loop.rounds} interleaved rounds x {loop.frames} frames. The CPU column is the "
        "client process's own time (the ratio the targets use: on a shared machine wall time also counts other "
        "processes holding the cores).", "",
        *_target_table(book_targets(results)), "",
        "| peer | wall ns/frame | fastws faster (wall) | CPU ns/frame | fastws faster (CPU) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {name} | {loop.wall[name] * 1e9:.0f} | {loop.wall[name] / loop.wall[BOOK_FASTWS]:.2f}x | "
          f"{loop.cpu[name] * 1e9:.0f} | {loop.cpu[name] / loop.cpu[BOOK_FASTWS]:.2f}x |" for name in loop.wall], "",
    ]
    if results.book_in_process:
        costs = results.book_in_process
        levels = results.book_levels_per_update
        lines += [
            f"In process (`bench/book_bench.py`): raw frames applied to a {s['book_levels']}-level book with no "
            f"socket, ~{levels:.0f} levels per update, CPU time, median of {s['book_rounds']} interleaved rounds x "
            f"{s['book_updates']} updates. fastws's cost per level: {book_level_cost(results) * 1e9:.1f} ns "
            f"(an update minus an empty diff's {costs.get(_EMPTY_DIFF, 0.0) * 1e9:.0f} ns).", "",
            "| peer | ns/update | ns/level | vs fastws |", "| --- | ---: | ---: | ---: |",
            *[f"| {name} | {cost * 1e9:.0f} | {cost * 1e9 / levels:.1f} | {cost / costs[BOOK_FASTWS]:.2f}x |"
              for name, cost in costs.items() if name != _EMPTY_DIFF], "",
        ]
    return lines


def _target_table(targets: list[Target]) -> list[str]:
    lines = ["| target | measured | limit | margin | result | measured on |", "| --- | ---: | ---: | ---: | --- | --- |"]
    for t in targets:
        bound = "<=" if t.upper else ">="
        lines.append(f"| {t.name} | {_fmt(t.measured)} {t.unit} | {bound} {_fmt(t.limit)} {t.unit} | "
                     f"{t.margin:.2f}x | {'PASS' if t.passed else 'FAIL'} | {t.detail} |")
    return lines


def _cost_table(costs: Costs, sizes: dict[str, float], base: Optional[str], unit: float, unit_name: str) -> list[str]:
    peers = list(next(iter(costs.values())))
    header = "| stream type | bytes | " + " | ".join(f"{p} {unit_name}" for p in peers)
    rule = "| --- | ---: |" + " ---: |" * len(peers)
    if base is not None:
        others = [p for p in peers if p != base]
        header += " | " + " | ".join(f"{p} / {base}" for p in others)
        rule += " ---: |" * len(others)
    lines = [header + " |", rule]
    for kind, row in costs.items():
        cells = [f"{row[p] * unit:.{2 if unit_name == 'us' else 0}f}" for p in peers]
        if base is not None:
            cells += [f"{row[p] / row[base]:.2f}x" for p in peers if p != base]
        lines.append(f"| {kind} | {sizes.get(kind, 0):.0f} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: Results, plots: list[str]) -> str:
    """The whole report as Markdown; ``plots`` are the PNG file names beside it."""
    s = results.settings
    out = [
        "# fastws benchmark report", "",
        f"{'Quick (smoke) run' if results.quick else 'Full run'} on {results.machine}; "
        f"{results.elapsed:.0f} s. Feed servers run in their own processes on 127.0.0.1; every figure "
        "stands beside its peers of the same run (rounds interleaved, peer order rotating), so the "
        "ratios hold on a noisy machine while absolute times move.", "",
        "Peers: **fastws typed** (`BinanceWebSocket(typed=True)`, msgspec Structs), **fastws dict** "
        "(`BinanceWebSocket`, the standard dict route), **raw msgspec** (a picows `WSListener` in Python, "
        "msgspec to dict, stream -> type lookup, handler), **raw json** (the same with `json.loads`), "
        "**websockets json** and **aiohttp json** (those clients, a reader task, `json.loads`, the same "
        "lookup and handler). Every peer decodes the whole message, classifies it and calls a handler.", "",
        "## Targets of the interface standard", "",
        *_target_table(standard_targets(results)), "",
        "## Targets of issue 6 (fastws)", "",
        "Ratios are fastws time per message over the peer's (below 1: faster) except the websockets "
        "rows (the peer's time over fastws's).", "",
        *_target_table(issue_targets(results)), "",
        "## Per-message cost: Binance, in-process (parse + classify + dispatch)", "",
        f"Built frames handed to each peer's `on_ws_frame`, no socket; ns per message, median of "
        f"{s['in_process_rounds']} rounds x {s['in_process_messages']} messages. Every figure includes "
        f"{results.binance_harness * 1e9:.0f} ns of harness (a Python loop calling a no-op).", "",
        *_cost_table(results.binance_in_process, results.payload_bytes, BASE, 1e9, "ns"), "",
        "## Per-message cost: Binance, loopback end to end", "",
        f"Server process -> socket -> client -> handler, one connection per peer, the server blasting "
        f"pre-built frames; ns per message, median of {s['loopback_rounds']} rounds x "
        f"{s['loopback_messages']} messages.", "",
        *_cost_table(results.binance_loopback, results.payload_bytes, BASE, 1e9, "ns"), "",
        "## Per-message cost: the seed-style adapter, loopback", "",
        "**seed adapter**: `bench/seed_adapter.py`, an adapter written as the interface standard shows one "
        "(`async def _parse_message` with `msgspec.json.decode`, `StreamType.X` inline in "
        "`_extract_stream_info`, an `async def` handler; no route); **raw picows**: a picows `WSListener` in "
        "Python doing the same decode and calling a trivial handler. Same server, rounds and counts as above.", "",
        *_target_table(seed_targets(results)), "",
        *_cost_table(results.seed_loopback, results.payload_bytes, "raw picows", 1e9, "ns"), "",
        "## Per-message cost: MEXC protobuf pushes, in-process", "",
        "**reference**: protobuf's `ParseFromString` + `json_format.MessageToDict`; **raw picows + protobuf**: "
        "a picows listener doing that and calling a handler; **fast decoder**: fastws's compiled `PushDecoder` "
        f"alone; **fastws path**: the frame core a `MexcWebSocket` runs (parse + classify + dispatch). "
        f"us per push, median of {s['mexc_rounds']} rounds.", "",
        *_cost_table(results.mexc, {k: float(v) for k, v in results.mexc_bytes.items()}, "raw picows + protobuf",
                     1e6, "us"),
        "",
        "## Throughput: one connection, client-bound", "",
        f"The server writes {s['throughput_messages']} frames (Binance mix) at once; messages per second until "
        f"the handler has them all, median of {s['throughput_rounds']} rounds.", "",
        "| client | messages/s | vs raw msgspec |", "| --- | ---: | ---: |",
        *[f"| {name} | {value:,.0f} | {value / results.throughput[BASE]:.2f}x |"
          for name, value in results.throughput.items()], "",
        f"## Tick-to-handler latency at {s['latency_rate']:g} messages/s", "",
        f"Server write (its `time.monotonic_ns()` in the trade id) to the handler's `time.monotonic_ns()`; "
        f"{s['latency_rounds']} rounds x {s['latency_count']} ticks per client, one connection each, taking turns.", "",
        "| client | ticks | p50 us | p99 us | p99.9 us | max us |", "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {name} | {len(values)} | " + " | ".join(f"{v:.1f}" for v in _pcts(values, 1e6))
          + f" | {max(values) * 1e6:.1f} |" for name, values in results.latency.items()], "",
        "## Reconnection", "",
        "Server closes with 1001 -> fastws reconnects (first retry immediate), resubscribes, and the handler "
        "gets the first message after resubscribe (`bench/server.py`, generic loopback adapter).", "",
        "| drops | p50 ms | p99 ms | max ms |", "| ---: | ---: | ---: | ---: |",
        f"| {len(results.reconnect)} | {_pcts(results.reconnect)[0]:.2f} | {_pcts(results.reconnect)[1]:.2f} | "
        f"{max(results.reconnect) * 1e3:.2f} |", "",
        "## Subscription acknowledgment", "",
        "From `subscribe([stream])` called to its return (the ack received), one new stream at a time.", "",
        "| client | subscribes | p50 ms | p99 ms | max ms |", "| --- | ---: | ---: | ---: | ---: |",
        *[f"| {name} | {len(values)} | {_pcts(values)[0]:.3f} | {_pcts(values)[1]:.3f} | {max(values) * 1e3:.3f} |"
          for name, values in (("generic loopback adapter", results.ack_generic),
                               ("BinanceWebSocket (paced, spaced)", results.ack_binance))], "",
        "## Scale: concurrent connections in one process", "",
        f"A fresh client process per row; connections opened at most 100 at a time and subscribed; RSS per "
        f"idle connection = (RSS with all open - RSS after a warm-up connection) / count; then the server feeds "
        f"each connection {s['scale_rate']:g} msg/s and CPU time is counted over {s['scale_window']:g} s. "
        "**raw** is a picows listener with msgspec and no life cycle: the floor.", "",
        "| client | connections | RSS/conn KB | RSS total MB | connect p50 ms | connect p99 ms | connect max ms "
        "| all connected s | msg/s received | CPU % | CPU %/conn |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {r.client} | {r.connections} | {r.rss_per_connection_kb:.1f} | {r.rss_total_mb:.1f} | "
          f"{r.connect_p50_ms:.1f} | {r.connect_p99_ms:.1f} | {r.connect_max_ms:.1f} | {r.connect_all_s:.2f} | "
          f"{r.messages_per_second:,.0f} | {r.cpu_percent:.1f} | {r.cpu_percent_per_connection:.3f} |"
          for r in results.scale], "",
        *_book_section(results),
        "## Plots", "",
        *[f"![{name}]({name})" for name in plots], "",
    ]
    return "\n".join(out)
