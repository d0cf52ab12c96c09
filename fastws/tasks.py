"""Ending the background tasks a component owns."""
from __future__ import annotations

import asyncio
from typing import Any, Optional

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: "Optional[asyncio.Task[Any]]") -> None:
    """Cancel ``task`` (if any) and wait until it has ended; its cancellation is not raised."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
