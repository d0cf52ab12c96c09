"""The cadence watchdog's policy (``CadenceWatch``) on per-stream counters as the core keeps them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fastws.client.cadence import CadenceWatch

S = 1_000_000_000   # ns per second


@dataclass
class Stats:
    """One stream's counters, as ``FrameHandler.stream_stats()`` gives them."""

    messages: int = 0
    first_receive_ns: int = 0
    last_receive_ns: int = 0


@dataclass
class Core:
    """The connection's figures the watchdog reads."""

    connected_ns: int = 0
    last_receive_ns: int = 0
    stats: dict[str, Stats] = field(default_factory=dict)

    def receive(self, stream: str, at: float) -> None:
        """One message of ``stream`` at ``at`` seconds."""
        ns = int(at * S)
        stat = self.stats.setdefault(stream, Stats(first_receive_ns=ns))
        stat.messages += 1
        stat.last_receive_ns = ns
        self.last_receive_ns = max(self.last_receive_ns, ns)


def watch(given: Optional[dict[str, float]] = None, factor: float = 10.0, floor: float = 1.0,
          min_messages: int = 5) -> CadenceWatch:
    return CadenceWatch(factor, floor, min_messages, lambda s: (given or {}).get(s))


def flow(core: Core, stream: str, start: float, end: float, every: float) -> None:
    t = start
    while t <= end + 1e-9:
        core.receive(stream, t)
        t += every


def overdue_at(cadence: CadenceWatch, core: Core, at: float, streams: tuple[str, ...] = ("a", "b")) -> list[str]:
    return [o.stream for o in cadence.check(core, core.stats, streams, int(at * S))]


def test_a_stream_silent_past_its_allowance_while_others_flow_is_overdue() -> None:
    core, cadence = Core(), watch()
    flow(core, "a", 0.0, 2.0, 0.1)
    flow(core, "b", 0.0, 5.0, 0.1)
    # a: expected 0.1 s, allowed max(floor 1 s, 10 x 0.1 s) = 1 s.
    assert overdue_at(cadence, core, 2.9) == []
    overdue = cadence.check(core, core.stats, ("a", "b"), int(3.1 * S))
    assert [o.stream for o in overdue] == ["a"]
    assert abs(overdue[0].silent - 1.1) < 1e-6 and abs(overdue[0].expected - 0.1) < 1e-6
    assert overdue[0].threshold == 1.0


def test_a_whole_connection_silent_is_the_stale_checks_job() -> None:
    core, cadence = Core(), watch()
    flow(core, "a", 0.0, 2.0, 0.1)
    flow(core, "b", 0.0, 2.0, 0.1)
    assert overdue_at(cadence, core, 10.0) == []


def test_not_judged_before_min_messages() -> None:
    core, cadence = Core(), watch(min_messages=5)
    flow(core, "a", 0.0, 0.3, 0.1)       # 4 messages
    flow(core, "b", 0.0, 9.0, 0.1)
    assert overdue_at(cadence, core, 9.0) == []
    assert cadence.snapshot(["a"], int(9.0 * S), core.stats)["a"]["expected_interval_s"] is None


def test_the_documented_interval_is_a_lower_bound_of_the_learned_one() -> None:
    core, cadence = Core(), watch(given={"a": 0.5, "b": 0.01})
    flow(core, "a", 0.0, 2.0, 0.1)       # learned 0.1, documented 0.5: 5 s allowed
    flow(core, "b", 0.0, 8.0, 0.1)       # learned 0.1 wins over 0.01
    assert overdue_at(cadence, core, 6.9) == []
    assert overdue_at(cadence, core, 7.1) == ["a"]
    snapshot = cadence.snapshot(["a", "b"], int(7.1 * S), core.stats)
    assert snapshot["a"]["expected_interval_s"] == 0.5
    assert abs(snapshot["b"]["expected_interval_s"] - 0.1) < 1e-6


def test_a_slow_stream_is_learned() -> None:
    core, cadence = Core(), watch()
    flow(core, "a", 0.0, 10.0, 2.0)      # every 2 s: 20 s allowed
    flow(core, "b", 0.0, 29.0, 0.1)
    assert overdue_at(cadence, core, 29.0) == []
    assert overdue_at(cadence, core, 30.1) == ["a"]


