"""The bus consumer beside the same consumer on a WebSocket: cost per message and latency.

Two measurements, each in one run with rounds interleaved, medians reported:

1. **Cost per message** (CPU time of the consumer's process per message): the
   same ``BinanceWebSocket`` (dict route) reading N ~250-byte depth frames
   (a) from a WebSocket server in another process (``bench/server.py``'s
   ``BLAST``: all frames in one write), and (b) from NATS, the same frames
   published by a publisher process in the bus's format (core delivery,
   de-duplication on, and off). The consumer's process does nothing else.
2. **Latency**: a feed server (its own process) broadcasts the same depth frame
   to every connection at a steady rate; in the consumer's process, client A
   is connected to it directly and, beside it, B reads the bus with core
   delivery (then, in the same round, C through JetStream). A relay process
   publishes to NATS: a direct client whose frame tap writes each frame as one
   HPUB in the bus's format (tests/bus_publisher.py's headers) as it arrives,
   standing in for ``fastws collect``, which is not on main yet. For each
   frame: (B's or C's handler time - A's), the
   overhead of feed server -> relay -> NATS -> consumer over the direct path,
   both stamped by one clock. p50 and p99 per round.

    python bench/bus_consume_bench.py [--messages 20000] [--rounds 5] [--rate 1000] [--seconds 5]

A real ``nats-server`` (``fastws.testing.nats``) runs on loopback for the run.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nats  # noqa: E402
import uvloop  # noqa: E402
from picows import WSMsgType  # noqa: E402

from exchanges.binance import BinanceWebSocket, binance_config  # noqa: E402
from fastws.bus.subjects import stream_subject  # noqa: E402
from fastws.testing.feed import FeedServer, SubscribeControl, depth_message  # noqa: E402
from fastws.testing.nats import NatsServer  # noqa: E402
from fastws.types import ExchangeName  # noqa: E402
from tests.bus_publisher import Frame, Publisher, headers_of, stream_of  # noqa: E402

STREAM = "btcusdt@depth"
HERE = Path(__file__).resolve()
GO = "bench.go"


# ------------------------------------------------------------------ child roles
def _batch(count: int, first: int) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` BLAST-like depth frames from sequence ``first``, each with its bus headers."""
    frames = [Frame(STREAM, depth_message(STREAM, first + i, 1_700_000_000_000 + first + i), 1, 0)
              for i in range(count)]
    return [(f.payload, headers_of(f)) for f in frames]


async def publisher_role(nats_url: str) -> None:
    """On ``bench.go.prepare`` build a batch; on ``bench.go`` publish it in the bus's format, flushed."""
    nc = await nats.connect(nats_url)
    prepared: dict[bytes, list[tuple[bytes, dict[str, str]]]] = {}
    subject = stream_subject("binance", STREAM)

    async def on_prepare(msg: Any) -> None:
        count, first = (int(x) for x in msg.data.split())
        prepared[msg.data] = _batch(count, first)
        await msg.respond(b"ready")

    async def on_go(msg: Any) -> None:
        for payload, headers in prepared.pop(msg.data):
            await nc.publish(subject, payload, headers=headers)
        await nc.flush()

    await nc.subscribe(GO, cb=on_go)
    await nc.subscribe(GO + ".prepare", cb=on_prepare)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def broadcast_role(rate: float) -> None:
    """A feed server that sends the same depth frame to every connection, ``rate`` a second."""
    server = FeedServer(control=SubscribeControl())
    await server.start()
    print(server.port, flush=True)
    sequence = 0
    interval = 1.0 / rate
    next_at = time.monotonic()
    while True:
        next_at += interval
        sequence += 1
        payload = depth_message(STREAM, sequence, 1_700_000_000_000 + sequence)
        for connection in list(server.connections):
            transport = connection.transport
            if transport is not None and not transport.is_disconnected and connection.streams:
                transport.send(WSMsgType.TEXT, payload)
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


