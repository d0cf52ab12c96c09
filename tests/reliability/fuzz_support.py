"""Building blocks of the fuzz tests: payloads, frame plans, the cores under test and a
harness that feeds a core frame by frame and checks what each frame did.

A *frame plan* is a list of ``(opcode, payload, fin)``: whole messages, messages split
into CONTINUATION fragments, fragmented messages cut short, stray continuations, and
PING/PONG frames. ``FrameModel`` says, for each frame, how many outcomes the core must
count (a message delivered, a control message, a parse error) and how many messages it
completes; ``Harness.feed`` checks that against the core's counters and against what
reached the handlers and the error handler.
"""
from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import msgspec
from hypothesis import strategies as st
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from bench.detached import DETACHED_URL, open_detached_core
from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance import streams as binance_streams
from exchanges.mexc import MexcWebSocket, mexc_config
from exchanges.mexc.reference import decode_reference, encode_push
from fastws import ExchangeName, FrameHandler, StreamType
from fastws._core import FrameBuffer, RouteTable
from fastws.errors import ExchangeAPIError, InvalidMessageError, SequenceGapError
from tests.mexc_strategies import mutated_push_bytes, push_bytes, reference_or_refused

TEXT, BINARY, CONTINUATION = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION
PING, PONG = WSMsgType.PING, WSMsgType.PONG
Frame = tuple[WSMsgType, bytes, bool]

# ------------------------------------------------------------------------ payloads

BINANCE_STREAMS = ("btcusdt@depth@100ms", "btcusdt@depth20@100ms", "btcusdt@trade", "btcusdt@aggTrade",
                   "btcusdt@bookTicker", "btcusdt@ticker", "btcusdt@kline_1m")
"""What the adapter cores are subscribed to (their routes)."""

OTHER_STREAMS = ("ethusdt@depth@100ms", "ethusdt@trade", "btcusdt@avgPrice", "", "x", 'a"b', "a\\\"b",
                 "btcusdt@depth@100ms ", "BTCUSDT@TRADE", "!serverShutdown", "é@trade", "btcusdt@depth@100ms\x00")
"""Stream names a mutated frame may carry instead: not subscribed, odd or broken."""


@functools.lru_cache(maxsize=None)
def binance_seeds() -> tuple[bytes, ...]:
    """Realistic combined-stream payloads, as ``BinanceSimulator`` sends them, and
    the control messages and raw payloads a Binance connection also sees."""
    from bench.binance_payloads import build_payloads
    built = build_payloads(per_stream=1, seed=7)
    data = tuple(p for kind, payloads in built.items() if kind != "mix" for p in payloads[:2])
    control = (
        b'{"result":null,"id":1}', b'{"result":["btcusdt@trade"],"id":3}',
        b'{"id":2,"error":{"code":2,"msg":"Invalid request: unknown property"}}',
        b'{"id":4,"error":"plain text error"}', b'{"code":-1121,"msg":"Invalid symbol."}',
        b'{"e":"serverShutdown","E":1700000000000}', b'{"stream":"!serverShutdown","data":{}}',
        b'{"id":[1],"result":null}', b'{"id":{"a":1},"error":{"code":1}}',
        b'[]', b'"text"', b'12', b'null', b'{}', b'{"stream":null}',
    )
    raw = tuple(msgspec.json.encode(msgspec.json.decode(p)["data"]) for p in data[::3])
    return data + control + raw


VALID_TRADE = (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":7,'
               b'"p":"65000.01000000","q":"0.50000000","T":1700000000120,"m":true,"M":true}}')
"""A frame of a subscribed stream that every Binance core must deliver after the garbage."""

MEXC_CHANNEL = "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"
VALID_PUSH = encode_push(MEXC_CHANNEL, "publicAggreDeals",
                         {"deals": [{"price": "65000.01", "quantity": "0.5", "tradeType": 1,
                                     "time": "1700000000120"}], "eventType": "deals"},
                         symbol="BTCUSDT", send_time=1_700_000_000_123)
"""A valid MEXC push that the MEXC core must deliver after the garbage."""

