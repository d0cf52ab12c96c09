"""The Binance benchmarks' peers: each decodes, classifies and dispatches every frame.

- ``fastws typed``: ``BinanceWebSocket(typed=True)``: the core reads the stream
  name from the raw envelope, decodes ``data`` into the stream's Struct and calls
  ``handler(stream, struct)``;
- ``fastws dict``: ``BinanceWebSocket``'s default dict route: the core reads the
  stream name from the raw envelope, decodes the whole frame to the standard
  ``{"stream", "data"}`` dict and calls ``handler(message)`` (frames of streams
  not subscribed go through ``_parse_message`` and ``_extract_stream_info``);
- ``raw msgspec``: a picows ``WSListener`` written in Python: msgspec to dict,
  stream -> type by a dict lookup, the type's handler;
- ``raw json``: the same with ``json.loads``;
- ``websockets json``, ``aiohttp json`` (loopback only): those libraries'
  clients, a reader task per connection, ``json.loads``, the same lookup and
  handler.

Every handler counts (``Counter`` of ``bench/peers.py``). In-process peers take
built frames (``feed(transport, frame)``); loopback peers take real frames from
``bench/binance_server.py`` in its own process.
"""
from __future__ import annotations

import asyncio
import inspect
import json
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import aiohttp
import msgspec
import websockets
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from picows.picows import _make_test_ws_frame

from bench.binance_payloads import stream_names
from bench.detached import DETACHED_URL, open_detached_core
from bench.peers import Counter, server_process
from exchanges.binance import BinanceWebSocket, binance_config, stream_type
from fastws import ExchangeName

# Attribute lookups hoisted out of the per-frame paths, for every peer alike.
_TEXT = WSMsgType.TEXT
_EXCHANGE = ExchangeName("binance")


class StreamCounter(Counter):
    """A ``Counter`` that also takes the typed route's ``handler(stream, message)``."""

    def on_stream_message(self, stream: str, message: Any) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set_result(None)  # type: ignore[union-attr]


class MsgspecListener(WSListener):
    """Raw picows: msgspec to dict, stream -> type by a dict lookup, that type's handler."""

    def __init__(self, sink: Counter) -> None:
        super().__init__()
        self.decode = msgspec.json.Decoder().decode
        self.stream_types = {name: stream_type(name) for name in stream_names()}
        self.handlers = dict.fromkeys(set(self.stream_types.values()), sink.on_message)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _TEXT:
            message = self.decode(frame.get_payload_as_memoryview())
            stream = message.get("stream")
            if stream is not None:
                self.handlers[self.stream_types[stream]](message)


class JsonListener(MsgspecListener):
    """``MsgspecListener`` with ``json.loads``."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == _TEXT:
            message = json.loads(frame.get_payload_as_bytes())
            stream = message.get("stream")
            if stream is not None:
                self.handlers[self.stream_types[stream]](message)


def binance_client(url: str, sink: StreamCounter, typed: bool) -> BinanceWebSocket:
    """The adapter as a user builds it, its handler counting into ``sink``."""
    handler = sink.on_stream_message if typed else sink.on_message
    return BinanceWebSocket(_EXCHANGE, binance_config(url, stale_timeout=None), handler, typed=typed)


def detached_core(sink: StreamCounter, typed: bool) -> Any:
    """The ``FrameHandler`` a ``BinanceWebSocket`` connection runs, built without a
    socket; routes come from the adapter's own ``_add_routes``, as ``subscribe`` adds them."""
    ws = binance_client(DETACHED_URL, sink, typed)
    ws._add_routes(stream_names(), None)
    return open_detached_core(ws, ws._url)


IN_PROCESS_PEERS: dict[str, Callable[[StreamCounter], Callable[[Any, WSFrame], Any]]] = {
    "fastws typed": lambda sink: detached_core(sink, True).on_ws_frame,
    "fastws dict": lambda sink: detached_core(sink, False).on_ws_frame,
    "raw msgspec": lambda sink: MsgspecListener(sink).on_ws_frame,
    "raw json": lambda sink: JsonListener(sink).on_ws_frame,
}
"""Peer name -> a factory of its ``on_ws_frame`` with handlers counting into a sink."""


