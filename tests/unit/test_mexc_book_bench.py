"""bench/mexc_book_bench.py: its peers keep the same book, and figures() reports every peer."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.mexc_book_bench import ProtobufDecimalDict, build_mexc_stream, check, figures, make_peers

BENCH = Path(__file__).resolve().parents[2] / "bench" / "mexc_book_bench.py"


def test_the_stream_is_mexcs_and_every_peer_ends_with_the_reference_book() -> None:
    stream = build_mexc_stream(levels=200, updates=40)
    # MEXC writes decimals unpadded: no fraction ends with a zero.
    assert b"." in stream.snapshot and re.search(rb'\.[0-9]*0"', stream.snapshot) is None
    assert len(stream.diffs) == 40 and 30 < stream.levels_per_push < 50
    check(make_peers(), stream)


def test_figures_name_every_peer_with_its_ratio() -> None:
    result = figures(levels=200, updates=20, rounds=3)
    peers = result["peers"]
    assert peers["fastws book"]["vs_fastws"] == 1.0
    assert {"fastws BookSync", ProtobufDecimalDict.name, "protobuf only"} <= set(peers)
    for row in peers.values():
        assert row["ns_per_push"] > 0 and row["ns_per_level"] * result["levels_per_push"] > 0


def test_the_command_line_prints_the_table() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--levels", "200", "--updates", "10", "--rounds", "2"],
                          capture_output=True, text=True, timeout=120, check=True)
    assert "fastws book" in done.stdout and "goal: protobuf + Decimal dict >= 30x" in done.stdout
