"""Redundant connections: every shard on R live connections, first arrival wins.

With ``redundancy=R`` in the config, each connection of a client (each shard of
a pool) is joined by R - 1 more connections of the same adapter (its *paths*),
over the same streams, spread over the endpoints ``[url, *urls]``. The cores of
the R paths share a ``FirstArrival`` (core/arrival.pxi) and the per-stream
stats: each message is decoded and handed to the handler once, by the path that
brings it first, and sequence continuity is checked on what is delivered,
whichever path brought it. A path that closes, stalls or falls behind the
first arrivals by more than ``redundancy_max_lag`` is replaced while the others
deliver; the user sees a gap only when every path is down at once.

Path 0 is the shard itself (the client the user holds, or a pool member); paths
1 to R-1 are further instances built by the adapter's ``_new_member()``. The
exchanges' limits hold per path: each is a connection of the adapter with its
own rate limiter and attempt limiter (Binance's per-IP attempt budget counts
every path).

Make before break is not used with redundancy: the other paths already cover a
path's replacement, and a handover inside one path would judge messages the
first-arrival rule has already judged.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from fastws._core import FirstArrival, FrameHandler, StreamBacklog, StreamStats
from fastws.client.health import ConnectionGap
from fastws.errors import ConnectionFailedError
from fastws.metrics import latency_percentiles
from fastws.types import ConnectionState

if TYPE_CHECKING:
    from fastws.client._fields import ClientFields
    from fastws.client.interface import BaseWebSocketInterface

__all__ = ["RedundantPaths", "redundant_paths"]

# Delivered messages per stream the core remembers (core/common.pxd HANDOVER_RING).
_RING = 128
# Copies of a path counted in one check before its lag is judged.
_MIN_LAG_SAMPLES = 20


class RedundantPaths:
    """The R paths of one shard and the first-arrival judge they share.

    Args:
        shard: Path 0: the connection whose streams the others duplicate.
        paths: Paths 1 to R-1, built (not started) by the shard's adapter.
    """

    def __init__(self, shard: "BaseWebSocketInterface", paths: list["BaseWebSocketInterface"]) -> None:
        self.shard = shard
        self.clients = [shard, *paths]
        # A path catching up on a stream takes it over when the others left it
        # silent for longer than a path may lag (they lost it without closing).
        self.arrival = FirstArrival(len(self.clients), shard.config.redundancy_max_lag)
        # Per-stream stats shared by every path's core: counts and sequence
        # continuity over what was delivered.
        self.streams: dict[str, StreamStats] = {}
        # Per-stream backlogs shared likewise: a stream behind its handler
        # waits on every path; a lost path's Tasks finishing its streams'
        # handlers go on here (``adopt``) until they end or stop().
        self.backlogs: dict[Optional[str], StreamBacklog] = {}
        self._adopted: set[asyncio.Task[Any]] = set()
        self._stopped = False
        self._last_lag: list[list[int]] = [[] for _ in self.clients]
        self._last_behind = [0] * len(self.clients)
        self._last_unconfirmed = [0] * len(self.clients)
        self._replaced = [0] * len(self.clients)
        # Paths connected and subscribed (path_restored until path_lost).
        self._subscribed: set[int] = set()
        self._checker: Optional[asyncio.Task[None]] = None
        self.logger = logging.getLogger("fastws.redundancy")
        for index, client in enumerate(self.clients):
            client._redundancy = self
            client._path_index = index
        for client in paths:
            # One place for the shard's sequence gaps, whichever core found them.
            client._sequence_gaps = shard._sequence_gaps

    @staticmethod
    def endpoint(config: Any, index: int) -> str:
        """The URL path ``index`` connects to: ``[url, *urls]`` in turn."""
        endpoints = [config.url, *config.urls]
        return str(endpoints[index % len(endpoints)])

    @staticmethod
    def path_config(config: Any, index: int) -> Any:
        """The config of path ``index``: its endpoint, and no make before break."""
        return dataclasses.replace(config, url=RedundantPaths.endpoint(config, index), make_before_break=False)

    # ------------------------------------------------------- core life cycle
    def attach(self, client: "ClientFields", core: FrameHandler) -> None:
        """A path built a core for a new connection: it joins the group (catching up)."""
        index = client._path_index
        core.begin_redundancy(self.arrival, index, self.streams, self.backlogs)
        self.arrival.join(index)

    def adopt(self, core: FrameHandler, tasks: list["asyncio.Task[Any]"]) -> list["asyncio.Task[Any]"]:
        """A path's connection is closing: of its core's ``tasks``, those finishing a stream's
        handler go on under the group (their waiting messages were delivered by this path, the
        others dropped their copies); returns the rest, the connection's own, to end."""
        if self._stopped:
            return tasks        # stop() has ended the adopted ones: these end with their connection
        own = [] if core.pending_task is None else [core.pending_task]
        for task in tasks:
            if task not in own and not task.done():
                self._adopted.add(task)
                task.add_done_callback(self._adopted.discard)
        return [t for t in tasks if t in own]

    def path_lost(self, client: "ClientFields", reason: str) -> None:
        """A path's connection ended: the others deliver; a gap only if none is left."""
        index = client._path_index
        self.arrival.leave(index)
        self._subscribed.discard(index)
        live = self.live_paths()
        if client._stopping:
            return
        if live == 0:
            self.shard._open_gap_for(f"every redundant connection is down (path {index}: {reason})")
        else:
            self.logger.warning("%s: redundant path %d lost (%s); %d of %d still deliver",
                                self.shard.exchange, index, reason, live, len(self.clients),
                                extra={"exchange": self.shard.exchange, "path": index, "reason": reason})

    def path_restored(self, client: "ClientFields") -> None:
        """A path is connected and subscribed again: the shard's feed gap, if any, ends."""
        self._subscribed.add(client._path_index)
        self.shard._close_gap()

    def may_replace(self, client: "ClientFields") -> bool:
        """Whether ``client``'s path may close for a replacement now: another path is connected
        and subscribed. If so, the path counts as gone from now on (so no other path due
        at the same moment goes too)."""
        index = client._path_index
        if not self._subscribed - {index}:
            return False
        self._subscribed.discard(index)
        return True

    def live_paths(self) -> int:
        """Paths with a live connection."""
        return sum(1 for i in range(len(self.clients)) if self.arrival.live(i))

    # ------------------------------------------------------------ the paths
    async def start(self, timeout: Optional[float]) -> None:
        """Start paths 1 to R-1 beside the shard (a path that cannot start is retried later)."""
        self._stopped = False
        await asyncio.gather(*(self._start_path(c, timeout) for c in self.clients[1:]))
        if self._checker is None:
            self._checker = asyncio.get_running_loop().create_task(
                self._check_paths(), name=f"fastws-{self.shard.exchange}-redundancy")

    async def _start_path(self, client: "BaseWebSocketInterface", timeout: Optional[float]) -> None:
        try:
            await client.start(timeout)
        except Exception as exc:   # the group runs on the others; the checker retries
            self.logger.warning("%s: redundant path %d did not start: %s", self.shard.exchange,
                                client._path_index, exc,
                                extra={"exchange": self.shard.exchange, "path": client._path_index})

    async def stop(self) -> None:
        """Stop the checker, paths 1 to R-1 (the shard stops itself) and the Tasks adopted from lost paths."""
        self._stopped = True
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.cancel()
            await asyncio.gather(checker, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in self.clients[1:]), return_exceptions=True)
        adopted = list(self._adopted)
        for task in adopted:
            task.cancel()
        await asyncio.gather(*adopted, return_exceptions=True)

    async def _check_paths(self) -> None:
        """Replace paths that lag behind the first arrivals or stalled; restart stopped ones."""
        interval = self.shard.config.redundancy_check_interval
        while True:
            started = time.time()
            await asyncio.sleep(interval)
            self._report_takeovers(started)
            for index, client in enumerate(self.clients):
                reason = self._why_replace(index, client, interval)
                if reason is None:
                    continue
                self._replaced[index] += 1
                self.logger.warning("%s: replacing redundant path %d: %s", self.shard.exchange, index, reason,
                                    extra={"exchange": self.shard.exchange, "path": index, "reason": reason})
                if index > 0 and client.state in (ConnectionState.CLOSED, ConnectionState.FAILED):
                    self.shard._in_background(self._start_path(client, None))
                else:
                    client._request_reconnect(reason)

    def _report_takeovers(self, since: float) -> None:
        """Messages a path dropped while catching up on a stream it then took over (nobody
        delivered them: the others had gone silent there) are a gap, reported as one."""
        for index in range(len(self.clients)):
            unconfirmed = self.arrival.path_counts(index)["unconfirmed"]
            new, self._last_unconfirmed[index] = unconfirmed - self._last_unconfirmed[index], unconfirmed
            if new > 0:
                reason = (f"redundant path {index} took over a stream the others had gone silent on: "
                          f"{new} message(s) it dropped while catching up were delivered by nobody")
                self.shard._gaps.append(ConnectionGap(start=since, reason=reason, end=time.time()))
                self.logger.warning("%s: %s", self.shard.exchange, reason,
                                    extra={"exchange": self.shard.exchange, "path": index})
                self.shard._emit_error(ConnectionFailedError(f"{self.shard.exchange}: {reason}"))

    def _why_replace(self, index: int, client: "BaseWebSocketInterface", interval: float) -> Optional[str]:
        """Why path ``index`` should be replaced now, or None."""
        if index > 0 and client.state in (ConnectionState.CLOSED, ConnectionState.FAILED) \
                and not self.shard._stopping:
            return f"its client is {client.state.value}"
        core = client._core
        if core is None or client.state is not ConnectionState.CONNECTED:
            self._last_lag[index] = []
            return None
        behind = self.arrival.path_counts(index)["behind"]
        previous_behind, self._last_behind[index] = self._last_behind[index], behind
        if behind > previous_behind:
            return (f"{behind - previous_behind} of its copies came more than {_RING} messages of their "
                    f"stream behind the first")
        histogram = self.arrival.lag_histogram(index)
        previous, self._last_lag[index] = self._last_lag[index], histogram
        recent = [now - before for now, before in zip(histogram, previous)] if previous else []
        if sum(recent) >= _MIN_LAG_SAMPLES:
            p99 = latency_percentiles(recent, (0.99,))["p99"]
            if p99 is not None and p99 / 1e6 > client.config.redundancy_max_lag:
                return f"its copies came {p99 / 1e3:.1f} ms behind the first (p99 over {interval:g} s)"
        # Silent while the others deliver: stalled.
        newest = max((c._core.last_receive_ns for c in self.clients if c._core is not None), default=0)
        silent = (newest - core.last_receive_ns) / 1e9
        if core.last_receive_ns and silent > max(3 * interval, client.config.redundancy_max_lag * 4):
            return f"silent for {silent:.1f} s while another path delivers"
        return None

    # --------------------------------------------------------------- health
    def health(self) -> list[dict[str, Any]]:
        """Per path: endpoint, state, share of first arrivals, lag behind the first (us)."""
        counts = [self.arrival.path_counts(i) for i in range(len(self.clients))]
        firsts = sum(c["first"] for c in counts) or 1
        result = []
        for index, client in enumerate(self.clients):
            lag = latency_percentiles(self.arrival.lag_histogram(index), (0.5, 0.99))
            result.append({
                "path": index,
                "url": client.config.url,
                "state": client.state.value,
                "live": self.arrival.live(index),
                "first_arrivals": counts[index]["first"],
                "first_share": counts[index]["first"] / firsts,
                "late_copies": counts[index]["late"],
                "dropped_catching_up": counts[index]["waiting"],
                "behind_copies": counts[index]["behind"],
                "takeovers": counts[index]["takeovers"],
                "lag_p50_us": lag["p50"],
                "lag_p99_us": lag["p99"],
                "replaced": self._replaced[index],
                "checked_at": time.time(),
            })
        return result


def redundant_paths(client: "BaseWebSocketInterface") -> list["BaseWebSocketInterface"]:
    """The paths 1 to R-1 of a shard (none without redundancy, or for a path itself)."""
    group = client._redundancy
    return group.clients[1:] if group is not None and client._path_index == 0 else []
