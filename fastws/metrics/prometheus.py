"""``FastwsCollector``: the registered clients' counters as Prometheus metrics, read when scraped.

Nothing is counted for the export: a scrape reads the counters the core keeps
anyway (``client.metrics``, the cores' per-stream stats and histograms), so
a message costs nothing more with the collector registered. Names follow
Prometheus's conventions: a ``fastws_`` prefix, ``_total`` on counters, base
units (``_seconds``, ``_bytes``); every series has the labels ``exchange``
and ``connection`` (the client's registered name; a pool's connections are
summed under it). Per-stream series carry ``stream``; a client's first
``config.metrics_max_streams`` streams get series of their own (a stream
keeps its series while it exists), the others are summed under
``stream="_other"``.

Per-stream counters and histograms are those of the live connection: they
restart from zero when the client reconnects (``rate()`` and ``increase()``
take counter resets into account). The client-wide counters never go back.

Figures that only ``health_check()`` gives (the event-loop lag, the streams'
cadence watchdogs, order books) come from the last ``await refresh()``;
``serve()`` refreshes before every scrape.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from fastws._core import monotonic_time_ns
from fastws.client.redundancy import redundant_paths
from fastws.metrics.histograms import EVENT_LATENCY_LAYOUT, HANDLER_LATENCY_LAYOUT, sum_histograms
from fastws.metrics.registry import DEFAULT_REGISTRY, ClientRegistry
from fastws.types import ConnectionState

if TYPE_CHECKING:
    from fastws._core import FrameHandler, StreamStats
    from fastws.client import BaseWebSocketInterface, ConnectionGap

__all__ = ["FastwsCollector", "OTHER_STREAMS"]

_log = logging.getLogger("fastws.metrics")

#: The ``stream`` label of the streams beyond a client's cap, summed.
OTHER_STREAMS = "_other"

_LABELS = ["exchange", "connection"]
_STREAM_LABELS = ["exchange", "connection", "stream"]

# Client-wide counters: (metric name without _total, key of client.metrics, help).
_COUNTERS = (
    ("fastws_frames_received", "frames_received", "WebSocket frames received (control frames included)."),
    ("fastws_messages_received", "messages_received", "Whole data messages received (after reassembly)."),
    ("fastws_received_bytes", "bytes_received", "Payload bytes of the messages received."),
    ("fastws_messages_delivered", "messages_delivered", "Messages passed to the message handler."),
    ("fastws_control_messages", "control_messages", "Messages the adapter classified as control (acks, pongs)."),
    ("fastws_untracked_messages", "untracked_messages", "Messages of streams past the core's stream cap."),
    ("fastws_messages_sent", "messages_sent", "Messages sent (subscriptions, requests)."),
    ("fastws_sent_bytes", "bytes_sent", "Payload bytes sent."),
    ("fastws_connections_opened", "connections", "Connections opened."),
    ("fastws_connection_attempts", "connection_attempts", "Connection attempts, failed ones included."),
    ("fastws_reconnections", "reconnections", "Reconnections after an unplanned drop."),
    ("fastws_rotations", "rotations", "Planned replacements of a connection (age, shutdown notice)."),
    ("fastws_sequence_gaps", "sequence_gaps", "Skips in a stream's sequence numbers."),
    ("fastws_missing_updates", "missing_sequences", "Sequence numbers (updates) known missing."),
    ("fastws_reported_errors", "errors", "Errors passed to the error handler."),
    ("fastws_backlog_dropped_messages", "backlog_dropped", "Messages dropped past the backlog's bound."),
    ("fastws_handler_deferrals", "deferrals", "Read batches that ran out of the handler time slice."),
    ("fastws_handler_suspensions", "suspensions", "Async handler calls that suspended."),
    ("fastws_handover_dropped_messages", "overlap_dropped",
     "Duplicates not delivered while two connections overlapped (make before break)."),
    ("fastws_redundant_dropped_messages", "redundant_dropped",
     "Copies not delivered because a redundant connection delivered them first."),
)
# Errors the core counts by kind: kind label -> key of client.metrics.
_ERROR_KINDS = (("parse", "parse_errors"), ("classify", "classify_errors"), ("handler", "handler_errors"),
                ("oversize", "oversize_errors"), ("protocol", "protocol_errors"),
                ("gap_callback", "sequence_gap_errors"))
_STATES = tuple(state.value for state in ConnectionState)


def _connections(client: BaseWebSocketInterface) -> list[BaseWebSocketInterface]:
    """Each connection of ``client``: the pool's connections, or the client itself."""
    connections: Optional[list[BaseWebSocketInterface]] = getattr(client, "connections", None)
    return connections if connections is not None else [client]


