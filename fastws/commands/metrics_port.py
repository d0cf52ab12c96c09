"""``--metrics-port``: serve ``/metrics`` and ``/healthz`` while a command runs."""
from __future__ import annotations

import argparse
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Iterable, Optional, TextIO

from fastws.commands import UsageError

__all__ = ["add_metrics_option", "serving_metrics"]


def _port(text: str) -> int:
    """A TCP port number (0 picks a free one), for argparse."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, got {port}")
    return port


def add_metrics_option(parser: Any) -> None:
    """Add ``--metrics-port PORT`` to a sub-command's parser."""
    parser.add_argument("--metrics-port", type=_port, metavar="PORT",
                        help="serve Prometheus /metrics and /healthz on 127.0.0.1:PORT while running")


@asynccontextmanager
async def serving_metrics(port: Optional[int], clients: Iterable[Any], out: TextIO) -> AsyncIterator[None]:
    """Serve the ``clients``' metrics on ``port`` (nothing when ``port`` is None) until the block ends.

    Raises:
        UsageError: ``port`` cannot be listened on (in use, say).
    """
    if port is None:
        yield
        return
    from fastws.metrics import ClientRegistry, serve
    registry = ClientRegistry()
    for client in clients:
        registry.register(client)
    try:
        server = await serve(port, clients=registry)
    except OSError as exc:
        raise UsageError(f"--metrics-port {port}: {exc.strerror or exc}") from None
    out.write(f"metrics at {server.url}/metrics, health at {server.url}/healthz\n")
    try:
        yield
    finally:
        await server.close()
