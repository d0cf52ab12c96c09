"""Shared fixtures: uvloop, a loopback feed server, leak checks."""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator, Mapping, Optional

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


async def until(done: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``done()``, polling every 5 ms; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        await asyncio.sleep(0.005)


def other_tasks() -> set[asyncio.Task]:
    """Tasks of the running loop other than the current one."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def run_fastws(*args: str, timeout: float = 30.0, env: Optional[Mapping[str, str]] = None,
                     cwd: Optional[str] = None) -> tuple[int, str, str]:
    """Run ``python -m fastws ARGS`` without blocking the running loop; return (status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "fastws", *args, env=env, cwd=cwd,
                                                   stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode or 0, out.decode(), err.decode()


@contextlib.contextmanager
def installed_distribution(site: Path, name: str, entry_points: str) -> Iterator[Path]:
    """A distribution ``name`` with ``entry_points`` (an ``entry_points.txt``) installed in ``site``.

    Writes ``site/<name>-0.1.dist-info`` (``METADATA``, ``entry_points.txt``) and puts
    ``site`` first on ``sys.path`` while the context lasts, so ``importlib.metadata``
    finds it as it finds an installed package; yields ``site``.
    """
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
