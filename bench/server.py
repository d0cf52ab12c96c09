"""Feed server for the benchmarks, run in its own process.

A ``fastws.testing.FeedServer`` speaking the loopback feed protocol (``SUBSCRIBE``
with ids, acks: its ``SubscribeControl``), plus three benchmark commands sent as
text frames:

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

import uvloop
from picows import WSCloseCode, WSMsgType

sys.path.insert(0, __file__.rsplit("/", 2)[0])
from fastws.testing.feed import FeedConnection, FeedServer, SubscribeControl, depth_message  # noqa: E402

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


class BenchControl(SubscribeControl):
    """The loopback feed protocol and the benchmark commands (see the module docstring)."""

    def __init__(self) -> None:
        self.sequences: dict[FeedConnection, int] = {}
        self.intervals: dict[FeedConnection, float] = {}

    def __call__(self, connection: FeedConnection, text: bytes) -> None:
        transport = connection.transport
        assert transport is not None
        if text.startswith(b"BLAST "):
            transport.underlying_transport.write(blast(int(text[6:])))
        elif text.startswith(b"FEED "):
            start = connection not in self.intervals
            self.intervals[connection] = 1.0 / float(text[5:])
            if start:
                self.feed(connection)
        elif text == b"DROP":
            transport.send_close(WSCloseCode.GOING_AWAY)
            transport.disconnect()
        else:
            super().__call__(connection, text)

    def applied(self, connection: FeedConnection, method: str, streams: list[str]) -> None:
        if method == "SUBSCRIBE" and connection.transport is not None:
            for stream in streams:
                connection.transport.send(WSMsgType.TEXT, depth_message(stream, 1))

    def feed(self, connection: FeedConnection) -> None:
        """Send one depth message and schedule the next (``FEED``), until the connection closes."""
        transport = connection.transport
        if transport is None or transport.is_disconnected:
            self.intervals.pop(connection, None)
            self.sequences.pop(connection, None)
            return
        sequence = self.sequences[connection] = self.sequences.get(connection, 0) + 1
        transport.send(WSMsgType.TEXT, depth_message(STREAM, sequence))
        asyncio.get_running_loop().call_later(self.intervals[connection], self.feed, connection)


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    # The scale benchmark connects 1000 clients at once.
    server = FeedServer(control=BenchControl(), backlog=4096)
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main())
