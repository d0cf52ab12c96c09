"""The watchdogs of issue 15 against BinanceSimulator on 127.0.0.1.

The per-stream cadence watchdog: a stream the simulator mutes alone is
resubscribed alone on the same connection while the other streams flow on,
and a stream that is quiet by nature is left alone. The event-loop lag
monitor: a loop blocked for a known time shows in ``health_check()`` and in
the reason of the stale or pong timeout it caused.
"""
from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from fastws import ConnectionState, ExchangeName, ExchangeTimeoutError, SequenceGapError
from fastws import looplag
from tests.conftest import other_tasks, until
from tests.integration.test_binance import Sink

MUTED = "btcusdt@depth@100ms"
FLOWING = "ethusdt@depth@100ms"
QUIET = "ethusdt@trade"
# Generous bounds for a loaded machine: behaviour is checked, not speed.
BOUND = 15.0


def client(sim: BinanceSimulator, sink: Sink, typed: bool = False, **overrides: Any) -> BinanceWebSocket:
    overrides.setdefault("reconnect_delay", 0.05)
    overrides.setdefault("healthy_after", 0.05)
    config = binance_config(sim.url, **overrides)
    return BinanceWebSocket(ExchangeName("binance"), config, sink.on_message, sink.on_error, typed=typed)


def of(sink: Sink, stream: str) -> list[Any]:
    """The payloads the handler got from ``stream``, in order (dicts, or typed events)."""
    return [m[1] if isinstance(m, tuple) else m["data"] for m in sink.messages
            if (m[0] if isinstance(m, tuple) else m["stream"]) == stream]


def update_ids(payload: Any) -> tuple[int, int]:
    """A diff-depth payload's first and final update ids."""
    if isinstance(payload, dict):
        return payload["U"], payload["u"]
    return payload.first_update_id, payload.final_update_id


def requests_naming(server: Any, stream: str) -> list[tuple[str, list[str]]]:
    """(method, params) of every request a simulator connection got that names ``stream``."""
    return [(r["method"], r["params"]) for r in server.requests if stream in r.get("params", [])]


@pytest.mark.parametrize("typed", [False, True], ids=["dict", "typed"])
async def test_a_muted_stream_is_resubscribed_alone_while_the_other_flows(
        binance_simulator_factory: Any, typed: bool) -> None:
    sim = await binance_simulator_factory(rate=20.0)
    sink = Sink()
    async with client(sim, sink, typed, cadence_floor=0.5) as ws:
        await ws.subscribe([MUTED, FLOWING])
        server = sim.connections[0]
        await until(lambda: len(of(sink, MUTED)) >= 25 and len(of(sink, FLOWING)) >= 25, BOUND,
                    "both streams delivering")
        sim.mute_stream(MUTED)
        muted_at = time.monotonic()
        await until(lambda: MUTED not in sim.muted_streams, BOUND, "the muted stream resubscribed")
        resubscribed_after = time.monotonic() - muted_at
        count = len(of(sink, MUTED))
        await until(lambda: len(of(sink, MUTED)) > count + 5, BOUND, "the muted stream flowing again")
        health = await ws.health_check()
        flowing = [update_ids(p) for p in of(sink, FLOWING)]
    print(f"\n[cadence] {'typed' if typed else 'dict'}: {MUTED} muted, resubscribed alone after {resubscribed_after:.2f} s; "
          f"{health['cadence']}")

    # Resubscribed alone, on the same connection: one UNSUBSCRIBE and one
    # SUBSCRIBE naming only it; the other stream was never touched again.
    assert sim.connection_count == 1 and ws.metrics["reconnections"] == 0 and ws.gaps == []
    assert requests_naming(server, MUTED) == [("SUBSCRIBE", [MUTED, FLOWING]), ("UNSUBSCRIBE", [MUTED]),
                                           ("SUBSCRIBE", [MUTED])]
    assert requests_naming(server, FLOWING) == [("SUBSCRIBE", [MUTED, FLOWING])]
    # Counted per stream. Expected: the documented 0.1 s (the simulator
    # sends 20 a second), or a little more once the mute's silence counts in
    # the learned mean.
    cadence = health["cadence"]
    assert cadence[MUTED]["resubscribes"] == 1 and cadence[FLOWING]["resubscribes"] == 0
    assert 0.1 <= cadence[MUTED]["expected_interval_s"] < 0.2
    assert 0.05 <= cadence[FLOWING]["expected_interval_s"] < 1.0
    assert cadence[MUTED]["silent_s"] < 1.0
    # Reported by name: silent, resubscribed alone.
    reports = [e for e in sink.errors if isinstance(e, ExchangeTimeoutError)]
    assert len(reports) == 1 and MUTED in reports[0].message and "resubscribed alone" in reports[0].message
    # Not before its allowance (10 x 0.1 s), and well within a bound.
    assert 1.0 <= resubscribed_after < BOUND
    # The other stream flowed without a gap: every update id in sequence.
    assert len(flowing) > 40
    assert all(b[0] == a[1] + 1 for a, b in zip(flowing, flowing[1:]))
    assert health["streams"][FLOWING]["sequence_gaps"] == 0
    # The updates the muted stream missed are a reported sequence gap, not a silent loss.
    gaps = [e for e in sink.errors if isinstance(e, SequenceGapError)]
    assert [g.stream for g in gaps] == [MUTED] and [g["stream"] for g in health["sequence_gaps"]] == [MUTED]


