"""Many connections in one process: memory, connect time and CPU per connection.

``scale(url, counts, ...)`` runs, for each connection count, a fresh client
process (``python bench/scale.py CLIENT URL N RATE WINDOW``) against
``bench/server.py`` (its own process) that:

1. opens and closes one connection (imports and caches warm), then reads its RSS;
2. opens ``N`` connections, at most ``CONCURRENT_CONNECTS`` at a time, and
   subscribes each to one stream: each connection's connect time, and the
   time until all are up;
3. reads its RSS again after a short rest: the difference over ``N`` is the
   RSS per idle connection;
4. asks the server to feed every connection ``RATE`` messages a second and
   counts, over ``WINDOW`` seconds, the messages handled and its CPU time.

It prints the figures as one JSON line. ``CLIENT`` is ``fastws``
(``LoopbackFeedClient``: the base class and the frame core) or ``raw``
(a picows listener decoding with msgspec), the floor for the same work.
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Optional

HERE = os.path.dirname(os.path.abspath(__file__))

__all__ = ["CLIENTS", "CONCURRENT_CONNECTS", "ScaleResult", "scale"]

CLIENTS = ("fastws", "raw")
CONCURRENT_CONNECTS = 100
"""Connections opened at the same time (a bigger burst only fills the listen backlog)."""
STREAM = "btcusdt@depth"


@dataclass
class ScaleResult:
    """The figures of one client process with ``connections`` connections."""

    client: str
    connections: int
    rss_per_connection_kb: float
    rss_total_mb: float
    connect_p50_ms: float
    connect_p99_ms: float
    connect_max_ms: float
    connect_all_s: float
    rate_per_connection: float
    messages_per_second: float
    cpu_percent: float
    cpu_percent_per_connection: float


def scale(url: str, counts: list[int], rate: float, window: float,
          clients: tuple[str, ...] = CLIENTS, timeout: float = 180.0) -> list[ScaleResult]:
    """One client process per client kind and connection count; their figures.

    Args:
        url: URL of ``bench/server.py``.
        counts: Connection counts.
        rate: Messages per second the server sends each connection.
        window: Seconds over which messages and CPU time are counted.
        clients: Client kinds (``CLIENTS``).
        timeout: Seconds a client process may take.
    """
    results = []
    for count in counts:
        for client in clients:
            command = [sys.executable, os.path.abspath(__file__), client, url, str(count), str(rate), str(window)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"scale client {client} x{count} failed: {last}")
            results.append(ScaleResult(**json.loads(done.stdout.strip().splitlines()[-1])))
    return results


# ------------------------------------------------------------ the client process
def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Count:
    """A handler counting every message of every connection."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: Any) -> None:
        self.count += 1


class _FastwsConnection:
    def __init__(self, url: str, sink: _Count) -> None:
        from fastws import ExchangeName, create_websocket_config
        from fastws.testing import LoopbackFeedClient

        config = create_websocket_config(url, max_messages_per_second=1000.0, stale_timeout=None)
        self.client = LoopbackFeedClient(ExchangeName("bench-scale"), config, sink)

    async def open(self) -> None:
        await self.client.start()
        await self.client.subscribe([STREAM])

    async def send(self, text: str) -> None:
        await self.client.send_message(text)

    async def close(self) -> None:
        await self.client.stop()


class _RawConnection:
    def __init__(self, url: str, sink: _Count) -> None:
        self.url = url
        self.sink = sink
        self.transport: Any = None
        self.acked: Optional[asyncio.Future[None]] = None

    async def open(self) -> None:
        import msgspec
        from picows import WSListener, WSMsgType, ws_connect

        decode = msgspec.json.Decoder().decode
        sink = self.sink
        text = WSMsgType.TEXT
        connection = self
        self.acked = asyncio.get_running_loop().create_future()

        class Listener(WSListener):
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == text:
                    message = decode(frame.get_payload_as_memoryview())
                    if "stream" in message:
                        sink(message)
                    elif connection.acked is not None and not connection.acked.done():
                        connection.acked.set_result(None)

        self.transport, _ = await ws_connect(Listener, self.url)
        self.transport.send(text, json.dumps({"method": "SUBSCRIBE", "params": [STREAM], "id": 1}).encode())
        await asyncio.wait_for(self.acked, 10.0)

    async def send(self, message: str) -> None:
        from picows import WSMsgType
        self.transport.send(WSMsgType.TEXT, message.encode())

    async def close(self) -> None:
        self.transport.disconnect()
        await asyncio.wait_for(self.transport.wait_disconnected(), 10.0)


async def _measure(client: str, url: str, count: int, rate: float, window: float) -> ScaleResult:
    make = _FastwsConnection if client == "fastws" else _RawConnection
    sink = _Count()
    warm = make(url, sink)
    await warm.open()
    await warm.close()
    gc.collect()
    rss_before = _rss_bytes()
    connections = [make(url, sink) for _ in range(count)]
    gate = asyncio.Semaphore(CONCURRENT_CONNECTS)
    connect_times: list[float] = []

    async def open_one(connection: Any) -> None:
        async with gate:
            start = time.perf_counter()
            await connection.open()
            connect_times.append(time.perf_counter() - start)

    start_all = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(open_one(c) for c in connections)), 120.0)
    connect_all = time.perf_counter() - start_all
    try:
        await asyncio.sleep(0.5)
        gc.collect()
        rss_idle = _rss_bytes()
        for connection in connections:
            await connection.send(f"FEED {rate:g}")
        await asyncio.sleep(min(1.0, window))        # every feed running
        sink.count = 0
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        await asyncio.sleep(window)
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
        received = sink.count
    finally:
        await asyncio.wait_for(asyncio.gather(*(c.close() for c in connections), return_exceptions=True), 120.0)
    connect_ms = sorted(t * 1e3 for t in connect_times)
    cpu_percent = cpu / wall * 100.0
    return ScaleResult(
        client=client, connections=count,
        rss_per_connection_kb=(rss_idle - rss_before) / count / 1024,
        rss_total_mb=rss_idle / 2**20,
        connect_p50_ms=statistics.median(connect_ms),
        connect_p99_ms=connect_ms[min(len(connect_ms) - 1, int(len(connect_ms) * 0.99))],
        connect_max_ms=connect_ms[-1],
        connect_all_s=connect_all,
        rate_per_connection=rate,
        messages_per_second=received / wall,
        cpu_percent=cpu_percent,
        cpu_percent_per_connection=cpu_percent / count,
    )


def _main() -> None:
    import dataclasses
    import logging

    import uvloop

    sys.path.insert(0, os.path.dirname(HERE))
    logging.basicConfig(level=logging.ERROR)
    client, url, count, rate, window = sys.argv[1:6]
    if client not in CLIENTS:
        raise SystemExit(f"client must be one of {', '.join(CLIENTS)}, not {client!r}")
    result = uvloop.run(_measure(client, url, int(count), float(rate), float(window)))
    print(json.dumps(dataclasses.asdict(result)), flush=True)


if __name__ == "__main__":
    _main()