MEXC_CONTROL = (
    b'{"id":0,"code":0,"msg":"PONG"}', ('{"id":0,"code":0,"msg":"%s"}' % MEXC_CHANNEL).encode(),
    ('{"id":0,"code":0,"msg":"Not Subscribed successfully! [%s].  Reason: Blocked!"}' % MEXC_CHANNEL).encode(),
    b'{"id":0,"code":0,"msg":"Not Subscribed successfully! [].  Reason: x"}',
    b'{"id":0,"code":1,"msg":"Invalid params"}', b'{"code":0}', b'{"msg":1}', b'[1]', b'"PONG"',
)
"""MEXC's JSON control messages (text frames), some malformed."""

_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
    st.sampled_from([0, -1, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 10 ** 18, 10 ** 19, 9223372036854775]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
    st.sampled_from(["", "65000.01", "BTCUSDT", "depthUpdate", "trade", "\u0000", "\ud7ff", "价格"]),
)
JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=10,
)
"""Any JSON value (integers beyond 64 bits too)."""


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside a decoded JSON document (the root excluded)."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        yield prefix + (key,)
        yield from _paths(item, prefix + (key,))


def _encode_json(draw: st.DrawFn, document: Any) -> bytes:
    """Compact (what the fast route expects), spaced (misses it) or keys reordered."""
    style = draw(st.sampled_from(["compact", "compact", "spaced", "reordered"]))
    if style == "spaced":
        return json.dumps(document).encode()
    if style == "reordered" and isinstance(document, dict):
        document = dict(reversed(list(document.items())))
    # A lone surrogate (st.text draws them) goes out as invalid UTF-8: bad input too.
    return json.dumps(document, separators=(",", ":"), ensure_ascii=draw(st.booleans())).encode(
        "utf-8", "surrogatepass")


@st.composite
def mutated_json(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    """A seed payload after JSON-level mutations (values replaced or removed, keys
    added, the stream name changed), re-encoded."""
    document = json.loads(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["replace", "remove", "add", "stream", "stream"]))
        if action == "stream" and isinstance(document, dict):
            document["stream"] = draw(st.one_of(st.sampled_from(BINANCE_STREAMS + OTHER_STREAMS), JSON_VALUES))
            continue
        paths = list(_paths(document))
        if not paths:
            document = draw(JSON_VALUES)
            continue
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if action == "remove":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["E", "U", "u", "e", "s", "data", "stream", "id", "code", "zz"]))] = \
                draw(JSON_VALUES)
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return _encode_json(draw, document)


_NUMBER_AFTER_KEY = re.compile(rb'("[EUu]":)(-?\d+)')


@st.composite
def mutated_numbers(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    """A seed with the numbers after the scanned keys (``"E":``, ``"U":``, ``"u":``)
    replaced as text: empty, signed, over 18 or 19 digits, leading zeros, not digits."""
    seed = draw(st.sampled_from([s for s in seeds if _NUMBER_AFTER_KEY.search(s)]))
    digits = st.one_of(st.from_regex(rb"\A-?[0-9]{0,25}\Z"), st.sampled_from(
        [b"", b"-", b"0", b"00000000000000000001", b"999999999999999999", b"9999999999999999999",
         b"18446744073709551616", b"9223372036854775807", b'"1"', b"1e3", b"null", b" 1"]))
    return _NUMBER_AFTER_KEY.sub(lambda m: m.group(1) + draw(digits), seed)


@st.composite
def damaged(draw: st.DrawFn, payloads: st.SearchStrategy[bytes]) -> bytes:
    """Byte damage: truncation, bit flips, inserted, deleted or repeated byte runs."""
    data = bytearray(draw(payloads))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "repeat"]))
        if action == "truncate" or not data:
            del data[draw(st.integers(0, len(data))):]
            continue
        index = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[index:index] = draw(st.one_of(st.binary(min_size=1, max_size=8),
                                               st.sampled_from([b'"', b"\\", b"{", b"}", b"[", b":", b",", b"\x00",
                                                                b"\xff", b"\xc3", b'"E":', b'"U":1', b'"u":'])))
        elif action == "delete":
            del data[index:index + draw(st.integers(1, 8))]
        else:
            end = min(len(data), index + draw(st.integers(1, 16)))
            data[end:end] = data[index:end]
    return bytes(data)


def binance_payloads() -> st.SearchStrategy[bytes]:
    """Random bytes, realistic Binance payloads and their mutations."""
    seeds = binance_seeds()
    realistic = st.one_of(st.sampled_from(seeds), mutated_json(seeds), mutated_numbers(seeds))
    return st.one_of(st.binary(max_size=200), realistic, damaged(realistic))