def test_a_silence_that_ended_by_itself_raises_the_allowance() -> None:
    core, cadence = Core(), watch(factor=5.0)
    flow(core, "a", 0.0, 20.0, 0.1)      # allowed max(floor 1 s, 5 x 0.1 s) = 1 s
    flow(core, "b", 0.0, 40.0, 0.1)
    overdue_at(cadence, core, 20.0)
    # A silence of 0.9 s seen by a check, then the stream came back by itself ...
    assert overdue_at(cadence, core, 20.9) == []
    flow(core, "a", 21.0, 22.0, 0.1)
    overdue_at(cadence, core, 22.0)
    # ... so 2 x 0.9 s are allowed from now on, not 1 s.
    assert overdue_at(cadence, core, 23.5) == []
    assert overdue_at(cadence, core, 23.9) == ["a"]


def test_a_resubscribe_is_counted_and_the_silence_measured_afresh() -> None:
    core, cadence = Core(), watch(factor=5.0)
    flow(core, "a", 0.0, 20.0, 0.1)
    flow(core, "b", 0.0, 40.0, 0.1)
    overdue_at(cadence, core, 20.0)
    assert overdue_at(cadence, core, 21.2) == ["a"]
    cadence.resubscribed("a", int(21.2 * S))
    assert cadence.resubscribes("a") == 1
    # Measured from the resubscribe; the allowance doubled (it brought nothing).
    assert overdue_at(cadence, core, 22.2) == []
    assert overdue_at(cadence, core, 23.3) == ["a"]
    cadence.resubscribed("a", int(23.3 * S))
    flow(core, "a", 23.4, 24.0, 0.1)
    overdue_at(cadence, core, 24.0)
    # The silences the resubscribes ended (2.1 s) are not learned as a quiet
    # stream's: the allowance is 1 s again, not 4.2 s.
    assert overdue_at(cadence, core, 25.2) == ["a"]


def test_a_new_connection_starts_the_counts_afresh_and_keeps_the_resubscribes() -> None:
    old, cadence = Core(), watch()
    flow(old, "a", 0.0, 1.0, 0.1)
    flow(old, "b", 0.0, 3.0, 0.1)
    assert overdue_at(cadence, old, 2.5) == ["a"]
    cadence.resubscribed("a", int(2.5 * S))
    new = Core(connected_ns=int(5.0 * S))
    flow(new, "b", 5.0, 9.0, 0.1)
    # No message of a on the new connection yet: not judged.
    assert overdue_at(cadence, new, 9.0) == []
    snapshot = cadence.snapshot(["a", "b"], int(9.0 * S), new.stats)
    assert snapshot["a"]["resubscribes"] == 1 and abs(snapshot["a"]["silent_s"] - 4.0) < 1e-6
    assert abs(snapshot["b"]["silent_s"]) < 1e-6 and abs(snapshot["b"]["expected_interval_s"] - 0.1) < 1e-6
    assert cadence.snapshot(["a"], int(9.0 * S), None)["a"]["silent_s"] == 0.0


def test_forgotten_streams_are_dropped() -> None:
    core, cadence = Core(), watch()
    flow(core, "a", 0.0, 1.0, 0.1)
    flow(core, "b", 0.0, 1.0, 0.1)
    overdue_at(cadence, core, 1.0)
    cadence.resubscribed("a", int(1.0 * S))
    cadence.forget(["b"])
    assert cadence.resubscribes("a") == 0
    assert set(cadence.snapshot(["b"], int(1.0 * S), core.stats)) == {"b"}


def test_each_fruitless_resubscribe_doubles_the_allowance_until_the_stream_delivers() -> None:
    core, cadence = Core(), watch(factor=5.0)
    flow(core, "a", 0.0, 20.0, 0.1)
    flow(core, "b", 0.0, 200.0, 0.1)
    overdue_at(cadence, core, 20.0)
    resubscribed_at = []
    at = 20.0
    while at < 51.5:
        at = round(at + 0.1, 1)
        if overdue_at(cadence, core, at) == ["a"]:
            cadence.resubscribed("a", int(at * S))
            resubscribed_at.append(at)
    # Allowed 1 s, then 2, 4, 8, 16 s after each resubscribe that brought nothing.
    assert resubscribed_at == [21.1, 23.2, 27.3, 35.4, 51.5]
    flow(core, "a", 51.6, 60.0, 0.1)
    overdue_at(cadence, core, 60.0)
    # The stream delivered again: back to 1 s.
    assert overdue_at(cadence, core, 61.0) == []
    assert overdue_at(cadence, core, 61.1) == ["a"]
