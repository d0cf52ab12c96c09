"""FaultProxy on its own: an echo server on 127.0.0.1 behind it, each fault seen from both ends."""
from __future__ import annotations

import asyncio
import socket
import time
from typing import AsyncIterator, Awaitable, Callable, Optional, cast

import pytest

from fastws.testing import FaultProxy
from tests.conftest import open_fds, other_tasks, until

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class EchoServer:
    """An echo server on 127.0.0.1 (protocol-based: no task per connection) that records what it saw.

    Attributes:
        connections: Connections accepted.
        reads: Size of every read, in order.
        ends: How each connection ended: "eof" (a FIN came first), then
            "closed" or the exception type's name at ``connection_lost``.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.reads: list[int] = []
        self.ends: list[str] = []
        self.port = 0
        self._server: Optional[asyncio.AbstractServer] = None
        self._transports: set[asyncio.BaseTransport] = set()

    async def __aenter__(self) -> "EchoServer":
        self._server = await asyncio.get_running_loop().create_server(lambda: _Echo(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        await asyncio.wait_for(self._server.wait_closed(), 5)


class _Echo(asyncio.Protocol):
    def __init__(self, server: EchoServer) -> None:
        self.server = server
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server.connections += 1
        self.server._transports.add(transport)

    def data_received(self, data: bytes) -> None:
        self.server.reads.append(len(data))
        assert self.transport is not None
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.server.ends.append("eof")
        return False        # close once the echo is flushed

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.server.ends.append("closed" if exc is None else type(exc).__name__)
        self.server._transports.discard(self.transport)  # type: ignore[arg-type]


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    async with EchoServer() as server:
        yield server


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo.port) as proxy:
        yield proxy


async def connect(proxy: FaultProxy) -> Streams:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proxy.port), 5)


async def roundtrip(streams: Streams, payload: bytes, timeout: float = 5.0) -> bytes:
    reader, writer = streams
    writer.write(payload)
    return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)


async def silent(streams: Streams, seconds: float = 0.3) -> bool:
    """True if nothing (not even EOF) arrives within ``seconds``."""
    try:
        await asyncio.wait_for(streams[0].read(1), seconds)
    except asyncio.TimeoutError:
        return True
    return False


def close(streams: Streams) -> None:
    streams[1].transport.abort()


async def test_forwards_both_ways_and_counts(proxy: FaultProxy, echo: EchoServer) -> None:
    first, second = await connect(proxy), await connect(proxy)
    assert await roundtrip(first, b"hello") == b"hello"
    assert await roundtrip(second, b"x" * 100_000) == b"x" * 100_000
    assert proxy.connections_accepted == 2 and proxy.live_connections == 2 and echo.connections == 2
    assert proxy.bytes_to_upstream == proxy.bytes_to_client == 100_005
    assert proxy.url() == f"ws://127.0.0.1:{proxy.port}"
    assert proxy.url("/stream", scheme="wss") == f"wss://127.0.0.1:{proxy.port}/stream"
    # A half-close travels through: the echo server sees the FIN, answers, closes.
    reader, writer = first
    writer.write(b"last")
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"last"
    await until(lambda: proxy.live_connections == 1)
    assert echo.ends == ["eof", "closed"]
    close(second)


async def test_cut_is_a_fin_on_both_sides(proxy: FaultProxy, echo: EchoServer) -> None:
    streams = await connect(proxy)
    await roundtrip(streams, b"ping")
    proxy.cut()
    assert await asyncio.wait_for(streams[0].read(100), 5) == b""
    await until(lambda: "eof" in echo.ends and proxy.live_connections == 0)
    close(streams)


async def test_reset_is_a_rst_on_both_sides(proxy: FaultProxy, echo: EchoServer) -> None:
    streams = await connect(proxy)
    await roundtrip(streams, b"ping")
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(streams[0].read(100), 5)
    await until(lambda: echo.ends == ["ConnectionResetError"] and proxy.live_connections == 0)
    close(streams)


async def test_blackhole_holds_everything_until_restore(proxy: FaultProxy, echo: EchoServer) -> None:
    muted = await connect(proxy)
    await roundtrip(muted, b"before")
    proxy.blackhole()
    muted[1].write(b"held")
    assert await silent(muted)
    assert echo.reads == [6] and not muted[1].is_closing() and proxy.live_connections == 1
    # Later connections are not blackholed.
    fresh = await connect(proxy)
    assert await roundtrip(fresh, b"fresh") == b"fresh"
    # Even a FIN is held, like a packet in a partition.
    fresh_reads = len(echo.reads)
    muted[1].write_eof()
    assert await silent(muted) and echo.ends == [] and len(echo.reads) == fresh_reads
    proxy.restore()
    assert await asyncio.wait_for(muted[0].read(), 5) == b"held"
    await until(lambda: echo.ends == ["eof", "closed"])
    close(muted)
    close(fresh)


async def test_delay_adds_latency_each_way(proxy: FaultProxy) -> None:
    streams = await connect(proxy)
    await roundtrip(streams, b"warm")
    proxy.delay(0.15)
    started = time.monotonic()
    assert await roundtrip(streams, b"slow") == b"slow"
    elapsed = time.monotonic() - started
    assert elapsed >= 0.28, elapsed     # 0.15 s up + 0.15 s down (timers may fire 1 ms early)
    # Latency, not a cap on throughput: chunks in flight overlap.
    started = time.monotonic()
    reader, writer = streams
    for i in range(5):
        writer.write(bytes([i]))
        await asyncio.sleep(0.02)
    assert await asyncio.wait_for(reader.readexactly(5), 5) == bytes(range(5))
    assert time.monotonic() - started >= 0.3
    proxy.delay(0)
    assert await roundtrip(streams, b"fast") == b"fast"
    with pytest.raises(ValueError):
        proxy.delay(-1)
    close(streams)


async def test_throttle_bounds_throughput(proxy: FaultProxy) -> None:
    streams = await connect(proxy)
    proxy.throttle(50_000)
    payload = bytes(range(256)) * 160         # 40 960 bytes: 0.8 s each way, both ways at once
    started = time.monotonic()
    assert await roundtrip(streams, payload, timeout=15) == payload
    elapsed = time.monotonic() - started
    assert elapsed >= 0.7, elapsed
    proxy.throttle(None)
    assert await roundtrip(streams, payload * 10) == payload * 10
    with pytest.raises(ValueError):
        proxy.throttle(0)
    close(streams)


async def test_split_writes_deliver_the_same_bytes_one_at_a_time(proxy: FaultProxy, echo: EchoServer) -> None:
    streams = await connect(proxy)
    proxy.split_writes(True)
    payload = bytes(range(256)) * 4
    assert await roundtrip(streams, payload) == payload
    # The echo server read the request in (almost only) 1-byte pieces.
    assert sum(echo.reads) == len(payload) and len(echo.reads) >= len(payload) // 2, echo.reads[:20]
    proxy.split_writes(False)
    reads = len(echo.reads)
    assert await roundtrip(streams, payload) == payload
    assert len(echo.reads) - reads < 10
    close(streams)


async def test_refuse_resets_new_connections_for_a_while(proxy: FaultProxy, echo: EchoServer) -> None:
    live = await connect(proxy)
    proxy.refuse(0.5)
    assert proxy.refusing
    refused = await connect(proxy)            # the TCP handshake completes, then a RST
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(refused[0].read(10), 5)
    close(refused)
    assert proxy.connections_refused == 1 and proxy.connections_accepted == 1 and echo.connections == 1
    assert await roundtrip(live, b"still up") == b"still up"    # live connections are not touched
    await until(lambda: not proxy.refusing)
    assert await roundtrip(await connect(proxy), b"back") == b"back"
    proxy.refuse(10)
    proxy.refuse(0)             # ends a refusal at once
    assert not proxy.refusing


async def test_stall_accepts_and_forwards_nothing(proxy: FaultProxy, echo: EchoServer) -> None:
    proxy.stall_handshake(True)
    stalled = await connect(proxy)
    stalled[1].write(b"GET / HTTP/1.1\r\n\r\n")
    assert await silent(stalled)
    assert echo.connections == 0 and proxy.connections_stalled == 1 and proxy.live_connections == 1
    proxy.stall_handshake(False)
    fresh = await connect(proxy)
    assert await roundtrip(fresh, b"ok") == b"ok"
    assert await silent(stalled, 0.1)         # a stalled connection stays stalled
    stalled[1].close()
    await until(lambda: proxy.live_connections == 1)
    close(fresh)


async def test_an_unreachable_upstream_closes_the_client() -> None:
    with socket.socket() as sock:            # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with FaultProxy("127.0.0.1", port) as proxy:
        streams = await connect(proxy)
        assert await asyncio.wait_for(streams[0].read(10), 5) == b""
        await until(lambda: proxy.live_connections == 0)
        close(streams)


async def test_stop_leaves_no_task_or_fd(echo: EchoServer) -> None:
    tasks, fds = other_tasks(), open_fds()
    proxy = FaultProxy("127.0.0.1", echo.port)
    await proxy.start()
    clients = [await connect(proxy) for _ in range(2)]
    await roundtrip(clients[0], b"a")
    proxy.blackhole()                         # held bytes on the first two
    clients[0][1].write(b"held")
    proxy.delay(5)                            # a timer pending on the next
    clients.append(await connect(proxy))
    clients[-1][1].write(b"late")
    proxy.delay(0)
    proxy.throttle(10)                        # a throttled backlog
    clients.append(await connect(proxy))
    clients[-1][1].write(b"x" * 1000)
    proxy.stall_handshake(True)
    clients.append(await connect(proxy))
    proxy.refuse(10)                          # a refusal timer
    await until(lambda: proxy.live_connections == 5)
    await proxy.stop()
    await proxy.stop()                        # twice is fine
    assert proxy.live_connections == 0
    for streams in clients:                   # every client sees its connection end
        try:
            await asyncio.wait_for(streams[0].read(), 5)
        except ConnectionResetError:
            pass
        close(streams)
    await until(lambda: not echo._transports)
    await asyncio.sleep(0.05)
    assert other_tasks() - tasks == set()
    assert open_fds() <= fds


async def test_fixture_gives_started_proxies(fault_proxy: Callable[[str, int], Awaitable[FaultProxy]],
                                             echo: EchoServer) -> None:
    proxy = await fault_proxy("127.0.0.1", echo.port)
    assert proxy.port > 0
    streams = await connect(proxy)
    assert await roundtrip(streams, b"fixture") == b"fixture"
    close(streams)