def mexc_payloads() -> st.SearchStrategy[tuple[bytes, WSMsgType]]:
    """MEXC payloads with their natural opcode: pushes (valid and mutated) as binary,
    control messages (and mutations) and random bytes as text."""
    pushes = st.one_of(mutated_push_bytes(), push_bytes(["publicAggreDeals", "publicAggreDepths"]))
    control = st.one_of(st.sampled_from(MEXC_CONTROL), damaged(st.sampled_from(MEXC_CONTROL)))
    return st.one_of(
        st.tuples(pushes, st.just(BINARY)),
        st.tuples(control, st.just(TEXT)),
        st.tuples(st.binary(max_size=200), st.sampled_from([TEXT, BINARY])),
    )


# --------------------------------------------------------------------- frame plans

@st.composite
def message_frames(draw: st.DrawFn, payload: bytes, opcode: WSMsgType) -> list[Frame]:
    """One payload as frames: whole, fragmented, a fragmented message cut short, a stray
    continuation, or a PING/PONG (which the core must ignore)."""
    # The opcode is sometimes the other data opcode (a push sent as text, JSON as binary).
    opcode = draw(st.sampled_from([opcode, opcode, opcode, BINARY if opcode == TEXT else TEXT]))
    shape = draw(st.sampled_from(["whole", "whole", "whole", "fragmented", "fragmented", "cut", "stray", "ping"]))
    if shape == "whole":
        return [(opcode, payload, True)]
    if shape == "stray":
        return [(CONTINUATION, payload, draw(st.booleans()))]
    if shape == "ping":
        return [(draw(st.sampled_from([PING, PONG])), payload[:125], True)]
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), min_size=1, max_size=4)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)])]
    frames: list[Frame] = [(opcode if i == 0 else CONTINUATION, piece, i == len(pieces) - 1)
                           for i, piece in enumerate(pieces)]
    if shape == "cut":
        # The rest never comes: the next data frame interrupts it.
        frames = frames[:draw(st.integers(1, len(frames) - 1))] if len(frames) > 1 else [(opcode, payload, False)]
    return frames


def frame_plans(payloads: st.SearchStrategy[tuple[bytes, WSMsgType]], max_messages: int = 6
                ) -> st.SearchStrategy[list[Frame]]:
    """Several messages' frames, one after another."""
    one = payloads.flatmap(lambda p: message_frames(*p))
    return st.lists(one, min_size=1, max_size=max_messages).map(lambda parts: [f for part in parts for f in part])


class FrameModel:
    """What the core must do with each frame, from the WebSocket framing alone."""

    def __init__(self) -> None:
        self.assembling = False
        self.opcode = TEXT
        self.parts: list[bytes] = []

    def expect(self, opcode: WSMsgType, payload: bytes, fin: bool
               ) -> tuple[int, Optional[tuple[WSMsgType, bytes]]]:
        """The number of outcomes of one frame, and the message it completes.

        An outcome is one of: a message delivered, a control message, a parse error.
        A data frame inside a fragmented message is an error, then starts a new one.

        Returns:
            ``(outcomes, (opcode, payload) of the completed message or None)``.
        """
        if opcode in (TEXT, BINARY):
            interrupted = 1 if self.assembling else 0
            if fin:
                self.assembling, self.parts = False, []
                return interrupted + 1, (opcode, payload)
            self.assembling, self.opcode, self.parts = True, opcode, [payload]
            return interrupted, None
        if opcode == CONTINUATION:
            if not self.assembling:
                return 1, None
            self.parts.append(payload)
            if not fin:
                return 0, None
            self.assembling = False
            message, self.parts = (self.opcode, b"".join(self.parts)), []
            return 1, message
        return 0, None


def make_frame(opcode: WSMsgType, payload: bytes, fin: bool = True) -> Any:
    return _make_test_ws_frame(opcode, payload, fin, False)


# ---------------------------------------------------------------- escape checks

