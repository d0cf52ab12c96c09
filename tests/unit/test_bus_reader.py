"""The bus consumer's NATS reader, fed protocol bytes (fastws.bus.consumer_nats)."""
from __future__ import annotations

from typing import Any


import pytest

from fastws.bus.consumer_nats import NatsReader, fast_reader_supports


class Wire:
    """What the reader writes (its transport) and what it hands over."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.messages: list[tuple[int, int, bytes, bytes, bytes]] = []
        self.lost: list[str] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def reader() -> tuple[NatsReader, Wire]:
    wire = Wire()
    nats = NatsReader(lambda *message: wire.messages.append(message), wire.lost.append)
    nats.connection_made(wire)  # type: ignore[arg-type]
    nats._established = True
    return nats, wire


def hmsg(subject: bytes, sid: int, headers: bytes, payload: bytes, reply: bytes = b"") -> bytes:
    block = b"NATS/1.0\r\n" + headers + b"\r\n"
    head = b" ".join(x for x in (b"HMSG", subject, str(sid).encode(), reply) if x)
    return head + b" %d %d\r\n" % (len(block), len(block) + len(payload)) + block + payload + b"\r\n"


FRAME = b'{"stream":"btcusdt@depth","data":{"U":1,"u":2}}'
ID = b"binance.btcusdt%40depth.00112233aabbccdd"
GOOD = b"Nats-Msg-Id: " + ID + b"\r\nFastws-Recv-Ns: 1\r\nFastws-Opcode: 1\r\n"
STREAM = b"md.binance.btcusdt%40depth"
WIRE = (b"INFO {}\r\n+OK\r\n" + hmsg(STREAM, 1, GOOD, FRAME) + b"PING\r\n"
        + hmsg(STREAM, 1, GOOD.replace(b"Opcode: 1", b"Opcode: 2"), b"\x00\r\n\x01", reply=b"_INBOX.x")
        + b"MSG " + STREAM + b" 7 3\r\nabc\r\n"
        + hmsg(STREAM, 2, b"", b"{}") + hmsg(STREAM, 3, b"Nats-Msg-Id: x\r\n", b"{}")
        + hmsg(STREAM, 3, GOOD.replace(b"Opcode: 1", b"Opcode: 12"), b"{}") + b"PONG\r\n")
EXPECTED = [(1, 1, ID, FRAME, STREAM), (1, 2, ID, b"\x00\r\n\x01", STREAM), (7, -1, b"", b"abc", STREAM),
            (2, -1, b"", b"{}", STREAM), (3, 0, b"x", b"{}", STREAM), (3, 0, ID, b"{}", STREAM)]


def test_messages_split_anywhere_across_reads_come_out_whole_and_in_order() -> None:
    for size in range(1, 60):
        nats, wire = reader()
        for at in range(0, len(WIRE), size):
            nats.data_received(WIRE[at:at + size])
        assert wire.messages == EXPECTED, size
        assert wire.written == [b"PONG\r\n"] and wire.lost == [] and nats._buffer == b""


def test_commands_are_written_as_the_protocol_says() -> None:
    nats, wire = reader()
    assert nats.subscribe("md.binance.a") == 1 and nats.subscribe("md.binance.b") == 2
    nats.unsubscribe(1)
    assert wire.written == [b"SUB md.binance.a 1\r\n", b"SUB md.binance.b 2\r\n", b"UNSUB 1\r\n"]


def test_an_error_or_garbage_from_the_server_ends_the_connection_once() -> None:
    nats, wire = reader()
    nats.data_received(b"-ERR 'Stale Connection'\r\n" + hmsg(STREAM, 1, GOOD, FRAME))
    assert wire.messages == [] and wire.closed and len(wire.lost) == 1 and "Stale Connection" in wire.lost[0]
    nats.connection_lost(None)
    assert len(wire.lost) == 1 and nats.is_closed
    nats, wire = reader()
    nats.data_received(b"HMSG md.x 1 notanumber 5\r\n")
    assert wire.lost and "protocol error" in wire.lost[0]


def test_a_lost_connection_is_reported_and_a_closed_one_is_not() -> None:
    nats, wire = reader()
    nats.connection_lost(ConnectionResetError("reset"))
    assert wire.lost == ["NATS connection to  lost: reset"]
    nats, wire = reader()
    nats.close()
    nats.connection_lost(None)
    assert wire.lost == [] and wire.closed


def test_only_plain_nats_urls_take_the_fast_reader() -> None:
    assert fast_reader_supports("nats://127.0.0.1:4222") and fast_reader_supports("127.0.0.1:4222")
    assert not fast_reader_supports("tls://host:4222") and not fast_reader_supports("nats://u:p@host:4222")


def test_the_compiled_loop_feeds_what_the_twin_reads_and_refers_the_rest() -> None:
    from fastws.bus.consumer_read import HmsgLoop, Subscription

    prefix = b"binance.btcusdt%40depth."
    subs = {sid: Subscription(f"s{sid}", prefix) for sid in (1, 2, 3, 7)}
    for size in range(1, 60):
        fed: list[tuple[bytes, int, Any]] = []
        refused: list[tuple[Any, int, bytes, bytes]] = []
        controls: list[bytes] = []
        nats, wire = reader()
        nats.use_compiled(HmsgLoop(subs, lambda *args: fed.append(args) or True,
                                   lambda sub, *rest: refused.append((sub.key, *rest)),
                                   lambda line: (controls.append(line), nats.on_control(line))))
        for at in range(0, len(WIRE), size):
            nats.data_received(WIRE[at:at + size])
        # What the twin hands over (EXPECTED), split into fed and refused as the link's checks do.
        assert fed == [(FRAME, 1, "s1"), (b"\x00\r\n\x01", 2, "s1")], size
        assert refused == [("s7", -1, b"", b"abc"), ("s2", -1, b"", b"{}"), ("s3", 0, b"x", b"{}"),
                           ("s3", 0, ID, b"{}")], size
        assert controls == [b"INFO {}", b"+OK", b"PING", b"PONG"] and wire.written == [b"PONG\r\n"]
        assert nats._buffer == b"" and wire.lost == []
    # A stream no longer subscribed: its messages in flight are dropped; a message id of another stream is refused.
    fed, refused = [], []
    loop = HmsgLoop({1: Subscription("s1", b"binance.ethusdt%40trade.")}, lambda *a: fed.append(a),
                    lambda sub, *rest: refused.append(rest), lambda line: None)
    data = hmsg(STREAM, 9, GOOD, FRAME) + hmsg(STREAM, 1, GOOD, FRAME)
    assert loop.read(data) == len(data)
    assert fed == [] and refused == [(1, ID, FRAME)]


def test_the_compiled_loop_refuses_what_is_not_the_protocol() -> None:
    from fastws.bus.consumer_read import HmsgLoop

    loop = HmsgLoop({}, print, print, lambda line: None)
    for bad in (b"HMSG md.x 1 notanumber 5\r\n", b"HMSG md.x 1 9 5\r\n", b"MSG md.x\r\n", b"PING\n",
                b"HMSG a b c d e f g\r\n"):
        with pytest.raises(ValueError):
            loop.read(bad)
    assert loop.read(b"HMSG md.x 1 12 20\r\nNATS/1.0") == 0       # incomplete: waits for more
