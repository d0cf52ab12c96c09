"""Binance's compliance profile: what ``fastws verify`` sends the adapter.

Sample frames as Binance sends them, malformed ones, and the stream of the live round
trip. The simulator the round trip runs against is the registry entry's
(``fastws.registry``), built with ``simulator_options``.
"""
from __future__ import annotations

from fastws.verify import ComplianceProfile, SampleFrame

__all__ = ["COMPLIANCE"]

COMPLIANCE = ComplianceProfile(
    exchange="binance",
    samples=(
        SampleFrame(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000000,'
                    b'"s":"BTCUSDT","U":157,"u":160,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}',
                    stream="btcusdt@depth@100ms"),
        SampleFrame(b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000000,"s":"BTCUSDT",'
                    b'"t":12345,"p":"0.001","q":"100","T":1700000000000,"m":true,"M":true}}',
                    stream="btcusdt@trade"),
        SampleFrame(b'{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":12345,"p":"0.001","q":"100",'
                    b'"T":1700000000000,"m":true,"M":true}'),
        SampleFrame(b'{"result":null,"id":1}', control=True),
        SampleFrame(b'{"error":{"code":2,"msg":"Invalid request"},"id":2}', control=True),
        SampleFrame(b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1700000000000}}',
                    control=True),
    ),
    malformed=(SampleFrame(b'{"code":-1,"msg":"bad request"}'),
               SampleFrame(b'{"stream":"btcusdt@depth","data":{"e":')),
    streams=("btcusdt@depth@100ms",),
    simulator_options={"rate": 0},
    config="exchanges.binance.client:binance_config",
)

"""The profile of ``BinanceWebSocket`` (its ``compliance`` attribute)."""
