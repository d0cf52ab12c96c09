"""Captures of raw WebSocket frames: the file format, a writer and a reader.

A capture holds the data messages one connection received, byte for byte,
with their wall-clock receive times, so that ``fastws.testing.replay`` can
serve them again through the same frame core.

File format (little-endian throughout)::

    header   MAGIC                 8 bytes  b"\\x89FWSCAP\\n"
             version               u16      FORMAT_VERSION (1)
             metadata length       u32      n
             metadata              n bytes  UTF-8 JSON object (exchange, url, streams, ...)
             header checksum       u32      zlib.crc32 of version, length and metadata
    record   payload length        u32      m (at most MAX_PAYLOAD)
             receive_ns            i64      Unix time of receipt, nanoseconds
             kind                  u8       1 text frame, 2 binary frame,
                                            16 feed lost, 17 feed back (markers)
             payload               m bytes  the message; a marker's reason in UTF-8
             checksum              u32      zlib.crc32 of every byte of the record before it
    record   ...

Records are only ever appended, and a record counts once its last byte (its
checksum) is in the file. A crash mid-write leaves at most one incomplete
record at the end: the reader stops before it, cleanly, and says so in
``CaptureReader.damage``; the writer, opening such a file to append, cuts the
damaged tail off first. A checksum that does not match ends the reading the
same way (what follows a corrupt record cannot be trusted to be framed right).

Example::

    with CaptureWriter("day.fwscap", {"exchange": "binance"}) as writer:
        ws.set_frame_tap(writer.write_frame)
        ...
    for record in CaptureReader("day.fwscap"):
        print(record.receive_ns, record.kind, len(record.payload))
"""
from __future__ import annotations

import json
import os
import struct
import time
import zlib
from types import TracebackType
from typing import IO, Any, Iterator, NamedTuple, Optional, Union

__all__ = ["CaptureError", "CaptureReader", "CaptureWriter", "FORMAT_VERSION", "KIND_BINARY",
           "KIND_FEED_BACK", "KIND_FEED_LOST", "KIND_TEXT", "MAGIC", "MAX_PAYLOAD", "Record", "encode_header",
           "encode_record"]

MAGIC = b"\x89FWSCAP\n"
"""The first 8 bytes of every capture (the high byte and newline catch text-mode copies)."""

FORMAT_VERSION = 1
"""The version this module writes and reads."""

MAX_PAYLOAD = 64 * 1024 * 1024
"""The longest payload a record may have; a longer length field means a corrupt record."""

KIND_TEXT = 1
"""A TEXT message (WebSocket opcode 1)."""
KIND_BINARY = 2
"""A BINARY message (WebSocket opcode 2)."""
KIND_FEED_LOST = 16
"""Marker: the connection was lost (payload: the reason); messages until KIND_FEED_BACK were missed."""
KIND_FEED_BACK = 17
"""Marker: connected again after a loss (payload: the reason); the resubscription's replies follow."""

_HEADER_FIXED = struct.Struct("<HI")
_RECORD_HEAD = struct.Struct("<IqB")
_CRC = struct.Struct("<I")
_READ_BUFFER = 1 << 20
_pack_head = _RECORD_HEAD.pack
_pack_crc = _CRC.pack
_crc32 = zlib.crc32

PathLike = Union[str, "os.PathLike[str]"]


class CaptureError(Exception):
    """A file that is not a readable capture (wrong magic, unknown version, damaged header)."""


class Record(NamedTuple):
    """One record of a capture.

    Attributes:
        receive_ns: Wall-clock receive time, Unix nanoseconds.
        kind: ``KIND_TEXT``, ``KIND_BINARY`` or a marker kind.
        payload: The message (a marker's reason as UTF-8).
    """

    receive_ns: int
    kind: int
    payload: bytes


def encode_header(metadata: dict[str, Any]) -> bytes:
    """The header bytes for ``metadata`` (a JSON-serializable dict)."""
    meta = json.dumps(metadata, separators=(",", ":"), sort_keys=True).encode()
    fixed = _HEADER_FIXED.pack(FORMAT_VERSION, len(meta))
    return MAGIC + fixed + meta + _CRC.pack(zlib.crc32(meta, zlib.crc32(fixed)))


