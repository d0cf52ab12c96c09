"""Binance-shaped feed server for the Binance benchmarks, run in its own process.

Usage: ``python bench/binance_server.py [PER_STREAM]``; prints its port, then
serves until killed. On any path it takes text frames:

- ``BLAST <kind> <n>``: write ``n`` pre-built combined-stream frames of ``kind``
  (a ``bench/binance_payloads.py`` kind, or ``mix``), cycling through that
  kind's payloads, in one write: the server costs almost nothing and the
  client is the bottleneck;
- ``{"method": ..., "id": N}`` (``SUBSCRIBE``, ``UNSUBSCRIBE``...): acked with
  ``{"result":null,"id":N}``, as Binance does.
"""
from __future__ import annotations

import asyncio
import logging
import sys

import msgspec
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from bench.binance_payloads import build_payloads  # noqa: E402
from bench.server import server_frame  # noqa: E402
from fastws.testing.feed import text_request  # noqa: E402


class BinanceBenchListener(WSListener):
    def __init__(self, frames: dict[str, list[bytes]], blobs: dict[tuple[str, int], bytes]) -> None:
        super().__init__()
        self.frames = frames
        self.blobs = blobs

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
        else:
            request = msgspec.json.decode(text)
            transport.send(WSMsgType.TEXT, msgspec.json.encode({"result": None, "id": request.get("id")}))


async def main(per_stream: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    frames = {kind: [server_frame(p) for p in payloads] for kind, payloads in build_payloads(per_stream).items()}
    blobs: dict[tuple[str, int], bytes] = {}
    server = await ws_create_server(lambda request: BinanceBenchListener(frames, blobs), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 64))
