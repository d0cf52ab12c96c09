"""A third exchange (tests/third_exchange, written only in the tests) plugs in through the registry.

It is registered as a package registers itself: a ``*.dist-info`` directory with
``METADATA`` and ``entry_points.txt`` (``fastws.exchanges`` and ``pytest11``) on the
import path. Then ``fastws stream``, ``verify``, ``record`` and ``replay``, the
verifier's fixture and its own pytest fixture work with it as with the shipped ones.
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import msgspec
import pytest

from fastws import ExchangeName
from fastws.recording import KIND_TEXT, CaptureReader
from fastws.registry import UnknownExchangeError, exchange_names, get_exchange
from fastws.testing.replay import ReplayServer
from fastws.verify import Status, VerificationReport
from tests.conftest import installed_distribution, run_fastws, until
from tests.third_exchange.client import ThirdWebSocket, third_config
from tests.third_exchange.simulator import ThirdSimulator

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = """\
[fastws.exchanges]
third = tests.third_exchange.entry:EXCHANGE

[pytest11]
fastws-third = tests.third_exchange.fixtures
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A directory holding the third exchange's distribution metadata, on ``sys.path`` for the test."""
    with installed_distribution(tmp_path / "site", "fastws-third", ENTRY_POINTS) as site:
        yield site


@pytest.fixture
async def sim(site: Path) -> AsyncIterator[ThirdSimulator]:
    async with ThirdSimulator(rate=200) as sim:
        yield sim


def installed(site: Path) -> dict[str, str]:
    """The environment of a process with the third exchange installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}


async def fastws(site: Path, *args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run ``python -m fastws ARGS`` with the third exchange installed, without blocking the loop."""
    return await run_fastws(*args, timeout=timeout, env=installed(site), cwd=str(REPO))


def test_the_registry_finds_it_by_name(site: Path) -> None:
    assert {"binance", "mexc", "third"} <= set(exchange_names())
    entry = get_exchange("THIRD")
    assert entry.client is ThirdWebSocket and entry.simulator is ThirdSimulator and entry.replay is not None


def test_an_unknown_name_lists_the_known_ones(site: Path) -> None:
    with pytest.raises(UnknownExchangeError, match=r"unknown exchange 'fourth' \(known: binance, mexc, third\)"):
        get_exchange("fourth")


async def test_fastws_stream(site: Path, sim: ThirdSimulator) -> None:
    code, out, err = await fastws(site, "stream", "third", "trades.BTC", "trades.ETH", "--url", sim.url,
                                  "--json", "--max-messages", "6")
    assert code == 0, err
    messages = [msgspec.json.decode(line) for line in out.splitlines()]
    assert len(messages) == 6 and {m["ch"] for m in messages} <= {"trades.BTC", "trades.ETH"}
    assert "fastws stream: 6 message(s)" in err


async def test_fastws_stream_reports_a_refused_stream(site: Path, sim: ThirdSimulator) -> None:
    code, _, err = await fastws(site, "stream", "third", "trades.btc", "--url", sim.url, "--duration", "1")
    assert code == 1
    assert "invalid stream trades.btc" in err


async def test_fastws_demo_runs_every_registered_exchange(site: Path) -> None:
    code, out, err = await fastws(site, "demo", "--duration", "2", "--rate", "100", timeout=60)
    assert code == 0, err
    assert "injecting a server-side drop on every exchange" in out
    for name in ("binance", "mexc", "third"):
        summary = out.split(f"summary: {name}")[1].split("summary:")[0]
        assert int(summary.split("messages delivered :")[1].split()[0]) > 0, name
        assert "reconnections      : 1" in summary, name
    assert "trades.BTC" in out.split("summary: third")[1]


async def test_fastws_verify_by_exchange_name(site: Path) -> None:
    code, out, err = await fastws(site, "verify", "third", "--json", timeout=60)
    assert code == 0, out + err
    report = msgspec.json.decode(out)
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["live receive"] == "passed" and statuses["live drop and recovery"] == "passed"
    assert set(statuses.values()) == {"passed"}


async def test_adapter_compliance_fixture_uses_the_registered_simulator(site: Path, adapter_compliance: Any) -> None:
    report: VerificationReport = await adapter_compliance(ThirdWebSocket)
    assert report.status_of("live drop and recovery") is Status.PASSED


async def test_fastws_record_then_replay(site: Path, sim: ThirdSimulator, tmp_path: Path) -> None:
    capture = tmp_path / "third.fwscap"
    code, _, err = await fastws(site, "record", "third", "trades.BTC", "--url", sim.url, "--out", str(capture),
                                "--max-messages", "40")
    assert code == 0, err
    with CaptureReader(capture) as reader:
        assert reader.metadata["exchange"] == "third"
        recorded = [r.payload for r in reader if r.kind == KIND_TEXT and r.payload.startswith(b'{"ch"')]
    assert len(recorded) >= 40
    # The capture names its exchange: the replay server finds its profile in the registry.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastws", "replay", str(capture), "--speed", "0", "--wait-client", "20", cwd=REPO,
        env=installed(site), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        assert first.startswith(f"replaying {capture} (third, {len(recorded)} data frames")
        url = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().split("connect to: ")[1].strip()
        received: list[dict[str, Any]] = []
        ws = ThirdWebSocket(ExchangeName("third"), third_config(url), received.append)
        async with ws:
            await ws.subscribe(["trades.BTC"])
            await until(lambda: len(received) >= len(recorded), 20, "every recorded frame replayed")
        assert [msgspec.json.encode(m) for m in received] == recorded
        rest, err_bytes = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, err_bytes.decode()
        assert f"replayed {len(recorded)} frames" in rest.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_replay_server_in_process_by_name(site: Path, sim: ThirdSimulator, tmp_path: Path) -> None:
    from fastws.commands.record import record
    capture = tmp_path / "third.fwscap"
    await record("third", ["trades.ETH"], str(capture), url=sim.url, max_messages=10)
    async with ReplayServer(capture, speed=0) as replay:
        assert replay.exchange == "third" and replay.ws_url() == f"{replay.url}/feed"
        received: list[dict[str, Any]] = []
        async with ThirdWebSocket(ExchangeName("third"), third_config(replay.ws_url()), received.append) as ws:
            await ws.subscribe(["trades.ETH"])
            assert await replay.wait_finished(20) >= 10
            await until(lambda: len(received) >= 10, 10, "replayed frames")
    assert {m["ch"] for m in received} == {"trades.ETH"}


PLUGIN_TEST = """\
from tests.third_exchange.client import ThirdWebSocket, third_config


async def test_fixture(third_simulator):
    assert third_simulator.rate == 0 and third_simulator.port > 0
    got = []
    async with ThirdWebSocket("third", third_config(third_simulator.url), got.append) as ws:
        await ws.subscribe(["trades.BTC"])
        await third_simulator.wait_subscribed(["trades.BTC"])
        assert third_simulator.step(3) == 3


async def test_factory(third_simulator_factory):
    sim = await third_simulator_factory(rate=50)
    assert sim.rate == 50
"""


async def test_its_pytest_fixtures_come_from_its_own_plugin(site: Path, tmp_path: Path) -> None:
    test_file = tmp_path / "test_plugin.py"
    test_file.write_text(PLUGIN_TEST)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
        "--rootdir", str(tmp_path), str(test_file), cwd=tmp_path, env=installed(site),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode() + err.decode()
    assert "2 passed" in out.decode()
