"""The reconnection delay policy and the retry classifier."""
from picows import WSInvalidURL

from fastws.backoff import ReconnectPolicy, is_retryable


def test_first_retry_is_immediate_then_grows_to_cap() -> None:
    policy = ReconnectPolicy(base=0.5, factor=2.0, cap=3.0, jitter=0.0)
    assert [policy.next_delay() for _ in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.attempt == 6


def test_reset_starts_over() -> None:
    policy = ReconnectPolicy(base=1.0, factor=2.0, cap=60.0, jitter=0.0)
    for _ in range(4):
        policy.next_delay()
    policy.reset()
    assert policy.next_delay() == 0.0
    assert policy.next_delay() == 1.0


def test_jitter_stays_within_bounds() -> None:
    for draw, expected in [(0.0, 0.9), (0.5, 1.0), (0.999999, 1.1)]:
        policy = ReconnectPolicy(base=1.0, factor=2.0, cap=60.0, jitter=0.1, rng=lambda d=draw: d)
        policy.next_delay()
        assert abs(policy.next_delay() - expected) < 1e-5


def test_jitter_never_exceeds_cap() -> None:
    policy = ReconnectPolicy(base=1.0, factor=10.0, cap=5.0, jitter=0.5, rng=lambda: 0.999)
    delays = [policy.next_delay() for _ in range(5)]
    assert max(delays) <= 5.0


def test_retry_classifier() -> None:
    assert is_retryable(ConnectionRefusedError())
    assert is_retryable(TimeoutError())
    assert not is_retryable(WSInvalidURL("x", "bad"))
    assert not is_retryable(ValueError("bad argument"))
