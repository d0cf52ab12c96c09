"""Shared fixtures: uvloop, a loopback feed server, leak checks."""
from __future__ import annotations

import asyncio
import os
from typing import AsyncIterator, Callable

import pytest
import uvloop

from fastws.testing import FeedServer


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--soak SECONDS`` runs the soak test that long (default: a few seconds)."""
    parser.addoption("--soak", action="store", type=float, default=None,
                     help="run the reliability soak for this many seconds")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run every async test on uvloop, as users do."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    """A FeedServer on 127.0.0.1, stopped after the test."""
    async with FeedServer() as server:
        yield server


def open_fds() -> int:
    """Number of file descriptors this process holds."""
    return len(os.listdir("/proc/self/fd"))


def other_tasks() -> set[asyncio.Task]:
    """Tasks of the running loop other than the current one."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
