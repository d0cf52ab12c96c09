"""``fastws collect EXCHANGE STREAM... --nats URL[,URL...]``: publish an exchange's frames to NATS.

Runs the exchange's adapter and publishes every data frame, byte for byte, to the
subject of its stream (``md.<exchange>.<stream>``, see ``fastws.bus.subjects``); the
exchange's JetStream stream is created (or checked) with ``--max-age``, ``--max-bytes``
and ``--duplicate-window``. With ``--fleet NAME --replicas R``, any number of collectors
share the streams through leases: each stream is collected by R of them.

Status lines (one JSON object each: messages, published, dropped, failed, the fleet's
leases) go to stderr every ``--status-interval`` seconds and at the end. Runs until
``--duration`` or Ctrl-C (SIGINT/SIGTERM), then gives its leases back and stops.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, TextIO

import uvloop

from fastws.commands import CommandError, UsageError, configure_logging, require_positive
from fastws.commands.adapters import exchange_names, load_exchange
from fastws.commands.signals import until_signalled

__all__ = ["collect", "register", "run"]


def register(commands: Any) -> None:
    """Add the ``collect`` sub-command."""
    parser = commands.add_parser(
        "collect", help="publish an exchange's streams to NATS (a collector)",
        description="Subscribe to STREAM... and publish every frame to NATS JetStream.")
    parser.add_argument("exchange", choices=exchange_names(), help="the exchange (a registered one)")
    parser.add_argument("streams", nargs="+", metavar="STREAM", help="stream or channel names")
    parser.add_argument("--nats", required=True, metavar="URL[,URL...]",
                        help="NATS servers, comma-separated (every node of a cluster)")
    parser.add_argument("--url", help="exchange endpoint (default: its public one)")
    parser.add_argument("--fleet", help="share the streams with the other collectors of this fleet")
    parser.add_argument("--replicas", type=int, default=1, help="collectors per stream in the fleet (default 1)")
    parser.add_argument("--lease-ttl", type=float, default=5.0,
                        help="seconds a dead collector's leases live on (default 5)")
    parser.add_argument("--max-age", type=float, default=3600.0, help="JetStream: seconds kept (default 3600)")
    parser.add_argument("--max-bytes", type=int, default=1024 ** 3, help="JetStream: bytes kept (default 1 GiB)")
    parser.add_argument("--duplicate-window", type=float, default=5.0,
                        help="JetStream: seconds a message id is remembered (default 5)")
    parser.add_argument("--storage-replicas", type=int, default=1,
                        help="JetStream: copies of the stream and the lease bucket in a cluster (default 1)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--status-interval", type=float, default=10.0,
                        help="seconds between status lines on stderr (default 10)")
    parser.set_defaults(run=run)


def _status(collector: Any, now: float) -> dict[str, Any]:
    pub = collector.publisher.counters()
    fleet = collector.fleet
    return {
        "t": round(now - collector.started_at, 3),
        "messages": collector.messages,
        "published": pub["published"],
        "dropped": pub["dropped"],
        "failed": pub["failed"],
        "nats": collector.publisher.health()["nats"],
        "subscribed": collector.subscribed,
        "member": fleet.member_id if fleet is not None else None,
        "leases": fleet.leases() if fleet is not None else None,
        "errors": len(collector.errors),
    }


async def collect(args: argparse.Namespace, stop: asyncio.Event, err: TextIO = sys.stderr) -> dict[str, Any]:
    """Run one collector until ``stop`` is set or ``args.duration`` passes; return its last status."""
    from fastws.bus.collector import Collector
    from fastws.bus.storage import StorageSettings

    try:
        storage = StorageSettings(max_age=args.max_age, max_bytes=args.max_bytes,
                                  duplicate_window=args.duplicate_window, replicas=args.storage_replicas)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    urls = [u.strip() for u in args.nats.split(",") if u.strip()]
    if not urls:
        raise UsageError("--nats needs at least one URL")
    collector = Collector(args.exchange, args.streams, urls, url=args.url, fleet=args.fleet,
                          replicas=args.replicas, lease_ttl=args.lease_ttl, storage=storage)
    started = time.monotonic()
    try:
        await collector.start()
    except Exception as exc:
        await collector.stop()
        raise CommandError(f"could not connect to {collector.client.config.url}: {exc}") from None
    try:
        while not stop.is_set():
            left = None if args.duration is None else args.duration - (time.monotonic() - started)
            if left is not None and left <= 0:
                break
            wait = args.status_interval if left is None else min(args.status_interval, left)
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except asyncio.TimeoutError:
                pass
            failure = collector.nats_failure()
            if failure is not None:
                raise CommandError(failure)
            err.write(json.dumps(_status(collector, time.monotonic())) + "\n")
            err.flush()
    finally:
        status = _status(collector, time.monotonic())
        await collector.stop()
    err.write(json.dumps({"final": True, **status}) + "\n")
    err.flush()
    return status


def run(args: argparse.Namespace) -> int:
    """Run ``fastws collect``; 0 after a clean stop."""
    require_positive("--duration", args.duration)
    require_positive("--lease-ttl", args.lease_ttl)
    require_positive("--status-interval", args.status_interval)
    if args.replicas < 1:
        raise UsageError(f"--replicas must be >= 1, got {args.replicas}")
    if args.fleet is None and args.replicas != 1:
        raise UsageError("--replicas needs --fleet")
    load_exchange(args.exchange)
    try:
        import nats  # noqa: F401
    except ImportError:
        raise CommandError("fastws collect needs the nats extra: pip install 'fastws[nats]'") from None
    configure_logging(args.debug)

    async def work(stop: asyncio.Event) -> dict[str, Any]:
        return await collect(args, stop)

    uvloop.run(until_signalled(work))
    return 0
