"""MEXC's compliance profile: what ``fastws verify`` sends the adapter.

Sample frames as MEXC sends them, malformed ones, and the stream of the live round
trip. The simulator the round trip runs against is the registry entry's
(``fastws.registry``), built with ``simulator_options``.
"""
from __future__ import annotations

from exchanges.mexc.reference import encode_push
from fastws.verify import BINARY, ComplianceProfile, SampleFrame

__all__ = ["COMPLIANCE"]

COMPLIANCE = ComplianceProfile(
    exchange="mexc",
    samples=(
        SampleFrame(encode_push(
            "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT", "publicAggreDepths",
            {"asks": [{"price": "93180.18", "quantity": "0.2"}], "bids": [],
             "eventType": "spot@public.aggre.depth.v3.api.pb@100ms", "fromVersion": "10", "toVersion": "11"},
            symbol="BTCUSDT", send_time=1700000000000), BINARY,
            stream="spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"),
        SampleFrame(encode_push(
            "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT", "publicAggreDeals",
            {"deals": [{"price": "93220.00", "quantity": "0.04", "tradeType": 2, "time": 1700000000000}],
             "eventType": "spot@public.aggre.deals.v3.api.pb@100ms"},
            symbol="BTCUSDT", send_time=1700000000000), BINARY,
            stream="spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"),
        SampleFrame(b'{"id":0,"code":0,"msg":"PONG"}', control=True),
        SampleFrame(b'{"id":0,"code":0,"msg":"spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"}',
                    control=True),
    ),
    malformed=(SampleFrame(b"\n/spot@public.aggre.deals.v3.api.pb@100ms@BTC", BINARY),
               SampleFrame(b'{"id":0,"code":0}'), SampleFrame(b'["PONG"]')),
    streams=("spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT",),
    simulator_options={"rate": 0},
    config="exchanges.mexc.client:mexc_config",
)

"""The profile of ``MexcWebSocket`` (its ``compliance`` attribute)."""
