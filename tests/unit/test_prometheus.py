"""The Prometheus export's parts: bucket mapping, stream cap, gap totals, health verdicts, collector."""
from __future__ import annotations

import random
import time
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchanges.binance import BinanceWebSocket, binance_config
from fastws import ConnectionGap, ExchangeName, create_websocket_config
from fastws._core import latency_bucket_bounds
from fastws.metrics import ClientRegistry, FastwsCollector, latency_percentiles, unhealthy_reasons
from fastws.metrics.histograms import EVENT_LATENCY_LAYOUT, HANDLER_LATENCY_LAYOUT, BucketLayout, sum_histograms
from fastws.metrics.prometheus import OTHER_STREAMS, _Families, _GapTotals, _StreamSlots

# Bucket index -> (low, high) of the core's scheme, for placing values as the core does.
_BOUNDS = [latency_bucket_bounds(index) for index in range(256)]


def core_bucket(value: int, buckets: int) -> int:
    """The core's bucket of ``value`` (capped at the last of ``buckets``, as the event histogram)."""
    for index in range(8, 12):
        assert _BOUNDS[index][0] == index          # 8-11 are never used: 8.. is bucket 12 on
    if value < 8:
        return value
    index = next(i for i in range(12, 256) if _BOUNDS[i][0] <= value < _BOUNDS[i][1])
    return min(index, buckets - 1)


def histogram_of(values: list[int], buckets: int) -> list[int]:
    counts = [0] * buckets
    for value in values:
        counts[core_bucket(value, buckets)] += 1
    return counts


def samples(families: _Families) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families.all() for s in family.samples}


# ------------------------------------------------------------------ buckets
@pytest.mark.parametrize("layout,buckets,unit", [(HANDLER_LATENCY_LAYOUT, 256, 1e-9),
                                                 (EVENT_LATENCY_LAYOUT, 128, 1e-6)])
def test_each_bucket_counts_exactly_the_values_below_its_bound(layout: BucketLayout, buckets: int,
                                                               unit: float) -> None:
    rng = random.Random(7)
    values = [int(2 ** rng.uniform(0, 40)) for _ in range(3000)] + [0, 1, 7, 8, 256, 255, 2 ** 34, 2 ** 24]
    exported = layout.buckets(histogram_of(values, buckets))
    assert exported[-1] == ("+Inf", len(values))
    previous = 0.0
    for label, count in exported[:-1]:
        bound_units = round(float(label) / unit)
        assert bound_units & (bound_units - 1) == 0                     # a power of two of the unit
        assert count == sum(1 for v in values if v < bound_units), label
        assert count >= previous
        previous = count


def test_bounds_are_seconds_at_powers_of_two() -> None:
    labels = [label for label, _ in HANDLER_LATENCY_LAYOUT.buckets([])]
    assert labels[0] == "5.12e-07" and labels[-2] == "2.147483648" and labels[-1] == "+Inf"
    assert [label for label, _ in EVENT_LATENCY_LAYOUT.buckets([])][:2] == ["6.4e-05", "0.000128"]
    assert all(count == 0 for _, count in EVENT_LATENCY_LAYOUT.buckets([]))


def test_sum_histograms_adds_columns_and_skips_empty_ones() -> None:
    assert sum_histograms([[1, 2, 3], [], [10, 20, 30]]) == [11, 22, 33]
    assert sum_histograms([]) == []


def test_layout_refuses_bounds_below_the_exact_buckets() -> None:
    with pytest.raises(ValueError):
        BucketLayout(1e-9, 2, 10)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=256),
       st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0]), min_size=1, max_size=4, unique=True))
def test_latency_percentiles_is_the_first_bucket_that_reaches_the_rank(histogram: list[int],
                                                                        quantiles: list[float]) -> None:
    expected: dict[str, Optional[float]] = {}
    total = sum(histogram)
    for q in quantiles:
        key = "p" + format(q * 100, "g")
        expected[key] = None
        seen = 0
        for index, count in enumerate(histogram):
            seen += count
            if count and seen >= q * total:
                low, high = latency_bucket_bounds(index)
                expected[key] = (low + high) / 2 / 1000.0
                break
    assert latency_percentiles(histogram, quantiles) == expected


