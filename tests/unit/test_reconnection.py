"""The supervisor's reconnection policy: delays, attempts counted, when to give up."""
from picows import WSInvalidURL

from fastws.backoff import ReconnectPolicy, Reconnection


def _reconnection(max_attempts: int = 0) -> Reconnection:
    return Reconnection(ReconnectPolicy(base=0.5, factor=2.0, cap=3.0, jitter=0.0), max_attempts)


def _after_two_drops() -> Reconnection:
    """Connected, lost, reconnected at once, lost again: the next delay would be 0.5 s."""
    reconnection = _reconnection()
    reconnection.begin()
    reconnection.connected()
    for _ in range(2):
        assert reconnection.lost()
        reconnection.next_delay()
    return reconnection


def test_the_first_attempt_is_immediate() -> None:
    reconnection = _reconnection()
    reconnection.begin()
    assert reconnection.next_delay() == 0.0
    assert reconnection.next_delay() == 0.0   # still the first attempt until it ends
    assert reconnection.attempts == 0


def test_a_refused_first_attempt_is_retried_after_the_base_delay() -> None:
    reconnection = _reconnection()
    reconnection.begin()
    assert reconnection.failed(ConnectionRefusedError())
    assert [reconnection.next_delay() for _ in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert reconnection.attempts == 1


def test_a_lost_connection_is_retried_at_once_then_with_growing_delays() -> None:
    reconnection = _reconnection()
    reconnection.begin()
    reconnection.connected()
    assert reconnection.lost()
    assert reconnection.next_delay() == 0.0
    assert reconnection.failed(ConnectionResetError())
    assert reconnection.next_delay() == 0.5
    assert reconnection.attempts == 2


def test_gives_up_after_max_attempts_without_a_healthy_period() -> None:
    reconnection = _reconnection(max_attempts=2)
    reconnection.begin()
    reconnection.connected()
    assert reconnection.lost() and reconnection.failed(OSError())
    assert not reconnection.failed(OSError())
    assert reconnection.attempts == 3


def test_a_healthy_period_starts_counting_afresh() -> None:
    reconnection = _reconnection(max_attempts=2)
    reconnection.begin()
    reconnection.connected()
    assert reconnection.lost() and reconnection.failed(OSError())
    reconnection.next_delay()
    reconnection.connected()
    reconnection.healthy()
    assert reconnection.attempts == 0
    assert reconnection.lost() and reconnection.lost()
    assert reconnection.next_delay() == 0.0


def test_a_failure_retrying_cannot_fix_gives_up_at_once() -> None:
    reconnection = _reconnection(max_attempts=0)
    reconnection.begin()
    assert not reconnection.failed(WSInvalidURL("nope://", "bad scheme"))
    assert reconnection.attempts == 1


def test_a_planned_replacement_reconnects_at_once_but_keeps_the_count() -> None:
    reconnection = _after_two_drops()
    reconnection.replaced()
    assert reconnection.next_delay() == 0.0
    assert reconnection.attempts == 2


def test_a_new_supervisor_starts_with_an_immediate_attempt() -> None:
    reconnection = _after_two_drops()
    reconnection.begin()
    assert reconnection.next_delay() == 0.0
    assert reconnection.attempts == 2
