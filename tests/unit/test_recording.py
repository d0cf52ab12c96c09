"""The capture format: round trip, append, damaged tails, corrupt records, wrong files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastws.recording import (KIND_BINARY, KIND_FEED_BACK, KIND_FEED_LOST, KIND_TEXT, MAGIC, CaptureError,
                              CaptureReader, CaptureWriter, Record, encode_record)

FRAMES = [
    (b'{"result":null,"id":1}', 1_700_000_000_000_000_000, KIND_TEXT),
    (b'{"stream":"btcusdt@depth","data":{"U":1,"u":2}}', 1_700_000_000_001_000_000, KIND_TEXT),
    (b"\n\x00\xff binary \x00", 1_700_000_000_002_500_000, KIND_BINARY),
    (b"", 1_700_000_000_003_000_000, KIND_BINARY),
]


def _write(path: Path, frames: list[tuple[bytes, int, int]], **meta: object) -> None:
    with CaptureWriter(path, {"exchange": "binance", **meta}) as writer:
        for payload, ns, opcode in frames:
            writer.write_frame(payload, ns, opcode)


def _read(path: Path) -> tuple[list[Record], CaptureReader]:
    with CaptureReader(path) as reader:
        return list(reader), reader


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    _write(path, FRAMES, url="ws://x", streams=["btcusdt@depth"])
    records, reader = _read(path)
    assert records == [Record(ns, op, payload) for payload, ns, op in FRAMES]
    assert reader.damage is None
    assert reader.records == len(FRAMES)
    assert reader.valid_end == path.stat().st_size
    assert reader.metadata["exchange"] == "binance"
    assert reader.metadata["streams"] == ["btcusdt@depth"]
    assert isinstance(reader.metadata["created_ns"], int)


def test_markers(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    with CaptureWriter(path, {"exchange": "mexc"}) as writer:
        writer.write_marker(KIND_FEED_LOST, "peer closed (1001)", 5)
        writer.write_marker(KIND_FEED_BACK, "resubscribed", 6)
        with pytest.raises(ValueError):
            writer.write_marker(KIND_TEXT, "no")
    records, _ = _read(path)
    assert records == [Record(5, KIND_FEED_LOST, b"peer closed (1001)"), Record(6, KIND_FEED_BACK, b"resubscribed")]


def test_buffered_until_flush(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    writer = CaptureWriter(path, {"exchange": "binance"}, buffer_size=1 << 20, flush_interval=3600)
    header_size = path.stat().st_size
    writer.write_frame(b"x" * 100, 1, KIND_TEXT)
    assert path.stat().st_size == header_size          # still buffered
    writer.flush()
    assert path.stat().st_size == header_size + len(encode_record(1, KIND_TEXT, b"x" * 100))
    writer.write_frame(b"y", 2, KIND_TEXT)
    writer.close()
    writer.close()                                     # twice is fine
    assert writer.closed
    assert [r.payload for r in _read(path)[0]] == [b"x" * 100, b"y"]


def test_flushes_when_buffer_full(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    writer = CaptureWriter(path, {}, buffer_size=1000, flush_interval=3600)
    for i in range(20):
        writer.write_frame(b"z" * 100, i, KIND_TEXT)
    records, reader = _read(path)
    # On disk already, all but less than one buffer's worth: a crash loses at most that.
    assert reader.damage is None and 12 <= len(records) < 20
    assert writer.bytes_written - (reader.valid_end - len(_header(path))) < 1000
    writer.close()
    assert len(_read(path)[0]) == 20


def _header(path: Path) -> bytes:
    with CaptureReader(path) as reader:
        return path.read_bytes()[:reader.valid_end]


def test_append_to_existing(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    _write(path, FRAMES[:2], url="first")
    with CaptureWriter(path, {"exchange": "binance", "url": "second"}) as writer:
        assert writer.appended and writer.repaired is None
        assert writer.metadata["url"] == "first"        # the file's header stays
        for payload, ns, op in FRAMES[2:]:
            writer.write_frame(payload, ns, op)
    records, reader = _read(path)
    assert records == [Record(ns, op, payload) for payload, ns, op in FRAMES]
    assert reader.damage is None


def test_append_other_exchange_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    _write(path, FRAMES)
    with pytest.raises(CaptureError, match="capture of binance, cannot append mexc"):
        CaptureWriter(path, {"exchange": "mexc"})


def test_empty_file_gets_a_header(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    path.write_bytes(b"")
    _write(path, FRAMES[:1])
    assert len(_read(path)[0]) == 1


def test_cut_at_every_offset_of_the_last_record(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    _write(path, FRAMES[:3])
    whole = path.read_bytes()
    last = len(encode_record(FRAMES[2][1], FRAMES[2][2], FRAMES[2][0]))
    start = len(whole) - last
    expected = [Record(ns, op, payload) for payload, ns, op in FRAMES[:2]]
    cut_path = tmp_path / "cut.fwscap"
    for cut in range(start, len(whole)):
        cut_path.write_bytes(whole[:cut])
        records, reader = _read(cut_path)
        assert records == expected, cut
        assert reader.valid_end == start
        if cut == start:
            assert reader.damage is None
        else:
            assert reader.damage is not None and "cut short" in reader.damage, cut
            assert f"offset {start}" in reader.damage
        # Appending repairs: the damaged tail is cut off, new records follow.
        with CaptureWriter(cut_path, {"exchange": "binance"}) as writer:
            assert (writer.repaired is None) == (cut == start)
            writer.write_frame(b"after", 9, KIND_TEXT)
        records, reader = _read(cut_path)
        assert records == expected + [Record(9, KIND_TEXT, b"after")] and reader.damage is None


@pytest.mark.parametrize("where", ["payload", "receive_ns", "checksum", "length"])
def test_corrupt_record_ends_reading(tmp_path: Path, where: str) -> None:
    path = tmp_path / "c.fwscap"
    _write(path, FRAMES[:3])
    data = bytearray(path.read_bytes())
    second = len(data) - len(encode_record(FRAMES[2][1], FRAMES[2][2], FRAMES[2][0])) \
        - len(encode_record(FRAMES[1][1], FRAMES[1][2], FRAMES[1][0]))
    position = {"length": second, "receive_ns": second + 5, "payload": second + 20,
                "checksum": second + 13 + len(FRAMES[1][0])}[where]
    data[position] ^= 0x40
    path.write_bytes(bytes(data))
    records, reader = _read(path)
    assert records == [Record(FRAMES[0][1], FRAMES[0][2], FRAMES[0][0])]
    assert reader.damage is not None and f"offset {second}" in reader.damage
    assert "checksum mismatch" in reader.damage or "cut short" in reader.damage or "length" in reader.damage


def test_wrong_magic_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b'{"stream":"btcusdt@depth"}\n' * 3)
    with pytest.raises(CaptureError, match="not a fastws capture"):
        CaptureReader(path)
    with pytest.raises(CaptureError, match="not a fastws capture"):
        CaptureWriter(path, {"exchange": "binance"})
    assert path.read_bytes() == b'{"stream":"btcusdt@depth"}\n' * 3     # left untouched


def test_damaged_header_and_version(tmp_path: Path) -> None:
    path = tmp_path / "c.fwscap"
    _write(path, FRAMES[:1])
    whole = path.read_bytes()
    path.write_bytes(whole[:len(MAGIC) + 3])
    with pytest.raises(CaptureError, match="truncated header"):
        CaptureReader(path)
    path.write_bytes(whole[:len(MAGIC)] + b"\x02\x00" + whole[len(MAGIC) + 2:])
    with pytest.raises(CaptureError, match="version 2"):
        CaptureReader(path)
    corrupt = bytearray(whole)
    corrupt[len(MAGIC) + 8] ^= 0x01          # inside the metadata
    path.write_bytes(bytes(corrupt))
    with pytest.raises(CaptureError, match="header checksum"):
        CaptureReader(path)


def test_missing_file_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        CaptureReader(tmp_path / "missing.fwscap")
    assert not os.path.exists(tmp_path / "missing.fwscap")
