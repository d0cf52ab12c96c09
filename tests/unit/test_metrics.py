"""Latency histogram buckets and percentile estimates."""
from fastws._core import latency_bucket_bounds
from fastws.metrics import latency_percentiles


def test_bucket_bounds_are_contiguous_and_increasing() -> None:
    previous_high = 0
    for index in range(12, 256):
        low, high = latency_bucket_bounds(index)
        assert high > low
        if index > 12:
            assert low == previous_high
        previous_high = high
    assert latency_bucket_bounds(12) == (8, 10)
    assert latency_bucket_bounds(255) == (7 << 61, 8 << 61)


def test_percentiles_of_empty_histogram() -> None:
    assert latency_percentiles([0] * 256) == {"p50": None, "p99": None, "p99.9": None}


def test_percentiles_pick_the_right_bucket() -> None:
    histogram = [0] * 256
    histogram[40] = 99      # 1024..1280 ns
    histogram[60] = 1       # 32768..40960 ns
    result = latency_percentiles(histogram)
    assert result["p50"] == (1024 + 1280) / 2 / 1000
    assert result["p99"] == (1024 + 1280) / 2 / 1000
    assert result["p99.9"] == (32768 + 40960) / 2 / 1000
