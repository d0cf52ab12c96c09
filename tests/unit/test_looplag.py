"""The event-loop lag monitor, on a real (uv)loop blocked for known times."""
from __future__ import annotations

import asyncio
import time

import pytest

from fastws.looplag import LoopLagMonitor, acquire_monitor, overload_note, release_monitor

INTERVAL = 0.02


async def block_loop(seconds: float) -> None:
    """Block the running loop for ``seconds`` in a callback, then let it run again."""
    done = asyncio.get_running_loop().create_future()

    def block() -> None:
        time.sleep(seconds)
        done.set_result(None)
    asyncio.get_running_loop().call_soon(block)
    await done


async def test_a_blocked_loop_shows_in_p99_and_max_not_in_p50() -> None:
    monitor = acquire_monitor(INTERVAL, window=10.0)
    try:
        await asyncio.sleep(0.3)
        calm = monitor.snapshot()
        await block_loop(0.3)
        await asyncio.sleep(0.1)
        lag = monitor.snapshot()
    finally:
        release_monitor(monitor)
    print(f"\n[loop lag] calm {calm}\n[loop lag] blocked 300 ms: {lag}")
    assert calm["samples"] >= 3
    # The wake-up due during the block ran at its end: up to one interval
    # of the block was before it was due.
    assert lag["max_ms"] >= 300 - INTERVAL * 1e3 - 5
    # Nearest rank over fewer than 100 samples: p99 is the largest one.
    assert lag["samples"] < 100 and lag["p99_ms"] == lag["max_ms"]
    # One late wake-up among the samples does not move the median.
    assert lag["p50_ms"] < 250
    assert lag["window_s"] == 10.0


async def test_samples_older_than_the_window_are_dropped() -> None:
    monitor = LoopLagMonitor(asyncio.get_running_loop(), INTERVAL, window=0.3)
    monitor.start()
    try:
        await block_loop(0.2)
        await asyncio.sleep(0.05)
        assert monitor.snapshot()["max_ms"] >= 150
        await asyncio.sleep(0.5)
        snapshot = monitor.snapshot()
    finally:
        monitor.stop()
    assert snapshot["max_ms"] < 150, snapshot
    # Bounded: at most a window's worth of samples (plus the one that ends it).
    assert snapshot["samples"] <= 0.3 / INTERVAL + 1


async def test_a_lag_going_on_now_counts_before_its_wake_up_runs() -> None:
    monitor = acquire_monitor(INTERVAL, window=10.0)
    seen: list[float] = []
    try:
        await asyncio.sleep(0.05)

        def block_and_look() -> None:
            time.sleep(0.2)
            # Asked from inside the blocking callback: the wake-up is overdue.
            seen.extend([monitor.current_lag(), monitor.worst_since(1.0)])
        asyncio.get_running_loop().call_soon(block_and_look)
        await asyncio.sleep(0.05)
    finally:
        release_monitor(monitor)
    assert seen[0] >= 0.2 - INTERVAL - 0.005 and seen[1] >= seen[0]


async def test_one_monitor_per_loop_stopped_with_its_last_user() -> None:
    first = acquire_monitor(INTERVAL, 10.0)
    second = acquire_monitor(1.0, 99.0)
    assert second is first and first.users == 2
    assert first.interval == INTERVAL        # the first user's settings
    release_monitor(first)
    assert first.running
    await asyncio.sleep(0.1)
    release_monitor(second)
    assert not first.running and first.users == 0
    count = first.snapshot()["samples"]
    await asyncio.sleep(0.1)
    assert first.snapshot()["samples"] == count      # no timer left
    third = acquire_monitor(INTERVAL, 10.0)
    try:
        assert third is not first and third.running
    finally:
        release_monitor(third)


async def test_the_note_names_a_lag_that_matters_for_the_timeout() -> None:
    monitor = acquire_monitor(INTERVAL, 10.0)
    try:
        await asyncio.sleep(0.05)
        assert overload_note(monitor, 0.4) == ""
        await block_loop(0.2)
        await asyncio.sleep(0.05)
        # A quarter of a 0.4 s timeout is 100 ms: a 200 ms lag is named ...
        note = overload_note(monitor, 0.4)
        # ... but half a second is named for a long timeout, not 200 ms.
        quiet = overload_note(monitor, 30.0)
    finally:
        release_monitor(monitor)
    assert note.startswith("; loop lag ") and note.endswith(
        " ms: the event loop is overloaded, not necessarily the peer"), note
    assert int(note.split()[3]) >= 150
    assert quiet == ""
    assert overload_note(None, 1.0) == ""


@pytest.mark.parametrize("field,value", [("loop_lag_interval", 0), ("loop_lag_window", -1.0),
                                         ("cadence_factor", 0.0), ("cadence_floor", float("inf")),
                                         ("cadence_min_messages", 1), ("cadence_min_messages", 2.5)])
def test_config_refuses_bad_watchdog_settings(field: str, value: object) -> None:
    from fastws.config import create_websocket_config
    with pytest.raises(ValueError, match=field):
        create_websocket_config("ws://127.0.0.1:1", **{field: value})


def test_config_defaults_and_disabling_the_cadence_watchdog() -> None:
    from fastws.config import create_websocket_config
    config = create_websocket_config("ws://127.0.0.1:1", cadence_factor=None)
    assert config.cadence_factor is None
    assert (config.loop_lag_interval, config.loop_lag_window, config.cadence_floor,
            config.cadence_min_messages) == (0.1, 60.0, 10.0, 20)
    with pytest.raises(ValueError, match="loop_lag_window"):
        create_websocket_config("ws://127.0.0.1:1", loop_lag_interval=1.0, loop_lag_window=0.5)
