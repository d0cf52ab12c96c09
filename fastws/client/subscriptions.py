"""Subscriptions: the tracked set, the pending queue, batches and acks.

The client tracks the streams the user wants (an ordered set): streams asked
for while not connected wait in a pending queue, and every tracked stream is
sent again on each new connection. Requests go out in batches of
``subscription_batch_size``, each waiting for its ack.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Hashable, Iterable, Union

from fastws.client.connection import ConnectionMixin
from fastws.errors import (ConnectionFailedError, ExchangeAPIError, ExchangeTimeoutError, RateLimitError,
                           SubscriptionRejectedError)
from fastws.types import SubscriptionAction

__all__ = ["SubscriptionsMixin", "stream_names"]

# How many refused names an error message lists.
_NAMES_SHOWN = 5


def stream_names(streams: Union[str, Iterable[str]]) -> list[str]:
    """The stream names of a ``subscribe``/``unsubscribe`` argument, in order, each once.

    Args:
        streams: One stream name, or an iterable of names.

    Raises:
        TypeError: ``streams`` is neither, or holds something other than
            ``str`` (bytes included): nothing is sent.
    """
    if isinstance(streams, str):
        return [streams]
    if isinstance(streams, (bytes, bytearray, memoryview)):
        raise TypeError(f"stream names are str, got {type(streams).__name__}: {bytes(streams)[:40]!r}")
    try:
        names = list(streams)
    except TypeError:
        raise TypeError(f"streams must be a stream name or an iterable of names, "
                        f"got {type(streams).__name__}") from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"stream names must be str, got {type(name).__name__} {name!r}")
    return list(dict.fromkeys(names))


class SubscriptionsMixin(ConnectionMixin):
    """The subscriptions of ``BaseWebSocketInterface``."""

    @property
    def subscriptions(self) -> list[str]:
        """The streams the user wants, in the order they were asked for."""
        return list(self._subscriptions)

    async def subscribe(self, streams: Union[str, Iterable[str]]) -> None:
        """Subscribe to ``streams`` and wait for the exchange's ack.

        ``streams`` is one name or an iterable of names. Names the adapter
        knows to be invalid are refused before anything is sent; the valid
        ones beside them are subscribed. Streams asked for while not
        connected are queued (in order) and sent on connect; the call then
        returns at once, and a later rejection reaches the error handler.
        Called from this connection's own message handler (whose replies
        cannot be read until the handler returns), the request is sent in
        the background and the call returns at once as well; so does a call
        whose connection ends while it waits (the next connection subscribes
        the streams). Every tracked stream is sent again after a reconnect.

        Raises:
            TypeError: ``streams`` is not a name or an iterable of names.
            ExchangeTimeoutError: no ack within ``subscription_timeout`` (408).
            SubscriptionRejectedError: the exchange refused (403), or names
                were invalid (``rejected_streams`` lists them); the refused
                streams are not tracked.
            RateLimitError: the pending queue is full (429).
        """
        names = stream_names(streams)
        invalid = self._invalid_streams(names)
        new = [s for s in names if s not in self._subscriptions and s not in invalid]
        if new:
            await self._subscribe_valid(new)
        if invalid:
            raise self._refusal(invalid)

    def _invalid_streams(self, names: list[str]) -> dict[str, str]:
        """The names the adapter refuses, each with its reason (``_stream_problem``)."""
        problems = {name: self._stream_problem(name) for name in names}
        return {name: problem for name, problem in problems.items() if problem is not None}

    def _refusal(self, invalid: dict[str, str]) -> SubscriptionRejectedError:
        """The error that refuses ``invalid`` names by name, before anything was sent."""
        shown = "; ".join(f"{name!r}: {reason}" for name, reason in list(invalid.items())[:_NAMES_SHOWN])
        more = f" (and {len(invalid) - _NAMES_SHOWN} more)" if len(invalid) > _NAMES_SHOWN else ""
        return SubscriptionRejectedError(
            f"{self.exchange}: {len(invalid)} invalid stream name(s), not sent: {shown}{more}",
            rejected_streams=list(invalid))

    async def _subscribe_valid(self, new: list[str]) -> None:
        """Track and subscribe ``new`` streams (valid names, none tracked yet)."""
        for stream in new:
            # A stream subscribed again starts afresh: frames that came while
            # its UNSUBSCRIBE waited must not make the old numbers a gap.
            self._forget_sequences(stream)
        if not self.is_connected:
            if len(self._pending) + len(new) > self.config.max_pending_subscriptions:
                raise RateLimitError(
                    f"{self.exchange}: pending subscription queue full "
                    f"({self.config.max_pending_subscriptions} streams) while not connected")
            for stream in new:
                self._subscriptions[stream] = None
            self._pending.extend(new)
            self.logger.info("queued %d subscription(s) until connected", len(new),
                             extra={"exchange": self.exchange, "streams": new})
            return
        for stream in new:
            self._subscriptions[stream] = None
        # A rejected batch's streams are dropped by _request; the batches
        # the exchange accepted stay tracked (and resubscribed).
        try:
            await self._request_or_send(new, SubscriptionAction.SUBSCRIBE)
        except ConnectionFailedError:
            if self._stopping or not any(s in self._subscriptions for s in new):
                raise
            # The connection ended (or was replaced) while the request
            # waited: the streams stay tracked and go out with the next
            # connection's resubscribe, as streams asked for while not
            # connected do; a later rejection reaches the error handler.
            self.logger.info("connection changed during a subscribe: %d stream(s) go out on the next one",
                             len(new), extra={"exchange": self.exchange, "streams": new})

    async def unsubscribe(self, streams: Union[str, Iterable[str]]) -> None:
        """Stop receiving ``streams`` (one name or an iterable of names).

        Waits for the ack when connected (except when called from this
        connection's own message handler: see ``subscribe``).

        Raises:
            TypeError: ``streams`` is not a name or an iterable of names.
        """
        wanted = [s for s in stream_names(streams) if s in self._subscriptions]
        for stream in wanted:
            self._subscriptions.pop(stream, None)
            # A later subscription starts afresh: no gap against the old numbers.
            self._forget_sequences(stream)
        queued = set(wanted).intersection(self._pending)
        if queued:
            self._pending = deque(s for s in self._pending if s not in queued)
        sent = [s for s in wanted if s not in queued]
        if sent and self.is_connected:
            await self._request_or_send(sent, SubscriptionAction.UNSUBSCRIBE)
            # Frames that came while the request waited brought the state back.
            for stream in sent:
                if stream not in self._subscriptions:
                    self._forget_sequences(stream)

    def _forget_sequences(self, stream: str) -> None:
        """Drop a stream's sequence state, here and in the live core."""
        self._last_sequences.pop(stream, None)
        if self._core is not None:
            self._core.forget_stream(stream)

    def _inside_own_handler(self) -> bool:
        """True when called from this connection's parser or handler.

        The core drives those itself: with no Task (before their first
        suspension) or in its ``pending_task`` (after). Until they return,
        later frames of the connection (acks among them) wait behind them.
        """
        core = self._core
        if core is None:
            return False
        task = asyncio.current_task()
        return task is None or task is core.pending_task

    async def _request_or_send(self, streams: list[str], action: SubscriptionAction) -> None:
        """``_request``; from inside this connection's handler, in the background instead.

        An ack cannot be read while the handler that waits for it holds the
        connection's frames back: the request is sent from a task of its own,
        and its outcome (a rejection, a timeout) reaches the error handler.
        """
        if not self._inside_own_handler():
            await self._request(streams, action)
            return
        self.logger.info("%s of %d stream(s) asked from inside the message handler: sent in the background",
                         action.value, len(streams), extra={"exchange": self.exchange, "streams": streams})
        self._in_background(self._reported(self._request(streams, action)))

    async def _resubscribe(self, replacing: bool = False) -> None:
        """Send every tracked stream (pending ones included) after connecting.

        A rejection is reported and the other streams go on. Any other
        failure is reported too, or raised when ``replacing`` (the new side of
        a make-before-break, which then gives up and keeps the old one).
        """
        self._pending.clear()
        streams = list(self._subscriptions)
        if not streams:
            return
        self.logger.info("subscribing %d stream(s)", len(streams),
                         extra={"exchange": self.exchange, "streams": len(streams)})
        try:
            await self._request(streams, SubscriptionAction.SUBSCRIBE)
        except SubscriptionRejectedError as exc:
            self._emit_error(exc)
        except ExchangeAPIError as exc:
            if replacing:
                raise
            self._metrics.errors += 1
            self._emit_error(exc)

    async def _resubscribe_alone(self, streams: list[str]) -> None:
        """Unsubscribe and subscribe ``streams`` again on the live connection, and nothing else.

        For streams the exchange stopped sending while the connection goes on
        (the cadence watchdog): they stay tracked throughout, so a connection
        that ends meanwhile subscribes them with the others on the next one.
        Their sequence state is kept: updates they missed are a gap. A
        failure (a rejection, no ack) reaches the error handler.
        """
        try:
            await self._request(streams, SubscriptionAction.UNSUBSCRIBE)
            # Not those the user unsubscribed meanwhile.
            wanted = [s for s in streams if s in self._subscriptions]
            if wanted:
                await self._request(wanted, SubscriptionAction.SUBSCRIBE)
        except ConnectionFailedError:
            if not self._stopping:
                self.logger.info("connection changed during a resubscribe: the next one subscribes %d stream(s)",
                                 len(streams), extra={"exchange": self.exchange, "streams": streams})
        except ExchangeAPIError as exc:
            self._metrics.errors += 1
            self._emit_error(exc)

    async def _request(self, streams: list[str], action: SubscriptionAction) -> None:
        """Send (un)subscribe requests in batches and wait for each ack.

        The adapter sends through ``send_message``, which waits for the
        outgoing rate limit.
        """
        size = self.config.subscription_batch_size
        rejected: list[SubscriptionRejectedError] = []
        for start in range(0, len(streams), size):
            batch = streams[start:start + size]
            if self._ws is None or self._ws.is_disconnected:
                raise ConnectionFailedError(f"{self.exchange}: connection lost before {action.value}")
            ack = await self._send_subscription_message(batch, action)
            if ack is None:
                continue
            try:
                await asyncio.wait_for(ack, self.config.subscription_timeout)
            except asyncio.TimeoutError:
                raise ExchangeTimeoutError(
                    f"{self.exchange}: no ack for {action.value} of {len(batch)} stream(s) within "
                    f"{self.config.subscription_timeout} s: {batch[:5]}") from None
            except SubscriptionRejectedError as exc:
                if action is SubscriptionAction.SUBSCRIBE:
                    # Exchanges that ack channel by channel say which ones
                    # they refused; the others of the batch are subscribed.
                    refused = batch if exc.rejected_streams is None else exc.rejected_streams
                    for stream in refused:
                        self._subscriptions.pop(stream, None)
                rejected.append(exc)
            else:
                self.logger.info("%s acknowledged for %d stream(s)", action.value, len(batch),
                                 extra={"exchange": self.exchange, "streams": batch})
        if rejected:
            raise rejected[0]

    def _expect_ack(self, key: Hashable) -> asyncio.Future[None]:
        """Register a wait for the ack identified by ``key`` (e.g. a request id).

        Call it before sending the request; return the future from
        ``_send_subscription_message``. Resolve it from ``_parse_message`` with
        ``_resolve_ack`` or ``_reject_ack``.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[key] = future
        return future

    def _resolve_ack(self, key: Hashable) -> bool:
        """Mark the ack ``key`` as received. Returns False if nobody waited for it."""
        future = self._acks.pop(key, None)
        if future is None or future.done():
            return False
        future.set_result(None)
        return True

    def _reject_ack(self, key: Hashable, error: ExchangeAPIError) -> bool:
        """Fail the wait for ack ``key`` with ``error``. False if nobody waited."""
        future = self._acks.pop(key, None)
        if future is None or future.done():
            return False
        future.set_exception(error)
        return True

    def _fail_acks(self, error: ExchangeAPIError) -> None:
        acks, self._acks = self._acks, {}
        for future in acks.values():
            if not future.done():
                future.set_exception(error)
                future.exception()   # retrieved: nobody may be waiting any more
