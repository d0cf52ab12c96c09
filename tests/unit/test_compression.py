"""permessage-deflate in bytes: negotiation, the core fed with built frames, the app-level helper."""
from __future__ import annotations

import gzip
import zlib
from typing import Any, Optional

import pytest
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from fastws import ExchangeAPIError, FrameHandler, InvalidMessageError, create_websocket_config
from fastws.compression import (CompressionNegotiationError, DeflateParameters, decompress_message,
                                negotiate, offer_header, parse_extension_header)

# ----------------------------------------------------------------- negotiation


def test_offer_header() -> None:
    assert offer_header() == "permessage-deflate; client_max_window_bits"
    assert offer_header(10, 12) == "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"
    with pytest.raises(ValueError):
        offer_header(16)
    with pytest.raises(ValueError):
        offer_header(None, 7)


def test_parse_extension_header_syntax() -> None:
    assert parse_extension_header(['permessage-deflate; Server_Max_Window_Bits="10" ;client_no_context_takeover',
                                   "x-other"]) == [
        ("permessage-deflate", [("server_max_window_bits", "10"), ("client_no_context_takeover", None)]),
        ("x-other", []),
    ]
    for bad in ["permessage-deflate; a b", "per message-deflate", 'permessage-deflate; x="1', "; x",
                "permessage-deflate; x=", "permessage-deflate; =1"]:
        with pytest.raises(CompressionNegotiationError):
            parse_extension_header([bad])


def test_declined_is_none() -> None:
    assert negotiate([]) is None
    assert negotiate([""]) is None


@pytest.mark.parametrize("answer, expected", [
    ("permessage-deflate", DeflateParameters()),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     DeflateParameters(True, True, 15, 15)),
    ("permessage-deflate; server_max_window_bits=9; client_max_window_bits=8",
     DeflateParameters(False, False, 9, 8)),
    ("PerMessage-Deflate; client_max_window_bits=\"12\"", DeflateParameters(False, False, 15, 12)),
])
def test_accepted_answers(answer: str, expected: DeflateParameters) -> None:
    assert negotiate([answer]) == expected


@pytest.mark.parametrize("answer, match", [
    ("x-webkit-deflate-frame", "x-webkit-deflate-frame"),
    ("permessage-deflate, permessage-deflate", "only one"),
    ("permessage-deflate; mystery=1", "did not offer"),
    ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", "repeats"),
    ("permessage-deflate; server_no_context_takeover=1", "takes no value"),
    ("permessage-deflate; server_max_window_bits=7", "window size"),
    ("permessage-deflate; server_max_window_bits=16", "window size"),
    ("permessage-deflate; server_max_window_bits", "window size"),
    ("permessage-deflate; client_max_window_bits", "window size"),
    ("permessage-deflate; client_max_window_bits=abc", "window size"),
])
def test_answers_that_fail_the_connection(answer: str, match: str) -> None:
    with pytest.raises(CompressionNegotiationError, match=match) as info:
        negotiate([answer])
    assert isinstance(info.value, ExchangeAPIError) and isinstance(info.value, ValueError)


def test_answer_must_respect_what_was_offered() -> None:
    assert negotiate(["permessage-deflate; client_max_window_bits=9"], client_window_bits=10) == \
        DeflateParameters(client_max_window_bits=9)
    assert negotiate(["permessage-deflate"], client_window_bits=10) == DeflateParameters(client_max_window_bits=10)
    with pytest.raises(CompressionNegotiationError, match="exceeds the 10 offered"):
        negotiate(["permessage-deflate; client_max_window_bits=11"], client_window_bits=10)
    with pytest.raises(CompressionNegotiationError, match="exceeds the 12 asked for"):
        negotiate(["permessage-deflate; server_max_window_bits=13"], server_window_bits=12)
    with pytest.raises(CompressionNegotiationError, match="omits server_max_window_bits"):
        negotiate(["permessage-deflate"], server_window_bits=12)


def test_config_fields() -> None:
    config = create_websocket_config("ws://127.0.0.1:1/x", enable_compression=True,
                                     compression_client_window_bits=10, compression_server_window_bits=12,
                                     compression_threshold=0)
    assert config.enable_compression and config.compression_threshold == 0
    for name, value in [("compression_client_window_bits", 7), ("compression_server_window_bits", 16),
                        ("compression_client_window_bits", True), ("compression_threshold", -1),
                        ("enable_compression", "yes")]:
        with pytest.raises(ValueError, match=name):
            create_websocket_config("ws://127.0.0.1:1/x", **{name: value})


# -------------------------------------------------------- the core, fed frames


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []
        self.errors: list[tuple[str, str]] = []

    def parse(self, view: Any, core: FrameHandler) -> Any:
        return core.frame_type, bytes(view)

    def extract(self, message: Any) -> None:
        return None

    def handle(self, message: tuple[int, bytes]) -> None:
        self.messages.append(message)

    def report(self, kind: str, exc: BaseException, payload: Optional[bytes]) -> None:
        self.errors.append((kind, str(exc)))


