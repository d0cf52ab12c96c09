"""The benchmark report comes out of one command: ``scripts/benchmark_websocket_performance.py``
and ``python -m fastws bench``, each run once with ``--quick`` into a temporary folder."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "benchmark_websocket_performance.py"
TIMEOUT = 180
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("latency.png", "throughput.png", "per_message.png", "memory.png", "books.png")
SECTIONS = (
    "## Targets of the interface standard",
    "## Targets of issue 6 (fastws)",
    "## Per-message cost: Binance, in-process",
    "## Per-message cost: Binance, loopback end to end",
    "## Per-message cost: MEXC protobuf pushes, in-process",
    "## Throughput: one connection",
    "## Tick-to-handler latency at",
    "## Reconnection",
    "## Subscription acknowledgment",
    "## Scale: concurrent connections in one process",
    "## Order books",
    "## Plots",
)
STANDARD_TARGETS = (
    "message processing < 1 ms", "connection < 2 s", "reconnection < 5 s", "acknowledgment < 100 ms",
    ">= 1000 messages/s per connection", ">= 20 connections", "< 100 MB per connection",
    "< 10 % CPU per connection",
)
ISSUE_TARGETS = (
    "dict route <= 1.0x raw picows + msgspec (mix)", "typed route <= 0.67x raw picows + msgspec (mix)",
    ">= 4x faster than websockets (dict route, mix)", "reconnection median <= 5 ms",
    "<= 150 KB RSS per idle connection",
)
BOOK_TARGETS = (
    ">= 4x faster than picows + msgspec + order-book", ">= 2x faster than picows + msgspec dicts",
    ">= 10x faster than websockets + json + dict book", "<= 60 ns per level, in process",
)
BOOK_PEERS = ("fastws book", "picows + msgspec + order-book", "picows + msgspec dicts",
              "websockets + json + dict book")
PEERS = ("fastws typed", "fastws dict", "raw msgspec", "raw json", "websockets json", "aiohttp json")
NUMBER = r"[0-9][0-9.,e+]*"


def _run(command: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*command, "--quick", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=TIMEOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def script_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The script run once with ``--quick``; its output folder and process result."""
    out = tmp_path_factory.mktemp("bench-report")
    return out, _run([sys.executable, str(SCRIPT)], out)


def _section(report: str, heading: str) -> str:
    return report.split(heading, 1)[1].split("\n## ", 1)[0]


def test_report_has_every_section_and_is_printed(script_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, result = script_run
    report = (out / "report.md").read_text()
    for heading in SECTIONS:
        assert heading in report, heading
    assert report.strip() == result.stdout.strip()
    assert "[bench] scale" in result.stderr            # progress on stderr


@pytest.mark.parametrize("name", STANDARD_TARGETS + ISSUE_TARGETS + BOOK_TARGETS)
def test_every_target_row_has_a_measured_value_limit_margin_and_result(
        script_run: tuple[Path, subprocess.CompletedProcess[str]], name: str) -> None:
    report = (script_run[0] / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 1, name
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    measured, limit, margin, verdict = cells[1:5]
    assert re.match(NUMBER, measured) and re.match(f"(<=|>=) {NUMBER}", limit), rows[0]
    assert re.fullmatch(f"{NUMBER}x", margin) and verdict in ("PASS", "FAIL"), rows[0]


def test_tables_put_fastws_beside_its_peers(script_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    report = (script_run[0] / "report.md").read_text()
    loopback = _section(report, "## Per-message cost: Binance, loopback end to end")
    for kind in ("depthUpdate", "trade", "bookTicker", "mix"):
        assert f"| {kind} |" in loopback, kind
    for peer in PEERS:
        assert f"{peer} ns" in loopback, peer
        assert f"| {peer} |" in _section(report, "## Throughput: one connection"), peer
        assert f"| {peer} |" in _section(report, "## Tick-to-handler latency at"), peer
    assert "reference us" in _section(report, "## Per-message cost: MEXC protobuf pushes, in-process")
    scale = _section(report, "## Scale: concurrent connections in one process")
    assert "| fastws | 20 |" in scale and "| fastws | 50 |" in scale
    books = _section(report, "## Order books")
    for peer in BOOK_PEERS:
        assert re.search(rf"\| {re.escape(peer)} \| {NUMBER} \| {NUMBER}x \| {NUMBER} \| {NUMBER}x \|", books), peer
    assert "| msgspec + Decimal dict |" in books


def test_plots_are_png_files(script_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out = script_run[0]
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 5000, name
        assert f"]({name})" in (out / "report.md").read_text()


def test_fastws_bench_command_writes_the_report(tmp_path: Path) -> None:
    _run([sys.executable, "-m", "fastws", "bench"], tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "## Targets of the interface standard" in report
    assert all((tmp_path / name).read_bytes().startswith(PNG_MAGIC) for name in PLOTS)
