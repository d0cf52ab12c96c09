"""Per-message cost of receiving a permessage-deflate stream: fastws beside
websockets and aiohttp, in one run.

A server in its own process answers every upgrade with ``permessage-deflate``
and writes one pre-built byte stream: ``--messages`` Binance payloads (the
``mix``), each compressed with one shared context as a server with context
takeover does, so the server costs nothing per message. Each client receives
the whole stream and hands every message, inflated, to a counting no-op
handler (no JSON parsing: the figure is receive + inflate + dispatch). The
client sends one frame to start the stream; the time from sending it to the
last message, divided by the messages, is the per-message cost (one loopback
round trip included, the same for all). ``fastws plain`` receives the same messages
uncompressed, for the cost of inflating itself. Rounds interleave the peers
(rotating their order); figures are medians.

Usage: python bench/compression_bench.py [--messages N] [--rounds R]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import multiprocessing
import os
import statistics
import struct
import sys
import time
import zlib
from typing import Any, Awaitable, Callable, Optional

import aiohttp
import uvloop
import websockets

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.binance_payloads import MIX, build_payloads  # noqa: E402
from fastws import (BaseWebSocketInterface, ExchangeName, StreamType, SubscriptionAction,  # noqa: E402
                    create_websocket_config)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, rsv1: bool) -> bytes:
    """One unmasked server TEXT frame."""
    first = 0x81 | (0x40 if rsv1 else 0)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first, size)
    elif size < 65536:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


def build_stream(payloads: list[bytes], compressed: bool) -> bytes:
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    frames = []
    for payload in payloads:
        if compressed:
            data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            frames.append(frame(data[:-4], True))
        else:
            frames.append(frame(payload, False))
    return b"".join(frames)


def serve(port_out: Any, streams: dict[str, bytes]) -> None:
    """The blaster: upgrade (accepting permessage-deflate on /deflate), then the stream."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        lines = request.decode().split("\r\n")
        path = lines[0].split()[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest())
        extension = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if path == "/deflate" else b""
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extension + b"\r\n")
        try:
            # The client's first frame starts the stream: every peer's clock
            # then covers the parsing and inflating of every message.
            await reader.read(1)
            writer.write(streams[path])
            await reader.read()          # until the client closes
        except ConnectionError:
            pass
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_out.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    uvloop.run(main())


class Timing:
    """Counts messages; notes the first and the last."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.start = 0.0
        self.last = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message(self, message: Any) -> None:
        self.count += 1
        if self.count == self.total:
            self.last = time.perf_counter()
            self.done.set_result(None)

    def per_message_ns(self) -> float:
        return (self.last - self.start) / self.total * 1e9


class CountingClient(BaseWebSocketInterface):
    """fastws with a no-op parser: measures the core's receive + inflate + dispatch."""

    async def _connect(self) -> None:
        await self._open_websocket()

    async def _send_subscription_message(self, streams: list[str], action: SubscriptionAction) -> None:
        return None

    def _parse_message(self, raw_message: Any) -> int:  # type: ignore[override]
        return 1

    def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:
        return None


async def run_fastws(url: str, total: int, compressed: bool) -> float:
    timing = Timing(total)
    config = create_websocket_config(url, enable_compression=compressed, max_frame_size=1 << 24)
    client = CountingClient(ExchangeName("bench"), config, timing.on_message)
    async with client:
        timing.start = time.perf_counter()
        await client.send_message("go")
        await asyncio.wait_for(timing.done, 60)
        assert client._core is not None and client._core.deflate_enabled == compressed
    return timing.per_message_ns()


async def run_websockets(url: str, total: int) -> float:
    timing = Timing(total)
    async with websockets.connect(url, max_size=None, ping_interval=None) as ws:
        timing.start = time.perf_counter()
        await ws.send("go")
        for _ in range(total):
            timing.on_message(await ws.recv(decode=False))
    return timing.per_message_ns()


async def run_aiohttp(url: str, total: int) -> float:
    timing = Timing(total)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, compress=15, max_msg_size=0, autoping=False) as ws:
            timing.start = time.perf_counter()
            await ws.send_str("go")
            for _ in range(total):
                message = await ws.receive()
                assert message.type == aiohttp.WSMsgType.TEXT
                timing.on_message(message.data)
    return timing.per_message_ns()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    payloads = build_payloads()[MIX]
    messages = [payloads[i % len(payloads)] for i in range(args.messages)]
    compressed = build_stream(messages, True)
    streams = {"/deflate": compressed, "/plain": build_stream(messages, False)}
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    server = ctx.Process(target=serve, args=(ports, streams), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        base = f"ws://127.0.0.1:{port}"
        peers: dict[str, Callable[[], Awaitable[float]]] = {
            "fastws": lambda: run_fastws(f"{base}/deflate", args.messages, True),
            "websockets": lambda: run_websockets(f"{base}/deflate", args.messages),
            "aiohttp": lambda: run_aiohttp(f"{base}/deflate", args.messages),
            "fastws plain": lambda: run_fastws(f"{base}/plain", args.messages, False),
        }

        async def rounds() -> dict[str, list[float]]:
            samples: dict[str, list[float]] = {name: [] for name in peers}
            names = list(peers)
            for index in range(args.rounds):
                for name in names[index % len(names):] + names[:index % len(names)]:
                    samples[name].append(await peers[name]())
            return samples

        samples = uvloop.run(rounds())
    finally:
        server.kill()
        server.join()
    raw = sum(map(len, messages))
    print(f"## Receiving a permessage-deflate stream: ns/message (median of {args.rounds} rounds x "
          f"{args.messages} Binance messages, {raw / args.messages:.0f} B raw, "
          f"{(len(compressed)) / args.messages:.0f} B on the wire)\n")
    print("| client | ns/message | vs fastws |")
    print("| --- | ---: | ---: |")
    ref = statistics.median(samples["fastws"])
    for name, values in samples.items():
        value = statistics.median(values)
        print(f"| {name}{' (uncompressed stream)' if name == 'fastws plain' else ''} | {value:.0f} | "
              f"{value / ref:.2f}x |")


if __name__ == "__main__":
    main()