# -------------------------------------------------------------- stream cap
def test_stream_slots_keep_their_streams_and_fill_freed_slots_in_order() -> None:
    slots = _StreamSlots()
    assert slots.own(["a", "b", "c", "d"], 2) == {"a", "b"}
    # A new stream ahead of the others does not take a slot from a living stream.
    assert slots.own(["z", "a", "b", "c"], 2) == {"a", "b"}
    # "a" is gone: its slot goes to the first stream without one.
    assert slots.own(["z", "b", "c"], 2) == {"z", "b"}
    assert slots.own(["z", "b", "c"], 3) == {"z", "b", "c"}
    # A lower cap: the streams that had their series longest keep them.
    assert slots.own(["z", "b", "c"], 1) == {"b"}
    assert slots.own(["z", "b"], 0) == set()


def test_config_validates_the_cap() -> None:
    assert create_websocket_config("ws://127.0.0.1:1").metrics_max_streams == 50
    assert create_websocket_config("ws://127.0.0.1:1", metrics_max_streams=0).metrics_max_streams == 0
    for bad in (-1, True, 2.5):
        with pytest.raises(ValueError, match="metrics_max_streams"):
            create_websocket_config("ws://127.0.0.1:1", metrics_max_streams=bad)


# --------------------------------------------------------------- gap totals
def test_gap_totals_count_each_closed_gap_once_after_it_leaves_the_list() -> None:
    totals = _GapTotals()
    first = ConnectionGap(start=100.0, reason="peer closed (1001)", end=100.5)
    second = ConnectionGap(start=time.time() - 2.0, reason="stale")
    assert totals.update([first, second]) == pytest.approx(2.0, abs=0.5)
    assert (totals.count, totals.seconds) == (1, 0.5)
    second.end = second.start + 1.25
    assert totals.update([first, second]) == 0.0
    assert (totals.count, totals.seconds) == (2, 1.75)
    # The client keeps its latest gaps only: the first one drops out, a third comes.
    third = ConnectionGap(start=200.0, reason="stale", end=203.0)
    totals.update([second, third])
    assert (totals.count, totals.seconds) == (3, 4.75)


# ----------------------------------------------------------- health verdict
def health(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"is_connected": True, "state": "connected", "subscriptions": ["a@trade"],
                            "last_message_age": 0.1, "gaps": [], "waiting": None,
                            "metrics": {"connection_uptime": 10.0}}
    base.update(fields)
    return base


def test_a_connected_fresh_client_is_healthy() -> None:
    assert unhealthy_reasons("binance", health(), 5.0) == []
    assert unhealthy_reasons("binance", health(last_message_age=99.0), None) == []
    assert unhealthy_reasons("binance", health(subscriptions=[], last_message_age=None), 5.0) == []
    assert unhealthy_reasons("binance", health(last_message_age=None,
                                               metrics={"connection_uptime": 1.0}), 5.0) == []


def test_reasons_say_what_is_wrong() -> None:
    assert unhealthy_reasons("binance", health(last_message_age=7.25), 5.0) == [
        "binance: no message for 7.2 s (limit 5 s)"]
    assert unhealthy_reasons("binance", health(last_message_age=None), 5.0) == [
        "binance: no message in the 10.0 s since it connected (limit 5 s)"]
    down = health(is_connected=False, state="reconnecting", waiting="waiting 3.0 s before the next attempt",
                  gaps=[{"start": 1.0, "end": 2.0, "reason": "stale"},
                        {"start": 5.0, "end": None, "reason": "peer closed (1001)"}])
    assert unhealthy_reasons("mexc", down, 5.0) == [
        "mexc: state reconnecting since a drop (peer closed (1001)); waiting 3.0 s before the next attempt"]
    assert unhealthy_reasons("mexc", health(is_connected=False, state="closed"), 5.0) == ["mexc: state closed"]