def encode_record(receive_ns: int, kind: int, payload: bytes) -> bytes:
    """The bytes of one record."""
    head = _RECORD_HEAD.pack(len(payload), receive_ns, kind)
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


def _read_header(file: IO[bytes], name: str) -> dict[str, Any]:
    """Read and check the header at the file's start; return the metadata."""
    magic = file.read(len(MAGIC))
    if magic != MAGIC:
        raise CaptureError(f"{name}: not a fastws capture (wrong magic bytes)")
    fixed = file.read(_HEADER_FIXED.size)
    if len(fixed) < _HEADER_FIXED.size:
        raise CaptureError(f"{name}: truncated header")
    version, length = _HEADER_FIXED.unpack(fixed)
    if version != FORMAT_VERSION:
        raise CaptureError(f"{name}: capture format version {version}, this fastws reads {FORMAT_VERSION}")
    meta = file.read(length)
    crc = file.read(_CRC.size)
    if len(meta) < length or len(crc) < _CRC.size:
        raise CaptureError(f"{name}: truncated header")
    if _CRC.unpack(crc)[0] != zlib.crc32(meta, zlib.crc32(fixed)):
        raise CaptureError(f"{name}: header checksum mismatch")
    try:
        metadata = json.loads(meta)
    except ValueError as exc:
        raise CaptureError(f"{name}: header metadata is not JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise CaptureError(f"{name}: header metadata is not a JSON object")
    return metadata


class CaptureReader:
    """Iterate over the records of a capture, stopping cleanly at a damaged tail.

    Args:
        path: The capture file.

    Raises:
        CaptureError: the file is not a capture (checked at once).
        OSError: it cannot be opened.

    Attributes:
        metadata: The header's metadata.
        records: Complete records read so far.
        damage: ``None``, or one line saying why reading stopped early (a
            record cut short by a crash, a checksum mismatch); set once the
            iteration reached it.
        valid_end: File offset just after the last complete record read.

    Iterating twice reads the file twice. Use as a context manager, or call
    ``close()``; an iteration run to its end closes nothing (it may be repeated).
    """

    def __init__(self, path: PathLike) -> None:
        self.path = os.fspath(path)
        self._file: IO[bytes] = open(self.path, "rb", buffering=_READ_BUFFER)
        try:
            self.metadata = _read_header(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
        self._data_start = self._file.tell()
        self.records = 0
        self.damage: Optional[str] = None
        self.valid_end = self._data_start

    def __iter__(self) -> Iterator[Record]:
        file = self._file
        file.seek(self._data_start)
        self.records = 0
        self.damage = None
        offset = self.valid_end = self._data_start
        head_size, crc_size = _RECORD_HEAD.size, _CRC.size
        unpack_head, unpack_crc, crc32 = _RECORD_HEAD.unpack, _CRC.unpack, zlib.crc32
        while True:     # bounded by the file's length: every pass reads a record or ends
            head = file.read(head_size)
            if len(head) < head_size:
                if head:
                    self.damage = f"incomplete record at offset {offset} ({len(head)} bytes, cut short)"
                return
            length, receive_ns, kind = unpack_head(head)
            if length > MAX_PAYLOAD:
                self.damage = f"corrupt record at offset {offset} (length {length} over {MAX_PAYLOAD})"
                return
            body = file.read(length + crc_size)
            if len(body) < length + crc_size:
                self.damage = (f"incomplete record at offset {offset} ({head_size + len(body)} of "
                               f"{head_size + length + crc_size} bytes, cut short)")
                return
            payload = body[:length]
            if unpack_crc(body[length:])[0] != crc32(payload, crc32(head)):
                self.damage = f"corrupt record at offset {offset} (checksum mismatch)"
                return
            offset += head_size + length + crc_size
            self.records += 1
            self.valid_end = offset
            yield Record(receive_ns, kind, payload)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> "CaptureReader":
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()


class CaptureWriter:
    """Append records to a capture: buffered, flushed periodically and on close.

    A new file gets a header with ``metadata``. An existing capture is
    appended to: its own header stays (``metadata`` must not name another
    exchange), and a damaged tail left by a crash is cut off first
    (``repaired`` says what was cut).

    Args:
        path: The capture file (created if missing or empty).
        metadata: JSON-serializable header data, e.g. ``{"exchange": "binance",
            "url": ..., "streams": [...]}``; ``created_ns`` is added.
        buffer_size: Bytes buffered before a flush.
        flush_interval: Seconds after which a ``write_*`` call flushes the
            buffer anyway (``flush()`` may also be called on a timer).

    Attributes:
        metadata: The file's header metadata.
        records: Records written by this writer.
        bytes_written: Bytes of records written by this writer (buffered included).
        appended: Whether an existing capture was opened.
        repaired: ``None``, or what was wrong with the tail that was cut off.

    Raises:
        CaptureError: the file exists and is not a capture, or is a capture of
            another exchange.
    """

    def __init__(self, path: PathLike, metadata: Optional[dict[str, Any]] = None, *,
                 buffer_size: int = 256 * 1024, flush_interval: float = 1.0) -> None:
        self.path = os.fspath(path)
        self.buffer_size = buffer_size
        self.flush_interval = flush_interval
        self.records = 0
        self.bytes_written = 0
        self.appended = False
        self.repaired: Optional[str] = None
        self._buffer = bytearray()
        self._last_flush = time.monotonic()
        wanted = dict(metadata or {})
        self._file = open(self.path, "a+b", buffering=0)
        try:
            self.metadata = self._open_existing(wanted) if os.fstat(self._file.fileno()).st_size else None
            if self.metadata is None:
                wanted.setdefault("created_ns", time.time_ns())
                self.metadata = wanted
                self._file.truncate(0)
                self._write_all(encode_header(wanted))
        except BaseException:
            self._file.close()
            raise

    def _open_existing(self, wanted: dict[str, Any]) -> dict[str, Any]:
        reader = CaptureReader(self.path)
        try:
            for _ in reader:
                pass
        finally:
            reader.close()
        ours, theirs = wanted.get("exchange"), reader.metadata.get("exchange")
        if ours is not None and theirs is not None and ours != theirs:
            raise CaptureError(f"{self.path}: a capture of {theirs}, cannot append {ours} to it")
        if reader.damage is not None:
            self.repaired = reader.damage
            self._file.truncate(reader.valid_end)
        self.appended = True
        return reader.metadata

    def write_frame(self, payload: bytes, receive_ns: int, opcode: int) -> None:
        """Add one message; the signature of ``BaseWebSocketInterface.set_frame_tap``'s tap.

        ``opcode`` 1 (text) or 2 (binary) is the record's kind.
        """
        # Into the buffer piece by piece: no intermediate copy of the payload.
        head = _pack_head(len(payload), receive_ns, opcode)
        buffer = self._buffer
        buffer += head
        buffer += payload
        buffer += _pack_crc(_crc32(payload, _crc32(head)))
        self.records += 1
        self.bytes_written += len(head) + len(payload) + 4
        if len(self._buffer) >= self.buffer_size or time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def write_marker(self, kind: int, reason: str, receive_ns: Optional[int] = None) -> None:
        """Add a marker record (``KIND_FEED_LOST``, ``KIND_FEED_BACK``) with its reason."""
        if kind not in (KIND_FEED_LOST, KIND_FEED_BACK):
            raise ValueError(f"not a marker kind: {kind}")
        self.write_frame(reason.encode(), time.time_ns() if receive_ns is None else receive_ns, kind)

    def flush(self) -> None:
        """Write the buffered records to the file (to the OS; ``close()`` also syncs to disk)."""
        self._last_flush = time.monotonic()
        if self._buffer:
            self._write_all(self._buffer)
            self._buffer.clear()

    def _write_all(self, data: Union[bytes, bytearray]) -> None:
        view = memoryview(data)
        while view:       # bounded: each pass writes at least one byte or raises
            written = self._file.write(view)
            if not written:
                raise OSError(f"{self.path}: write made no progress")
            view = view[written:]

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._file.closed

    def close(self) -> None:
        """Flush, sync to disk and close; safe to call twice."""
        if self._file.closed:
            return
        try:
            self.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()

    def __enter__(self) -> "CaptureWriter":
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()
