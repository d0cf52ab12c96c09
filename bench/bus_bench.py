"""The bus publisher's cost, beside nats-py's own publish, in one run.

Three measures, each in interleaved rounds (medians; the machine is shared):

1. Collector cost per message: pre-built Binance frames fed to the frame core a
   Binance connection runs (``bench/binance_peers.detached_core``, no socket), with
   no publisher and with a ``FramePublisher`` taken every 100 frames (a read batch):
   ns/message, the difference is the publishing cost (goal: <= +1.5 us on a
   ~250-byte frame).
2. Publishing to a real ``nats-server`` (loopback), per message, 250-byte payloads:
   nats-py ``publish`` without headers, ``publish`` with the four bus headers (a dict
   per call, as a collector would need), and the core's HPUB frames handed over once
   per 100 messages (``BusPublisher.hand_over``).
3. Messages per second one collector publishes: the frame core with the publisher,
   frames fed as fast as it takes them, handed to NATS every 100, until the server's
   PONG after the last (checked against its ``/varz`` ``in_msgs``).

Wall-clock times on a shared machine are noisy for measure 1, so it is also counted
in instructions by callgrind (deterministic): ``--callgrind`` runs the core under
``valgrind --tool=callgrind`` with N and with 0 messages, with and without the
publisher; instructions/message = the difference / N.

Run: ``python bench/bus_bench.py [--rounds 5] [--messages 20000] [--callgrind]``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BATCH = 100
"""Frames per read batch (one hand-over each)."""


def _frames(kind: str, count: int) -> tuple[list[Any], int]:
    from bench.binance_payloads import build_payloads
    from bench.binance_peers import frames_of

    payloads = build_payloads(16)[kind]
    return frames_of(payloads, count), sum(map(len, payloads)) // len(payloads)


def _core(publisher: Optional[Any]) -> Any:
    from bench.binance_peers import StreamCounter, detached_core

    core = detached_core(StreamCounter(), False)
    core.publisher = publisher
    return core


def _publisher(on_pending: Callable[[], None] = lambda: None) -> Any:
    from fastws._core import FramePublisher
    from fastws.bus.subjects import message_id, stream_subject

    def subject_for(stream: str) -> tuple[bytes, bytes]:
        return stream_subject("binance", stream).encode(), message_id("binance", stream, 0)[:-16].encode()

    return FramePublisher(subject_for, on_pending, 64 * 1024 * 1024)


def core_cost_ns(kind: str, messages: int, with_publisher: bool) -> float:
    """ns per message through the Binance dict-route core, with or without the publisher."""
    frames, _ = _frames(kind, messages)
    publisher = _publisher() if with_publisher else None
    core = _core(publisher)
    feed = core.on_ws_frame
    take = publisher.take if publisher is not None else (lambda: None)
    started = time.perf_counter_ns()
    for start in range(0, messages, BATCH):
        for frame in frames[start:start + BATCH]:
            feed(None, frame)
        take()
    elapsed = time.perf_counter_ns() - started
    if publisher is not None:
        assert publisher.published == messages, publisher.counters()
    return elapsed / messages


async def publish_cost_us(url: str, way: str, messages: int, payload: bytes) -> float:
    """us per message published to NATS ``way``: nats-py plain, nats-py headers, or fastws HPUB."""
    import nats

    from fastws.bus.publisher import BusPublisher

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    subject = "md.binance.btcusdt%40aggTrade"
    try:
        started = time.perf_counter_ns()
        if way == "nats-py publish":
            for _ in range(messages):
                await nc.publish(subject, payload)
        elif way == "nats-py publish + headers":
            for i in range(messages):
                await nc.publish(subject, payload, headers={
                    "Nats-Msg-Id": f"binance.btcusdt%40aggTrade.{i:016x}", "Fastws-Recv-Ns": str(time.time_ns()),
                    "Fastws-Event-Ms": "1700000000123", "Fastws-Opcode": "1"})
        else:
            publisher = BusPublisher("binance", nc, max_pending_bytes=64 * 1024 * 1024)
            frames = publisher.frames
            for start in range(0, messages, BATCH):
                for _ in range(min(BATCH, messages - start)):
                    frames.publish_frame("btcusdt@aggTrade", payload, time.time_ns(), 1700000000123000000, 1)
                await publisher.hand_over()
            assert publisher.handed == messages
        await nc.flush()
        return (time.perf_counter_ns() - started) / messages / 1000
    finally:
        await nc.close()


def feed_for_callgrind(kind: str, with_publisher: bool, messages: int) -> None:
    """Build the core (and publisher), warm it with every frame once, then feed ``messages``."""
    frames, _ = _frames(kind, max(messages, 1))
    publisher = _publisher() if with_publisher else None
    core = _core(publisher)
    feed = core.on_ws_frame
    take = publisher.take if publisher is not None else (lambda: None)
    for frame in frames[:128]:
        feed(None, frame)
    take()
    for start in range(0, messages, BATCH):
        for frame in frames[start:start + BATCH]:
            feed(None, frame)
        take()


def _instructions(kind: str, with_publisher: bool, messages: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             os.path.abspath(__file__), "--feed", kind, "on" if with_publisher else "off", str(messages)],
            capture_output=True, text=True, check=False)
        found = re.search(r"Collected\s*:\s*(\d+)", result.stderr)
        if result.returncode != 0 or found is None:
            raise SystemExit(result.stdout + result.stderr)
        return int(found.group(1))


def callgrind_table(kinds: list[str], messages: int) -> None:
    """Instructions per message through the core, publisher off and on."""
    print(f"1b. collector cost per message in instructions (callgrind, {messages} messages)")
    print(f"{'frames':<10} {'bytes':>6} {'off':>8} {'on':>8} {'on - off':>9} {'on/off':>7}")
    for kind in kinds:
        _, size = _frames(kind, 1)
        per = {}
        for on in (False, True):
            per[on] = (_instructions(kind, on, messages) - _instructions(kind, on, 0)) / messages
        print(f"{kind:<10} {size:>6} {per[False]:>8.0f} {per[True]:>8.0f} {per[True] - per[False]:>+9.0f} "
              f"{per[True] / per[False]:>7.2f}")


def _in_msgs(monitor_port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/varz", timeout=5) as response:
        return int(json.loads(response.read())["in_msgs"])


async def _settled_in_msgs(monitor_port: int) -> int:
    """The server's ``in_msgs`` once it stops moving (earlier publishers' counts arrive late)."""
    last = _in_msgs(monitor_port)
    while True:
        await asyncio.sleep(0.1)
        now = _in_msgs(monitor_port)
        if now == last:
            return now
        last = now


async def collector_rate(server: Any, core: Any, frames: list[Any]) -> float:
    """Messages per second from frames into ``core`` (built without a publisher) to counted by the server."""
    import nats

    from fastws.bus.publisher import BusPublisher

    messages = len(frames)
    nc = await nats.connect(server.url, pending_size=64 * 1024 * 1024)
    try:
        publisher = BusPublisher("binance", nc, max_pending_bytes=64 * 1024 * 1024)
        core.publisher = publisher.frames
        feed = core.on_ws_frame
        before = await _settled_in_msgs(server.monitor_port)
        started = time.perf_counter()
        for start in range(0, messages, BATCH):
            for frame in frames[start:start + BATCH]:
                feed(None, frame)
            await publisher.hand_over()
        await nc.flush()        # the server's PONG: it has read every message before it
        elapsed = time.perf_counter() - started
        for _ in range(50):     # its /varz counters follow a moment later
            if _in_msgs(server.monitor_port) - before >= messages:
                break
            await asyncio.sleep(0.05)
        assert _in_msgs(server.monitor_port) - before == messages, publisher.counters()
        return messages / elapsed
    finally:
        await nc.close()


def _median(values: list[float]) -> float:
    return statistics.median(values)


async def _round_on_nats(server: Any, ways: list[str], messages: int, payload: bytes, core: Any,
                         frames: list[Any]) -> tuple[dict[str, float], float]:
    publish = {way: await publish_cost_us(server.url, way, messages, payload) for way in ways}
    return publish, await collector_rate(server, core, frames)


def main(rounds: int, messages: int) -> None:
    import uvloop

    from fastws.testing.nats import NatsServer

    kinds = ["trade", "aggTrade", "kline", "mix"]
    ways = ["nats-py publish", "nats-py publish + headers", "fastws HPUB (core, batched)"]
    costs: dict[tuple[str, bool], list[float]] = {}
    publish: dict[str, list[float]] = {}
    rates: list[float] = []
    payload = b"x" * 250
    with NatsServer.started(Path(tempfile.mkdtemp(prefix="fastws-bus-bench-"))) as server:
        for _ in range(rounds):
            for kind in kinds:
                for with_publisher in (False, True):
                    costs.setdefault((kind, with_publisher), []).append(
                        core_cost_ns(kind, messages, with_publisher))
            frames, _ = _frames("aggTrade", messages * 5)
            per_way, rate = uvloop.run(_round_on_nats(server, ways, messages, payload, _core(None), frames))
            for way, value in per_way.items():
                publish.setdefault(way, []).append(value)
            rates.append(rate)
    print(f"bus_bench: {rounds} interleaved rounds, {messages} messages each, medians\n")
    print("1. collector cost per message (Binance dict-route core, no socket), ns/message")
    print(f"{'frames':<10} {'bytes':>6} {'off':>8} {'on':>8} {'on - off':>9} {'on/off':>7}")
    for kind in kinds:
        _, size = _frames(kind, 1)
        off = _median(costs[(kind, False)])
        on = _median(costs[(kind, True)])
        print(f"{kind:<10} {size:>6} {off:>8.0f} {on:>8.0f} {on - off:>+9.0f} {on / off:>7.2f}")
    print("\n2. publishing to nats-server on loopback, 250-byte payload, us/message (ratio to nats-py publish)")
    base = _median(publish[ways[0]])
    for way in ways:
        value = _median(publish[way])
        print(f"{way:<30} {value:>7.2f} us  {value / base:>5.2f}x  ({1e6 / value:>9,.0f} msg/s)")
    print(f"\n3. one collector (core + publisher -> nats-server), aggTrade frames: "
          f"{_median(rates):,.0f} msg/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--callgrind", action="store_true", help="measure 1 in instructions (callgrind) only")
    parser.add_argument("--feed", nargs=3, metavar=("KIND", "ON|OFF", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        feed_for_callgrind(args.feed[0], args.feed[1] == "on", int(args.feed[2]))
    elif args.callgrind:
        callgrind_table(["aggTrade", "kline", "mix"], args.messages)
    else:
        main(args.rounds, args.messages)