def make(rec: Recorder, max_message_size: int = 1 << 20, **deflate: Any) -> FrameHandler:
    core = FrameHandler(rec.parse, rec.extract, rec.handle, rec.report, parse_with_handler=True,
                        max_message_size=max_message_size)
    if deflate.pop("enable", True):
        core.enable_deflate(**deflate)
    return core


class Sender:
    """A permessage-deflate sender as RFC 7692 section 7.2.1 describes it."""

    def __init__(self, wbits: int = 15, no_context: bool = False) -> None:
        self.wbits = wbits
        self.no_context = no_context
        self.compressor = zlib.compressobj(9, zlib.DEFLATED, -wbits)

    def compress(self, data: bytes) -> bytes:
        if self.no_context:
            self.compressor = zlib.compressobj(9, zlib.DEFLATED, -self.wbits)
        out = self.compressor.compress(data) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]


def frame(payload: bytes, msg_type: WSMsgType = WSMsgType.TEXT, fin: bool = True, rsv1: bool = True) -> Any:
    return _make_test_ws_frame(msg_type, payload, fin, rsv1)


def messages(count: int) -> list[bytes]:
    return [b'{"stream":"btcusdt@depth","data":{"u":%d,"b":[["%d.5","1.25"]]}}' % (i, 60000 + i % 7)
            for i in range(count)]


@pytest.mark.parametrize("no_context", [False, True])
def test_compressed_messages_in_a_row_keep_the_shared_context(no_context: bool) -> None:
    rec = Recorder()
    core = make(rec, server_no_context_takeover=no_context)
    sender = Sender(no_context=no_context)
    sent = messages(300)
    wire = [sender.compress(m) for m in sent]
    if not no_context:
        # Later messages refer back to earlier ones: a fresh inflater could not read them.
        assert len(wire[-1]) < len(zlib.compress(sent[-1])) - 6
    for data in wire:
        core.on_ws_frame(None, frame(data))
    assert rec.errors == []
    assert rec.messages == [(1, m) for m in sent]
    assert core.compressed_received == 300
    assert core.inflated_bytes == sum(map(len, sent))
    assert core.bytes_received == sum(map(len, wire))


def test_uncompressed_frames_pass_untouched_between_compressed_ones() -> None:
    rec = Recorder()
    core = make(rec)
    sender = Sender()
    core.on_ws_frame(None, frame(sender.compress(b"one" * 50)))
    core.on_ws_frame(None, frame(b"\x00\x01raw", WSMsgType.BINARY, rsv1=False))
    core.on_ws_frame(None, frame(sender.compress(b"two" * 50), WSMsgType.BINARY))
    assert rec.messages == [(1, b"one" * 50), (2, b"\x00\x01raw"), (2, b"two" * 50)]
    assert core.compressed_received == 2 and rec.errors == []


def test_fragmented_compressed_message() -> None:
    rec = Recorder()
    core = make(rec)
    sender = Sender()
    body = b"".join(messages(200))
    data = sender.compress(body)
    pieces = [data[i:i + 97] for i in range(0, len(data), 97)]
    core.on_ws_frame(None, frame(pieces[0], WSMsgType.BINARY, fin=False, rsv1=True))
    for piece in pieces[1:-1]:
        core.on_ws_frame(None, frame(piece, WSMsgType.CONTINUATION, fin=False, rsv1=False))
    core.on_ws_frame(None, frame(pieces[-1], WSMsgType.CONTINUATION, fin=True, rsv1=False))
    # Then a plain fragmented message, and a compressed one in one frame: the context is in step.
    core.on_ws_frame(None, frame(b"ab", fin=False, rsv1=False))
    core.on_ws_frame(None, frame(b"cd", WSMsgType.CONTINUATION, rsv1=False))
    core.on_ws_frame(None, frame(sender.compress(body)))
    assert rec.errors == []
    assert rec.messages == [(2, body), (1, b"abcd"), (1, body)]


def test_final_block_from_the_server_starts_a_new_stream() -> None:
    # A server may end a message with BFINAL set (RFC 7692 section 7.2.3.3).
    rec = Recorder()
    core = make(rec)
    for text in (b"first" * 20, b"second" * 20):
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        core.on_ws_frame(None, frame(compressor.compress(text) + compressor.flush()))
    assert rec.messages == [(1, b"first" * 20), (1, b"second" * 20)] and rec.errors == []


def test_decompression_bomb_is_bounded_and_reported() -> None:
    rec = Recorder()
    core = make(rec, max_message_size=64 * 1024)
    bomb = Sender().compress(b"\x00" * (50 * 1024 * 1024))
    assert len(bomb) < 100 * 1024
    core.on_ws_frame(None, frame(bomb, WSMsgType.BINARY))
    assert rec.messages == []
    assert [kind for kind, _ in rec.errors] == ["oversize"]
    assert "max_message_size (65536)" in rec.errors[0][1]
    # The connection is failed: later compressed frames are dropped, not inflated.
    core.on_ws_frame(None, frame(Sender().compress(b"late")))
    assert rec.messages == [] and len(rec.errors) == 1


