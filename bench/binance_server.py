"""Binance-shaped feed server for the Binance benchmarks, run in its own process.

Usage: ``python bench/binance_server.py [PER_STREAM]``; prints its port, then
serves until killed. On any path it takes text frames:

- ``BLAST <kind> <n>``: write ``n`` pre-built combined-stream frames of ``kind``
  (a ``bench/binance_payloads.py`` kind, or ``mix``), cycling through that
  kind's payloads, in one write: the server costs almost nothing and the
  client is the bottleneck;
- ``PACE <rate> <n>``: send ``n`` ``btcusdt@trade`` frames at ``rate`` a
  second, each with its trade id ``t`` set to this machine's
  ``time.monotonic_ns()`` when it is written (the latency benchmark's ticks:
  ``CLOCK_MONOTONIC`` is one clock for every process of the machine);
- ``{"method": ..., "id": N}`` (``SUBSCRIBE``, ``UNSUBSCRIBE``...): answered by
  ``exchanges.binance.control.BinanceControl``, as the simulator answers them
  (stream names are not checked).
"""
from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import msgspec
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from bench.binance_payloads import build_payloads  # noqa: E402
from bench.server import server_frame  # noqa: E402
from exchanges.binance.control import BinanceControl, StreamSet, encode_reply  # noqa: E402
from fastws.testing.feed import text_request  # noqa: E402


_encode = msgspec.json.Encoder().encode
_CONTROL = BinanceControl(validate=False)


async def pace(transport: WSTransport, tick: dict[str, Any], rate: float, count: int) -> None:
    """Send ``count`` copies of ``tick`` at ``rate`` a second, each stamped when written."""
    loop = asyncio.get_running_loop()
    data = tick["data"]
    start = loop.time()
    for index in range(count):
        delay = start + index / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if transport.is_disconnected:
            return
        data["t"] = time.monotonic_ns()
        transport.send(WSMsgType.TEXT, _encode(tick))


class BinanceBenchListener(WSListener):
    def __init__(self, frames: dict[str, list[bytes]], blobs: dict[tuple[str, int], bytes],
                 tick: bytes) -> None:
        super().__init__()
        self.frames = frames
        self.blobs = blobs
        self.tick: dict[str, Any] = msgspec.json.decode(tick)
        self.tasks: set[asyncio.Task[None]] = set()
        self.session = StreamSet()

    def blast(self, kind: str, count: int) -> bytes:
        blob = self.blobs.get((kind, count))
        if blob is None:
            frames = self.frames[kind]
            blob = self.blobs[kind, count] = b"".join(frames[i % len(frames)] for i in range(count))
        return blob

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        text = text_request(transport, frame)
        if text is None:
            return
        if text.startswith(b"BLAST "):
            _, kind, count = text.decode().split()
            transport.underlying_transport.write(self.blast(kind, int(count)))
        elif text.startswith(b"PACE "):
            _, rate, count = text.decode().split()
            task = asyncio.get_running_loop().create_task(pace(transport, self.tick, float(rate), int(count)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            transport.send(WSMsgType.TEXT, encode_reply(_CONTROL.handle(self.session, text)))


async def main(per_stream: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    payloads = build_payloads(per_stream)
    frames = {kind: [server_frame(p) for p in items] for kind, items in payloads.items()}
    blobs: dict[tuple[str, int], bytes] = {}
    tick = payloads["trade"][0]
    server = await ws_create_server(lambda request: BinanceBenchListener(frames, blobs, tick), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 64))
