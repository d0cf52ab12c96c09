"""Benchmark fixtures: the feed server in its own process, uvloop."""
from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest
import uvloop

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.peers import bench_server  # noqa: E402


@pytest.fixture(scope="session")
def bench_url() -> Iterator[str]:
    """URL of ``bench/server.py`` running in its own process."""
    with bench_server() as url:
        yield url


@pytest.fixture
def loop() -> Iterator[uvloop.Loop]:
    """A fresh uvloop event loop driven by the benchmark."""
    event_loop = uvloop.new_event_loop()
    yield event_loop
    event_loop.close()
