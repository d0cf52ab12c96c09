"""Metrics: a client's counters as a dict, and their export to Prometheus.

``ConnectionMetrics`` (what ``client.metrics`` reports) lives in
``fastws.metrics.counters``. The Prometheus side, loaded on first use so that
``import fastws`` does not import ``prometheus_client`` or ``aiohttp``:

- ``register(client)`` / ``unregister(client)``: the clients exported
  (``register`` is explicit: a client costs nothing until it is registered);
- ``FastwsCollector``: a ``prometheus_client`` collector that reads the
  registered clients' counters and histograms when scraped, for a registry of
  the user's own (``prometheus_client.REGISTRY.register(FastwsCollector())``);
- ``serve(port, host="127.0.0.1")``: ``/metrics`` and ``/healthz`` on the
  running event loop, returning a ``MetricsServer`` to ``close()``.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fastws.metrics.counters import ConnectionMetrics, add_histograms, latency_percentiles

if TYPE_CHECKING:
    from fastws.metrics.health import unhealthy_reasons
    from fastws.metrics.prometheus import FastwsCollector
    from fastws.metrics.registry import ClientRegistry, register, registered, unregister
    from fastws.metrics.server import MetricsServer, serve

__all__ = ["ClientRegistry", "ConnectionMetrics", "FastwsCollector", "MetricsServer", "add_histograms",
           "latency_percentiles", "register", "registered", "serve", "unhealthy_reasons", "unregister"]

# Public name -> the submodule that defines it (imported on first use).
_LAZY = {
    "ClientRegistry": "registry", "register": "registry", "registered": "registry", "unregister": "registry",
    "FastwsCollector": "prometheus",
    "MetricsServer": "server", "serve": "server",
    "unhealthy_reasons": "health",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastws.metrics' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fastws.metrics.{module}"), name)
    globals()[name] = value
    return value
