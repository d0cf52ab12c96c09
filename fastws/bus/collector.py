"""A collector: an exchange adapter whose frames are published to NATS.

:class:`Collector` runs the exchange's registered client (``fastws.registry``) with a
:class:`~fastws.bus.publisher.BusPublisher` on its frame core. Alone, it subscribes to
every stream it is given; in a fleet (``fleet=...``) a :class:`~fastws.bus.fleet.FleetMember`
decides which streams it holds, and it subscribes to and publishes exactly those.

NATS is never in the way of the exchange: the client connects and subscribes whether or
not NATS answers (a collector that starts with NATS unreachable connects to it in the
background, counting what it cannot publish meanwhile), and nats-py reconnects by itself
after a loss. The first connection makes sure the exchange's JetStream stream exists
with the configured limits (:func:`~fastws.bus.storage.ensure_stream`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Optional, Sequence

from fastws.bus.fleet import FleetMember
from fastws.bus.publisher import DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MAX_PENDING_BYTES, BusPublisher
from fastws.bus.storage import StorageSettings, ensure_stream
from fastws.bus.subjects import DEFAULT_PREFIX
from fastws.errors import ExchangeAPIError
from fastws.registry import get_exchange
from fastws.tasks import cancel_and_wait
from fastws.types import ExchangeName

__all__ = ["Collector"]

log = logging.getLogger("fastws.bus.collector")

_NATS_RETRY = 0.5       # seconds between attempts to reach NATS at start


class Collector:
    """One exchange's streams, published to NATS (alone or as a fleet member).

    Args:
        exchange: A registered exchange's name.
        streams: The streams (of the whole fleet, with ``fleet``).
        nats_urls: NATS servers (every node of a cluster: nats-py fails over).
        url: The exchange endpoint (default: its public one; a simulator's in tests).
        fleet: The fleet's name (None: collect every stream alone).
        replicas: Collectors per stream in the fleet.
        lease_ttl: Seconds a lease lives unless renewed.
        storage: Limits of the exchange's JetStream stream (None: do not create or
            check it).
        prefix: The subjects' first token.
        max_buffer_bytes, max_pending_bytes: The publisher's bounds.
        client_options: More keyword arguments for the exchange's config.
    """

    def __init__(self, exchange: str, streams: Sequence[str], nats_urls: Sequence[str], *,
                 url: Optional[str] = None, fleet: Optional[str] = None, replicas: int = 1,
                 lease_ttl: float = 5.0, storage: Optional[StorageSettings] = StorageSettings(),
                 prefix: str = DEFAULT_PREFIX, max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
                 max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES, **client_options: Any) -> None:
        if not streams:
            raise ValueError("a collector needs at least one stream")
        if not nats_urls:
            raise ValueError("a collector needs at least one NATS server")
        self.entry = get_exchange(exchange)
        self.exchange = self.entry.name
        self.streams = list(dict.fromkeys(streams))
        self.nats_urls = list(nats_urls)
        self.fleet_name = fleet
        self.replicas = replicas
        self.lease_ttl = lease_ttl
        self.storage = storage
        self.messages = 0
        """Data messages the exchange delivered."""
        self.errors: list[str] = []
        """The exchange client's reported errors (the last 100)."""
        config = self.entry.config(url, **client_options) if url else self.entry.config(**client_options)
        self.client = self.entry.client(ExchangeName(self.exchange), config, self._on_message, self._on_error)
        self.publisher = BusPublisher(self.exchange, None, prefix=prefix,
                                      streams=frozenset() if fleet else None,
                                      max_buffer_bytes=max_buffer_bytes, max_pending_bytes=max_pending_bytes)
        self.publisher.attach(self.client)
        self.fleet: Optional[FleetMember] = None
        self.nc: Any = None
        self._nats_task: Optional[asyncio.Task[None]] = None
        # NATS reached, the stream checked, the publisher handing over.
        self._nats_ready = False
        self._subscribed: set[str] = set()
        self._change_lock = asyncio.Lock()
        self.nats_errors = 0
        self.nats_disconnects = 0
        self.started_at = 0.0

    # ------------------------------------------------------------ handlers
    def _on_message(self, *message: Any) -> None:
        self.messages += 1

    def _on_error(self, error: ExchangeAPIError) -> None:
        self.errors.append(str(error))
        del self.errors[:-100]

    # ------------------------------------------------------------ life cycle
    async def start(self, connect_timeout: Optional[float] = 30.0) -> None:
        """Connect to the exchange (and subscribe, alone); reach NATS in the background."""
        self.started_at = time.monotonic()
        await self.publisher.start()
        await self.client.start(timeout=connect_timeout)
        if self.fleet_name is None:
            await self._set_subscriptions(set(self.streams))
        self._nats_task = asyncio.get_running_loop().create_task(self._reach_nats(), name="fastws-collector-nats")

    async def stop(self) -> None:
        """Give the leases back, publish what is buffered, close NATS and the exchange."""
        task, self._nats_task = self._nats_task, None
        await cancel_and_wait(task)
        if self.fleet is not None:
            try:
                await asyncio.wait_for(self.fleet.stop(), self.lease_ttl)
            except Exception as exc:       # NATS away: the leases age out by themselves
                log.info("collector: giving leases back: %s", exc)
        await self.client.stop()
        await self.publisher.stop()
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), 5.0)
            except Exception as exc:
                log.info("collector: closing NATS: %s", exc)

    async def wait_nats(self, timeout: float) -> None:
        """Wait until NATS is reached and the collector publishes (or joined its fleet)."""
        deadline = time.monotonic() + timeout
        while not (self._nats_ready and self.nc.is_connected and (self.fleet_name is None or self.fleet)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS not reached within {timeout} s")
            await asyncio.sleep(0.05)

    async def _reach_nats(self) -> None:
        """Connect to NATS (retrying until it answers), check storage, join the fleet."""
        import nats

        while True:
            try:
                nc = await nats.connect(
                    self.nats_urls, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                    connect_timeout=2, ping_interval=5, max_outstanding_pings=2,
                    pending_size=self.publisher.max_pending_bytes,
                    error_cb=self._on_nats_error, disconnected_cb=self._on_nats_disconnected,
                    reconnected_cb=self._on_nats_reconnected, name=f"fastws-collect-{self.exchange}")
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.nats_errors += 1
                log.info("collector: NATS not reachable yet: %s", exc)
                await asyncio.sleep(_NATS_RETRY)
        self.nc = nc
        js = nc.jetstream()
        if self.storage is not None:
            await ensure_stream(js, self.exchange, self.storage, prefix=self.publisher.prefix)
        self.publisher.set_connection(nc)
        self._nats_ready = True
        if self.fleet_name is not None:
            fleet = FleetMember(js, self.fleet_name, self.streams, self.replicas, self._on_owned,
                                ttl=self.lease_ttl, kv_replicas=self.storage.replicas if self.storage else 1)
            while True:
                try:
                    await fleet.start()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.nats_errors += 1
                    log.warning("collector: joining fleet %s: %s", self.fleet_name, exc)
                    await asyncio.sleep(_NATS_RETRY)
            self.fleet = fleet

    async def _on_nats_error(self, exc: Exception) -> None:
        self.nats_errors += 1

    async def _on_nats_disconnected(self) -> None:
        self.nats_disconnects += 1

    async def _on_nats_reconnected(self) -> None:
        if self.fleet is not None:
            self.fleet.nudge()

    async def _on_owned(self, owned: frozenset[str]) -> None:
        """The fleet member's streams changed: publish and subscribe exactly those."""
        async with self._change_lock:
            self.publisher.set_streams(owned)
            await self._set_subscriptions(set(owned))

    async def _set_subscriptions(self, wanted: set[str]) -> None:
        gone = [s for s in self.streams if s in self._subscribed and s not in wanted]
        new = [s for s in self.streams if s in wanted and s not in self._subscribed]
        if gone:
            self._subscribed.difference_update(gone)
            try:
                await self.client.unsubscribe(gone)
            except ExchangeAPIError as exc:
                self._on_error(exc)
        if new:
            self._subscribed.update(new)
            try:
                await self.client.subscribe(new)
            except ExchangeAPIError as exc:
                self._on_error(exc)

    def nats_failure(self) -> Optional[str]:
        """Why the collector gave up on NATS for good (the stream's settings differ), else None."""
        task = self._nats_task
        if task is None or not task.done() or task.cancelled() or task.exception() is None:
            return None
        return str(task.exception())

    # ------------------------------------------------------------ figures
    @property
    def subscribed(self) -> list[str]:
        """The streams this collector is subscribed to (and publishes)."""
        return [s for s in self.streams if s in self._subscribed]

    async def health(self) -> dict[str, Any]:
        """The exchange client's health check, the publisher's counters, NATS and the fleet."""
        return {
            "exchange": self.exchange,
            "messages": self.messages,
            "subscribed": self.subscribed,
            "publisher": self.publisher.health(),
            "nats_errors": self.nats_errors,
            "nats_disconnects": self.nats_disconnects,
            "fleet": self.fleet.health() if self.fleet is not None else None,
            "client": await self.client.health_check(),
        }