class HpubWriter(asyncio.Protocol):
    """The relay's publishing connection: each frame one ``HPUB`` written at once, in the tap.

    nats-py's ``publish`` is a coroutine (a Task per frame from a tap) whose bytes a
    flusher task writes later: two turns of the relay's loop per frame that a
    collector publishing from the frame core does not pay. This writes the frame
    as the bus's format says, synchronously.
    """

    def __init__(self) -> None:
        self.transport: Any = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for line in data.split(b"\r\n"):
            if line == b"PING":
                self.transport.write(b"PONG\r\n")
            elif line == b"PONG" and not self.ready.done():
                self.ready.set_result(None)
            elif line.startswith(b"INFO ") and self.transport is not None:
                self.transport.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                                     b'"protocol":1}\r\nPING\r\n')

    def publish(self, frame: Frame) -> None:
        headers = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers_of(frame).items()) \
            + b"\r\n"
        subject = stream_subject("binance", frame.stream).encode()
        self.transport.write(b"HPUB %s %d %d\r\n%s%s\r\n" % (subject, len(headers), len(headers) + len(frame.payload),
                                                                headers, frame.payload))


async def relay_role(nats_url: str, ws_url: str) -> None:
    """A direct client of the feed server publishing every data frame to the bus as it arrives."""
    setup = await Publisher.connect(nats_url)
    await setup.add_stream(duplicate_window=2.0)
    await setup.close()
    host, port = nats_url.rsplit("/", 1)[1].split(":")
    writer = HpubWriter()
    await asyncio.get_running_loop().create_connection(lambda: writer, host, int(port))
    await writer.ready

    def tap(payload: bytes, recv_ns: int, opcode: int) -> None:
        stream = stream_of(payload)
        if stream is not None:
            writer.publish(Frame(stream, payload, opcode, recv_ns))

    relay = BinanceWebSocket(ExchangeName("binance"), binance_config(ws_url.rsplit("/stream", 1)[0]),
                             lambda message: None)
    relay.set_frame_tap(tap)
    await relay.start(timeout=10)
    await relay.subscribe([STREAM])
    print("ready", flush=True)
    await asyncio.Event().wait()


