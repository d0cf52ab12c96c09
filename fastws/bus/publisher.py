"""Publishing a client's data frames to NATS: the frame core writes, one task hands over.

The frame core (``fastws._core.FramePublisher``, set on every connection of a client
through ``set_frame_publisher``) writes each data message its connection delivers as a
NATS ``HPUB`` frame into a bounded buffer: the stream's subject, the bus headers of
:mod:`fastws.bus.subjects` and the frame's original bytes. It never waits: past its
bound a message is dropped and counted.

The first message of a batch wakes :class:`BusPublisher`'s one task, which runs in the
next turn of the event loop (after the read batch), takes the whole buffer and hands it
to the nats-py connection as one command: appended to the client's pending buffer and
its flusher kicked (``Client._send_command`` and ``Client._flush_pending``; nats-py has
no public call for pre-built protocol bytes). So one write reaches the socket per batch,
and nats-py keeps doing what it does for its own publishes: ordering with its other
commands, PING/PONG, reconnection, and replaying what is pending once reconnected. While
NATS is away, batches wait in that pending buffer up to ``max_pending_bytes``; past it
(or with no connection at all) they are dropped and counted.

Why not ``Client.publish``: nats-py encodes headers from a dict on every call (measured
in ``bench/bus_bench.py``); the core writes the same frame for a fraction of that.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Collection, Optional

from fastws._core import FramePublisher
from fastws.bus.subjects import DEFAULT_PREFIX, message_id, stream_subject
from fastws.tasks import cancel_and_wait

__all__ = ["BusPublisher", "DEFAULT_MAX_BUFFER_BYTES", "DEFAULT_MAX_PENDING_BYTES"]

log = logging.getLogger("fastws.bus")

DEFAULT_MAX_BUFFER_BYTES = 8 * 1024 * 1024
"""Bytes the core may hold between two hand-overs."""
DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024
"""Bytes that may wait in nats-py's pending buffer (while NATS is slow or away)."""


class BusPublisher:
    """Publishes the data frames of one exchange's clients to NATS subjects.

    Args:
        exchange: The exchange's registry name (the subject's second token).
        nc: A connected ``nats.aio.client.Client``, or None for now
            (:meth:`set_connection` gives it later; until then batches are dropped
            and counted).
        prefix: The subjects' first token.
        streams: The streams to publish (None: every stream). :meth:`set_streams`
            changes it.
        max_buffer_bytes: Bound of the core's buffer.
        max_pending_bytes: Bound of nats-py's pending buffer, beyond which a batch
            is dropped.

    Use::

        publisher = BusPublisher("binance", nc)
        publisher.attach(client)
        await publisher.start()
        ...
        await publisher.stop()
    """

    def __init__(self, exchange: str, nc: Any = None, *, prefix: str = DEFAULT_PREFIX,
                 streams: Optional[Collection[str]] = None,
                 max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
                 max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        stream_subject(exchange, "x", prefix)        # refuse a name that is not subject-safe now
        self.exchange = exchange
        self.prefix = prefix
        self.max_pending_bytes = max_pending_bytes
        self._nc = nc
        self._streams: Optional[frozenset[str]] = None if streams is None else frozenset(streams)
        self._ready = asyncio.Event()
        self.frames = FramePublisher(self._subject_for, self._ready.set, max_buffer_bytes)
        """The core part, to set on connections (``attach`` does it)."""
        self._task: Optional[asyncio.Task[None]] = None
        self._clients: list[Any] = []
        self.handed = 0
        """Messages handed to the NATS connection."""
        self.handed_bytes = 0
        """Bytes of those frames (protocol included)."""
        self.batches = 0
        """Hand-overs (one write each when connected)."""
        self.refused = 0
        """Messages of batches dropped at hand-over: no connection, or its pending buffer full."""
        self.failed = 0
        """Messages of batches the connection refused with an error."""
        self.last_error: Optional[str] = None

    # -------------------------------------------------------------- set-up
    def _subject_for(self, stream: str) -> Optional[tuple[bytes, bytes]]:
        if self._streams is not None and stream not in self._streams:
            return None
        subject = stream_subject(self.exchange, stream, self.prefix)
        # message_id(..., 0) ends in 16 hex digits: what precedes them is the id's prefix.
        return subject.encode(), message_id(self.exchange, stream, 0)[:-16].encode()

    def attach(self, client: Any) -> None:
        """Publish what ``client`` (a ``BaseWebSocketInterface`` or pool) delivers."""
        client.set_frame_publisher(self.frames)
        self._clients.append(client)

    def detach(self) -> None:
        """Stop publishing from every attached client."""
        for client in self._clients:
            client.set_frame_publisher(None)
        self._clients.clear()

    def set_connection(self, nc: Any) -> None:
        """Hand batches to ``nc`` from now on (None: drop them, counted)."""
        self._nc = nc

    def set_streams(self, streams: Optional[Collection[str]]) -> None:
        """Publish only ``streams`` from now on (None: every stream; empty: none)."""
        self._streams = None if streams is None else frozenset(streams)
        self.frames.forget()

    @property
    def streams(self) -> Optional[frozenset[str]]:
        """The streams published (None: every stream)."""
        return self._streams

    # -------------------------------------------------------------- running
    async def start(self) -> None:
        """Start the hand-over task."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="fastws-bus-publisher")

    async def stop(self) -> None:
        """Hand over what is buffered, stop the task and detach from the clients."""
        self.detach()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self.hand_over()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.hand_over()

    async def hand_over(self) -> None:
        """Take the core's buffer and give it to the NATS connection (one command)."""
        data, count = self.frames.take()
        if not count:
            return
        nc = self._nc
        if nc is None or nc.is_closed or nc.is_draining_pubs \
                or nc.pending_data_size + len(data) > self.max_pending_bytes:
            self.refused += count
            return
        try:
            await nc._send_command(data)
            if nc.is_connected:
                await nc._flush_pending()
        except Exception as exc:      # a connection closing under us: counted, the feed goes on
            self.failed += count
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("bus publisher: %s", self.last_error)
            return
        self.handed += count
        self.handed_bytes += len(data)
        self.batches += 1

    # -------------------------------------------------------------- figures
    @property
    def dropped(self) -> int:
        """Messages not published: the core's buffer full, or refused at hand-over."""
        return self.frames.dropped + self.refused

    def counters(self) -> dict[str, int]:
        """``published`` (handed to NATS), ``dropped``, ``failed``, and the core's own counts."""
        return {
            "published": self.handed,
            "published_bytes": self.handed_bytes,
            "batches": self.batches,
            "dropped": self.dropped,
            "buffer_dropped": self.frames.dropped,
            "refused": self.refused,
            "failed": self.failed,
            "unrouted": self.frames.unrouted,
            "unpublishable": self.frames.unpublishable,
            "buffered_messages": self.frames.buffered_messages,
        }

    def health(self) -> dict[str, Any]:
        """The counters, the connection's state and the last error."""
        nc = self._nc
        state = "none" if nc is None else "connected" if nc.is_connected else \
            "reconnecting" if nc.is_reconnecting else "closed" if nc.is_closed else "connecting"
        return {"nats": state, "pending_bytes": 0 if nc is None else nc.pending_data_size,
                "last_error": self.last_error, **self.counters()}
