"""``serve()``: ``/metrics`` (Prometheus) and ``/healthz`` (JSON) on the running event loop.

An aiohttp application on the client's own event loop, not
``prometheus_client``'s threaded HTTP server: the handlers then read the
clients from the loop that owns them (a client is not thread-safe) and can
await ``health_check()``; the body of ``/metrics`` is still
``prometheus_client``'s exposition (text or OpenMetrics, as the scraper asks).
"""
from __future__ import annotations

import json
from typing import Any, Optional

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

from fastws.metrics.health import unhealthy_reasons
from fastws.metrics.prometheus import FastwsCollector
from fastws.metrics.registry import DEFAULT_REGISTRY, ClientRegistry

__all__ = ["MetricsServer", "serve"]


class MetricsServer:
    """The running endpoints of ``serve()``; ``close()`` (or ``async with``) stops them.

    Attributes:
        collector: The ``FastwsCollector`` behind ``/metrics``.
        registry: The ``prometheus_client`` registry ``/metrics`` exposes
            (the collector, and the process's CPU, memory and GC figures).
    """

    def __init__(self, clients: ClientRegistry, registry: Optional[CollectorRegistry],
                 max_message_age: Optional[float]) -> None:
        self.clients = clients
        self.collector = FastwsCollector(clients)
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            GCCollector(registry=registry)
        registry.register(self.collector)
        self._registered = True
        self.registry = registry
        self._max_message_age = max_message_age
        self._runner: Optional[web.AppRunner] = None
        self._port = 0
        self._host = ""

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host``:``port`` (0: a free port, see ``port``)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1]) if runner.addresses else port
        self._host = host

    @property
    def port(self) -> int:
        """The port listened on."""
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` of the endpoints."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def close(self) -> None:
        """Stop listening and close every open connection (safe to call twice)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        if self._registered:
            self._registered = False
            self.registry.unregister(self.collector)

    async def __aenter__(self) -> "MetricsServer":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _limit(self, client: Any) -> Optional[float]:
        if self._max_message_age is not None:
            return self._max_message_age
        stale: Optional[float] = client.config.stale_timeout
        return stale

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.collector.refresh()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        healths = await self.collector.refresh()
        reasons: list[str] = []
        for name, client in self.clients.clients():
            if name in healths:
                reasons += unhealthy_reasons(name, healths[name], self._limit(client))
        body = {"healthy": not reasons, "reasons": reasons, "clients": healths}
        return web.Response(text=json.dumps(body, default=str), status=200 if not reasons else 503,
                            content_type="application/json")


async def serve(port: int, host: str = "127.0.0.1", *, clients: ClientRegistry = DEFAULT_REGISTRY,
                registry: Optional[CollectorRegistry] = None,
                max_message_age: Optional[float] = None) -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` for ``clients`` on the running event loop.

    ``/healthz`` answers 200 when every client is connected and fresh, else
    503, with a JSON body: ``healthy``, ``reasons`` (one line per problem)
    and ``clients`` (each client's ``health_check()`` by name).

    Args:
        port: TCP port; 0 picks a free one (``MetricsServer.port``).
        host: Address to listen on; loopback by default.
        clients: The clients to serve (default: those of ``register()``).
        registry: A ``prometheus_client`` registry to add the collector to and
            expose (default: a new one with the process's figures).
        max_message_age: Seconds of silence after which a client with
            streams is stale; by default each client's ``stale_timeout``.

    Returns:
        The running server; ``await server.close()`` stops it.
    """
    server = MetricsServer(clients, registry, max_message_age)
    try:
        await server.start(host, port)
    except BaseException:
        await server.close()
        raise
    return server
