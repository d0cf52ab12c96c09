"""A fleet of collectors sharing streams through leases in a JetStream key-value bucket.

Every collector of fleet ``NAME`` (any number, on any hosts) runs a :class:`FleetMember`
on the bucket ``fastws_fleet_<NAME>``. Each stream has ``replicas`` slots, the keys
``s.<stream key>.<slot>``; a collector holds a slot when the key's value is its id. The
bucket's TTL is the lease TTL: a key not renewed within it ages out, so the slots of a
collector that died (SIGKILL, a lost host) become free by themselves. Each collector
also keeps a member key ``m.<id>``, so that every one knows how many are alive.

Every ``ttl / 4`` seconds a member:

1. renews its member key and each of its leases with compare-and-set
   (``update(key, id, last=revision)``); a lease whose revision moved on (it expired and
   another collector took it) is lost;
2. counts the live members and works out its fair share,
   ``ceil(streams * replicas / members)`` (at most one slot per stream);
3. gives back leases beyond its share (``delete(key, last=revision)``), so that a
   collector that joins finds free slots: one copy of a stream per TTL at most (the
   member first creates the stream's release key ``r.<stream key>``, which only one
   can), and with R >= 2 only a copy whose stream keeps its other holders, so a
   rebalance never leaves a stream uncollected (with R = 1 a stream that changes hands
   has a gap of about one step);
4. takes free slots (``create``: only when the key is absent) up to its share, never
   two slots of one stream (so each stream is held by ``replicas`` different
   collectors, never more: a slot key has one value).

``on_change(owned)`` is called with the streams the member holds whenever that set
changes; the collector subscribes and publishes exactly those. A member that cannot
renew for a whole TTL (NATS gone) assumes its leases lost: it reports an empty set
(the collector stops publishing and unsubscribes), and joins again when NATS is back.
A clean ``stop()`` deletes its keys at once.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import re
import socket
import time
from typing import Any, Callable, Optional, Sequence

from fastws.bus.subjects import stream_token
from fastws.tasks import cancel_and_wait

__all__ = ["FleetMember", "bucket_name", "default_member_id", "release_key", "slot_key"]

log = logging.getLogger("fastws.bus.fleet")

_NOT_KEY_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def bucket_name(fleet: str) -> str:
    """The key-value bucket of fleet ``fleet``: ``fastws_fleet_<fleet>``."""
    if not fleet or _NOT_KEY_SAFE.search(fleet):
        raise ValueError(f"fleet name {fleet!r} must be letters, digits, _ and - only")
    return f"fastws_fleet_{fleet}"


def slot_key(stream: str, slot: int) -> str:
    """The key of a stream's slot: ``s.<stream token with % as =>.<slot>``.

    Key-value keys cannot hold ``%``; a stream token never holds ``=``, so the
    mapping stays reversible.
    """
    return f"s.{stream_token(stream).replace('%', '=')}.{slot}"


def release_key(stream: str) -> str:
    """The key a member creates before giving back a copy of ``stream``: ``r.<stream key>``."""
    return f"r.{stream_token(stream).replace('%', '=')}"


def default_member_id() -> str:
    """``<host>-<pid>-<4 hex>``, made key-safe."""
    host = _NOT_KEY_SAFE.sub("_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{random.getrandbits(16):04x}"


class FleetMember:
    """One collector's share of a fleet's streams, kept by leases (see the module docstring).

    Args:
        js: A ``nats.js.JetStreamContext``.
        fleet: The fleet's name.
        streams: Every stream the fleet collects (the same list on every member).
        replicas: Collectors per stream (R).
        on_change: ``(owned: frozenset[str]) -> None | Awaitable[None]``, called when the
            set of streams this member holds changes.
        ttl: Lease TTL in seconds (the bucket's TTL; the same on every member).
        member_id: This member's id (default :func:`default_member_id`).
        kv_replicas: Copies of the bucket in a JetStream cluster.
    """

    def __init__(self, js: Any, fleet: str, streams: Sequence[str], replicas: int,
                 on_change: Callable[[frozenset[str]], Any], *, ttl: float = 5.0,
                 member_id: Optional[str] = None, kv_replicas: int = 1) -> None:
        if replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {replicas}")
        if ttl < 1.0:
            raise ValueError(f"the lease ttl must be >= 1 s, got {ttl}")
        self.js = js
        self.fleet = fleet
        self.bucket = bucket_name(fleet)
        self.streams = list(dict.fromkeys(streams))
        self.replicas = replicas
        self.ttl = ttl
        self.member_id = member_id or default_member_id()
        self.kv_replicas = kv_replicas
        self._on_change = on_change
        self._kv: Any = None
        # key -> (stream, revision) of the slots held.
        self._leases: dict[str, tuple[str, int]] = {}
        self._member_revision = 0
        self._reported: frozenset[str] = frozenset()
        self._last_renewed = time.monotonic()
        self._task: Optional[asyncio.Task[None]] = None
        self._wake = asyncio.Event()
        self.members = 0
        """Live members seen at the last step."""
        self.acquired = 0
        """Leases taken so far."""
        self.lost = 0
        """Leases lost (not renewed in time, taken by another member)."""
        self.released = 0
        """Leases given back to make room for other members."""
        self.errors = 0
        self.last_error: Optional[str] = None

    # ------------------------------------------------------------ public
    @property
    def owned(self) -> frozenset[str]:
        """The streams this member holds a lease of."""
        return frozenset(stream for stream, _ in self._leases.values())

    def leases(self) -> dict[str, str]:
        """``{slot key: stream}`` of the leases held."""
        return {key: stream for key, (stream, _) in self._leases.items()}

    async def start(self) -> None:
        """Open (or create) the bucket, take a first share, and keep it in the background.

        Raises:
            Exception: nats-py's error when the bucket cannot be opened or created.
        """
        await self._open()
        await self.step()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"fastws-fleet-{self.fleet}")

    async def stop(self) -> None:
        """Stop renewing and give every lease back at once (other members take them over)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self._kv is not None:
            for key, (_, revision) in list(self._leases.items()):
                await self._delete(key, revision)
            if self._member_revision:
                await self._delete(f"m.{self.member_id}", self._member_revision)
        self._leases.clear()
        self._member_revision = 0
        await self._report()

    def nudge(self) -> None:
        """Run the next step now (after a change, e.g. NATS reconnected)."""
        self._wake.set()

    # ------------------------------------------------------------ the steps
    async def _open(self) -> None:
        from nats.js.errors import BucketNotFoundError, NotFoundError

        try:
            self._kv = await self.js.key_value(self.bucket)
        except (BucketNotFoundError, NotFoundError):
            self._kv = await self.js.create_key_value(bucket=self.bucket, ttl=self.ttl, history=1,
                                                      replicas=self.kv_replicas)
        status = await self._kv.status()
        if status.ttl is not None and not math.isclose(status.ttl, self.ttl, rel_tol=1e-3):
            raise ValueError(f"fleet {self.fleet}: the bucket's lease ttl is {status.ttl:g} s, ours {self.ttl:g} s")

    async def _run(self) -> None:
        interval = self.ttl / 4
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                # A step waits on NATS: bounded, so that a lost connection is
                # noticed within the TTL.
                await asyncio.wait_for(self._step_or_open(), self.ttl / 2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:        # NATS away or slow: counted, the next step retries
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("fleet %s: %s", self.fleet, self.last_error)
                await self._expire_if_stale()

    async def _step_or_open(self) -> None:
        if self._kv is None:
            await self._open()
        await self.step()

    async def step(self) -> None:
        """One round: renew, count members, give back extras or take free slots, report.

        A member at its share reads only the member keys: the slot keys are read
        when it has slots to give back (its own streams') or to take.
        """
        await self._renew()
        self.members = max(await self._count_members(), 1)
        # A member holds one slot of a stream at most.
        share = min(math.ceil(len(self.streams) * self.replicas / self.members), len(self.streams))
        if len(self._leases) > share:
            await self._give_back(share)
        elif len(self._leases) < share:
            await self._take(share)
        await self._report()

    async def _renew(self) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        kv = self._kv
        value = self.member_id.encode()
        if self._member_revision:
            try:
                self._member_revision = await kv.update(f"m.{self.member_id}", value, last=self._member_revision)
            except KeyWrongLastSequenceError:
                self._member_revision = 0
        if not self._member_revision:
            self._member_revision = await kv.put(f"m.{self.member_id}", value)
        for key, (stream, revision) in list(self._leases.items()):
            try:
                self._leases[key] = (stream, await kv.update(key, value, last=revision))
            except KeyWrongLastSequenceError:
                # It aged out before this renewal, and may be another's now.
                del self._leases[key]
                self.lost += 1
                log.warning("fleet %s: lease %s of %s lost", self.fleet, key, stream)
        self._last_renewed = time.monotonic()

    async def _held(self, key: str) -> bool:
        """Whether ``key`` holds a value now (not absent, aged out or given back)."""
        from nats.js.errors import NotFoundError

        try:
            await self._kv.get(key)
        except NotFoundError:
            return False
        return True

    async def _count_members(self) -> int:
        """The live members: member keys present and not deleted.

        Read with one stream-info request and direct gets (served by any replica),
        not with a key listing: a listing creates a consumer, which waits for the
        cluster's meta leader, and so stalls for seconds while a new one is elected
        after a node is lost.
        """
        prefix = f"$KV.{self.bucket}."
        info = await self.js.stream_info(f"KV_{self.bucket}", subjects_filter=f"{prefix}m.>")
        count = 0
        for subject in (info.state.subjects or {}):
            if await self._held(subject[len(prefix):]):
                count += 1
        return count

    async def _give_back(self, share: int) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        extra = len(self._leases) - share
        # The most recently taken go back first. A stream gives back one copy per
        # TTL at most: the member first creates the stream's release key (only one
        # member can, and it ages out after the TTL), so two members never give
        # back the same stream's copies at once. With R >= 2 only a stream whose
        # other slots are held gives a copy back: it is never left uncollected.
        for key in reversed(list(self._leases)):
            if extra <= 0:
                break
            stream, revision = self._leases[key]
            if self.replicas > 1:
                slot = int(key.rsplit(".", 1)[1])
                others = [slot_key(stream, s) for s in range(self.replicas) if s != slot]
                if not all([await self._held(other) for other in others]):
                    continue
            try:
                await self._kv.create(release_key(stream), self.member_id.encode())
            except KeyWrongLastSequenceError:
                continue        # another member gives a copy of this stream back now
            del self._leases[key]
            self.released += 1
            extra -= 1
            await self._delete(key, revision)

    async def _take(self, share: int) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        owned = self.owned
        # Start at a different stream on each member, so that members joining at
        # once do not all race for the same slots.
        count = len(self.streams)
        start = hash(self.member_id) % count if count else 0
        value = self.member_id.encode()
        for i in range(count):
            stream = self.streams[(start + i) % count]
            if stream in owned:
                continue
            for slot in range(self.replicas):
                key = slot_key(stream, slot)
                if await self._held(key):
                    continue
                try:
                    revision = await self._kv.create(key, value)
                except KeyWrongLastSequenceError:
                    continue        # another member was quicker
                self._leases[key] = (stream, revision)
                self.acquired += 1
                owned = self.owned
                break
            if len(self._leases) >= share:
                return

    async def _delete(self, key: str, revision: int) -> None:
        try:
            await self._kv.delete(key, last=revision)
        except Exception as exc:       # already gone or taken: nothing to give back
            log.info("fleet %s: give back %s: %s", self.fleet, key, exc)

    async def _expire_if_stale(self) -> None:
        """Not renewed for a whole TTL: the leases are gone (others may hold them now)."""
        if self._leases and time.monotonic() - self._last_renewed >= self.ttl:
            self.lost += len(self._leases)
            self._leases.clear()
            self._member_revision = 0
            await self._report()

    async def _report(self) -> None:
        owned = self.owned
        if owned == self._reported:
            return
        self._reported = owned
        result = self._on_change(owned)
        if asyncio.iscoroutine(result):
            await result

    def health(self) -> dict[str, Any]:
        """The member's state: id, members seen, streams held, lease counts, last error."""
        return {"member": self.member_id, "members": self.members, "owned": sorted(self.owned),
                "leases": len(self._leases), "acquired": self.acquired, "lost": self.lost,
                "released": self.released, "errors": self.errors, "last_error": self.last_error}
