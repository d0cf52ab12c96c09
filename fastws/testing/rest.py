"""A loopback HTTP server for simulators that also answer REST requests (depth snapshots).

``RestServer`` runs an aiohttp application on 127.0.0.1 at a free port, with
the GET routes a simulator gives it; ``url`` is its base URL once started.
"""
from __future__ import annotations

from typing import Awaitable, Callable, Optional

from aiohttp import web

__all__ = ["RestServer"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RestServer:
    """GET routes served on ``127.0.0.1:<free port>``.

    Args:
        routes: Path to handler, e.g. ``{"/api/v3/depth": self._depth}``.
        shutdown_timeout: Seconds a request still open at ``stop()`` gets
            (a "slow" fault, a client that was not stopped).
    """

    def __init__(self, routes: dict[str, Handler], shutdown_timeout: float = 0.5) -> None:
        self.routes = routes
        self.shutdown_timeout = shutdown_timeout
        self.port = 0
        self._runner: Optional[web.AppRunner] = None

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a free port."""
        app = web.Application()
        for path, handler in self.routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Close the listener and the open requests (safe to call twice)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
