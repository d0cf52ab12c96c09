"""``PooledWebSocketInterface``: more streams than one connection may carry.

Exchanges cap the streams of one connection (Binance 1024, MEXC 30). A pooled
client is itself the first connection; streams beyond its cap go to further
connections of the same adapter (its members), opened on demand, behind the
same interface: one message handler, one error handler, one
``subscribe``/``unsubscribe``, one ``health_check`` that sums and lists per
connection, one ``stop()``.

With ``redundancy=R`` in the config, every connection of the pool (each
shard) runs R - 1 more connections over its streams (its paths, see
fastws/client/redundancy.py); the pool subscribes, starts, stops and counts
them with their shard.

The pool holds its members and uses their public API, plus three one-line
hooks of ``BaseWebSocketInterface`` (``_share_routes``, ``_carries``,
``_latency_histogram``). A member is an instance of the adapter, whose
``subscribe`` may add to what the pool's does (Binance's registers routes for
the whole pool): the pool subscribes and unsubscribes a connection through
``BaseWebSocketInterface.subscribe``/``unsubscribe``, the connection's own.
"""
from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Any, Callable, ClassVar, Iterable, Optional, Union

from fastws.client import BaseWebSocketInterface, ConnectionGap, SequenceGap
from fastws.client.redundancy import RedundantPaths, redundant_paths
from fastws.client.subscriptions import stream_names
from fastws.config import policies_of
from fastws.errors import ConnectionFailedError
from fastws.metrics import add_histograms, latency_percentiles
from fastws.policy import PolicyLike, resolve_policies
from fastws.types import ConnectionState

__all__ = ["PooledWebSocketInterface"]

# Metrics that are not summed over a pool's connections.
_NOT_SUMMED = frozenset({"latency_us", "connection_uptime", "pool_connections"})


