"""Subscriptions: the tracked set, the pending queue, batches and acks.

The client tracks the streams the user wants (an ordered set): streams asked
for while not connected wait in a pending queue, and every tracked stream is
sent again on each new connection. Requests go out in batches of
``subscription_batch_size``, each waiting for its ack.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Hashable, Iterable

from fastws.client.connection import ConnectionMixin
from fastws.errors import (ConnectionFailedError, ExchangeAPIError, ExchangeTimeoutError, RateLimitError,
                           SubscriptionRejectedError)
from fastws.types import SubscriptionAction

__all__ = ["SubscriptionsMixin"]


class SubscriptionsMixin(ConnectionMixin):
    """The subscriptions of ``BaseWebSocketInterface``."""

    @property
    def subscriptions(self) -> list[str]:
        """The streams the user wants, in the order they were asked for."""
        return list(self._subscriptions)

    async def subscribe(self, streams: Iterable[str]) -> None:
        """Subscribe to ``streams`` and wait for the exchange's ack.

        Streams asked for while not connected are queued (in order) and sent
        on connect; the call then returns at once, and a later rejection
        reaches the error handler. Every tracked stream is sent again after a
        reconnect.

        Raises:
            ExchangeTimeoutError: no ack within ``subscription_timeout`` (408).
            SubscriptionRejectedError: the exchange refused (403); the streams
                are no longer tracked.
            RateLimitError: the pending queue is full (429).
        """
        new = [s for s in dict.fromkeys(streams) if s not in self._subscriptions]
        if not new:
            return
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
        await self._request(new, SubscriptionAction.SUBSCRIBE)

    async def unsubscribe(self, streams: Iterable[str]) -> None:
        """Stop receiving ``streams``; waits for the ack when connected."""
        wanted = [s for s in dict.fromkeys(streams) if s in self._subscriptions]
        for stream in wanted:
            self._subscriptions.pop(stream, None)
            # A later subscription starts afresh: no gap against the old numbers.
            self._last_sequences.pop(stream, None)
            if self._core is not None:
                self._core.forget_stream(stream)
        queued = set(wanted).intersection(self._pending)
        if queued:
            self._pending = deque(s for s in self._pending if s not in queued)
        sent = [s for s in wanted if s not in queued]
        if sent and self.is_connected:
            await self._request(sent, SubscriptionAction.UNSUBSCRIBE)

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
