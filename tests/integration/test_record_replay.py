"""Record a simulator's feed through the real adapter, replay it through ReplayServer.

Binance (dict and typed routes) and MEXC, stream filtering, feed-gap markers,
the command line end to end in subprocesses, and a recording killed mid-write.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from exchanges.binance import BinanceWebSocket, DepthUpdate, binance_config
from exchanges.binance.simulator import BinanceSimulator
from exchanges.mexc import MexcWebSocket, decode_reference, mexc_config
from exchanges.mexc.simulator import MexcSimulator
from fastws.commands.record import record
from fastws.recording import KIND_BINARY, KIND_FEED_BACK, KIND_FEED_LOST, KIND_TEXT, CaptureReader, Record
from fastws.testing.replay import ReplayServer
from fastws.types import ExchangeName

from tests.conftest import other_tasks, until

DEPTH = "btcusdt@depth"
ETH_DEPTH = "ethusdt@depth"
MEXC_DEPTH = "spot@public.aggre.depth.v3.api.pb@100ms@BTCUSDT"
REPO = Path(__file__).resolve().parents[2]


def _records(path: Path) -> list[Record]:
    with CaptureReader(path) as reader:
        return list(reader)


def _data(path: Path) -> list[Record]:
    """Recorded data frames: Binance combined envelopes, MEXC binary pushes."""
    return [r for r in _records(path)
            if (r.kind == KIND_TEXT and r.payload.startswith(b'{"stream"')) or r.kind == KIND_BINARY]


def _check_timing(recorded: list[Record], arrivals: list[float], speed: float, subscribed_at: float) -> float:
    """No frame arrives before its recorded offset / speed; return the worst lateness (s).

    The server plays from the subscription on, so ``subscribed_at`` (taken
    before the client sent it) is earlier than the playback's start: a frame
    that arrives sooner than its offset after it was sent early. That holds
    however loaded the machine (a load only makes frames late). A replay
    that sent all at once fails at any speed; one that ignored the speed, or
    multiplied by it, fails at a speed below 1.
    """
    assert len(recorded) == len(arrivals)
    worst = 0.0
    for index, (frame, arrival) in enumerate(zip(recorded, arrivals)):
        expected = (frame.receive_ns - recorded[0].receive_ns) / 1e9 / speed
        # uvloop's timers have a 1 ms granularity.
        assert arrival - subscribed_at >= expected - 0.002, (index, arrival - subscribed_at, expected)
        worst = max(worst, arrival - subscribed_at - expected)
    return worst


async def _record_binance(path: Path, streams: list[str], count: int, rate: float = 100.0) -> None:
    async with BinanceSimulator(rate=rate) as sim:
        result = await record("binance", streams, str(path), url=sim.url, max_messages=count)
    assert result.messages == count and not result.interrupted and result.gaps == 0


async def test_binance_dict_route_same_messages_order_and_timing(tmp_path: Path) -> None:
    path = tmp_path / "binance.fwscap"
    await _record_binance(path, [DEPTH], 60)
    records = _records(path)
    data = _data(path)
    assert len(data) == 60
    assert records[0].payload == b'{"result":null,"id":1}'        # the ack is recorded, before the data
    recorded_span = (data[-1].receive_ns - data[0].receive_ns) / 1e9
    assert 0.4 < recorded_span < 2.0                                # 100 steps/s, paced

    received: list[Any] = []
    arrivals: list[float] = []

    def on_message(message: Any) -> None:
        received.append(message)
        arrivals.append(time.monotonic())

    speed = 0.5      # below 1: a replay that ignored the speed (or multiplied by it) would be early
    async with ReplayServer(path, speed=speed) as replay:
        started = time.monotonic()
        async with BinanceWebSocket(ExchangeName("binance"), binance_config(replay.ws_url()), on_message) as ws:
            await asyncio.sleep(0.05)
            assert not replay.started and replay.frames_sent == 0     # nothing before the subscription
            subscribed_at = time.monotonic()
            await ws.subscribe([DEPTH])
            assert await replay.wait_finished(timeout=10) == 60
            await until(lambda: len(received) == 60, 5, "all replayed messages")
        elapsed = time.monotonic() - started
    assert received == [msgspec.json.decode(r.payload) for r in data]
    assert replay.controls_skipped == 1 and replay.frames_sent == 60 and replay.unsent == 0
    assert replay.damage is None
    _check_timing(data, arrivals, speed, subscribed_at)
    assert elapsed < recorded_span / speed + 3.0


async def test_binance_typed_route_as_fast_as_possible(tmp_path: Path) -> None:
    path = tmp_path / "binance.fwscap"
    await _record_binance(path, [DEPTH], 60, rate=50.0)
    data = _data(path)
    recorded_span = (data[-1].receive_ns - data[0].receive_ns) / 1e9
    received: list[tuple[str, int, int]] = []

    def on_typed(stream: str, message: Any) -> None:
        assert isinstance(message, DepthUpdate)
        received.append((stream, message.first_update_id, message.final_update_id))

    async with ReplayServer(path, speed=0) as replay:
        ws = BinanceWebSocket(ExchangeName("binance"), binance_config(replay.ws_url()), on_typed, typed=True)
        async with ws:
            started = time.monotonic()
            await ws.subscribe([DEPTH])
            await replay.wait_finished(timeout=10)
            await until(lambda: len(received) == 60, 5, "all replayed messages")
            elapsed = time.monotonic() - started
            assert ws.metrics["sequence_gaps"] == 0
    expected = []
    for frame in data:
        envelope = msgspec.json.decode(frame.payload)
        expected.append((envelope["stream"], envelope["data"]["U"], envelope["data"]["u"]))
    assert received == expected
    # A paced replay cannot take less than the recording's span (its frames
    # are never early): faster than that, it did not pace.
    assert elapsed < recorded_span


async def test_mexc_record_and_replay(tmp_path: Path) -> None:
    path = tmp_path / "mexc.fwscap"
    async with MexcSimulator(rate=100) as sim:
        result = await record("mexc", [MEXC_DEPTH], str(path), url=sim.ws_url(), max_messages=50)
    assert result.messages == 50
    records = _records(path)
    assert records[0] == Record(records[0].receive_ns, KIND_TEXT,
                                b'{"id":0,"code":0,"msg":"' + MEXC_DEPTH.encode() + b'"}')
    data = _data(path)
    assert len(data) == 50
    received: list[Any] = []
    arrivals: list[float] = []

    def on_message(message: Any) -> None:
        received.append(message)
        arrivals.append(time.monotonic())

    speed = 1.5
    async with ReplayServer(path, speed=speed) as replay:
        assert replay.exchange == "mexc" and replay.ws_url().endswith("/ws")
        async with MexcWebSocket(ExchangeName("mexc"), mexc_config(replay.ws_url()), on_message) as ws:
            subscribed_at = time.monotonic()
            await ws.subscribe([MEXC_DEPTH])
            await replay.wait_finished(timeout=10)
            await until(lambda: len(received) == 50, 5, "all replayed pushes")
            assert ws.metrics["sequence_gaps"] == 0
    assert received == [decode_reference(r.payload) for r in data]
    assert replay.controls_skipped == 1
    _check_timing(data, arrivals, speed, subscribed_at)


async def test_only_subscribed_streams_are_sent(tmp_path: Path) -> None:
    path = tmp_path / "two.fwscap"
    await _record_binance(path, [DEPTH, ETH_DEPTH], 40)
    data = _data(path)
    btc = [r for r in data if b'"stream":"btcusdt@depth"' in r.payload]
    assert 0 < len(btc) < len(data)
    received: list[Any] = []
    # The capture names two streams, the client subscribes to one: playback
    # starts after the grace period.
    # The grace is long beside the 0.05 s look below, for a loaded machine.
    async with ReplayServer(path, speed=0, start_grace=0.5) as replay:
        async with BinanceWebSocket(ExchangeName("binance"), binance_config(replay.ws_url()),
                                    received.append) as ws:
            await ws.subscribe([DEPTH])
            await asyncio.sleep(0.05)
            assert not replay.started
            await replay.wait_finished(timeout=10)
            await until(lambda: len(received) == len(btc), 5, "the btcusdt messages")
            await asyncio.sleep(0.05)
    assert received == [msgspec.json.decode(r.payload) for r in btc]
    assert replay.unsent == len(data) - len(btc)


async def test_feed_gaps_are_recorded_as_markers(tmp_path: Path) -> None:
    path = tmp_path / "gap.fwscap"
    async with BinanceSimulator(rate=100) as sim:
        task = asyncio.ensure_future(record("binance", [DEPTH], str(path), url=sim.url, max_messages=80))
        await sim.wait_subscribed([DEPTH])
        await asyncio.sleep(0.2)
        sim.drop(1001)
        result = await asyncio.wait_for(task, 20)
    assert result.gaps == 1 and result.messages == 80
    kinds = [r.kind for r in _records(path)]
    lost, back = kinds.index(KIND_FEED_LOST), kinds.index(KIND_FEED_BACK)
    assert 0 < lost < back and kinds.count(KIND_TEXT) == 80 + 2       # two acks
    received: list[Any] = []
    async with ReplayServer(path, speed=0) as replay:
        async with BinanceWebSocket(ExchangeName("binance"), binance_config(replay.ws_url()),
                                    received.append) as ws:
            await ws.subscribe([DEPTH])
            await replay.wait_finished(timeout=10)
            await until(lambda: len(received) == 80, 5, "all replayed messages")
    assert replay.markers == 2 and replay.controls_skipped == 2


async def test_stop_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "slow.fwscap"
    await _record_binance(path, [DEPTH], 30, rate=50.0)
    before = other_tasks()
    replay = ReplayServer(path, speed=0.1)          # would take ~6 s
    await replay.start()
    ws = BinanceWebSocket(ExchangeName("binance"), binance_config(replay.ws_url(), reconnect_delay=0.05,
                                                                    max_reconnect_attempts=1), lambda m: None)
    async with ws:
        await ws.subscribe([DEPTH])
        await until(lambda: replay.frames_sent >= 1, 5, "the first frame")
        await replay.stop()
        await replay.stop()
        assert replay.finished.cancelled() and replay.connections == []
    assert other_tasks() == before


# ------------------------------------------------------------------ command line

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def fastws_process(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "fastws", *args, cwd=REPO, env=_env(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def replay_url(proc: asyncio.subprocess.Process, path: Path, frames: int) -> str:
    """Read ``fastws replay``'s first two lines: check the first (a Binance capture of
    ``frames`` data frames), return the URL of the second."""
    assert proc.stdout is not None
    first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert first.startswith(f"replaying {path} (binance, {frames} data frames"), first
    line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    return line.split("connect to: ", 1)[1].strip()


async def test_cli_record_then_replay(tmp_path: Path) -> None:
    path = tmp_path / "cli.fwscap"
    # The simulator keeps publishing (paced) while the subprocess records.
    async with BinanceSimulator(rate=100) as sim:
        proc = await fastws_process("record", "binance", DEPTH, "--url", sim.url, "--max-messages", "50",
                             "--out", str(path))
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("recorded 50 data messages (51 records with the control replies"), out
    assert len(_data(path)) == 50

    proc = await fastws_process("replay", str(path), "--speed", "0", "--port", "0")
    try:
        url = await replay_url(proc, path, 50)
        received: list[Any] = []
        ws = BinanceWebSocket(ExchangeName("binance"), binance_config(url, max_reconnect_attempts=1), received.append)
        async with ws:
            await ws.subscribe([DEPTH])
            await until(lambda: len(received) == 50, 10, "50 replayed messages")
            rest, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "replayed 50 frames (50 sent" in rest.decode()
    assert received == [msgspec.json.decode(r.payload) for r in _data(path)]


async def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a capture\n")
    proc = await fastws_process("replay", str(text))
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert err.decode().strip().splitlines() == [
        f"fastws replay: error: {text}: not a fastws capture (wrong magic bytes)"]
    proc = await fastws_process("record", "binance", DEPTH, "--url", "ws://127.0.0.1:9", "--out", str(tmp_path / "x"),
                         "--duration", "5", "--connect-timeout", "1")
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastws record: error: "), lines
    assert "Traceback" not in err.decode()


async def test_recording_killed_mid_write_still_replays(tmp_path: Path) -> None:
    path = tmp_path / "killed.fwscap"
    async with BinanceSimulator(rate=500) as sim:
        proc = await fastws_process("record", "binance", DEPTH, ETH_DEPTH, "--url", sim.url, "--out", str(path),
                             "--duration", "60")
        try:
            # The writer flushes every second: wait for a few flushes.
            await until(lambda: path.exists() and path.stat().st_size > 20_000, 30, "a growing capture")
        finally:
            proc.send_signal(signal.SIGKILL)
            await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == -signal.SIGKILL
    with CaptureReader(path) as reader:
        data = [r for r in reader if r.kind == KIND_TEXT and r.payload.startswith(b'{"stream"')]
        assert reader.damage is None or "cut short" in reader.damage
    assert len(data) > 20
    received: list[Any] = []
    async with ReplayServer(path, speed=0) as replay:
        async with BinanceWebSocket(ExchangeName("binance"), binance_config(replay.ws_url()),
                                    received.append) as ws:
            await ws.subscribe([DEPTH, ETH_DEPTH])
            await replay.wait_finished(timeout=20)
            await until(lambda: len(received) == len(data), 10, "every complete record")
    assert received == [msgspec.json.decode(r.payload) for r in data]
    # Appending to the killed capture repairs its tail and goes on.
    async with BinanceSimulator(rate=100) as sim:
        result = await record("binance", [DEPTH], str(path), url=sim.url, max_messages=5)
    assert result.appended
    with CaptureReader(path) as reader:
        assert len([r for r in reader if r.kind == KIND_TEXT]) >= len(data) + 5
        assert reader.damage is None
