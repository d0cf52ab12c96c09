"""The soak, bounded for CI (``--soak SECONDS`` for a longer run; scripts/soak_report.py prints it)."""
from __future__ import annotations

import pytest

from tests.reliability.soak import run_soak

DEFAULT_SECONDS = 8.0


async def test_soak_every_fault_recovered_nothing_lost_outside_gaps(request: pytest.FixtureRequest) -> None:
    seconds = request.config.getoption("--soak") or DEFAULT_SECONDS
    report = await run_soak(seconds)
    print("\n" + "\n".join(report.lines()))
    assert sum(report.faults.values()) >= 3
    assert report.unrecovered == []
    assert report.recovery_times, "no fault dropped a connection"
    assert report.lost_outside_gaps == 0
    assert report.repeated == 0
    assert report.rotations >= 5
    assert report.messages > 1000
    assert report.fd_growth <= 2
    assert report.rss_growth_kb < 64 * 1024
