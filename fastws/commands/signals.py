"""Ending a long-running command cleanly on Ctrl-C or SIGTERM."""
from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable, TypeVar

__all__ = ["until_signalled"]

T = TypeVar("T")


async def until_signalled(work: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run ``work(stop)``; SIGINT and SIGTERM set ``stop`` instead of killing the process.

    ``work`` watches ``stop`` and ends by itself (a file closed complete, a
    server stopped), so an interrupted command leaves nothing half done.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        return await work(stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
