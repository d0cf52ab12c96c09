"""The command line's promises, in subprocesses against the simulators on 127.0.0.1.

Errors are one line (exit status 2 for a bad argument, 1 for a failure), each
client error is printed once, and ``--max-messages`` stops at exactly that
many messages, in the output and in a recording's file.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import msgspec
import pytest

from exchanges.binance.simulator import BinanceSimulator
from fastws.recording import KIND_TEXT, CaptureReader

from tests.conftest import run_fastws

DEPTH = "btcusdt@depth"
TRADE = "btcusdt@trade"


def _data_messages(path: Path) -> int:
    """Binance data messages (combined envelopes) in a capture."""
    with CaptureReader(path) as reader:
        return sum(r.kind == KIND_TEXT and r.payload.startswith(b'{"stream"') for r in reader)


@pytest.mark.parametrize("command", ["stream", "record"])
async def test_a_bad_url_is_one_line_and_status_2(command: str, tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "x.fwscap")] if command == "record" else []
    code, stdout, err = await run_fastws(command, "binance", TRADE, "--url", "http://x", *out)
    assert code == 2, err
    assert err.strip().splitlines() == [
        f"fastws {command}: error: --url http://x: url must start with ws:// or wss://, got 'http://x'"]
    assert stdout == "" and not (tmp_path / "x.fwscap").exists()


@pytest.mark.parametrize("command", ["stream", "record"])
@pytest.mark.parametrize("option", ["--duration", "--max-messages", "--connect-timeout"])
async def test_a_value_that_is_not_positive_is_refused(command: str, option: str, tmp_path: Path) -> None:
    out = ["--out", str(tmp_path / "x.fwscap")] if command == "record" else []
    # Port 9 (discard) refuses: a command that went on would try to connect.
    code, _, err = await run_fastws(command, "binance", TRADE, "--url", "ws://127.0.0.1:9/", option, "-1", *out)
    assert code == 2, err
    assert err.strip().splitlines() == [f"fastws {command}: error: {option} must be > 0, got -1"]


async def test_a_failed_connect_prints_each_error_once() -> None:
    code, _, err = await run_fastws("stream", "binance", TRADE, "--url", "ws://127.0.0.1:9/",
                                    "--connect-timeout", "2")
    assert code == 1
    lines = err.strip().splitlines()
    # The header, one line per failed attempt (the error handler), the final error; no log lines.
    assert all(line.startswith("fastws stream: ") for line in lines), lines
    attempts = [line for line in lines[1:-1] if "cannot connect to ws://127.0.0.1:9/" in line]
    assert attempts and len(attempts) == len(lines) - 2, lines
    assert lines[-1].startswith("fastws stream: error: could not connect to ws://127.0.0.1:9/ within 2 s")
    assert "Traceback" not in err


@pytest.mark.parametrize("limit", [1, 60])
async def test_stream_max_messages_prints_exactly_that_many(limit: int) -> None:
    # A fast feed on two streams: several messages arrive in one read, after the limit too.
    async with BinanceSimulator(rate=3000) as sim:
        code, out, err = await run_fastws("stream", "binance", DEPTH, TRADE, "--url", sim.url, "--json",
                                          "--max-messages", str(limit))
    assert code == 0, err
    messages = [msgspec.json.decode(line) for line in out.splitlines()]
    assert len(messages) == limit, err
    assert f"fastws stream: {limit} message(s) printed in " in err


@pytest.mark.parametrize("limit", [1, 60])
async def test_record_max_messages_records_and_reports_exactly_that_many(limit: int, tmp_path: Path) -> None:
    path = tmp_path / "capture.fwscap"
    async with BinanceSimulator(rate=3000) as sim:
        code, out, err = await run_fastws("record", "binance", DEPTH, TRADE, "--url", sim.url,
                                          "--max-messages", str(limit), "--out", str(path))
    assert code == 0, err
    assert _data_messages(path) == limit
    # One ack (the subscription's control reply) besides the data.
    assert out.startswith(f"recorded {limit} data messages ({limit + 1} records with the control replies "
                          "and markers, "), out


async def test_a_sequence_gap_says_it_counts_update_ids() -> None:
    async with BinanceSimulator(rate=0) as sim:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fastws", "stream", "binance", DEPTH, "--url", sim.url, "--json",
            "--max-messages", "10", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await sim.wait_subscribed([DEPTH], timeout=30)
            sim.step(5)
            sim.skip_sequence(10)     # ten whole messages are never sent
            sim.step(20)
            out, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    updates = [msgspec.json.decode(line)["data"] for line in out.decode().splitlines()]
    jumps = [b["U"] - a["u"] - 1 for a, b in zip(updates, updates[1:])]
    skipped_ids = max(jumps)
    assert skipped_ids > 10 and jumps.count(0) == len(jumps) - 1, jumps     # ids, not messages
    (line,) = [line for line in err.decode().splitlines() if "missing" in line]
    assert f"{DEPTH}: {skipped_ids} update id(s) missing (expected sequence " in line, line


async def test_messages_after_the_limit_are_neither_printed_nor_counted() -> None:
    """The handlers alone: messages the client hands over between the limit and its stop
    (a read holding several) change nothing."""
    import io

    from exchanges.binance import BinanceWebSocket, binance_config
    from fastws.commands.record import _Recorder
    from fastws.commands.stream import _Printer
    from fastws.types import ExchangeName

    out = io.StringIO()
    printer = _Printer(out, as_json=True, quiet=False, max_messages=2)
    for index in range(5):
        printer.on_message({"stream": TRADE, "data": {"t": index}})
    assert printer.count == 2 and printer.done.is_set()
    assert out.getvalue().splitlines() == ['{"stream":"btcusdt@trade","data":{"t":0}}',
                                           '{"stream":"btcusdt@trade","data":{"t":1}}']

    recorder = _Recorder(max_messages=2, done=asyncio.Event())
    recorder.ws = BinanceWebSocket(ExchangeName("binance"), binance_config("ws://127.0.0.1:9/"), print)
    recorder.ws.set_frame_tap(lambda payload, receive_ns, opcode: None)
    for index in range(5):
        recorder.on_message({"stream": TRADE, "data": {"t": index}})
    assert recorder.messages == 2 and recorder.limit_reached and recorder.done.is_set()
    assert recorder.ws._frame_tap is None       # nothing written after the limit
    await recorder.ws.stop()
