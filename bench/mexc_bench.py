"""MEXC per-push cost: the compiled decoder beside protobuf's own, in one run.

Per push, for aggregated deals (3 items) and aggregated depth (50 levels: 25
per side, and 100 levels: 50 per side):

- ``reference``: ``PushDataV3ApiWrapper.FromString`` + ``json_format.MessageToDict``
  (``preserving_proto_field_name=True``), the interface standard's decoder;
- ``fast decoder``: ``exchanges.mexc._fastpb.PushDecoder.decode`` on the bytes;
- ``raw picows + protobuf``: a picows listener in Python doing the reference
  decode and calling a counting handler, fed built BINARY frames;
- ``fastws path``: the frame core a ``MexcWebSocket`` connection runs (its
  ``_parse_message``, classification and handler), fed the same frames.

Rounds are interleaved across peers; each figure is the median. Every peer's
output is checked against the reference before timing, and every round counts
what reached the handler.

Usage: python bench/mexc_bench.py [--pushes N] [--rounds R]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Callable

from google.protobuf import json_format
from picows import WSFrame, WSListener, WSMsgType, WSTransport
from picows.picows import _make_test_ws_frame

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.detached import DETACHED_URL, open_detached_core  # noqa: E402
from exchanges.mexc import MexcWebSocket, encode_push, mexc_config  # noqa: E402
from exchanges.mexc._fastpb import PushDecoder  # noqa: E402
from exchanges.mexc.pb import PushDataV3ApiWrapper  # noqa: E402
from fastws import ExchangeName  # noqa: E402

SYMBOL = "BTCUSDT"
_BINARY = WSMsgType.BINARY
_from_string = PushDataV3ApiWrapper.FromString
_to_dict = json_format.MessageToDict


def deals_push(items: int = 3) -> bytes:
    """An aggregated-deals push as MEXC sends it."""
    deals = [{"price": f"{65000 + i}.12", "quantity": "0.01234", "tradeType": 1 + i % 2,
              "time": 1_736_411_507_002 + i} for i in range(items)]
    return encode_push(f"spot@public.aggre.deals.v3.api.pb@100ms@{SYMBOL}", "publicAggreDeals",
                       {"deals": deals, "eventType": "spot@public.aggre.deals.v3.api.pb@100ms"},
                       symbol=SYMBOL, send_time=1_736_411_507_010)


def depth_push(levels_per_side: int) -> bytes:
    """An aggregated-depth push with ``levels_per_side`` asks and bids."""
    asks = [{"price": f"{65000 + i}.10", "quantity": f"{i % 7}.2345"} for i in range(levels_per_side)]
    bids = [{"price": f"{64999 - i}.90", "quantity": f"{i % 5}.5000"} for i in range(levels_per_side)]
    return encode_push(f"spot@public.aggre.depth.v3.api.pb@100ms@{SYMBOL}", "publicAggreDepths",
                       {"asks": asks, "bids": bids, "eventType": "spot@public.aggre.depth.v3.api.pb@100ms",
                        "fromVersion": "10001", "toVersion": "10004"},
                       symbol=SYMBOL, send_time=1_736_411_507_010)


PUSHES: dict[str, Callable[[], bytes]] = {
    "deals (3 items)": deals_push,
    "depth (50 levels)": lambda: depth_push(25),
    "depth (100 levels)": lambda: depth_push(50),
}


class Count:
    """A handler that counts and keeps the last message."""

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None

    def __call__(self, message: Any) -> None:
        self.count += 1
        self.last = message


class ProtobufListener(WSListener):
    """Raw picows with protobuf's decoder: what a user would write without fastws."""

    def __init__(self, handler: Count) -> None:
        super().__init__()
        self.handler = handler

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _BINARY:
            self.handler(_to_dict(_from_string(frame.get_payload_as_bytes()), preserving_proto_field_name=True))


def peers() -> dict[str, Callable[[Count], Callable[[Any], Any]]]:
    """Peer name -> a factory of a per-push call taking a (payload, frame) pair."""
    decoder = PushDecoder(PushDataV3ApiWrapper.DESCRIPTOR)

    def reference(sink: Count) -> Callable[[Any], Any]:
        return lambda item: sink(_to_dict(_from_string(item[0]), preserving_proto_field_name=True))

    def fast(sink: Count) -> Callable[[Any], Any]:
        decode = decoder.decode
        return lambda item: sink(decode(item[0]))

    def raw(sink: Count) -> Callable[[Any], Any]:
        on_frame = ProtobufListener(sink).on_ws_frame
        return lambda item: on_frame(None, item[1])

    def fastws_path(sink: Count) -> Callable[[Any], Any]:
        ws = MexcWebSocket(ExchangeName("mexc"), mexc_config(DETACHED_URL, stale_timeout=None), sink)
        on_frame = open_detached_core(ws).on_ws_frame
        return lambda item: on_frame(None, item[1])

    return {"reference": reference, "fast decoder": fast, "raw picows + protobuf": raw, "fastws path": fastws_path}


def measure(pushes: int, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds per push, per push kind and peer (median of rounds)."""
    samples: dict[tuple[str, str], list[float]] = {}
    makers = peers()
    for kind, build in PUSHES.items():
        payload = build()
        item = (payload, _make_test_ws_frame(_BINARY, payload, True, False))
        expected = _to_dict(_from_string(payload), preserving_proto_field_name=True)
        calls = {}
        for name, make in makers.items():
            sink = Count()
            call = make(sink)
            call(item)
            assert sink.count == 1 and sink.last == expected, f"{name} decoded {kind} differently"
            calls[name] = (sink, call)
        for round_index in range(rounds):
            names = list(calls)
            names = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in names:
                sink, call = calls[name]
                count = pushes if name != "reference" and name != "raw picows + protobuf" else max(1, pushes // 10)
                sink.count = 0
                start = time.perf_counter()
                for _ in range(count):
                    call(item)
                elapsed = time.perf_counter() - start
                assert sink.count == count
                samples.setdefault((kind, name), []).append(elapsed / count)
    results: dict[str, dict[str, float]] = {}
    for (kind, name), values in samples.items():
        results.setdefault(kind, {})[name] = statistics.median(values)
    return results


def table(results: dict[str, dict[str, float]]) -> str:
    """The results as a Markdown table, with ratios against the reference."""
    lines = ["| push | bytes | reference us | fast decoder us | raw picows + protobuf us | fastws path us "
             "| fast vs reference | fastws path vs raw picows + protobuf |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind, row in results.items():
        size = len(PUSHES[kind]())
        lines.append(f"| {kind} | {size} | {row['reference'] * 1e6:.2f} | {row['fast decoder'] * 1e6:.2f} | "
                     f"{row['raw picows + protobuf'] * 1e6:.2f} | {row['fastws path'] * 1e6:.2f} | "
                     f"{row['reference'] / row['fast decoder']:.1f}x | "
                     f"{row['raw picows + protobuf'] / row['fastws path']:.1f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=20_000, help="pushes per round for the fast peers "
                        "(a tenth for the protobuf ones)")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(f"## MEXC per push, in-process (median of {args.rounds} rounds)\n")
    print(table(measure(args.pushes, args.rounds)))


if __name__ == "__main__":
    main()
