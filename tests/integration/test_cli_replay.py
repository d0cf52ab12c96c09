"""``fastws replay`` and ``ReplayServer`` branches the record/replay tests leave out.

Found with coverage (README, "Coverage"): bad arguments, a damaged capture served
up to its damage, no client, a client that unsubscribes before the playback, and
``max_pause`` over a capture appended to hours apart. Captures are written here
with ``CaptureWriter``, so their frames and times are exact.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from exchanges.binance import BinanceWebSocket, binance_config
from fastws.recording import KIND_TEXT, CaptureWriter
from fastws.testing.replay import ReplayServer
from fastws.types import ExchangeName

from tests.conftest import run_fastws, until
from tests.integration.test_record_replay import fastws_process, replay_url

BTC = "btcusdt@trade"
ETH = "ethusdt@trade"
T0 = 1_700_000_000_000_000_000


def _trade(stream: str, index: int) -> bytes:
    return msgspec.json.encode({"stream": stream, "data": {"e": "trade", "E": 1_700_000_000_000 + index,
                                                            "s": stream.split("@")[0].upper(), "t": index}})


def _capture(path: Path, frames: list[tuple[str, int]], streams: tuple[str, ...] = (BTC, ETH)) -> list[bytes]:
    """Write a Binance capture: the ack, then one trade per (stream, receive offset in ns)."""
    payloads = []
    with CaptureWriter(str(path), {"exchange": "binance", "url": "ws://127.0.0.1:1/stream",
                                   "streams": list(streams)}) as writer:
        writer.write_frame(b'{"result":null,"id":1}', T0, KIND_TEXT)
        for index, (stream, offset) in enumerate(frames):
            payload = _trade(stream, index)
            writer.write_frame(payload, T0 + offset, KIND_TEXT)
            payloads.append(payload)
    return payloads


@pytest.mark.parametrize("option, value, message", [
    ("--speed", "-1", "--speed must be >= 0"),
    ("--port", "70000", "--port must be within 0..65535"),
])
async def test_bad_arguments_are_one_line_and_status_2(option: str, value: str, message: str,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    _capture(path, [(BTC, 0)])
    code, out, err = await run_fastws("replay", str(path), option, value)
    assert code == 2, err
    assert err.strip().splitlines() == [f"fastws replay: error: {message}"] and out == ""


async def test_no_client_within_wait_client_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    _capture(path, [(BTC, 0)])
    code, out, err = await run_fastws("replay", str(path), "--wait-client", "0.5")
    assert code == 1
    assert out.startswith(f"replaying {path} (binance, 1 data frames")
    assert err.strip().splitlines()[-1] == "fastws replay: error: no client subscribed within 0.5 s"


async def test_a_damaged_capture_is_served_up_to_its_damage(tmp_path: Path) -> None:
    path = tmp_path / "damaged.fwscap"
    payloads = _capture(path, [(BTC, i * 1000) for i in range(5)], streams=(BTC,))
    with open(path, "ab") as file:
        file.write(b"\x01\x02\x03")        # a record cut short, as by a crash mid-write
    received: list[Any] = []
    process = await fastws_process("replay", str(path), "--speed", "0", "--port", "0")
    try:
        url = await replay_url(process, path, 5)
        ws = BinanceWebSocket(ExchangeName("binance"), binance_config(url, max_reconnect_attempts=1),
                              received.append)
        async with ws:
            await ws.subscribe([BTC])
            await until(lambda: len(received) == 5, 10, "the five complete frames")
            out, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert received == [msgspec.json.decode(p) for p in payloads]
    notes = [line for line in err.decode().splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "serving the 5 complete frames before it" in notes[0], err.decode()
    assert "replayed 5 frames (5 sent" in out.decode()


async def test_a_stream_unsubscribed_before_the_playback_is_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "two.fwscap"
    payloads = _capture(path, [(BTC if i % 2 else ETH, i * 1000) for i in range(10)])
    eth = [msgspec.json.decode(p) for p in payloads if b'"ethusdt@trade"' in p]
    received: list[Any] = []
    # The capture names two streams; the client never holds both, so the
    # playback waits for the grace, by which time BTC is unsubscribed.
    async with ReplayServer(path, speed=0, start_grace=1.5) as replay:
        async with BinanceWebSocket(ExchangeName("binance"), binance_config(replay.ws_url()),
                                    received.append) as ws:
            await ws.subscribe([BTC])
            await ws.unsubscribe([BTC])
            await ws.subscribe([ETH])
            assert not replay.started, "the playback started before the grace"
            assert await replay.wait_finished(timeout=10) == 10
            await until(lambda: len(received) == len(eth), 5, "the ethusdt trades")
    assert received == eth
    assert replay.unsent == 10 - len(eth)


async def test_max_pause_shortens_a_long_gap(tmp_path: Path) -> None:
    path = tmp_path / "appended.fwscap"
    hour = 3600 * 10**9
    # Two runs of 3 frames each, recorded an hour apart.
    _capture(path, [(BTC, 0), (BTC, 10**6), (BTC, 2 * 10**6),
                    (BTC, hour), (BTC, hour + 10**6), (BTC, hour + 2 * 10**6)], streams=(BTC,))
    received: list[Any] = []
    async with ReplayServer(path, speed=1.0, max_pause=0.2) as replay:
        async with BinanceWebSocket(ExchangeName("binance"), binance_config(replay.ws_url()),
                                    lambda message: received.append(time.monotonic())) as ws:
            subscribed_at = time.monotonic()
            await ws.subscribe([BTC])
            # The hour is cut to max_pause: finished within seconds, not an hour.
            assert await replay.wait_finished(timeout=30) == 6
            await until(lambda: len(received) == 6, 5, "all six frames")
    # ... but never shorter than max_pause: the fourth frame is due 0.202 s after
    # the playback's start (uvloop's timers have 1 ms granularity).
    assert received[3] - subscribed_at >= 0.2


async def test_a_negative_speed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    _capture(path, [(BTC, 0)])
    with pytest.raises(ValueError, match="speed must be >= 0, got -1"):
        ReplayServer(path, speed=-1)