# ------------------------------------------------------- health-only figures
def test_loop_lag_cadence_and_books_from_health_check() -> None:
    families = _Families()
    labels = ["binance", "main"]
    figures = {
        "loop_lag": {"p50_ms": 0.5, "p99_ms": 12.0, "max_ms": 850.0, "window_s": 10.0},
        "cadence": {"a@depth": {"expected_interval_s": 0.1, "silent_s": 0.05, "resubscribes": 2},
                    "b@trade": {"expected_interval_s": None, "silent_s": 3.0, "resubscribes": 1},
                    "c@trade": {"expected_interval_s": 1.0, "silent_s": 7.0, "resubscribes": 4}},
        "books": {"BTCUSDT": {"valid": False, "resyncs": 3, "seconds_invalid": 1.5, "snapshots": 4}},
    }
    FastwsCollector._collect_health(families, labels, figures, {"a@depth", "b@trade"})
    got = samples(families)

    def value(name: str, **extra: str) -> float:
        return got[(name, tuple(sorted({"exchange": "binance", "connection": "main", **extra}.items())))]

    assert value("fastws_event_loop_lag_seconds", quantile="0.5") == 0.0005
    assert value("fastws_event_loop_lag_seconds", quantile="0.99") == 0.012
    assert value("fastws_event_loop_lag_seconds", quantile="1") == 0.85
    assert value("fastws_stream_resubscribes_total", stream="a@depth") == 2
    assert value("fastws_stream_resubscribes_total", stream="b@trade") == 1
    assert value("fastws_stream_resubscribes_total", stream=OTHER_STREAMS) == 4
    assert value("fastws_stream_silent_seconds", stream=OTHER_STREAMS) == 7.0
    assert value("fastws_stream_expected_interval_seconds", stream="a@depth") == 0.1
    assert ("fastws_stream_expected_interval_seconds",
            tuple(sorted({"exchange": "binance", "connection": "main", "stream": "b@trade"}.items()))) not in got
    assert value("fastws_book_valid", symbol="BTCUSDT") == 0.0
    assert value("fastws_book_resyncs_total", symbol="BTCUSDT") == 3
    assert value("fastws_book_invalid_seconds_total", symbol="BTCUSDT") == 1.5


def test_without_those_figures_no_series_appear() -> None:
    families = _Families()
    FastwsCollector._collect_health(families, ["binance", "main"], {"state": "connected"}, set())
    assert samples(families) == {}


# ---------------------------------------------------------------- registry
def client(exchange: str = "binance") -> BinanceWebSocket:
    return BinanceWebSocket(ExchangeName(exchange), binance_config("ws://127.0.0.1:9"), lambda *args: None)


def test_registry_names_clients_after_their_exchange() -> None:
    registry = ClientRegistry()
    first, second, third = client(), client(), client()
    assert registry.register(first) == "binance"
    assert registry.register(second) == "binance-2"
    assert registry.register(first) == "binance"          # registered already
    assert registry.register(third, "spot") == "spot"
    with pytest.raises(ValueError, match="spot"):
        registry.register(client(), "spot")
    registry.unregister(second)
    registry.unregister(second)
    assert [name for name, _ in registry.clients()] == ["binance", "spot"]


def test_a_client_that_never_connected_is_exported_as_disconnected() -> None:
    registry = ClientRegistry()
    registry.register(client(), "idle")
    got = {(s.name, s.labels.get("state")): s.value for family in FastwsCollector(registry).collect()
           for s in family.samples}
    assert got[("fastws_connection_state", "disconnected")] == 1.0
    assert got[("fastws_connection_state", "connected")] == 0.0
    assert got[("fastws_connected", None)] == 0.0
    assert got[("fastws_messages_received_total", None)] == 0.0
    assert got[("fastws_handler_latency_seconds_bucket", None)] == 0.0
    assert got[("fastws_pool_connections", None)] == 1.0
    assert ("fastws_last_message_age_seconds", None) not in got
    assert not any(name.startswith("fastws_stream_messages") for name, _ in got)