def frames_of(payloads: list[bytes], count: int) -> list[WSFrame]:
    """``count`` TEXT frames cycling through ``payloads`` (one frame object per payload).

    From the second cycle on, a depth stream's update ids go back: the core counts
    those updates as stale (a few C comparisons, no callback), as the server's
    repeated frames do over loopback.
    """
    frames = [_make_test_ws_frame(_TEXT, payload, True, False) for payload in payloads]
    return [frames[i % len(frames)] for i in range(count)]


def feed_all(feed: Callable[[Any, WSFrame], Any], frames: list[WSFrame]) -> None:
    """Hand every frame to ``feed`` as picows would (no transport needed)."""
    for frame in frames:
        feed(None, frame)


# --------------------------------------------------------------------- loopback
@contextmanager
def binance_server(per_stream: int) -> Iterator[str]:
    """Start ``bench/binance_server.py`` in its own process; yield its base URL."""
    with server_process("binance_server.py", str(per_stream)) as port:
        yield f"ws://127.0.0.1:{port}"


class FastwsPeer:
    """``BinanceWebSocket``, subscribed to every stream through the adapter."""

    def __init__(self, url: str, typed: bool, sink: Optional[StreamCounter] = None) -> None:
        self.name = "fastws typed" if typed else "fastws dict"
        self.counter = sink if sink is not None else StreamCounter()
        self.ws = binance_client(url, self.counter, typed)

    async def open(self) -> None:
        await self.ws.start()
        await self.ws.subscribe(stream_names())

    def blast(self, command: bytes) -> None:
        # The core's own send: a benchmark command is not paced like Binance's
        # control messages.
        self.ws._core.send_text(command)  # type: ignore[union-attr]

    def check(self) -> None:
        counters = self.ws._core.counters()  # type: ignore[union-attr]
        errors = {k: v for k, v in counters.items() if k.endswith("_errors") and v}
        assert not errors, f"{self.name}: {errors}"

    async def close(self) -> None:
        await self.ws.stop()


class RawPeer:
    """A raw picows listener (``MsgspecListener`` or ``JsonListener``)."""

    def __init__(self, url: str, listener: type[MsgspecListener], sink: Optional[StreamCounter] = None) -> None:
        self.name = "raw msgspec" if listener is MsgspecListener else "raw json"
        self.url = url + "/stream"
        self.listener = listener
        self.counter = sink if sink is not None else StreamCounter()
        self.transport: Optional[WSTransport] = None

    async def open(self) -> None:
        self.transport, _ = await ws_connect(lambda: self.listener(self.counter), self.url)

    def blast(self, command: bytes) -> None:
        self.transport.send(_TEXT, command)  # type: ignore[union-attr]

    def check(self) -> None:
        pass

    async def close(self) -> None:
        assert self.transport is not None
        self.transport.disconnect()
        await self.transport.wait_disconnected()


class _JsonReader:
    """What ``JsonListener`` does per message, for clients that hand over ``str``."""

    def __init__(self, sink: Counter) -> None:
        self.stream_types = {name: stream_type(name) for name in stream_names()}
        self.handlers = dict.fromkeys(set(self.stream_types.values()), sink.on_message)

    def on_text(self, text: Any) -> None:
        message = json.loads(text)
        stream = message.get("stream")
        if stream is not None:
            self.handlers[self.stream_types[stream]](message)


class _ReaderTaskPeer:
    """A peer whose library reads in a task of its own: closing waits for that task."""

    ws: Any
    reader: Optional[asyncio.Task[None]]

    def check(self) -> None:
        pass

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await asyncio.wait_for(self.reader, 5.0)


class WebsocketsPeer(_ReaderTaskPeer):
    """The ``websockets`` client: a reader task, ``json.loads``, the stream's handler."""

    name = "websockets json"

    def __init__(self, url: str, sink: Optional[StreamCounter] = None) -> None:
        self.url = url + "/stream"
        self.counter = sink if sink is not None else StreamCounter()
        self.ws: Any = None
        self.reader: Optional[asyncio.Task[None]] = None

    async def open(self) -> None:
        self.ws = await websockets.connect(self.url, compression=None, max_size=2**24, max_queue=None)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        on_text = _JsonReader(self.counter).on_text
        async for text in self.ws:
            on_text(text)

    async def blast(self, command: bytes) -> None:
        await self.ws.send(command.decode())


