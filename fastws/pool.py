"""``PooledWebSocketInterface``: more streams than one connection may carry.

Exchanges cap the streams of one connection (Binance 1024, MEXC 30). A pooled
client is itself the first connection; streams beyond its cap go to further
connections of the same adapter, opened on demand, behind the same interface:
one message handler, one error handler, one ``subscribe``/``unsubscribe``,
one ``health_check`` that sums and lists per connection, one ``stop()``.
"""
from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Any, ClassVar, Iterable, Optional

from fastws.base import BaseWebSocketInterface, ConnectionGap, SequenceGap
from fastws.types import ConnectionState

__all__ = ["PooledWebSocketInterface"]

# Metrics that are not summed over a pool's connections.
_NOT_SUMMED = frozenset({"latency_us", "connection_uptime"})


class PooledWebSocketInterface(BaseWebSocketInterface):
    """A ``BaseWebSocketInterface`` that spreads streams over several connections.

    Subclasses set ``max_streams_per_connection`` and implement
    ``_new_member()``, which builds one more connection of the same adapter
    (same settings and handlers). Streams fill this connection first, then
    the members in order; a member left with no stream is stopped.
    """

    max_streams_per_connection: ClassVar[int] = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._members: list[PooledWebSocketInterface] = []
        self._is_member = False
        self._pool_lock = asyncio.Lock()

    @abstractmethod
    def _new_member(self) -> "PooledWebSocketInterface":
        """Build (not start) one more connection with this client's settings."""

    # ------------------------------------------------------------ the members
    @property
    def connections(self) -> list[BaseWebSocketInterface]:
        """Every connection of the pool, this one first."""
        return [self, *self._members]

    def _owner_of(self, stream: str) -> Optional[BaseWebSocketInterface]:
        for connection in self.connections:
            if stream in connection._subscriptions:
                return connection
        return None

    def _spawn_member(self) -> "PooledWebSocketInterface":
        member = self._new_member()
        member._is_member = True
        member._routes = self._routes     # one route table for the whole pool
        self._members.append(member)
        return member

    # ---------------------------------------------------------------- public
    @property
    def subscriptions(self) -> list[str]:
        """The streams the user wants over all connections, in order."""
        if self._is_member:
            return super().subscriptions
        return [s for connection in self.connections for s in connection._subscriptions]

    async def start(self) -> None:
        """Start this connection and any member the pool already has."""
        await super().start()
        if not self._is_member:
            for member in self._members:
                await member.start()

    async def subscribe(self, streams: Iterable[str]) -> None:
        """Subscribe, spreading streams over connections of at most
        ``max_streams_per_connection`` each; waits for every ack.

        Each connection paces its own requests (the exchanges count per
        connection), so the connections subscribe in parallel.

        Raises:
            The first error of any connection (see
            ``BaseWebSocketInterface.subscribe``); the others' streams stay.
        """
        if self._is_member:
            await super().subscribe(streams)
            return
        async with self._pool_lock:
            plan: dict[int, list[str]] = {}
            connections = self.connections
            load = {id(c): len(c._subscriptions) for c in connections}
            for stream in dict.fromkeys(streams):
                if self._owner_of(stream) is not None:
                    continue
                target = next((c for c in connections
                               if load[id(c)] < self.max_streams_per_connection), None)
                if target is None:
                    target = self._spawn_member()
                    connections.append(target)
                    load[id(target)] = 0
                load[id(target)] += 1
                plan.setdefault(id(target), []).append(stream)
            starting = [m for m in self._members if m._supervisor is None and self._supervisor is not None]
            if starting:
                self.logger.info("pool grows to %d connections", len(self.connections),
                                 extra={"exchange": self.exchange, "connections": len(self.connections)})
                await asyncio.gather(*(m.start() for m in starting))
        jobs = [BaseWebSocketInterface.subscribe(c, plan[id(c)]) for c in connections if id(c) in plan]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def unsubscribe(self, streams: Iterable[str]) -> None:
        """Unsubscribe from whichever connections carry ``streams``; members left
        empty are stopped."""
        if self._is_member:
            await super().unsubscribe(streams)
            return
        plan: dict[int, tuple[BaseWebSocketInterface, list[str]]] = {}
        for stream in dict.fromkeys(streams):
            owner = self._owner_of(stream)
            if owner is not None:
                plan.setdefault(id(owner), (owner, []))[1].append(stream)
        await asyncio.gather(*(BaseWebSocketInterface.unsubscribe(c, s) for c, s in plan.values()))
        for member in [m for m in self._members if not m._subscriptions and not m._pending]:
            self._members.remove(member)
            await member.stop()

    async def stop(self) -> None:
        """Stop every connection of the pool."""
        members, self._members = self._members, []
        await asyncio.gather(*(m.stop() for m in members), return_exceptions=True)
        await super().stop()

    @property
    def metrics(self) -> dict[str, Any]:
        """This connection's metrics plus every member's, summed; ``connections``
        is the number of open connections ever made by the pool."""
        own = super().metrics
        if self._is_member or not self._members:
            return own
        total = dict(own)
        for member in self._members:
            for key, value in member.metrics.items():
                if key not in _NOT_SUMMED and isinstance(value, (int, float)) \
                        and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value
        total["pool_connections"] = len(self.connections)
        return total

    @property
    def gaps(self) -> list[ConnectionGap]:
        """Gaps of every connection, oldest first."""
        if self._is_member:
            return super().gaps
        return sorted((g for c in self.connections for g in c._gaps), key=lambda g: g.start)

    @property
    def sequence_gaps(self) -> list[SequenceGap]:
        """Sequence gaps of every connection, oldest first."""
        if self._is_member:
            return super().sequence_gaps
        return sorted((g for c in self.connections for g in c._sequence_gaps), key=lambda g: g.time)

    async def health_check(self) -> dict[str, Any]:
        """Health of the whole pool, and of each connection under ``connections``.

        The top-level keys are those of ``BaseWebSocketInterface.health_check``
        over all connections: ``state`` is the first connection state that is
        not CONNECTED (or CONNECTED), streams and gaps are merged, metrics are
        summed.
        """
        own = await super().health_check()
        if self._is_member:
            return own
        parts = [own] + [await m.health_check() for m in self._members]
        states = [p["state"] for p in parts]
        not_connected = [s for s in states if s != ConnectionState.CONNECTED.value]
        ages = [p["last_message_age"] for p in parts if p["last_message_age"] is not None]
        streams: dict[str, Any] = {}
        for part in parts:
            streams.update(part["streams"])
        return {
            **own,
            "state": not_connected[0] if not_connected else ConnectionState.CONNECTED.value,
            "is_connected": not not_connected,
            "subscriptions": self.subscriptions,
            "pending_subscriptions": [s for p in parts for s in p["pending_subscriptions"]],
            "reconnect_attempts": sum(p["reconnect_attempts"] for p in parts),
            "last_message_age": min(ages) if ages else None,
            "streams": streams,
            "gaps": sorted((g for p in parts for g in p["gaps"]), key=lambda g: g["start"]),
            "sequence_gaps": sorted((g for p in parts for g in p["sequence_gaps"]), key=lambda g: g["time"]),
            "metrics": self.metrics,
            "connections": [{k: v for k, v in p.items() if k != "connections"} for p in parts],
        }
