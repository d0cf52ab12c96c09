"""The outgoing token bucket, measured on the real clock."""
import asyncio
import time

import pytest

from fastws.ratelimit import TokenBucket


async def test_spacing_matches_rate() -> None:
    bucket = TokenBucket(rate=50.0)
    start = time.monotonic()
    for _ in range(11):
        await bucket.acquire()
    elapsed = time.monotonic() - start
    # 1 token at once, then 10 more at 20 ms each.
    assert 0.19 <= elapsed < 0.6


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
