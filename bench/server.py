"""Feed server for the benchmarks, run in its own process.

Speaks the loopback feed protocol (``SUBSCRIBE`` with ids, acks), and three
benchmark commands sent as text frames:

- ``BLAST <n>``: write ``n`` pre-built ~250-byte depth frames in one write, so
  that the server costs almost nothing and the client is the bottleneck;
- ``DROP``: close the connection with 1001 (the client reconnects);
- ``FEED <rate>``: from now on send this connection ``rate`` depth messages a
  second, until it closes (the scale benchmark's load);
- a ``SUBSCRIBE`` is acked and then answered at once with one depth message per
  stream, so "first message after resubscribe" is measurable.

Prints the port on stdout, then serves until killed.
"""
from __future__ import annotations

import asyncio
import logging
import struct
import sys

import msgspec
import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from fastws.testing.feed import depth_message, text_request  # noqa: E402

STREAM = "btcusdt@depth"


def server_frame(payload: bytes) -> bytes:
    """An unmasked server-to-client TEXT frame."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


_blobs: dict[int, bytes] = {}


def blast(count: int) -> bytes:
    blob = _blobs.get(count)
    if blob is None:
        blob = b"".join(server_frame(depth_message(STREAM, i + 1, 1_700_000_000_000 + i)) for i in range(count))
        _blobs[count] = blob
    return blob


class BenchListener(WSListener):
    def __init__(self) -> None:
        super().__init__()
        self.transport: WSTransport | None = None
        self.sequence = 0
        self.interval = 0.0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.interval = 0.0           # ends the feed at its next tick

    def feed(self) -> None:
        """Send one depth message and schedule the next (``FEED``)."""
        if self.interval <= 0.0 or self.transport is None:
            return
        self.sequence += 1
        self.transport.send(WSMsgType.TEXT, depth_message(STREAM, self.sequence))
        asyncio.get_running_loop().call_later(self.interval, self.feed)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        text = text_request(transport, frame)
        if text is None:
            return
        if text.startswith(b"BLAST "):
            transport.underlying_transport.write(blast(int(text[6:])))
        elif text.startswith(b"FEED "):
            start = self.interval <= 0.0
            self.interval = 1.0 / float(text[5:])
            if start:
                self.feed()
        elif text == b"DROP":
            transport.send_close(WSCloseCode.GOING_AWAY)
            transport.disconnect()
        else:
            request = msgspec.json.decode(text)
            transport.send(WSMsgType.TEXT, msgspec.json.encode({"result": None, "id": request.get("id")}))
            if request.get("method") == "SUBSCRIBE":
                for stream in request.get("params", []):
                    transport.send(WSMsgType.TEXT, depth_message(stream, 1))


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    server = await ws_create_server(lambda request: BenchListener(), "127.0.0.1", 0,
                                    backlog=4096)   # the scale benchmark connects 1000 clients at once
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
