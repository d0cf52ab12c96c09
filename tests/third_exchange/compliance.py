"""The third exchange's compliance profile (its simulator comes from the registry entry)."""
from __future__ import annotations

from fastws.verify import ComplianceProfile, SampleFrame

__all__ = ["COMPLIANCE"]

COMPLIANCE = ComplianceProfile(
    exchange="third",
    samples=(
        SampleFrame(b'{"ch":"trades.BTC","seq":1,"ts":1700000000000,"px":"100.5","qty":"0.25"}',
                    stream="trades.BTC"),
        SampleFrame(b'{"req":1,"ok":true}', control=True),
        SampleFrame(b'{"req":2,"ok":false,"err":"invalid stream x"}', control=True),
    ),
    streams=("trades.BTC",),
    simulator_options={"rate": 0},
    config="tests.third_exchange.client:third_config",
)
