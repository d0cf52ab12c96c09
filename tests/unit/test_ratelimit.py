"""The outgoing token bucket, on the real clock: never faster than its rate."""
import asyncio
import time

import pytest

from fastws.ratelimit import TokenBucket


async def test_spacing_matches_rate() -> None:
    bucket = TokenBucket(rate=50.0)
    start = time.monotonic()
    stamps = []
    for _ in range(11):
        await asyncio.wait_for(bucket.acquire(), 5)     # never stuck
        stamps.append(time.monotonic())
    # 1 token at once, then 10 more, never less than 20 ms apart (a loaded
    # machine only makes them later; uvloop's timers have 1 ms granularity).
    assert stamps[0] - start < 5
    assert all(b - a >= 0.02 - 0.001 for a, b in zip(stamps, stamps[1:])), stamps
    assert stamps[-1] - start >= 0.2 - 0.002


async def test_no_one_second_window_exceeds_rate() -> None:
    bucket = TokenBucket(rate=20.0)
    stamps = []
    for _ in range(30):
        await bucket.acquire()
        stamps.append(time.monotonic())
    for i, t in enumerate(stamps):
        in_window = [s for s in stamps[i:] if s - t < 1.0]
        assert len(in_window) <= 21


async def test_concurrent_callers_served_in_order() -> None:
    bucket = TokenBucket(rate=100.0)
    order: list[int] = []

    async def take(n: int) -> None:
        await bucket.acquire()
        order.append(n)

    await asyncio.gather(*(take(n) for n in range(5)))
    assert order == [0, 1, 2, 3, 4]


def test_invalid_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0)