def _pool_state(connections: list[BaseWebSocketInterface]) -> str:
    """The first connection state that is not CONNECTED, or CONNECTED (as ``health_check()``)."""
    for connection in connections:
        if connection.state is not ConnectionState.CONNECTED:
            return str(connection.state.value)
    return ConnectionState.CONNECTED.value


def _add_stream(f: _Families, labels: list[str], group: list[tuple[StreamStats, int]], now_ns: int,
                latest: Callable[[Iterable[int]], int]) -> None:
    """The series of one stream (or the sum of ``_other``'s) from ``(stats, last receive ns)`` pairs.

    ``latest`` picks the last receive time the age is computed from: one
    stream's (``max``), or ``_other``'s most silent stream (``min``).
    """
    f.add("stream_messages", labels, sum(stats.messages for stats, _ in group))
    f.add("stream_gaps", labels, sum(stats.sequence_gaps for stats, _ in group))
    f.add("stream_missing", labels, sum(stats.missing_sequences for stats, _ in group))
    f.add("stream_age", labels, (now_ns - latest(last for _, last in group)) / 1e9)
    latencies = [stats.event_latency_histogram() for stats, _ in group if stats.last_event_ns]
    if latencies:
        histogram = latencies[0] if len(latencies) == 1 else sum_histograms(latencies)
        f.add_histogram("stream_latency", labels, EVENT_LATENCY_LAYOUT.buckets(histogram))


def _per_stream(cores: list[FrameHandler]) -> dict[str, tuple[StreamStats, int]]:
    """Each stream's stats and last receive time (ns), over the connections that carry it.

    With redundant paths every path receives (and counts) the whole stream:
    its figures are those of the path that received the most of it, its
    last receive time the freshest path's.
    """
    streams: dict[str, tuple[StreamStats, int]] = {}
    for core in cores:
        for stream, stats in core.stream_stats().items():
            known = streams.get(stream)
            if known is None:
                streams[stream] = (stats, stats.last_receive_ns)
            else:
                best = stats if stats.messages > known[0].messages else known[0]
                streams[stream] = (best, max(known[1], stats.last_receive_ns))
    return streams


class _StreamSlots:
    """Which of a client's streams get series of their own (at most ``cap``).

    A stream keeps its slot while it exists; slots go to new streams in the
    order they are first seen, so series do not move between scrapes.
    """

    def __init__(self) -> None:
        self._own: dict[str, None] = {}

    def own(self, streams: Iterable[str], cap: int) -> set[str]:
        """The streams among ``streams`` that have a series of their own."""
        present = list(streams)
        alive = set(present)
        self._own = {s: None for s in self._own if s in alive}
        for stream in present:
            if len(self._own) >= cap:
                break
            self._own.setdefault(stream)
        while len(self._own) > cap:           # the cap was lowered
            del self._own[next(reversed(self._own))]
        return set(self._own)


