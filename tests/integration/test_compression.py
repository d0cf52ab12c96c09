"""permessage-deflate against servers nobody here wrote: websockets, aiohttp, picows.

The servers speak a tiny protocol: a text ``{"cmd": ...}`` asks for
``count`` generated messages (text or binary, ``size`` bytes, optionally in
``fragments`` frames); any other message is echoed back, which checks what
the client compressed.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Optional

import pytest
from aiohttp import web
from picows import WSListener, WSMsgType, WSTransport, ws_create_server
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from fastws import (BaseWebSocketInterface, ConnectionState, ExchangeAPIError, ExchangeName,
                    FrameHandler, StreamType, SubscriptionAction, create_websocket_config)
from fastws.compression import CompressionNegotiationError
from tests.conftest import other_tasks

WORDS = [b"bid", b"ask", b"price", b"qty", b"btcusdt", b"ethusdt", b'":"', b",", b"0.125", b"{", b"}",
         b"depthUpdate", b"E", b"U", b"u", b"[", b"]", b"1700000000000", b"42"]


def payload(seed: int, size: int, binary: bool) -> bytes:
    """A message that compresses like market data: deterministic per seed."""
    rng = random.Random(seed)
    parts = rng.choices(WORDS, k=size // 3 + 8)
    if binary:
        parts = [p + (b"\xff\x00" if rng.random() < 0.1 else b"") for p in parts]
    data = b"".join(parts)
    while len(data) < size:
        data += data
    return data[:size]


def command(count: int, size: int, binary: bool = False, fragments: int = 1, seed: int = 0) -> str:
    return json.dumps({"cmd": 1, "count": count, "size": size, "binary": binary,
                       "fragments": fragments, "seed": seed})


def expected(count: int, size: int, binary: bool = False, seed: int = 0) -> list[tuple[int, bytes]]:
    return [(2 if binary else 1, payload(seed + i, size, binary)) for i in range(count)]


def pieces(data: Any, count: int) -> list[Any]:
    step = max(1, -(-len(data) // count))
    return [data[i:i + step] for i in range(0, len(data), step)]


def open_sockets() -> set[str]:
    """This process's socket descriptors (a failed attempt must leave none behind)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                found.add(fd)
        except OSError:
            pass
    return found


# --------------------------------------------------------------- the client

class RawClient(BaseWebSocketInterface):
    """An adapter that hands each message over as (opcode, bytes)."""

    async def _connect(self) -> None:
        await self._open_websocket()

    async def _send_subscription_message(self, streams: list[str], action: SubscriptionAction) -> None:
        return None

    def _parse_message(self, raw_message: Any, core: FrameHandler) -> tuple[int, bytes]:  # type: ignore[override]
        return core.frame_type, bytes(raw_message)

    def _extract_stream_info(self, message: Any) -> Optional[tuple[str, StreamType]]:
        return None

    def _frame_handler_options(self) -> dict[str, Any]:
        return {"parse_with_handler": True}


class Collector:
    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []
        self.errors: list[ExchangeAPIError] = []

    def on_message(self, message: tuple[int, bytes]) -> None:
        self.messages.append(message)

    def on_error(self, error: ExchangeAPIError) -> None:
        self.errors.append(error)

    async def wait(self, count: int, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} messages after {timeout} s"
            await asyncio.sleep(0.002)
        got, self.messages = self.messages[:count], self.messages[count:]
        return got


def make_client(url: str, got: Collector, **overrides: Any) -> RawClient:
    overrides.setdefault("enable_compression", True)
    overrides.setdefault("max_messages_per_second", 1000.0)
    overrides.setdefault("reconnect_delay", 0.05)
    overrides.setdefault("reconnect_jitter", 0.0)
    return RawClient(ExchangeName("loopback"), create_websocket_config(url, **overrides),
                     got.on_message, got.on_error)