def frozen(value: Any) -> Any:
    """A deep copy, in tuples, of a handed-out message for a later comparison; fails on a
    view or a buffer (it would later read another frame's bytes, or nothing)."""
    if isinstance(value, (memoryview, bytearray, FrameBuffer)):
        raise AssertionError(f"a {type(value).__name__} escaped to the handler: {value!r}")
    if isinstance(value, msgspec.Struct):
        return (type(value).__name__, tuple(frozen(getattr(value, f)) for f in value.__struct_fields__))
    if isinstance(value, dict):
        return ("dict", tuple((frozen(k), frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(frozen(v) for v in value))
    if value is None or isinstance(value, (str, bytes, int, float, bool, StreamType)):
        return value
    raise AssertionError(f"unexpected object handed out: {type(value).__name__}: {value!r}")


class Unraisable:
    """Collects what ``sys.unraisablehook`` gets (an exception a compiled callback
    could only print) while in use."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __enter__(self) -> "Unraisable":
        self._previous = sys.unraisablehook
        sys.unraisablehook = lambda args: self.seen.append(f"{args.exc_type.__name__}: {args.exc_value} "
                                                          f"in {args.object!r}")
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.unraisablehook = self._previous


# ---------------------------------------------------------------- cores under test

class Depth(msgspec.Struct):
    """The bare core's typed depth route (the core knows no exchange: its own struct)."""

    e: str
    E: int
    U: int
    u: int
    s: str = ""
    b: list[tuple[str, str]] = []
    a: list[tuple[str, str]] = []


class TradeLike(msgspec.Struct):
    e: str
    E: int
    p: str
    q: str


_json_decode = msgspec.json.Decoder().decode


def _route_control_or_dict(buffer: Any, keep: Callable[[Any], None]) -> Any:
    """A route decoder that keeps its buffer and calls anything but an object a
    control message."""
    keep(buffer)
    value = _json_decode(buffer)
    return value if type(value) is dict else None


@dataclass
class Sink:
    """What the handlers and the error reporting of one core got."""

    delivered: list[tuple[Any, Any]] = field(default_factory=list)   # (message, its frozen copy)
    errors: list[Any] = field(default_factory=list)                  # ExchangeAPIError, or (kind, exc, payload)
    gaps: list[tuple[Any, ...]] = field(default_factory=list)
    escaped: list[str] = field(default_factory=list)
    # What a parser or decoder kept of its input, with a copy of the bytes it saw.
    inputs: list[tuple[Any, bytes]] = field(default_factory=list)
    raise_on_error: bool = False      # the error reporting raises after recording

    def report(self, error: Any) -> None:
        """The error handler (an adapter's) or ``report_error`` (the bare core's)."""
        self.errors.append(error)
        if self.raise_on_error:
            raise RuntimeError("an error handler that fails")

    def keep_input(self, buffer: Any) -> None:
        """Keep a parser's or decoder's input past the call (what an adapter must not do)."""
        self.inputs.append((buffer, bytes(buffer)))

    def keep(self, message: Any) -> None:
        try:
            copy = frozen(message)
        except AssertionError as exc:
            self.escaped.append(str(exc))
            copy = None
        self.delivered.append((message, copy))

    def keep_routed(self, stream: str, message: Any) -> None:
        self.keep((stream, message))


def bare_core(sink: Sink, scan_window: int, event_time_unit_ns: int = 1_000_000) -> FrameHandler:
    """A ``FrameHandler`` with a RouteTable (typed, whole-frame and control-returning
    routes) and Binance's scan keys; the generic route parses JSON."""
    routes = RouteTable()
    routes.add("btcusdt@depth@100ms", msgspec.json.Decoder(Depth).decode, sink.keep_routed, StreamType.ORDERBOOK)
    routes.add("btcusdt@trade", msgspec.json.Decoder(TradeLike).decode, sink.keep_routed, StreamType.TRADES,
               sequenced=False)
    routes.add("ethusdt@depth@100ms", _json_decode, sink.keep, StreamType.ORDERBOOK, whole_frame=True,
               pass_stream=False)
    routes.add("btcusdt@bookTicker", functools.partial(_route_control_or_dict, keep=sink.keep_input),
               sink.keep_routed, StreamType.TICKER, sequenced=False)

    def parse(view: Any) -> Any:
        sink.keep_input(view)
        message = _json_decode(view)
        if type(message) is dict and ("result" in message or "error" in message):
            return None      # an ack: a control message
        return message

    def extract(message: Any) -> Any:
        # Whatever the frame says, unhashable stream names included: a classify error.
        if type(message) is dict and "stream" in message:
            return message["stream"], StreamType.OTHER
        return None

    return FrameHandler(parse, extract, sink.keep, lambda kind, exc, payload: sink.report((kind, exc, payload)),
                        routes=routes, event_time_key=b'"E":', event_time_unit_ns=event_time_unit_ns,
                        first_sequence_key=b'"U":', last_sequence_key=b'"u":', scan_window=scan_window,
                        on_sequence_gap=lambda *gap: sink.gaps.append(gap))


def _detach(ws: Any, url: Optional[str] = None) -> FrameHandler:
    core = open_detached_core(ws, url)
    # The detached core's transport stand-in never disconnects: a shutdown notice would
    # schedule the close of a socket that does not exist. Without a transport the
    # adapter only counts it (what a live connection's core counts too).
    ws._ws = None
    return core


def binance_core(sink: Sink, typed: bool) -> FrameHandler:
    """The core of a ``BinanceWebSocket`` connection (dict or typed route), subscribed
    to ``BINANCE_STREAMS``."""
    ws = BinanceWebSocket(ExchangeName("binance"), binance_config(DETACHED_URL, stale_timeout=None),
                          sink.keep_routed if typed else sink.keep, sink.report, typed=typed)
    ws._add_routes(list(BINANCE_STREAMS), None)
    return _detach(ws, ws._url)


def mexc_core(sink: Sink) -> FrameHandler:
    """The core of a ``MexcWebSocket`` connection."""
    ws = MexcWebSocket(ExchangeName("mexc"), mexc_config(DETACHED_URL, stale_timeout=None), sink.keep, sink.report)
    return _detach(ws)


def expected_trade(typed: bool) -> Any:
    """What a Binance core hands over for ``VALID_TRADE``."""
    message = _json_decode(VALID_TRADE)
    if not typed:
        return message
    payload_type = binance_streams.decode_type("btcusdt@trade")
    return ("btcusdt@trade", msgspec.convert(message["data"], payload_type))


EXPECTED_PUSH = decode_reference(VALID_PUSH)


# ------------------------------------------------------------------------ oracles

def _json(payload: bytes) -> tuple[bool, Any]:
    try:
        return True, _json_decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False, None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


_ROUTE_PREFIX, _ROUTE_SEPARATOR = b'{"stream":"', b'","data":'


def fast_route(payload: bytes, streams: tuple[str, ...] = BINANCE_STREAMS) -> Optional[tuple[str, bytes]]:
    """The stream (of ``streams``) whose fast route the raw frame takes, and its data:
    ``{"stream":"<key>","data":<data>}``, the key read up to the first quote."""
    if not payload.startswith(_ROUTE_PREFIX):
        return None
    key, found, _ = payload[len(_ROUTE_PREFIX):].partition(b'"')
    start = len(_ROUTE_PREFIX) + len(key) + len(_ROUTE_SEPARATOR)
    if not found or start + 1 > len(payload) or not payload.endswith(b"}") \
            or not payload[len(_ROUTE_PREFIX) + len(key):].startswith(_ROUTE_SEPARATOR):
        return None
    for name in streams:
        if name.encode() == key:
            return name, payload[start:-1]
    return None


def typed_off_route_outcome(doc: Any) -> tuple[str, ...]:
    """Typed mode, a frame that missed the fast route but is a message: its ``data`` is
    converted to its stream's type in the parse step, so one that does not fit, or a
    ``stream`` that is not a string, is a bad message (400)."""
    stream = doc.get("stream")
    if stream is None:
        return ("delivered",)                 # a raw-stream payload, handed on as it is
    if not isinstance(stream, str):
        return ("error",)
    payload_type = binance_streams.decode_type(stream) if stream in BINANCE_STREAMS else None
    if payload_type is None:
        return ("delivered",)
    try:
        msgspec.convert(doc.get("data"), payload_type)
    except msgspec.ValidationError:
        return ("error",)
    return ("delivered",)


def binance_outcome(payload: bytes) -> tuple[str, ...]:
    """What ``BinanceWebSocket._parse_message`` (the generic route) may make of a
    message, as its docstring and PROTOCOLS.md say: ``delivered``, ``control`` or
    ``error``."""
    ok, doc = _json(payload)
    if not ok or type(doc) is not dict:
        return ("error",)
    stream = doc.get("stream")
    if stream is not None:
        return ("control",) if stream == "!serverShutdown" else ("delivered",)
    if "id" in doc and ("result" in doc or "error" in doc):
        # A reply; one whose id cannot be a key fails where acks are looked up
        # (an empty table is not even searched).
        return ("control",) if _hashable(doc["id"]) else ("control", "error")
    if "code" in doc and "msg" in doc:
        return ("error",)
    if doc.get("e") == "serverShutdown":
        return ("control",)
    return ("delivered",)


def _parse_uint(data: bytes) -> int:
    """The core's reading of a number: the leading digits, -1 for none or over 18."""
    digits = re.match(rb"[0-9]*", data).group()      # type: ignore[union-attr]
    return int(digits) if 0 < len(digits) <= 18 else -1


def scan_reference(data: bytes, window: int, sequenced: bool, unit: int) -> tuple[int, int, int]:
    """What the core's field scan must read from ``data``: ``(event ns or 0, first,
    last)``. A key counts where it ends (its ``:``) within the first ``window`` bytes;
    the first of each key is read, its value to the end of ``data``."""
    n = min(len(data), window)

    def value(key: bytes) -> Optional[int]:
        at = data.find(key)
        return None if at < 0 or at + len(key) > n else _parse_uint(data[at + len(key):])

    event = value(b'"E":')
    event_ns = event * unit if event is not None and 0 < event <= (2 ** 63 - 1) // unit else 0
    first = value(b'"U":') if sequenced else None
    last = value(b'"u":') if sequenced else None
    return event_ns, -1 if first is None else first, -1 if last is None else last


BARE_ROUTES = {"btcusdt@depth@100ms": True, "btcusdt@trade": False, "ethusdt@depth@100ms": True,
               "btcusdt@bookTicker": False}
"""The bare core's routes: stream -> sequenced."""


class BareOracle:
    """The bare core's outcome for each message, what it delivered, and the event time
    and sequence state it recorded per stream, against a Python model of the core."""

    def __init__(self, scan_window: int, unit: int) -> None:
        self.window, self.unit = scan_window, unit
        self.core: Optional[FrameHandler] = None
        self.last_sequence: dict[Any, int] = {}
        self.last_event: dict[Any, int] = {}
        self.gaps = 0

    def __call__(self, opcode: WSMsgType, payload: bytes, outcome: str, delivered: Any) -> None:
        routed = fast_route(payload, tuple(BARE_ROUTES))
        ok, doc = _json(payload)
        stream: Any = None
        if routed is not None:
            stream, data = routed
            scanned, sequenced = data, BARE_ROUTES[stream]
            expected: Any
            try:
                if stream == "btcusdt@depth@100ms":
                    expected, want = (stream, msgspec.json.decode(data, type=Depth)), "delivered"
                elif stream == "btcusdt@trade":
                    expected, want = (stream, msgspec.json.decode(data, type=TradeLike)), "delivered"
                elif stream == "ethusdt@depth@100ms":
                    expected, want = _json_decode(payload), "delivered"
                else:
                    value = _json_decode(data)
                    expected, want = (stream, value), "delivered" if type(value) is dict else "control"
            except (msgspec.DecodeError, UnicodeDecodeError):
                expected, want = None, "error"
        else:
            scanned, sequenced = payload, True
            if not ok:
                expected, want = None, "error"
            elif doc is None or type(doc) is dict and ("result" in doc or "error" in doc):
                expected, want = None, "control"      # JSON null too: the parser returns None
            else:
                expected, want = doc, "delivered"
                if type(doc) is dict and "stream" in doc and _hashable(doc["stream"]):
                    stream = doc["stream"]
        assert outcome == want, f"{outcome}, expected {want}"
        if want != "delivered":
            return
        assert delivered == expected, f"delivered {delivered!r}, expected {expected!r}"
        if stream is not None:
            self._check_fields(stream, *scan_reference(scanned, self.window, sequenced, self.unit))

    def _check_fields(self, stream: Any, event_ns: int, first: int, last: int) -> None:
        if event_ns > 0:
            self.last_event[stream] = event_ns
        previous = self.last_sequence.get(stream, -1)
        if first >= 0 and last >= 0:
            if previous >= 0 and first > previous + 1:
                self.gaps += 1
            if previous < 0 or first >= previous + 1 or last > previous:
                self.last_sequence[stream] = last
        assert self.core is not None
        stats = self.core.stream_stats()[stream]
        assert (stats.last_event_ns, stats.last_sequence) == \
            (self.last_event.get(stream, 0), self.last_sequence.get(stream, -1)), \
            f"scan of {stream!r}: event {stats.last_event_ns}, last sequence {stats.last_sequence}; expected " \
            f"{self.last_event.get(stream, 0)}, {self.last_sequence.get(stream, -1)}"
        assert self.core.sequence_gaps == self.gaps, "sequence gaps"


def binance_oracle(typed: bool) -> Callable[[WSMsgType, bytes, str, Any], None]:
    """Checks each completed message's outcome, and what was delivered, against what
    the Binance adapter documents."""
    def check(opcode: WSMsgType, payload: bytes, outcome: str, delivered: Any) -> None:
        routed = fast_route(payload)
        route, data = routed if routed is not None else (None, b"")
        ok, doc = _json(payload)
        if route is not None and not typed:
            # The dict fast route decodes the whole frame: any JSON is a message.
            assert outcome == ("delivered" if ok else "error"), f"{outcome}, expected by the dict route"
        elif route is not None:
            payload_type = binance_streams.decode_type(route)
            try:
                expected = msgspec.json.decode(data, type=payload_type)
            except (msgspec.DecodeError, UnicodeDecodeError):      # ValidationError included
                assert outcome == "error", f"{outcome}, but the data does not decode into {payload_type}"
            else:
                assert outcome == "delivered" and delivered == (route, expected), \
                    f"{outcome} {delivered!r}, expected {expected!r}"
        else:
            allowed = binance_outcome(payload)
            if typed and "delivered" in allowed:
                allowed = typed_off_route_outcome(doc)
            assert outcome in allowed, f"{outcome}, expected one of {allowed}"
            if outcome == "delivered" and not typed:
                assert delivered == doc
            elif outcome == "delivered":
                stream, message = delivered
                assert stream == (doc.get("stream") or ""), (stream, doc)
                payload_type = binance_streams.decode_type(stream) if stream in BINANCE_STREAMS else None
                if payload_type is None:
                    assert message == doc, (message, doc)
                else:
                    assert message == msgspec.convert(doc.get("data"), payload_type), (message, doc)
    return check


def mexc_oracle(opcode: WSMsgType, payload: bytes, outcome: str, delivered: Any) -> None:
    """Text frames are control messages (a JSON object with a string ``msg``) or
    errors; binary frames are pushes: delivered as the reference decodes them, or
    errors where the reference refuses them."""
    if opcode == TEXT:
        ok, doc = _json(payload)
        control = ok and type(doc) is dict and isinstance(doc.get("msg"), str)
        want = "control" if control else "error"
        assert outcome == want, f"{outcome}, expected {want}"
        return
    reference = reference_or_refused(payload)     # only its documented refusals are None
    if reference is None:
        assert outcome == "error", f"{outcome}, but the reference decoder refuses the push"
        return
    assert outcome == "delivered", f"{outcome}, but the reference decoder accepts the push"
    assert delivered == reference, f"delivered {delivered!r}\nreference {reference!r}"


# ------------------------------------------------------------------------ harness

class Harness:
    """Feeds one core and checks every frame's outcome.

    Args:
        core: The core under test.
        sink: Its handlers' and error reporting's record.
        adapter: The core is an adapter's: ``sink.errors`` holds what its error handler
            got (``ExchangeAPIError``); else ``(kind, exc, payload)`` from the core.
        oracle: ``oracle(opcode, payload, outcome, delivered)`` for each completed
            message: checks the outcome (``delivered``, ``control`` or ``error``)
            and what was delivered against a model of the adapter.
    """

    def __init__(self, core: FrameHandler, sink: Sink, adapter: bool,
                 oracle: Optional[Callable[[WSMsgType, bytes, str, Any], None]] = None) -> None:
        self.core = core
        self.sink = sink
        self.adapter = adapter
        self.oracle = oracle
        self.model = FrameModel()
        self.fed: list[Frame] = []

    def feed(self, opcode: WSMsgType, payload: bytes, fin: bool) -> dict[str, int]:
        """Feed one frame; return the change of the core's counters."""
        core, sink = self.core, self.sink
        self.fed.append((opcode, payload, fin))
        before = core.counters()
        delivered, errors, gaps = len(sink.delivered), len(sink.errors), len(sink.gaps)
        outcomes, message = self.model.expect(opcode, payload, fin)
        completed = 0 if message is None else 1
        try:
            core.on_ws_frame(None, make_frame(opcode, payload, fin))
        except BaseException as exc:   # noqa: BLE001 - anything escaping is the failure
            raise AssertionError(f"{type(exc).__name__} escaped on_ws_frame: {exc!r}\n{self._trail()}") from exc
        after = core.counters()
        d = {key: after[key] - before[key] for key in after}
        new_errors = sink.errors[errors:]
        where = f"\ncounters: {d}\nerrors: {new_errors!r}\n{self._trail()}"
        if self.adapter:
            self._check_adapter_errors(d, new_errors, where)
        else:
            self._check_core_reports(d, new_errors, where)
        assert d["handler_errors"] == 0, "a handler error from a handler that never raises" + where
        assert d["frames_received"] == 1, where
        assert d["messages_received"] == completed, "messages completed" + where
        assert d["messages_delivered"] + d["control_messages"] + d["parse_errors"] == outcomes, \
            f"expected {outcomes} outcome(s) (delivered, control or parse error)" + where
        assert d["classify_errors"] <= d["messages_delivered"], \
            "a classify error without its message" + where
        assert len(sink.delivered) - delivered == d["messages_delivered"], "handler calls vs. delivered" + where
        assert not sink.escaped, "; ".join(sink.escaped) + where
        if not self.adapter:
            assert len(sink.gaps) - gaps == d["sequence_gaps"], "gap callbacks vs. gaps counted" + where
        assert core.backlog_size == 0 and core.pending_task is None, "nothing suspends here" + where
        if message is not None and self.oracle is not None:
            outcome = ("delivered" if d["messages_delivered"] else "control" if d["control_messages"]
                       else "error")
            got = sink.delivered[-1][0] if d["messages_delivered"] else None
            try:
                self.oracle(message[0], message[1], outcome, got)
            except AssertionError as exc:
                raise AssertionError(f"{exc}{where}") from None
        return d

    def _check_core_reports(self, d: dict[str, int], reports: list[Any], where: str) -> None:
        kinds = [kind for kind, _, _ in reports]
        assert kinds.count("parse") == d["parse_errors"], where
        assert kinds.count("classify") == d["classify_errors"], where
        assert len(kinds) == d["parse_errors"] + d["classify_errors"], where
        for _, exc, payload in reports:
            assert isinstance(exc, Exception), where
            assert payload is None or type(payload) is bytes, f"error payload {type(payload).__name__}" + where

    def _check_adapter_errors(self, d: dict[str, int], errors: list[Any], where: str) -> None:
        """Check what the adapter's error handler got."""
        invalid = gaps = other = 0
        for error in errors:
            assert isinstance(error, ExchangeAPIError), f"not an ExchangeAPIError: {error!r}" + where
            if isinstance(error, InvalidMessageError):
                assert error.code == 400, where
                assert error.payload is None or type(error.payload) is bytes, where
                str(error)       # readable after the frame is gone
                invalid += 1
            elif isinstance(error, SequenceGapError):
                gaps += 1
            else:
                # An error reply or a rejection the adapter read from a control message.
                assert error.code in (400, 403), f"unexpected error {error!r}" + where
                other += 1
        assert invalid == d["parse_errors"] + d["classify_errors"], \
            "every parse and classify error reaches the error handler as InvalidMessageError (400)" + where
        assert gaps == d["sequence_gaps"], where
        assert other <= d["control_messages"], "an error reply without its control message" + where

    def check_kept(self) -> None:
        """Everything handed out is still readable and unchanged (no view escaped);
        a view of the read buffer that a parser kept fails loudly instead of reading
        another frame's bytes (a reassembled message's ``bytes`` stay valid)."""
        for message, copy in self.sink.delivered:
            assert frozen(message) == copy, f"a kept message changed: {message!r}"
        for kept, seen in self.sink.inputs:
            if type(kept) is bytes:
                assert kept == seen
                continue
            try:
                late = bytes(kept)
            except ValueError:
                continue
            raise AssertionError(f"a kept {type(kept).__name__} still reads {late[:80]!r} after its call "
                                 f"(it held {seen[:80]!r})")

    def _trail(self) -> str:
        return "frames so far:\n" + "\n".join(f"  {o.name} fin={fin} {p[:120]!r}" for o, p, fin in self.fed)
