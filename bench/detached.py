"""An adapter's frame core built without a socket, for in-process benchmarks."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional
from unittest import mock

import fastws.client.connection
from fastws import BaseWebSocketInterface, FrameHandler

DETACHED_URL = "ws://127.0.0.1:9"
"""In-process cores are built for this URL and never connect."""


class _Unconnected:
    """Stands in for picows's transport where no socket is wanted."""

    is_disconnected = False


def open_detached_core(ws: BaseWebSocketInterface, url: Optional[str] = None) -> FrameHandler:
    """The ``FrameHandler`` a connection of ``ws`` runs, built without a socket.

    ``_open_websocket`` itself builds it (same parser, classifier, handler,
    options and routes), with ``ws_connect`` replaced by one that only calls
    the listener factory.
    """
    async def connect_nothing(factory: Callable[[], Any], *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        return _Unconnected(), factory()

    async def open_core() -> FrameHandler:
        with mock.patch.object(fastws.client.connection, "ws_connect", connect_nothing):
            await ws._open_websocket(url)
        assert ws._core is not None
        return ws._core

    return asyncio.run(open_core())
