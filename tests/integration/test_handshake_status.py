"""A refused WebSocket upgrade: 4xx fails at once, 429 and 5xx are retried."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any, AsyncIterator, Optional

import pytest
from picows import WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener, ws_create_server

from fastws import ConnectionFailedError, ConnectionState, ExchangeName, create_websocket_config
from fastws.testing import LoopbackFeedClient


class Refuser:
    """A server that answers every upgrade with ``status`` and counts the attempts."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.attempts = 0
        self.server: Optional[asyncio.AbstractServer] = None

    def accept(self, request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
        self.attempts += 1
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(self.status), None)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/stream"


@pytest.fixture
async def refuser(request: pytest.FixtureRequest) -> AsyncIterator[Refuser]:
    refuser = Refuser(request.param)
    refuser.server = await ws_create_server(refuser.accept, "127.0.0.1", 0)
    yield refuser
    refuser.server.close()
    await refuser.server.wait_closed()


def client(url: str, errors: list[Any], **overrides: Any) -> LoopbackFeedClient:
    config = create_websocket_config(url, reconnect_delay=0.02, max_reconnect_delay=0.05, **overrides)
    return LoopbackFeedClient(ExchangeName("loopback"), config, print, errors.append)


@pytest.mark.parametrize("refuser", [404, 403, 401], indirect=True)
async def test_a_4xx_upgrade_fails_at_once_with_its_status(refuser: Refuser) -> None:
    errors: list[Any] = []
    ws = client(refuser.url, errors, max_reconnect_attempts=5)
    start = time.monotonic()
    with pytest.raises(ConnectionFailedError):
        await ws.start()
    await ws.stop()
    assert refuser.attempts == 1 and time.monotonic() - start < 2.0
    assert str(refuser.status) in str(errors[0])


@pytest.mark.parametrize("refuser", [429, 503], indirect=True)
async def test_429_and_5xx_are_retried_with_backoff(refuser: Refuser) -> None:
    errors: list[Any] = []
    ws = client(refuser.url, errors, max_reconnect_attempts=3)
    with pytest.raises(ConnectionFailedError):
        await ws.start()
    await ws.stop()
    assert refuser.attempts == 4          # the first try and three retries
    assert ws.state is ConnectionState.CLOSED


async def test_a_peer_that_closes_right_after_the_upgrade_is_a_connection_that_ended() -> None:
    """The 101, a data frame and a close (1008) in one write: the upgrade succeeded, so
    the close reason and the frame are reported as for any connection (not as a lost
    handshake), and the client reconnects."""
    message = b'{"stream":"btcusdt@depth","data":{"u":1}}'

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + bytes([0x81, len(message)]) + message
                     + bytes([0x88, 2]) + (1008).to_bytes(2, "big"))
        await asyncio.sleep(0.2)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    errors: list[Any] = []
    received: list[Any] = []
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/stream"
    config = create_websocket_config(url, reconnect_delay=0.02, max_reconnect_delay=0.05, max_reconnect_attempts=2)
    ws = LoopbackFeedClient(ExchangeName("loopback"), config, received.append, errors.append)
    try:
        await asyncio.wait_for(ws.start(), 5.0)
        await ws.wait_for_state(ConnectionState.FAILED, timeout=5.0)
    finally:
        await ws.stop()
        server.close()
    assert received and received[0] == {"stream": "btcusdt@depth", "data": {"u": 1}}
    assert ws.gaps and "peer closed (1008)" in ws.gaps[0].reason
    assert ws.metrics["connections"] >= 1 and ws.metrics["messages_received"] >= 1
    assert not any("handshake" in str(e) for e in errors)