class AiohttpPeer(_ReaderTaskPeer):
    """The ``aiohttp`` client: a reader task, ``json.loads``, the stream's handler."""

    name = "aiohttp json"

    def __init__(self, url: str, sink: Optional[StreamCounter] = None) -> None:
        self.url = url + "/stream"
        self.counter = sink if sink is not None else StreamCounter()
        self.session: Optional[aiohttp.ClientSession] = None
        self.ws: Any = None
        self.reader: Optional[asyncio.Task[None]] = None

    async def open(self) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url, compress=0, max_msg_size=2**24)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        on_text = _JsonReader(self.counter).on_text
        text_type = aiohttp.WSMsgType.TEXT
        async for message in self.ws:
            if message.type == text_type:
                on_text(message.data)

    async def blast(self, command: bytes) -> None:
        await self.ws.send_str(command.decode())

    async def close(self) -> None:
        await super().close()
        if self.session is not None:
            await self.session.close()


def loopback_peers(url: str) -> list[Any]:
    """One of each peer, for the server at ``url``; in the order of ``IN_PROCESS_PEERS``."""
    return [FastwsPeer(url, True), FastwsPeer(url, False), RawPeer(url, MsgspecListener), RawPeer(url, JsonListener)]


LOOPBACK_PEERS: dict[str, Callable[[str, Optional[StreamCounter]], Any]] = {
    "fastws typed": lambda url, sink: FastwsPeer(url, True, sink),
    "fastws dict": lambda url, sink: FastwsPeer(url, False, sink),
    "raw msgspec": lambda url, sink: RawPeer(url, MsgspecListener, sink),
    "raw json": lambda url, sink: RawPeer(url, JsonListener, sink),
    "websockets json": lambda url, sink: WebsocketsPeer(url, sink),
    "aiohttp json": lambda url, sink: AiohttpPeer(url, sink),
}
"""Peer name -> a factory of that loopback peer (``sink``: its handlers' counter, or a new one)."""


def all_loopback_peers(url: str) -> list[Any]:
    """Every loopback peer, ``websockets`` and ``aiohttp`` included, in the order of ``LOOPBACK_PEERS``."""
    return [make(url, None) for make in LOOPBACK_PEERS.values()]


async def run_blast(peer: Any, kind: str, count: int, timeout: float = 30.0) -> None:
    """Have the server send ``count`` frames of ``kind``; return once all were handled."""
    counter = peer.counter
    if counter.done is not None:
        # Nothing more than asked for arrived since the last round.
        assert counter.count == counter.target, f"{peer.name}: {counter.count} of {counter.target}"
    done = counter.arm(count)
    sent = peer.blast(f"BLAST {kind} {count}".encode())
    if inspect.isawaitable(sent):
        await sent
    await asyncio.wait_for(done, timeout)
    peer.check()


# ------------------------------------------------------------------ checks
class Recorder(StreamCounter):
    """Keeps what the handlers got: messages, or ``(stream, message)`` on the typed route."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def on_message(self, message: Any) -> None:
        self.messages.append(message)

    def on_stream_message(self, stream: str, message: Any) -> None:
        self.messages.append((stream, message))


def check_in_process(frames: list[WSFrame]) -> None:
    """Every peer hands on every frame, decoded in full, with the same content."""
    expected = [msgspec.json.decode(frame.get_payload_as_bytes()) for frame in frames]
    for name, make_feed in IN_PROCESS_PEERS.items():
        recorder = Recorder()
        feed = make_feed(recorder)
        feed_all(feed, frames)
        got = recorder.messages
        if name == "fastws typed":
            # Every stream is in the core's route table (no frame falls back to
            # the dict route), and what comes out are the payload Structs.
            routes = feed.__self__.routes  # type: ignore[attr-defined]
            assert all(stream in routes for stream in stream_names()), f"{name}: streams not routed"
            assert all(isinstance(message, msgspec.Struct) for _, message in got), f"{name}: not Structs"
            got = [{"stream": stream, "data": msgspec.to_builtins(message)} for stream, message in got]
        assert got == expected, f"{name}: content differs"