# -------------------------------------------------------------------- helpers
def spawn(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start a child role; return it and its first line (a port, or ``ready``)."""
    process = subprocess.Popen([sys.executable, str(HERE), *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line:
        process.kill()
        raise RuntimeError(f"child {args} did not start")
    return process, line


class Counter:
    """A message handler that counts, stamps, and wakes a waiter at a target."""

    def __init__(self) -> None:
        self.count = 0
        self.target = -1
        self.done = asyncio.Event()
        self.stamps: dict[int, int] = {}
        self.stamping = False

    def __call__(self, message: Any) -> None:
        self.count += 1
        if self.stamping:
            self.stamps[message["data"]["U"]] = time.perf_counter_ns()
        if self.count == self.target:
            self.done.set()

    def expect(self, more: int) -> None:
        self.target = self.count + more
        self.done.clear()


def client(url: str, handler: Counter, bus: Optional[str] = None, **options: Any) -> BinanceWebSocket:
    ws = BinanceWebSocket(ExchangeName("binance"), binance_config(url), handler)
    if bus is not None:
        ws.use_bus(bus, **options)
    return ws


def percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000.0


# ------------------------------------------------------------------ cost per message
async def cost(nats_url: str, messages: int, rounds: int) -> dict[str, list[float]]:
    """CPU ns per message in this process: WebSocket (BLAST) vs bus (core), interleaved rounds."""
    server, port = spawn("--role", "server")
    publisher, _ = spawn("--role", "publisher", "--nats", nats_url)
    control = await nats.connect(nats_url)
    results: dict[str, list[float]] = {"websocket": [], "bus": [], "bus-nodedup": []}
    try:
        ws_url = f"ws://127.0.0.1:{port}"
        for round_ in range(rounds):
            for source in results:
                counter = Counter()
                on_bus = source != "websocket"
                options = {"deduplicate": False} if source == "bus-nodedup" else {}
                ws = client(ws_url, counter, bus=nats_url if on_bus else None, **options)
                await ws.start(timeout=10)
                await ws.subscribe([STREAM])
                await asyncio.sleep(0.2)       # the subscribe's own first message arrives
                first = 1 + round_ * messages
                if on_bus:
                    await control.request(GO + ".prepare", f"{messages} {first}".encode(), timeout=60)
                counter.expect(messages)
                cpu, wall = time.process_time(), time.perf_counter()
                if on_bus:
                    await control.publish(GO, f"{messages} {first}".encode())
                    await control.flush()
                else:
                    await ws.send_message(f"BLAST {messages}")
                await asyncio.wait_for(counter.done.wait(), 120)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                await ws.stop()
                results[source].append(cpu / messages * 1e9)
                print(f"  round {round_ + 1} {source:11s} {cpu / messages * 1e9:8.0f} ns CPU/message "
                      f"({messages / wall:,.0f} msg/s)", flush=True)
    finally:
        await control.close()
        for child in (server, publisher):
            child.kill()
            child.wait()
    return results


# ----------------------------------------------------------------------- latency
async def latency(nats_url: str, rate: float, seconds: float, rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Overhead of the bus (core, JetStream) over the direct connection, per frame; p50/p99 per round."""
    feed, port = spawn("--role", "broadcast", "--rate", str(rate))
    ws_url = f"ws://127.0.0.1:{port}"
    relay, _ = spawn("--role", "relay", "--nats", nats_url, "--ws", ws_url + "/stream")
    results: dict[str, list[tuple[float, float]]] = {"core": [], "jetstream": []}
    try:
        for round_ in range(rounds):
            # One bus consumer beside the direct one at a time: they share this process's loop.
            for name, options in (("core", {}), ("jetstream", {"jetstream": True})):
                direct, bus = Counter(), Counter()
                clients = [client(ws_url, direct), client(ws_url, bus, bus=nats_url, **options)]
                for ws in clients:
                    await ws.start(timeout=10)
                    await ws.subscribe([STREAM])
                await asyncio.sleep(0.5)
                direct.stamping = bus.stamping = True
                await asyncio.sleep(seconds)
                direct.stamping = bus.stamping = False
                await asyncio.sleep(0.2)
                for ws in clients:
                    await ws.stop()
                overhead = [bus.stamps[u] - direct.stamps[u] for u in direct.stamps if u in bus.stamps]
                p50, p99 = percentile(overhead, 0.5), percentile(overhead, 0.99)
                results[name].append((p50, p99))
                print(f"  round {round_ + 1} {name:9s} overhead p50 {p50:7.0f} us  p99 {p99:7.0f} us "
                      f"({len(overhead)} frames)", flush=True)
    finally:
        for child in (relay, feed):
            child.kill()
            child.wait()
    return results


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, NatsServer.started(Path(tmp)) as server:
        print(f"cost per message: {args.messages} depth frames (~250 B), {args.rounds} interleaved rounds")
        costs = await cost(server.url, args.messages, args.rounds)
        print(f"latency: {args.rate:g} frames/s for {args.seconds:g} s, {args.rounds} rounds")
        lat = await latency(server.url, args.rate, args.seconds, args.rounds)
    ws, bus = statistics.median(costs["websocket"]), statistics.median(costs["bus"])
    print("\n| consumer CPU per message (median) | ns | ratio |\n| --- | --- | --- |")
    nodedup = statistics.median(costs["bus-nodedup"])
    print(f"| from a WebSocket | {ws:,.0f} | 1.00 |\n| from the bus (core NATS) | {bus:,.0f} | {bus / ws:.2f} |")
    print(f"| from the bus, de-duplication off | {nodedup:,.0f} | {nodedup / ws:.2f} |")
    print("\n| bus overhead over the direct connection | p50 us (median) | p99 us (median) |\n| --- | --- | --- |")
    for name in ("core", "jetstream"):
        print(f"| {name} delivery | {statistics.median(p for p, _ in lat[name]):,.0f} | "
              f"{statistics.median(p for _, p in lat[name]):,.0f} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["main", "server", "publisher", "broadcast", "relay"], default="main")
    parser.add_argument("--nats")
    parser.add_argument("--ws")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.role == "server":
        os.execv(sys.executable, [sys.executable, str(HERE.parent / "server.py")])
    role = {"main": lambda: main(args), "publisher": lambda: publisher_role(args.nats),
            "broadcast": lambda: broadcast_role(args.rate), "relay": lambda: relay_role(args.nats, args.ws)}
    uvloop.run(role[args.role]())


if __name__ == "__main__":
    cli()