def test_message_of_exactly_the_limit_is_accepted() -> None:
    rec = Recorder()
    core = make(rec, max_message_size=4096)
    core.on_ws_frame(None, frame(Sender().compress(b"y" * 4096)))
    assert rec.messages == [(1, b"y" * 4096)] and rec.errors == []


def test_fragmented_bomb_is_bounded() -> None:
    rec = Recorder()
    core = make(rec, max_message_size=64 * 1024)
    bomb = Sender().compress(b"\x00" * (10 * 1024 * 1024))
    core.on_ws_frame(None, frame(bomb[:100], WSMsgType.BINARY, fin=False))
    core.on_ws_frame(None, frame(bomb[100:], WSMsgType.CONTINUATION, rsv1=False))
    assert [kind for kind, _ in rec.errors] == ["oversize"] and rec.messages == []


def test_rsv1_without_negotiation_is_a_protocol_error() -> None:
    rec = Recorder()
    core = make(rec, enable=False)
    core.on_ws_frame(None, frame(Sender().compress(b"hello")))
    assert rec.messages == []
    assert rec.errors == [("protocol", "frame with RSV1 set, but no extension was negotiated")]
    assert core.protocol_errors == 1 and core.counters()["protocol_errors"] == 1


def test_rsv1_on_a_continuation_is_a_protocol_error() -> None:
    rec = Recorder()
    core = make(rec)
    data = Sender().compress(b"hello" * 40)
    core.on_ws_frame(None, frame(data[:5], fin=False))
    core.on_ws_frame(None, frame(data[5:], WSMsgType.CONTINUATION, rsv1=True))
    assert rec.messages == [] and [kind for kind, _ in rec.errors] == ["protocol"]
    assert "continuation" in rec.errors[0][1]


def test_corrupt_deflate_data_is_a_protocol_error() -> None:
    rec = Recorder()
    core = make(rec)
    core.on_ws_frame(None, frame(b"\xff\xff\xff\xff not deflate"))
    assert rec.messages == [] and [kind for kind, _ in rec.errors] == ["protocol"]
    assert "cannot inflate" in rec.errors[0][1]


def test_enable_deflate_validates() -> None:
    rec = Recorder()
    core = make(rec, enable=False)
    assert not core.deflate_enabled
    with pytest.raises(ValueError):
        core.enable_deflate(server_max_window_bits=7)
    with pytest.raises(ValueError):
        core.enable_deflate(compress_threshold=-1)
    core.enable_deflate(server_max_window_bits=8)
    assert core.deflate_enabled
    # A server limited to 8 bits compresses with a 2**9 window in zlib; still read.
    core.on_ws_frame(None, frame(Sender(wbits=9).compress(b"abc" * 300)))
    assert rec.messages == [(1, b"abc" * 300)]


# ----------------------------------------------------- application-level helper

BODY = b'{"ch":"market.btcusdt.depth","tick":{"bids":[[1,2]]}}' * 20


@pytest.mark.parametrize("fmt, data", [
    ("gzip", gzip.compress(BODY)),
    ("zlib", zlib.compress(BODY)),
    ("deflate", b""),
])
def test_decompress_message_formats(fmt: str, data: bytes) -> None:
    if fmt == "deflate":
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = compressor.compress(BODY) + compressor.flush()
    assert decompress_message(memoryview(data), 1 << 20, fmt) == BODY  # type: ignore[arg-type]
    assert decompress_message(data, 1 << 20) == BODY          # auto-detected
    assert decompress_message(bytearray(data), len(BODY)) == BODY


def test_decompress_message_sync_flushed_raw_deflate() -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(BODY) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert decompress_message(data, 1 << 20, "deflate") == BODY


def test_decompress_message_errors() -> None:
    bomb = gzip.compress(b"\x00" * (20 * 1024 * 1024))
    with pytest.raises(InvalidMessageError, match="more than 1000 bytes"):
        decompress_message(bomb, 1000)
    with pytest.raises(InvalidMessageError, match="more than"):
        decompress_message(zlib.compress(BODY), len(BODY) - 1)
    with pytest.raises(InvalidMessageError, match="truncated gzip"):
        decompress_message(gzip.compress(BODY)[:-12], 1 << 20)
    with pytest.raises(InvalidMessageError, match="corrupt gzip"):
        decompress_message(b"\x1f\x8b" + b"\x00" * 20, 1 << 20)
    with pytest.raises(ValueError):
        decompress_message(b"x", 0)
    with pytest.raises(ValueError):
        decompress_message(b"x", 10, "brotli")  # type: ignore[arg-type]
