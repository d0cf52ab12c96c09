"""A test-side bus publisher: real frames from the Binance simulator, published in the bus's format.

Until the collector (``fastws collect``) is on main, the consumer's tests publish
with this: frames recorded from a ``BinanceSimulator`` through a direct client's
frame tap (the core's ``tap``), then published with nats-py on the subjects and
with the headers of :mod:`fastws.bus.subjects` (payload = the frame's bytes).
:class:`Relay` does both live: every data frame a direct client receives is
published at once (a collector in miniature).
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, NamedTuple, Optional

import msgspec
import nats

from exchanges.binance import BinanceWebSocket, binance_config
from fastws.bus.subjects import (HEADER_EVENT_MS, HEADER_MSG_ID, HEADER_OPCODE, HEADER_RECV_NS,
                                 exchange_wildcard, message_id, stream_subject)
from fastws.types import ExchangeName

EXCHANGE = "binance"
JETSTREAM_STREAM = "MD_BINANCE"
_MASK = 0xFFFFFFFFFFFFFFFF


class Frame(NamedTuple):
    """One recorded data frame."""

    stream: str
    payload: bytes
    opcode: int
    recv_ns: int


def payload_digest(payload: bytes) -> int:
    """The frame core's 64-bit payload digest (FNV-1a over 8-byte words), computed in Python."""
    h = (14695981039346656037 ^ len(payload)) & _MASK
    full = len(payload) - len(payload) % 8
    for i in range(0, full, 8):
        h = ((h ^ int.from_bytes(payload[i:i + 8], "little")) * 1099511628211) & _MASK
        h ^= h >> 29
    for byte in payload[full:]:
        h = ((h ^ byte) * 1099511628211) & _MASK
    return h


def stream_of(payload: bytes) -> Optional[str]:
    """The stream of a combined-stream data frame, None for a control reply."""
    try:
        message = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
    stream = message.get("stream") if isinstance(message, dict) else None
    return stream if isinstance(stream, str) else None


def headers_of(frame: Frame, exchange: str = EXCHANGE) -> dict[str, str]:
    """The bus headers of a frame (event time when the frame has one)."""
    headers = {HEADER_MSG_ID: message_id(exchange, frame.stream, payload_digest(frame.payload)),
               HEADER_RECV_NS: str(frame.recv_ns), HEADER_OPCODE: str(frame.opcode)}
    try:
        data = msgspec.json.decode(frame.payload).get("data")
    except msgspec.DecodeError:
        data = None        # not a frame: published all the same (a malformed-input test)
    if isinstance(data, dict) and isinstance(data.get("E"), int):
        headers[HEADER_EVENT_MS] = str(data["E"])
    return headers


class Publisher:
    """One publishing connection to NATS (one collector replica)."""

    def __init__(self, nc: Any, exchange: str = EXCHANGE) -> None:
        self.nc = nc
        self.exchange = exchange
        self.published = 0

    @classmethod
    async def connect(cls, servers: list[str] | str, exchange: str = EXCHANGE, **options: Any) -> "Publisher":
        options.setdefault("connect_timeout", 2)
        options.setdefault("max_reconnect_attempts", -1)
        options.setdefault("reconnect_time_wait", 0.1)
        return cls(await nats.connect(servers=servers if isinstance(servers, list) else [servers], **options),
                   exchange)

    async def publish(self, frame: Frame, headers: Optional[dict[str, str]] = None,
                      subject: Optional[str] = None) -> None:
        await self.nc.publish(subject or stream_subject(self.exchange, frame.stream), frame.payload,
                              headers=headers_of(frame, self.exchange) if headers is None else headers)
        self.published += 1

    async def publish_all(self, frames: list[Frame]) -> None:
        for frame in frames:
            await self.publish(frame)
        await self.nc.flush()

    async def add_stream(self, replicas: int = 1, duplicate_window: float = 2.0) -> None:
        """The exchange's JetStream stream (``MD_BINANCE``, subjects ``md.binance.*``)."""
        await self.nc.jetstream().add_stream(name=JETSTREAM_STREAM, subjects=[exchange_wildcard(EXCHANGE)],
                                             num_replicas=replicas, duplicate_window=duplicate_window)

    async def close(self) -> None:
        await self.nc.close()


class Recorder:
    """A direct client of the simulator whose frame tap keeps every data frame (and its handler output)."""

    def __init__(self, sim_url: str, typed: bool = False, **overrides: Any) -> None:
        self.frames: list[Frame] = []
        self.outputs: list[Any] = []
        self.relay: Optional[Publisher] = None
        self._relayed: list[Any] = []
        config = binance_config(sim_url, **overrides)
        self.client = BinanceWebSocket(ExchangeName(EXCHANGE), config, self._on_message, typed=typed)
        self.client.set_frame_tap(self._tap)

    def _on_message(self, *args: Any) -> None:
        self.outputs.append(args)

    def _tap(self, payload: bytes, recv_ns: int, opcode: int) -> None:
        stream = stream_of(payload)
        if stream is None:
            return
        frame = Frame(stream, payload, opcode, recv_ns)
        self.frames.append(frame)
        if self.relay is not None:
            # A collector in miniature: published as it arrives.
            self._relayed.append(asyncio.ensure_future(self.relay.publish(frame)))

    async def start(self, streams: list[str]) -> None:
        await self.client.start(timeout=10)
        await self.client.subscribe(streams)

    async def stop(self) -> None:
        await self.client.stop()
        if self._relayed:
            await asyncio.gather(*self._relayed)
            self._relayed.clear()


async def until(done: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until ``done()`` (bounded)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        await asyncio.sleep(0.005)


async def record(sim: Any, streams: list[str], steps: int, typed: bool = False) -> Recorder:
    """Frames and handler output of a direct client over ``steps`` market steps of ``sim`` (rate 0)."""
    recorder = Recorder(sim.url, typed=typed)
    await recorder.start(streams)
    try:
        for _ in range(steps):
            sim.step(1)
            await asyncio.sleep(0.001)
        await until(lambda: len(recorder.frames) == sum(sim.sent_counts.values()), what="every frame recorded")
    finally:
        await recorder.stop()
    return recorder
