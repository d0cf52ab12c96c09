"""A refused WebSocket upgrade: 4xx fails at once, 429 and 5xx are retried."""
from __future__ import annotations

import asyncio
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