def core_of(ws: RawClient) -> FrameHandler:
    core = ws._core
    assert core is not None
    return core


# -------------------------------------------------------------- the servers

class WebsocketsServer:
    """The websockets library's server; records connections and close codes."""

    def __init__(self) -> None:
        self.connections = 0
        self.close_codes: list[Optional[int]] = []
        self.url = ""

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            await self.serve(ws)
        except ConnectionClosed:
            pass
        finally:
            self.close_codes.append(ws.close_code)

    async def serve(self, ws: ServerConnection) -> None:
        async for message in ws:
            if isinstance(message, str) and message.startswith('{"cmd"'):
                cmd = json.loads(message)
                for i in range(cmd["count"]):
                    data: Any = payload(cmd["seed"] + i, cmd["size"], cmd["binary"])
                    if not cmd["binary"]:
                        data = data.decode()
                    await ws.send(pieces(data, cmd["fragments"]) if cmd["fragments"] > 1 else data)
            else:
                await ws.send(message)

    async def wait_connections(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.connections < count:
            assert time.monotonic() < deadline, f"{self.connections} of {count} connections"
            await asyncio.sleep(0.005)


@asynccontextmanager
async def websockets_server(factory: Optional[ServerPerMessageDeflateFactory] = None,
                            answer: Optional[str] = None) -> AsyncIterator[WebsocketsServer]:
    """``factory``: its permessage-deflate settings (None: websockets' default
    compression). ``answer``: replace the server's Sec-WebSocket-Extensions."""
    state = WebsocketsServer()

    def process_response(connection: Any, request: Any, response: Any) -> Any:
        if answer is not None:
            if "Sec-WebSocket-Extensions" in response.headers:
                del response.headers["Sec-WebSocket-Extensions"]
            response.headers["Sec-WebSocket-Extensions"] = answer
        return response

    options: dict[str, Any] = {"compression": None, "extensions": [factory]} if factory else {}
    if answer is not None:
        options = {"compression": None}
    async with serve(state.handler, "127.0.0.1", 0, max_size=None, process_response=process_response,
                     **options) as server:
        state.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        yield state


@asynccontextmanager
async def aiohttp_server() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=15, max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == web.WSMsgType.TEXT and msg.data.startswith('{"cmd"'):
                cmd = json.loads(msg.data)
                for i in range(cmd["count"]):
                    data = payload(cmd["seed"] + i, cmd["size"], cmd["binary"])
                    if cmd["binary"]:
                        await ws.send_bytes(data)
                    else:
                        await ws.send_str(data.decode())
            elif msg.type == web.WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == web.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


class PicowsServerListener(WSListener):
    """picows's server (no permessage-deflate): generated messages, and on
    ``rsv1`` a frame with RSV1 set although nothing was negotiated."""

    connections = 0
    close_codes: list[int] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        type(self).connections += 1

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            type(self).close_codes.append(int(frame.get_close_code()))
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type == WSMsgType.TEXT:
            text = frame.get_payload_as_ascii_text()
            if text == "rsv1":
                transport.send(WSMsgType.TEXT, b"not really compressed", True, True)
            elif text.startswith('{"cmd"'):
                cmd = json.loads(text)
                for i in range(cmd["count"]):
                    transport.send(WSMsgType.BINARY if cmd["binary"] else WSMsgType.TEXT,
                                   payload(cmd["seed"] + i, cmd["size"], cmd["binary"]))


@asynccontextmanager
async def picows_server() -> AsyncIterator[str]:
    PicowsServerListener.connections = 0
    PicowsServerListener.close_codes = []
    server = await ws_create_server(lambda request: PicowsServerListener(), "127.0.0.1", 0)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()
        await server.wait_closed()


# ------------------------------------------------------------------ the tests

async def exercise(ws: RawClient, got: Collector, fragments: bool = True, big: bool = False) -> None:
    """Text and binary, hundreds in a row, fragmented, echoes, optionally 1 MB."""
    await ws.send_message(command(300, 200))
    assert await got.wait(300) == expected(300, 200)
    await ws.send_message(command(50, 3000, binary=True, seed=1000))
    assert await got.wait(50) == expected(50, 3000, binary=True, seed=1000)
    if fragments:
        await ws.send_message(command(5, 20000, fragments=7, seed=2000))
        assert await got.wait(5) == expected(5, 20000, seed=2000)
        await ws.send_message(command(3, 5000, binary=True, fragments=3, seed=3000))
        assert await got.wait(3) == expected(3, 5000, binary=True, seed=3000)
    if big:
        await ws.send_message(command(2, 1 << 20, seed=4000))
        assert await got.wait(2, timeout=30) == expected(2, 1 << 20, seed=4000)
        await ws.send_message(command(1, 1 << 20, binary=True, seed=5000))
        assert await got.wait(1, timeout=30) == expected(1, 1 << 20, binary=True, seed=5000)
    # Echoes: what the client compressed, inflated by the server and sent back.
    echoes = [payload(6000 + i, 100 + 37 * i, False).decode() for i in range(40)] + ["tiny"]
    for text in echoes:
        await ws.send_message(text)
    assert await got.wait(len(echoes)) == [(1, t.encode()) for t in echoes]
    await ws.send_message(payload(7000, 4000, True))
    assert await got.wait(1) == [(2, payload(7000, 4000, True))]
    assert got.errors == []


COMBINATIONS = [(snct, cnct, sbits, cbits) for snct in (False, True) for cnct in (False, True)
                for sbits, cbits in ((None, None), (9, 8), (12, 10))]


@pytest.mark.parametrize("server_no_context, client_no_context, server_bits, client_bits", COMBINATIONS)
async def test_websockets_server_every_combination(server_no_context: bool, client_no_context: bool,
                                                   server_bits: Optional[int], client_bits: Optional[int]) -> None:
    factory = ServerPerMessageDeflateFactory(server_no_context_takeover=server_no_context,
                                             client_no_context_takeover=client_no_context,
                                             server_max_window_bits=server_bits,
                                             client_max_window_bits=client_bits)
    got = Collector()
    async with websockets_server(factory) as server:
        async with make_client(server.url, got) as ws:
            core = core_of(ws)
            assert core.deflate_enabled
            await exercise(ws, got)
            assert core.compressed_received == 300 + 50 + 5 + 3 + 42
            # A client window of 8 cannot be kept by zlib: the client sends uncompressed.
            assert (core.compressed_sent > 0) == (client_bits != 8)
            assert core.protocol_errors == 0 and core.parse_errors == 0


async def test_websockets_default_compression_with_1mb_messages() -> None:
    got = Collector()
    async with websockets_server() as server:
        async with make_client(server.url, got) as ws:
            await exercise(ws, got, big=True)
            core = core_of(ws)
            assert core.deflate_enabled and core.inflated_bytes > 3 * (1 << 20)
            assert core.bytes_received < core.inflated_bytes // 2


async def test_websockets_client_window_offer_is_respected() -> None:
    got = Collector()
    factory = ServerPerMessageDeflateFactory(server_max_window_bits=11)
    async with websockets_server(factory) as server:
        async with make_client(server.url, got, compression_client_window_bits=10,
                               compression_server_window_bits=12) as ws:
            await exercise(ws, got, fragments=False)
            assert core_of(ws).compressed_sent > 0


async def test_aiohttp_server_compress_15() -> None:
    got = Collector()
    async with aiohttp_server() as url:
        async with make_client(url, got) as ws:
            core = core_of(ws)
            assert core.deflate_enabled
            await exercise(ws, got, fragments=False, big=True)
            assert core.compressed_received >= 300 + 50 + 3
            assert core.compressed_sent > 0


async def test_picows_server_declines_and_the_connection_is_plain() -> None:
    got = Collector()
    async with picows_server() as url:
        async with make_client(url, got) as ws:
            core = core_of(ws)
            assert not core.deflate_enabled
            await ws.send_message(command(200, 300))
            assert await got.wait(200) == expected(200, 300)
            await ws.send_message(command(2, 1 << 20, binary=True))
            assert await got.wait(2, timeout=30) == expected(2, 1 << 20, binary=True)
            assert core.compressed_received == 0 and got.errors == []


async def test_rsv1_without_negotiation_closes_1002_and_reconnects() -> None:
    got = Collector()
    async with picows_server() as url:
        async with make_client(url, got) as ws:
            await ws.send_message("rsv1")
            await ws.wait_for_state(ConnectionState.RECONNECTING, timeout=5)
            await ws.wait_for_state(ConnectionState.CONNECTED, timeout=5)
            assert PicowsServerListener.connections == 2
            assert PicowsServerListener.close_codes == [1002]
            assert got.messages == []
            assert any("RSV1" in str(e) for e in got.errors)
            assert ws.metrics["errors"] >= 1
            # The new connection works.
            await ws.send_message(command(3, 100))
            assert await got.wait(3) == expected(3, 100)


async def test_decompression_bomb_closes_1009_and_reconnects() -> None:
    got = Collector()
    async with websockets_server() as server:
        async with make_client(server.url, got, max_frame_size=1 << 20) as ws:
            await ws.send_message(command(1, 8 << 20))   # ~8 MB of text, a few KB on the wire
            await ws.wait_for_state(ConnectionState.RECONNECTING, timeout=10)
            await ws.wait_for_state(ConnectionState.CONNECTED, timeout=10)
            await server.wait_connections(2)
            assert server.close_codes[0] == 1009
            assert got.messages == []
            assert any("max_message_size" in str(e) for e in got.errors)
            await ws.send_message(command(3, 100))
            assert await got.wait(3) == expected(3, 100)


@pytest.mark.parametrize("answer, match", [
    ("permessage-deflate; mystery_param=1", "did not offer"),
    ("x-webkit-deflate-frame", "x-webkit-deflate-frame"),
    ("permessage-deflate; server_max_window_bits=20", "window size"),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", "repeats"),
    ("permessage-deflate; client_max_window_bits", "window size"),
])
async def test_bad_answers_fail_the_connection(answer: str, match: str) -> None:
    got = Collector()
    sockets, tasks = open_sockets(), other_tasks()
    async with websockets_server(answer=answer) as server:
        ws = make_client(server.url, got)
        with pytest.raises(ExchangeAPIError, match="could not connect"):
            await ws.start()
        # Not retried: the same server answers the same way every time.
        assert ws.state is ConnectionState.FAILED
        assert isinstance(got.errors[0], CompressionNegotiationError)
        assert re.search(match, str(got.errors[0])) and answer in str(got.errors[0])
        await ws.stop()
    assert ws.state is ConnectionState.CLOSED
    await asyncio.sleep(0.05)
    assert open_sockets() <= sockets and other_tasks() <= tasks


async def test_an_answer_when_nothing_was_offered_fails() -> None:
    got = Collector()
    async with websockets_server(answer="permessage-deflate") as server:
        ws = make_client(server.url, got, enable_compression=False)
        with pytest.raises(ExchangeAPIError):
            await ws.start()
        assert "none was offered" in str(got.errors[0])
        await ws.stop()


async def test_server_limited_to_a_smaller_window_than_asked() -> None:
    got = Collector()
    factory = ServerPerMessageDeflateFactory(server_max_window_bits=9, server_no_context_takeover=True)
    async with websockets_server(factory) as server:
        async with make_client(server.url, got, compression_server_window_bits=10) as ws:
            await ws.send_message(command(100, 2000))
            assert await got.wait(100) == expected(100, 2000)
            assert got.errors == []
