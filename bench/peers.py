"""The clients compared by the benchmarks, each receiving the same frames.

Every client decodes each ~250-byte depth message to a dict and hands it to a
handler that counts it; a round asks the server (``bench/server.py``, its own
process) for ``n`` messages and ends when the handler has seen them all.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import msgspec
import websockets
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from fastws import ConnectionState, ExchangeName, StreamType, create_websocket_config
from fastws.testing import LoopbackFeedClient

HERE = os.path.dirname(os.path.abspath(__file__))
# Enum member lookups cost ~85 ns each on CPython 3.11: adapters hoist them.
ORDERBOOK = StreamType.ORDERBOOK


@contextmanager
def server_process(script: str, *args: str) -> Iterator[int]:
    """Run ``bench/<script>`` in its own process; yield the port it prints first."""
    process = subprocess.Popen([sys.executable, os.path.join(HERE, script), *args],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield int(process.stdout.readline())
    finally:
        process.kill()
        process.wait()


@contextmanager
def bench_server() -> Iterator[str]:
    """Start ``bench/server.py`` in its own process; yield its URL."""
    with server_process("server.py") as port:
        yield f"ws://127.0.0.1:{port}/stream"


class Counter:
    """Counts messages and completes a future when a round's target is reached."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done: Optional[asyncio.Future[None]] = None

    def arm(self, target: int) -> asyncio.Future[None]:
        self.count = 0
        self.target = target
        self.done = asyncio.get_running_loop().create_future()
        return self.done

    def on_message(self, message: Any) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set_result(None)  # type: ignore[union-attr]

    async def on_message_async(self, message: Any) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set_result(None)  # type: ignore[union-attr]


class SeedStyleClient(LoopbackFeedClient):
    """fastws as the interface standard writes an adapter: async parse with msgspec."""

    async def _parse_message(self, raw_message: Any) -> Optional[dict[str, Any]]:
        message = self._decode(raw_message)
        if "result" in message:
            self._resolve_ack(message["id"])
            return None
        return message

    def _extract_stream_info(self, message: dict[str, Any]) -> Optional[tuple[str, StreamType]]:
        return message["stream"], ORDERBOOK


class FastwsPeer:
    """fastws, seed style: async parser (msgspec to dict), async handler."""

    name = "fastws"

    def __init__(self, url: str) -> None:
        self.counter = Counter()
        config = create_websocket_config(url, max_messages_per_second=1000.0, stale_timeout=None)
        self.client = SeedStyleClient(ExchangeName("bench"), config, self.counter.on_message_async)

    async def open(self) -> None:
        await self.client.start()

    async def run(self, count: int) -> None:
        done = self.counter.arm(count)
        await self.client.send_message(f"BLAST {count}")
        await done

    async def close(self) -> None:
        await self.client.stop()


class _RawListener(WSListener):
    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self.on_message = counter.on_message
        self.decode = msgspec.json.Decoder().decode

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.on_message(self.decode(frame.get_payload_as_memoryview()))


class RawPicowsPeer:
    """A raw picows listener written in Python: msgspec decode, sync handler."""

    name = "raw picows"

    def __init__(self, url: str) -> None:
        self.url = url
        self.counter = Counter()
        self.transport: Optional[WSTransport] = None

    async def open(self) -> None:
        self.transport, _ = await ws_connect(lambda: _RawListener(self.counter), self.url)

    async def run(self, count: int) -> None:
        done = self.counter.arm(count)
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, f"BLAST {count}".encode())
        await done

    async def close(self) -> None:
        assert self.transport is not None
        self.transport.disconnect()
        await self.transport.wait_disconnected()


class WebsocketsPeer:
    """The ``websockets`` library with ``json.loads``."""

    name = "websockets"

    def __init__(self, url: str) -> None:
        self.url = url
        self.counter = Counter()
        self.ws: Any = None

    async def open(self) -> None:
        self.ws = await websockets.connect(self.url, compression=None, max_size=2**24)

    async def run(self, count: int) -> None:
        await self.ws.send(f"BLAST {count}")
        on_message = self.counter.on_message
        self.counter.arm(count)
        for _ in range(count):
            on_message(json.loads(await self.ws.recv()))

    async def close(self) -> None:
        await self.ws.close()


PEERS: list[Callable[[str], Any]] = [FastwsPeer, RawPicowsPeer, WebsocketsPeer]


async def time_rounds(peer: Any, count: int, rounds: int) -> list[float]:
    """Seconds per message of each round, for one peer (after a warm-up round)."""
    await peer.open()
    try:
        await peer.run(count)
        results = []
        for _ in range(rounds):
            start = time.perf_counter()
            await peer.run(count)
            results.append((time.perf_counter() - start) / count)
        return results
    finally:
        await peer.close()


async def reconnect_times(url: str, drops: int) -> list[float]:
    """Seconds from asking the server to drop to the first message after resubscribe."""
    counter = Counter()
    # Drops come every few ms here; a short healthy_after lets each connection
    # count as healthy before the next drop, so every drop is measured as a
    # single drop (first retry immediate) rather than as a flapping server
    # (which the default policy backs off from, on purpose).
    config = create_websocket_config(url, max_messages_per_second=1000.0, stale_timeout=None,
                                     healthy_after=0.002)
    client = SeedStyleClient(ExchangeName("bench-reconnect"), config, counter.on_message_async)
    await client.start()
    await client.subscribe(["btcusdt@depth"])
    results = []
    try:
        for _ in range(drops):
            done = counter.arm(1)
            start = time.perf_counter()
            await client.send_message("DROP")
            await asyncio.wait_for(done, 5.0)
            results.append(time.perf_counter() - start)
            await client.wait_for_state(ConnectionState.CONNECTED, timeout=5.0)
            await asyncio.sleep(0.01)
    finally:
        await client.stop()
    return results