class _GapTotals:
    """Feed gaps counted once each, although the client keeps only its most recent ones."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._counted: dict[int, ConnectionGap] = {}   # id -> the gap (kept alive: ids stay unique)

    def update(self, gaps: list[ConnectionGap]) -> float:
        """Count the newly closed ``gaps``; return the seconds the open one has lasted (0 if none)."""
        open_seconds = 0.0
        seen: dict[int, ConnectionGap] = {}
        for gap in gaps:
            if gap.end is None:
                open_seconds = max(open_seconds, time.time() - gap.start)
                continue
            key = id(gap)
            seen[key] = gap
            if key not in self._counted:
                self.count += 1
                self.seconds += gap.end - gap.start
        self._counted = seen
        return open_seconds


class _ClientState:
    """What the collector remembers of one client between scrapes."""

    def __init__(self, client: BaseWebSocketInterface) -> None:
        self.client = client
        self.slots = _StreamSlots()
        self.gaps = _GapTotals()
        self.health: dict[str, Any] = {}
        # Failed reads of this client, and which reads failed last time
        # (each logged once per run of failures).
        self.errors = 0
        self.failing: set[str] = set()

    def failed(self, what: str, exc: Exception) -> str:
        """Count and (once per run of failures) log a failed read of ``what``; return the reason."""
        self.errors += 1
        if what not in self.failing:
            _log.warning("%s of %s failed", what, self.client.exchange, exc_info=exc)
            self.failing.add(what)
        return f"{what} failed: {type(exc).__name__}: {exc}"


_BOOK_LABELS = ["exchange", "connection", "symbol"]
_COUNTER, _GAUGE, _HISTOGRAM = CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
# Every other family of a scrape: key -> (family class, name, help, labels).
_FAMILIES: dict[str, tuple[Any, str, str, list[str]]] = {
    "errors": (_COUNTER, "fastws_errors", "Errors counted by the core, by kind.", _LABELS + ["kind"]),
    "gaps": (_COUNTER, "fastws_gaps", "Gaps in the feed (a drop, a slow consumer), closed.", _LABELS),
    "gap_seconds": (_COUNTER, "fastws_gap_seconds", "Seconds the closed gaps lasted.", _LABELS),
    "gap_open": (_GAUGE, "fastws_gap_open_seconds", "How long the feed has been down (0 while up).", _LABELS),
    "rate_waits": (_COUNTER, "fastws_rate_limit_waits", "Outgoing messages that waited for the rate limit.",
                   _LABELS),
    "rate_wait_seconds": (_COUNTER, "fastws_rate_limit_wait_seconds",
                          "Seconds outgoing messages waited for the rate limit.", _LABELS),
    "state": (_GAUGE, "fastws_connection_state", "1 for the client's connection state.", _LABELS + ["state"]),
    "connected": (_GAUGE, "fastws_connected", "1 while every connection is CONNECTED.", _LABELS),
    "age": (_GAUGE, "fastws_connection_age_seconds", "Seconds the (first) connection has been up.", _LABELS),
    "subscriptions": (_GAUGE, "fastws_subscriptions", "Streams subscribed or wanted.", _LABELS),
    "pending": (_GAUGE, "fastws_pending_subscriptions", "Streams waiting for a connection.", _LABELS),
    "pool": (_GAUGE, "fastws_pool_connections", "Connections of the client (a pool's members).", _LABELS),
    "backlog": (_GAUGE, "fastws_backlog_messages", "Messages waiting for the handler.", _LABELS),
    "backlog_bytes": (_GAUGE, "fastws_backlog_bytes", "Bytes waiting for the handler.", _LABELS),
    "backlog_age": (_GAUGE, "fastws_backlog_oldest_age_seconds",
                    "Age of the oldest message waiting for the handler.", _LABELS),
    "last_message": (_GAUGE, "fastws_last_message_age_seconds",
                     "Seconds since the last message (absent before the first).", _LABELS),
    "handler_latency": (_HISTOGRAM, "fastws_handler_latency_seconds",
                        "Receive to handler done, per message (no _sum: the core keeps none).", _LABELS),
    "loop_lag": (_GAUGE, "fastws_event_loop_lag_seconds",
                 "How late the event loop runs a timer (quantile 1: the maximum).", _LABELS + ["quantile"]),
    "stream_messages": (_COUNTER, "fastws_stream_messages", "Messages of a stream on the live connection.",
                        _STREAM_LABELS),
    "stream_gaps": (_COUNTER, "fastws_stream_sequence_gaps", "Sequence gaps of a stream.", _STREAM_LABELS),
    "stream_missing": (_COUNTER, "fastws_stream_missing_updates", "Updates of a stream known missing.",
                       _STREAM_LABELS),
    "stream_age": (_GAUGE, "fastws_stream_last_message_age_seconds",
                   "Seconds since a stream's last message (_other: the oldest).", _STREAM_LABELS),
    "stream_latency": (_HISTOGRAM, "fastws_stream_event_latency_seconds",
                       "Exchange event time to receive, per message of a stream (no _sum).", _STREAM_LABELS),
    "streams_folded": (_GAUGE, "fastws_streams_in_other", "Streams summed under stream=\"_other\" (past the cap).",
                       _LABELS),
    "resubscribes": (_COUNTER, "fastws_stream_resubscribes", "Times a silent stream was resubscribed alone.",
                     _STREAM_LABELS),
    "silent": (_GAUGE, "fastws_stream_silent_seconds", "Seconds a stream has been silent.", _STREAM_LABELS),
    "cadence": (_GAUGE, "fastws_stream_expected_interval_seconds",
                "A stream's expected interval between messages.", _STREAM_LABELS),
    "book_valid": (_GAUGE, "fastws_book_valid", "1 while the order book is valid.", _BOOK_LABELS),
    "book_resyncs": (_COUNTER, "fastws_book_resyncs", "Order book resynchronisations.", _BOOK_LABELS),
    "book_invalid": (_COUNTER, "fastws_book_invalid_seconds", "Seconds the order book was invalid.", _BOOK_LABELS),
    "book_snapshots": (_COUNTER, "fastws_book_snapshots", "Order book snapshots fetched.", _BOOK_LABELS),
    "export_errors": (_COUNTER, "fastws_export_errors", "Failed reads of a client's figures by the exporter.",
                      _LABELS),
}


class _Families:
    """The metric families of one scrape, filled client by client."""

    def __init__(self) -> None:
        self._counters = [(key, CounterMetricFamily(name, doc, labels=_LABELS)) for name, key, doc in _COUNTERS]
        self._families: dict[str, Any] = {key: kind(name, doc, labels=labels)
                                          for key, (kind, name, doc, labels) in _FAMILIES.items()}

    def add_counters(self, labels: list[str], metrics: dict[str, Any]) -> None:
        """The client-wide counters of ``client.metrics``."""
        for key, family in self._counters:
            family.add_metric(labels, metrics.get(key, 0))

    def add(self, key: str, labels: list[str], value: float) -> None:
        """One sample of the counter or gauge ``key``."""
        self._families[key].add_metric(labels, value)

    def add_histogram(self, key: str, labels: list[str], buckets: list[tuple[str, float]]) -> None:
        """One histogram of ``key`` (cumulative buckets, +Inf last)."""
        self._families[key].add_metric(labels, buckets, None)

    def all(self) -> Iterator[Metric]:
        """Every family with samples, in the order of the exposition."""
        for _, family in self._counters:
            if family.samples:
                yield family
        yield from (family for family in self._families.values() if family.samples)


class FastwsCollector(Collector):
    """A ``prometheus_client`` collector of every client of ``clients``.

    Register it in any ``prometheus_client`` registry; ``serve()`` uses one
    of its own. The collector only reads: at scrape time it walks the
    registered clients and their connections. Scraped from another thread
    (``prometheus_client.start_http_server``), it reads the counters under
    the GIL while the loop runs: each figure is whole, but two figures of
    one scrape may be a few messages apart; ``serve()`` reads them on the
    loop itself, between two reads of the socket.

    Args:
        clients: The clients to export (default: those of ``register()``).
    """

    def __init__(self, clients: ClientRegistry = DEFAULT_REGISTRY) -> None:
        self.clients = clients
        self._states: dict[str, _ClientState] = {}

    def describe(self) -> Iterable[Metric]:
        """Nothing: the series depend on the clients registered when scraped."""
        return []

    async def refresh(self) -> dict[str, dict[str, Any]]:
        """Await every registered client's ``health_check()``; keep it for the next scrape; return them by name.

        The health-only figures (event-loop lag, cadence watchdogs, books)
        are those of the last refresh. A client whose ``health_check()`` raises is counted
        (``fastws_export_errors_total``), logged, and reported as
        ``{"health_check_error": "..."}``; the others are read as usual.
        """
        healths: dict[str, dict[str, Any]] = {}
        for name, client in self.clients.clients():
            state = self._state_of(name, client)
            try:
                state.health = await client.health_check()
            except Exception as exc:
                state.health = {"exchange": str(client.exchange),
                                "health_check_error": state.failed("health_check()", exc)}
            else:
                state.failing.discard("health_check()")
            healths[name] = state.health
        return healths

    def _state_of(self, name: str, client: BaseWebSocketInterface) -> _ClientState:
        state = self._states.get(name)
        if state is None or state.client is not client:
            state = self._states[name] = _ClientState(client)
        return state

    def collect(self) -> Iterator[Metric]:
        """Read every registered client's counters now."""
        families = _Families()
        clients = self.clients.clients()
        for name in set(self._states) - {name for name, _ in clients}:
            del self._states[name]
        for name, client in clients:
            state = self._state_of(name, client)
            try:
                self._collect_client(families, name, client, state)
            except Exception as exc:      # one client's odd figures do not fail the scrape
                state.failed("reading the counters", exc)
            else:
                state.failing.discard("reading the counters")
            families.add("export_errors", [str(client.exchange), name], state.errors)
        yield from families.all()

    def _collect_client(self, f: _Families, name: str, client: BaseWebSocketInterface,
                        state: _ClientState) -> None:
        labels = [str(client.exchange), name]
        metrics = client.metrics
        f.add_counters(labels, metrics)
        for kind, key in _ERROR_KINDS:
            f.add("errors", labels + [kind], metrics.get(key, 0))
        open_seconds = state.gaps.update(client.gaps)
        f.add("gaps", labels, state.gaps.count)
        f.add("gap_seconds", labels, state.gaps.seconds)
        f.add("gap_open", labels, open_seconds)

        # The connection-level parts a pool does not sum for us (private
        # attributes: this module is the client's own instrument).
        connections = _connections(client)
        paths = [path for c in connections for path in (c, *redundant_paths(c))]
        cores: list[FrameHandler] = [c._core for c in paths if c._core is not None]
        limiters = [c._rate_limiter for c in paths]
        f.add("rate_waits", labels, sum(r.waits for r in limiters))
        f.add("rate_wait_seconds", labels, sum(r.wait_seconds for r in limiters))
        current = _pool_state(connections)
        for value in _STATES:
            f.add("state", labels + [value], 1.0 if value == current else 0.0)
        f.add("connected", labels, 1.0 if current == ConnectionState.CONNECTED.value else 0.0)
        f.add("age", labels, metrics.get("connection_uptime", 0.0))
        f.add("subscriptions", labels, len(client.subscriptions))
        f.add("pending", labels, sum(len(c._pending) for c in paths))
        f.add("pool", labels, len(connections))
        now_ns = monotonic_time_ns()
        f.add("backlog", labels, sum(core.backlog_size for core in cores))
        f.add("backlog_bytes", labels, sum(core.backlog_bytes for core in cores))
        f.add("backlog_age", labels, max((core.backlog_age_ns() for core in cores), default=0) / 1e9)
        last_ns = max((core.last_receive_ns for core in cores if core.frames_received), default=None)
        if last_ns is not None:
            f.add("last_message", labels, (now_ns - last_ns) / 1e9)
        f.add_histogram("handler_latency", labels, HANDLER_LATENCY_LAYOUT.buckets(client._latency_histogram()))

        streams = _per_stream(cores)
        # Subscribed streams first: a silent one (no message yet on this
        # connection) keeps its own series too.
        names = dict.fromkeys(client.subscriptions)
        names.update(dict.fromkeys(streams))
        own = state.slots.own(names, client.config.metrics_max_streams)
        self._collect_streams(f, labels, streams, own, now_ns)
        self._collect_health(f, labels, state.health, own)

    @staticmethod
    def _collect_streams(f: _Families, labels: list[str], streams: dict[str, tuple[StreamStats, int]],
                         own: set[str], now_ns: int) -> None:
        other: list[tuple[StreamStats, int]] = []
        for stream, figures in streams.items():
            if stream in own:
                _add_stream(f, labels + [stream], [figures], now_ns, max)
            else:
                other.append(figures)
        f.add("streams_folded", labels, len(other))
        if other:
            _add_stream(f, labels + [OTHER_STREAMS], other, now_ns, min)

    @staticmethod
    def _collect_health(f: _Families, labels: list[str], health: dict[str, Any], own: set[str]) -> None:
        """The figures only ``health_check()`` gives, from the last refresh (absent keys: nothing)."""
        lag = health.get("loop_lag")
        if isinstance(lag, dict):
            for quantile, key in (("0.5", "p50_ms"), ("0.99", "p99_ms"), ("1", "max_ms")):
                if isinstance(lag.get(key), (int, float)):
                    f.add("loop_lag", labels + [quantile], lag[key] / 1000.0)
        cadence = health.get("cadence")
        if isinstance(cadence, dict):
            other_resubscribes = 0
            other_silent: Optional[float] = None
            for stream, watch in cadence.items():
                if stream in own:
                    stream_labels = labels + [stream]
                    f.add("resubscribes", stream_labels, watch.get("resubscribes", 0))
                    f.add("silent", stream_labels, watch.get("silent_s", 0.0))
                    if watch.get("expected_interval_s") is not None:
                        f.add("cadence", stream_labels, watch["expected_interval_s"])
                    continue
                other_resubscribes += watch.get("resubscribes", 0)
                other_silent = max(other_silent or 0.0, watch.get("silent_s", 0.0))
            if other_silent is not None:
                f.add("resubscribes", labels + [OTHER_STREAMS], other_resubscribes)
                f.add("silent", labels + [OTHER_STREAMS], other_silent)
        books = health.get("books")
        if isinstance(books, dict):
            for symbol, book in books.items():
                book_labels = labels + [symbol]
                f.add("book_valid", book_labels, 1.0 if book.get("valid") else 0.0)
                f.add("book_resyncs", book_labels, book.get("resyncs", 0))
                f.add("book_invalid", book_labels, book.get("seconds_invalid", 0.0))
                f.add("book_snapshots", book_labels, book.get("snapshots", 0))