async def test_a_quiet_but_healthy_stream_is_not_resubscribed(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=20.0)
    sink = Sink()
    floor = 0.2
    rng = random.Random(15)
    longest = 0.0
    async with client(sim, sink, cadence_floor=floor) as ws:
        await ws.subscribe([MUTED, QUIET])
        server = sim.connections[0]
        # Trades come in short bursts with silences of 0.3 to 0.7 s between
        # them, each longer than the floor: the learned interval must cover them.
        deadline = time.monotonic() + BOUND
        judged_for = 0.0
        while judged_for < 3.0:
            assert time.monotonic() < deadline, "the quiet stream was never judged for 3 s"
            silence = rng.uniform(0.3, 0.7)
            sim.mute_stream(QUIET, silence)
            await asyncio.sleep(silence + 0.15)
            health = await ws.health_check()
            quiet = health["cadence"][QUIET]
            if quiet["expected_interval_s"] is not None:
                judged_for += silence + 0.15
                longest = max(longest, silence)
        health = await ws.health_check()
    print(f"\n[cadence] quiet stream, silences up to {longest:.2f} s (floor {floor} s): "
          f"{health['cadence'][QUIET]}; {len(of(sink, QUIET))} trades")
    assert longest > floor          # the floor alone would have fired
    assert health["cadence"][QUIET]["resubscribes"] == 0
    assert health["cadence"][QUIET]["expected_interval_s"] > floor / 10
    assert not any(isinstance(e, ExchangeTimeoutError) for e in sink.errors)
    assert [(r["method"]) for r in server.requests] == ["SUBSCRIBE"]


async def test_a_stale_timeout_during_a_blocked_loop_names_the_lag(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=20.0)
    sink = Sink()
    async with client(sim, sink, stale_timeout=0.3) as ws:
        await ws.subscribe([FLOWING])
        await until(lambda: len(of(sink, FLOWING)) >= 5, BOUND, "data flowing")
        time.sleep(0.8)       # the whole loop, simulator included, stands still
        await until(lambda: bool(ws.gaps), BOUND, "the stale check fired")
        health = await ws.health_check()
        await ws.wait_for_state(ConnectionState.CONNECTED, timeout=BOUND)
    reason = ws.gaps[0].reason
    print(f"\n[loop lag] {reason!r}; {health['loop_lag']}")
    assert reason.startswith("stale: no message for 0.3 s; loop lag ")
    assert reason.endswith(" ms: the event loop is overloaded, not necessarily the peer")
    assert int(reason.split("; loop lag ")[1].split()[0]) >= 600
    lag = health["loop_lag"]
    assert lag["max_ms"] >= 600 and lag["p99_ms"] >= 600 and lag["window_s"] == 60.0
    assert set(lag) >= {"p50_ms", "p99_ms", "max_ms", "window_s"}


async def test_a_pong_timeout_during_a_blocked_loop_names_the_lag(binance_simulator_factory: Any) -> None:
    # No data, no server pings: the client's keepalive pings every 0.3 s idle.
    sim = await binance_simulator_factory(rate=0, ping_interval=0)
    sink = Sink()
    async with client(sim, sink, ping_interval=0.3, pong_timeout=0.2, stale_timeout=None) as ws:
        await ws.subscribe([FLOWING])
        server = sim.connections[0]
        count_incoming = server._count_incoming
        blocked: list[float] = []

        def block_on_the_next_frame() -> bool:
            # The next frame from the client is its ping: the process stands
            # still for 0.5 s while reading it, then the simulator answers.
            # The pong is there in time, but the client's keepalive timer
            # runs before the client reads it: a pong timeout caused by the loop.
            if not blocked:
                blocked.append(time.monotonic())
                time.sleep(0.5)
            return count_incoming()
        server._count_incoming = block_on_the_next_frame
        await until(lambda: bool(ws.gaps), BOUND, "the pong timeout fired")
    reason = ws.gaps[0].reason
    print(f"\n[loop lag] {reason!r}")
    assert blocked
    assert reason.startswith("client closed (1001): peer has not replied to ping/heartbeat request within 0.2 "
                             "second(s); loop lag ")
    assert reason.endswith("not necessarily the peer")


async def test_clients_share_one_monitor_and_stop_leaves_no_timer(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=0)
    tasks = other_tasks()
    first, second = client(sim, Sink()), client(sim, Sink(), loop_lag_interval=0.5)
    await first.start()
    await second.start()
    monitor = first._lag_monitor
    assert monitor is not None and second._lag_monitor is monitor and monitor.users == 2
    assert monitor.interval == 0.1       # the first client's setting
    await first.stop()
    assert monitor.running
    await second.stop()
    assert not monitor.running and monitor.users == 0
    assert asyncio.get_running_loop() not in looplag._monitors
    assert other_tasks() == tasks
    # The figures stay readable after stop.
    assert (await second.health_check())["loop_lag"]["samples"] >= 0


async def test_cadence_factor_none_turns_the_watchdog_off(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=20.0)
    sink = Sink()
    async with client(sim, sink, cadence_floor=0.2, cadence_factor=None) as ws:
        await ws.subscribe([MUTED, FLOWING])
        server = sim.connections[0]
        await until(lambda: len(of(sink, MUTED)) >= 25, BOUND, "data flowing")
        sim.mute_stream(MUTED)
        count = len(of(sink, FLOWING))
        # Long past what the watchdog would allow (max(0.2 s, 10 x 0.1 s)).
        await asyncio.sleep(2.0)
        health = await ws.health_check()
    assert len(of(sink, FLOWING)) > count + 10 and MUTED in sim.muted_streams
    assert [r["method"] for r in server.requests] == ["SUBSCRIBE"]
    assert health["cadence"][MUTED]["resubscribes"] == 0 and health["cadence"][MUTED]["silent_s"] >= 1.5
    assert not any(isinstance(e, ExchangeTimeoutError) for e in sink.errors)