def _add_counts(total: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Add a connection's numeric metrics (those that sum) into ``total``."""
    for key, value in metrics.items():
        if key not in _NOT_SUMMED and isinstance(value, (int, float)) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value


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
        # The further connections; a member has none of its own, so its
        # public API speaks for its one connection.
        self._members: list[BaseWebSocketInterface] = []
        # Subscribe and unsubscribe plan on the connections' loads: one at a
        # time, or two calls would fill the same connection past its cap.
        self._pool_lock = asyncio.Lock()
        self._pool_closing = False
        # Counters of members already stopped, so pool totals never go back.
        self._retired: dict[str, float] = {}
        self._retired_histogram: list[int] = []

    @abstractmethod
    def _new_member(self) -> "PooledWebSocketInterface":
        """Build (not start) one more connection with this client's settings."""

    def _new_path(self, config: Any) -> "PooledWebSocketInterface":
        """Build (not start) a redundant path of this connection with ``config``
        (its endpoint); adapters that derive state from the URL override it."""
        member = self._new_member()
        member.config = config
        return member

    def _ensure_paths(self) -> None:
        """Build this shard's redundant paths once, when the config asks for them."""
        if self.config.redundancy <= 1 or self._redundancy is not None or self._path_index != 0:
            return
        paths: list[BaseWebSocketInterface] = []
        for index in range(1, self.config.redundancy):
            path = self._new_path(RedundantPaths.path_config(self.config, index))
            # The routes are shared; the frame tap is not: a recorder keeps
            # the frames of path 0, one copy of each (not R).
            path._share_routes(self._routes)
            paths.append(path)
        RedundantPaths(self, paths)

    # ------------------------------------------------------------ the members
    @property
    def connections(self) -> list[BaseWebSocketInterface]:
        """Every connection of the pool, this one first."""
        return [self, *self._members]

    def _loads(self) -> list[tuple[BaseWebSocketInterface, list[str]]]:
        """Each connection with the streams it carries."""
        own = super().subscriptions
        return [(self, own), *((m, m.subscriptions) for m in self._members)]

    @property
    def every_connection(self) -> list[BaseWebSocketInterface]:
        """Every connection of the pool with its redundant paths (each shard, then its paths)."""
        return [path for c in self.connections for path in (c, *redundant_paths(c))]

    def _owner_of(self, stream: str) -> Optional[BaseWebSocketInterface]:
        """The connection that carries ``stream``, if any."""
        if super()._carries(stream):
            return self
        return next((m for m in self._members if m._carries(stream)), None)

    def _carries(self, stream: str) -> bool:
        """True if a connection of the pool carries ``stream``."""
        return self._owner_of(stream) is not None

    def set_frame_tap(self, tap: Optional[Callable[[bytes, int, int], None]]) -> None:
        """As ``BaseWebSocketInterface.set_frame_tap``, for every connection of the pool."""
        super().set_frame_tap(tap)
        for member in self._members:
            member.set_frame_tap(tap)

    def _spawn_member(self) -> BaseWebSocketInterface:
        member = self._new_member()
        member._share_routes(self._routes)     # one route table for the whole pool
        member.set_frame_tap(self._frame_tap)
        self._members.append(member)
        return member

    async def _retire(self, member: BaseWebSocketInterface) -> None:
        """Stop a member and keep its counters in the pool's totals."""
        if member in self._members:
            self._members.remove(member)
        await member.stop()
        _add_counts(self._retired, member.metrics)
        self._retired_histogram = add_histograms(self._retired_histogram, member._latency_histogram())
        self._gaps.extend(member.gaps)
        self._sequence_gaps.extend(member.sequence_gaps)

    # ---------------------------------------------------------------- public
    @property
    def subscriptions(self) -> list[str]:
        """The streams the user wants over all connections, in order."""
        return [s for _, streams in self._loads() for s in streams]

    async def start(self, timeout: Optional[float] = None) -> None:
        """Start this connection and any member the pool already has.

        Args:
            timeout: As ``BaseWebSocketInterface.start``, for the first connection.
        """
        self._pool_closing = False
        self._ensure_paths()
        await super().start(timeout)
        if self._redundancy is not None and self._path_index == 0:
            await self._redundancy.start(timeout)
        for member in list(self._members):
            await member.start()

    async def subscribe(self, streams: Union[str, Iterable[str]], *, policy: Optional[PolicyLike] = None) -> None:
        """Subscribe, spreading streams over connections of at most
        ``max_streams_per_connection`` each; waits for every ack.

        Each connection paces its own requests (the exchanges count per
        connection), so the connections subscribe in parallel. ``policy``:
        as ``BaseWebSocketInterface.subscribe`` (a refused one raises
        ``ValueError`` before any connection is asked). Invalid names
        are refused before any connection is opened for them; a member left
        with no stream (its streams all refused) is stopped.

        Raises:
            The first error of any connection (see
            ``BaseWebSocketInterface.subscribe``); the other connections'
            streams are subscribed all the same. A connection that cannot be
            opened for the overflow raises ``ConnectionFailedError`` and its
            streams are not tracked.
        """
        names = stream_names(streams)
        invalid = self._invalid_streams(names)
        if policy is not None:
            # Refused (ValueError) before any connection is asked; streams
            # already carried change their policy where they are.
            resolve_policies(names, policy, *policies_of(self.config), self._stream_is_snapshot)
            for name in names:
                owner = self._owner_of(name)
                if owner is not None:
                    owner._set_policies([name], policy)
        if self._inside_pool_handler():
            # The acks would wait behind the handler that waits for them.
            valid = [n for n in names if n not in invalid]
            if valid:
                self._in_background(self._reported(PooledWebSocketInterface.subscribe(self, valid, policy=policy)))
            if invalid:
                raise self._refusal(invalid)
            return
        async with self._pool_lock:
            if self._pool_closing:
                raise ConnectionFailedError(f"{self.exchange}: subscribe while stopping")
            plan, spawned = self._plan(n for n in names if n not in invalid)
            errors: list[BaseException] = []
            if spawned and self._supervisor is not None:
                self.logger.info("pool grows to %d connections", len(self.connections),
                                 extra={"exchange": self.exchange, "connections": len(self.connections)})
                started = await asyncio.gather(*(m.start() for m in spawned), return_exceptions=True)
                for member, result in zip(spawned, started):
                    if isinstance(result, BaseException):
                        errors.append(result)
                        plan.pop(id(member), None)
                        await self._retire(member)
            jobs = [BaseWebSocketInterface.subscribe(path, wanted, policy=policy) for c, wanted in plan.values()
                    for path in (c, *redundant_paths(c))]
            errors.extend(r for r in await asyncio.gather(*jobs, return_exceptions=True)
                          if isinstance(r, BaseException))
            for member in [m for m in spawned if m in self._members and not m.subscriptions]:
                await self._retire(member)
        if errors:
            raise errors[0]
        if invalid:
            raise self._refusal(invalid)

    def _inside_pool_handler(self) -> bool:
        """True when called from the parser or handler of a connection of the pool."""
        return any(c._inside_own_handler() for c in self.connections)

    def _plan(self, streams: Iterable[str]) -> tuple[dict[int, tuple[BaseWebSocketInterface, list[str]]],
                                                      list[BaseWebSocketInterface]]:
        """Which connection takes each new stream; members spawned for the overflow."""
        plan: dict[int, tuple[BaseWebSocketInterface, list[str]]] = {}
        spawned: list[BaseWebSocketInterface] = []
        loads = self._loads()
        connections = [c for c, _ in loads]
        load = {id(c): len(names) for c, names in loads}
        for stream in dict.fromkeys(streams):
            if self._carries(stream):
                continue
            target = next((c for c in connections if load[id(c)] < self.max_streams_per_connection), None)
            if target is None:
                target = self._spawn_member()
                spawned.append(target)
                connections.append(target)
                load[id(target)] = 0
            load[id(target)] += 1
            plan.setdefault(id(target), (target, []))[1].append(stream)
        return plan, spawned

    async def unsubscribe(self, streams: Union[str, Iterable[str]]) -> None:
        """Unsubscribe from whichever connections carry ``streams``; members left
        empty are stopped."""
        names = stream_names(streams)
        if self._inside_pool_handler():
            self._in_background(self._reported(PooledWebSocketInterface.unsubscribe(self, names)))
            return
        async with self._pool_lock:
            plan: dict[int, tuple[BaseWebSocketInterface, list[str]]] = {}
            for stream in names:
                owner = self._owner_of(stream)
                if owner is not None:
                    plan.setdefault(id(owner), (owner, []))[1].append(stream)
            results = await asyncio.gather(*(BaseWebSocketInterface.unsubscribe(path, s)
                                             for c, s in plan.values() for path in (c, *redundant_paths(c))),
                                           return_exceptions=True)
            # Streams waiting to be sent are tracked too: no subscription, nothing pending.
            for member in [m for m in self._members if not m.subscriptions]:
                await self._retire(member)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def stop(self) -> None:
        """Stop every connection of the pool (members a concurrent subscribe
        is adding included)."""
        self._pool_closing = True
        while self._members:
            members = list(self._members)
            await asyncio.gather(*(self._retire(m) for m in members), return_exceptions=True)
        if self._redundancy is not None and self._path_index == 0:
            await self._redundancy.stop()
        await super().stop()

    @property
    def metrics(self) -> dict[str, Any]:
        """Metrics summed over the pool's connections (stopped members
        included); ``latency_us`` from the merged histograms."""
        total = super().metrics
        _add_counts(total, self._retired)
        for member in self._members:
            _add_counts(total, member.metrics)
        for path in redundant_paths(self):
            _add_counts(total, path.metrics)
        total["latency_us"] = latency_percentiles(self._latency_histogram())
        total["pool_connections"] = len(self.connections)
        return total

    def _latency_histogram(self) -> list[int]:
        """The event-latency histogram over every connection of the pool, stopped members included."""
        histogram = add_histograms(super()._latency_histogram(), self._retired_histogram)
        for member in self._members:
            histogram = add_histograms(histogram, member._latency_histogram())
        for path in redundant_paths(self):
            histogram = add_histograms(histogram, path._latency_histogram())
        return histogram

    @property
    def gaps(self) -> list[ConnectionGap]:
        """Gaps of every connection, oldest first."""
        return sorted([*super().gaps, *(g for m in self._members for g in m.gaps)], key=lambda g: g.start)

    @property
    def sequence_gaps(self) -> list[SequenceGap]:
        """Sequence gaps of every connection, oldest first."""
        return sorted([*super().sequence_gaps, *(g for m in self._members for g in m.sequence_gaps)],
                      key=lambda g: g.time)

    async def health_check(self) -> dict[str, Any]:
        """Health of the whole pool, and of each connection under ``connections``.

        The top-level keys are those of ``BaseWebSocketInterface.health_check``
        over all connections: ``state`` is the first connection state that is
        not CONNECTED (or CONNECTED), streams and gaps are merged, metrics are
        summed.
        """
        own = await super().health_check()
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
            "cadence": {stream: entry for p in parts for stream, entry in p["cadence"].items()},
            "connections": [{k: v for k, v in p.items() if k != "connections"} for p in parts],
            "redundancy": [{"shard": i, "paths": c._redundancy.health()}
                           for i, c in enumerate(self.connections) if c._redundancy is not None],
        }
