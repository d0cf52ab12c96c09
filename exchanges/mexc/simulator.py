"""A loopback server that behaves like MEXC's spot v3 WebSocket endpoint.

``MexcSimulator`` is a picows server on 127.0.0.1 that follows the MEXC section of
PROTOCOLS.md: one path ``/ws`` (``/ws?listenKey=<key>`` for private channels), JSON
control messages in TEXT frames, and market data as BINARY frames, each a serialized
protobuf ``PushDataV3ApiWrapper``.

Control messages and replies (every reply has ``"code": 0``; tell them apart by ``msg``):

- ``{"method": "SUBSCRIPTION", "params": [...]}``: one ack ``{"id": 0, "code": 0,
  "msg": "<channel>"}`` per accepted channel, in order, then, if any channel was refused,
  one ``{"id": 0, "code": 0, "msg": "Not Subscribed successfully! [<a>,<b>].  Reason：
  Blocked! "}`` naming them. Refused: malformed names, retired channels (mini tickers),
  private channels on a connection without a listenKey, channels over the
  30-subscription cap (rejected rather than "silently invalid", and recorded in
  ``violations``: a client must never ask for more), and everything in the request
  after ``reject_next_subscription()``.
- ``{"method": "UNSUBSCRIPTION", "params": [...]}``: an ack echoing each well-formed
  channel (subscribed or not), the same rejection text for malformed names.
- ``{"method": "PING"}``: ``{"id": 0, "code": 0, "msg": "PONG"}``.
- An integer ``"id"`` in a request is echoed; otherwise ``"id"`` is 0.
- Our choice where MEXC documents nothing: invalid JSON gets ``{"id": 0, "code": 0,
  "msg": "Invalid JSON"}``; a valid JSON request without a known ``method`` gets
  ``{"id": 0, "code": 0, "msg": "Unknown method"}``.

Limits: 30 subscriptions per connection; 100 incoming frames (text, binary, ping, pong)
per second are counted, the busiest 1-s window recorded (``max_incoming_in_window``) and
each excess frame recorded in ``violations`` (MEXC documents the limit but not what
follows, so the connection stays open); a connection without a valid subscription is
closed after ``no_subscription_timeout`` (30 s), one without any client frame for
``idle_timeout`` (60 s) is closed too (a PING keeps it alive), both with 1000 and a
reason; ``max_connection_age`` closes with 1001.

Market data comes from one ``SyntheticMarket`` shared by every connection, as in
``BinanceSimulator``: ``rate=0`` publishes nothing until the test calls ``step(n)``.
Per step and subscribed symbol: aggregated and legacy depth (the step's changes;
``fromVersion``..``toVersion`` are the market's ``U``..``u``, so each push's
``fromVersion`` is the previous ``toVersion`` + 1), depth batch, limit depth (the top
5/10/20 levels, ``version``), aggregated and legacy deals (one per trade: price,
quantity, ``tradeType`` 1 buy / 2 sell, ``time`` ms), book tickers (legacy, aggregated,
batch) and klines (``windowStart``/``windowEnd`` in seconds, OHLC, volume, amount; a
closed kline before the current one). Every push carries ``channel``, ``symbol`` and
``sendTime``; all but the aggregated channels also carry ``createTime``. Private
channels are accepted (with a listenKey) but carry nothing.

REST, on a port of its own (``rest_url``): ``GET /api/v3/depth?symbol=X&limit=N``
answers MEXC's snapshot ``{"lastUpdateId": N, "bids": [[price, qty], ...], "asks": [...]}``
(best first, the market's own book, ``lastUpdateId`` = the last ``toVersion``
published), a bad symbol or limit ``400`` with MEXC's ``{"code": -1121, "msg": ...}``.
``rest_fault(kind)`` queues awkward answers (a snapshot older than the stream, one far
ahead, 429 with ``Retry-After``, 418, a slow answer, a body that is not JSON, one
without ``lastUpdateId``); ``send_crossed_diff(symbol)`` pushes a depth update whose
bid crosses the best ask; ``skip_sequence()`` leaves a gap in the versions; ``book()``
is the truth a client's book is compared with.

The simulator depends on the MEXC schema only (``exchanges.mexc.channels`` for channel
names and limits, ``exchanges.mexc.reference`` to encode pushes), never on the client
or its compiled decoder.

Example::

    async with MexcSimulator(rate=0) as sim:
        transport, listener = await ws_connect(Listener, sim.ws_url())
        ...  # send {"method": "SUBSCRIPTION", "params": [channel]}
        await sim.wait_subscribed([channel])
        sim.step(100)
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

import msgspec
from aiohttp import web
from picows import WSCloseCode, WSMsgType, WSTransport, WSUpgradeRequest

from exchanges.mexc import channels
from exchanges.mexc.channels import Channel
from exchanges.mexc.pb import PushDataV3ApiWrapper
from exchanges.mexc.reference import encode_push
from fastws.testing._simbase import SimConnection, Simulator
from fastws.testing.market import PartialBook, StepResult, SymbolMarket, SyntheticMarket, format_price
from fastws.testing.rest import RestServer

__all__ = ["MALFORMED_PUSH", "MexcConnection", "MexcSimulator"]

log = logging.getLogger("exchanges.mexc.simulator")

MALFORMED_PUSH = b"\n/spot@public.aggre.deals.v3.api.pb@100ms@BTC"
"""A truncated push: the channel's length says 47 bytes, 43 follow (``DecodeError``)."""

INVALID_JSON_MSG = "Invalid JSON"
UNKNOWN_METHOD_MSG = "Unknown method"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode



class _Counters:
    """Counts kept both per connection and for the whole server."""

    def __init__(self) -> None:
        self.pings_received = 0
        self.idle_closes = 0
        self.no_subscription_closes = 0


class MexcConnection(SimConnection, _Counters):
    """The server side of one client connection.

    Attributes:
        id: 1 for the first connection accepted, then 2, ...
        path: The request path with its query (``/ws?listenKey=...``).
        listen_key: The ``listenKey`` of the URL; None without one (no private channels).
        requests: Every decoded request received, in order.
        rejected: Every channel refused, in order.
        pings_received: ``{"method": "PING"}`` requests received.
        idle_closes, no_subscription_closes: 1 if the connection was closed for that.
        max_incoming_in_window: Most frames received within any 1-s window.
        sent_counts: Pushes sent per channel.
        connected_at, last_message_at: ``time.monotonic()`` at the upgrade and at the
            last frame from the client.
        muted: While set nothing is sent (pushes, replies) and requests are recorded
            (PINGs counted) but not acted on.
        close_code: The code of the CLOSE the client sent, if any.
    """

    sim: "MexcSimulator"

    def __init__(self, sim: "MexcSimulator", path: str, listen_key: Optional[str]) -> None:
        SimConnection.__init__(self, sim, path)
        _Counters.__init__(self)
        self.listen_key = listen_key
        self.rejected: list[str] = []
        self._no_subscription: Optional[asyncio.TimerHandle] = None

    @property
    def channels(self) -> list[str]:
        """Subscribed channels in subscription order."""
        return list(self._subscriptions)

    # ------------------------------------------------------------------ life cycle

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        self._arm_no_subscription()
        if self.sim.idle_timeout is not None:
            self._later(self.sim.idle_timeout, self._check_idle)

    def _arm_no_subscription(self) -> None:
        timeout = self.sim.no_subscription_timeout
        if timeout is not None and self._no_subscription is None:
            self._no_subscription = self._later(timeout, self._no_subscription_expired)

    def _disarm_no_subscription(self) -> None:
        handle, self._no_subscription = self._no_subscription, None
        if handle is not None:
            handle.cancel()
            self._timers.discard(handle)

    def _no_subscription_expired(self) -> None:
        self._no_subscription = None
        if self._subscriptions:
            return
        self.no_subscription_closes += 1
        self.sim.no_subscription_closes += 1
        log.info("connection %d: no valid subscription within %s s", self.id, self.sim.no_subscription_timeout)
        self.close(WSCloseCode.OK.value, "No valid subscription")

    def _check_idle(self) -> None:
        timeout = self.sim.idle_timeout
        assert timeout is not None
        left = self.last_message_at + timeout - time.monotonic()
        if left > 0.001:
            self._later(left, self._check_idle)
            return
        self.idle_closes += 1
        self.sim.idle_closes += 1
        log.info("connection %d: no message within %s s", self.id, timeout)
        self.close(WSCloseCode.OK.value, "Idle timeout")

    # ------------------------------------------------------------------ incoming

    def _incoming_limit(self) -> int:
        return self.sim.max_messages_per_second

    def _reply(self, msg: str, request_id: int = 0) -> None:
        if self.transport is not None and not self.muted:
            self.transport.send(WSMsgType.TEXT, _encode({"id": request_id, "code": 0, "msg": msg}))

    def _on_request(self, text: bytes) -> None:
        try:
            request = _decode(text)
        except msgspec.DecodeError:
            self._reply(INVALID_JSON_MSG)
            return
        self.requests.append(request)
        method = request.get("method") if isinstance(request, dict) else None
        request_id = request.get("id") if isinstance(request, dict) else None
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            request_id = 0
        if method == "PING":
            self.pings_received += 1
            self.sim.pings_received += 1
        if self.muted:
            return
        if method == "PING":
            self._reply(channels.PONG_MSG, request_id)
        elif method in ("SUBSCRIPTION", "UNSUBSCRIPTION"):
            params = request.get("params")
            names = [p if isinstance(p, str) else _encode(p).decode() for p in
                     (params if isinstance(params, list) else [params])]
            if method == "SUBSCRIPTION":
                self._subscribe(names, request_id)
            else:
                self._unsubscribe(names, request_id)
        else:
            self._reply(UNKNOWN_METHOD_MSG, request_id)

    def _refusal(self, channel: Optional["Channel"]) -> Optional[str]:
        """Why a channel is refused, None if it is not."""
        if channel is None:
            return "invalid channel"
        if channel.retired:
            return "retired channel"
        if channel.private and self.listen_key is None:
            return "private channel without a listenKey"
        return None

    def _subscribe(self, names: list[str], request_id: int) -> None:
        sim = self.sim
        reject_all, sim._reject_next = sim._reject_next, False
        rejected = []
        for name in dict.fromkeys(names):
            refusal = "rejected by test" if reject_all else self._refusal(channels.parse_channel(name))
            if refusal is not None:
                log.info("connection %d: refused %s: %s", self.id, name, refusal)
                rejected.append(name)
                continue
            if name not in self._subscriptions:
                limit = sim.max_subscriptions_per_connection
                if len(self._subscriptions) >= limit:
                    violation = (f"connection {self.id} ({self.path}): subscription {name} over the cap of "
                                 f"{limit} per connection")
                    log.warning("subscription cap: %s", violation)
                    sim.violations.append(violation)
                    rejected.append(name)
                    continue
                self._subscriptions[name] = None
            self._reply(name, request_id)
        if self._subscriptions:
            self._disarm_no_subscription()
        self._reject(rejected, request_id)

    def _unsubscribe(self, names: list[str], request_id: int) -> None:
        rejected = []
        for name in dict.fromkeys(names):
            if channels.parse_channel(name) is None:
                rejected.append(name)
                continue
            self._subscriptions.pop(name, None)
            self._reply(name, request_id)
        if not self._subscriptions:
            self._arm_no_subscription()
        self._reject(rejected, request_id)

    def _reject(self, names: list[str], request_id: int) -> None:
        if names:
            self.rejected.extend(names)
            self._reply(channels.rejection_msg(names), request_id)


# Channel kind (its value) -> the _StepPushes method building its bodies.
_BUILDERS = {
    "aggre_depth": "_aggre_depth", "increase_depth": "_increase_depth",
    "increase_depth_batch": "_increase_depth_batch", "limit_depth": "_limit_depth",
    "aggre_deals": "_aggre_deals", "deals": "_deals", "aggre_book_ticker": "_aggre_book_ticker",
    "book_ticker": "_book_ticker", "book_ticker_batch": "_book_ticker_batch", "kline": "_kline",
}
_AGGREGATED = frozenset({"aggre_depth", "aggre_deals", "aggre_book_ticker"})


def _levels(levels: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"price": price, "quantity": qty} for price, qty in levels]


class _StepPushes:
    """The pushes of one publishing step, encoded once per channel and shared by every connection."""

    def __init__(self, market: SyntheticMarket, results: list[StepResult], skipped: set[str],
                 encode: Callable[..., bytes], kline_seconds: dict[str, int]) -> None:
        self.market = market
        self.results = {r.symbol: r for r in results}
        self.skipped = skipped
        self.encode = encode
        self.kline_seconds = kline_seconds
        self.send_time = int(time.time() * 1000)

    def payloads(self, channel: "Channel") -> list[bytes]:
        """The serialized pushes of ``channel`` for this step."""
        result = self.results.get(channel.symbol) if channel.symbol is not None else None
        builder = _BUILDERS.get(channel.kind.value)
        if result is None or builder is None:
            return []
        bodies = getattr(self, builder)(result, self.market.symbol(result.symbol), channel)
        create_time = None if channel.kind.value in _AGGREGATED else result.time_ms
        return [self.encode(channel.name, channel.body_field, body, symbol=result.symbol,
                            create_time=create_time, send_time=self.send_time) for body in bodies]

    def _changes(self, r: StepResult, c: "Channel") -> dict[str, Any]:
        return {"asks": _levels(r.asks), "bids": _levels(r.bids), "eventType": c.event_type}

    def _aggre_depth(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        if r.symbol in self.skipped:
            return []
        return [{**self._changes(r, c), "fromVersion": str(r.first_update_id), "toVersion": str(r.last_update_id)}]

    def _increase_depth(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        if r.symbol in self.skipped:
            return []
        return [{**self._changes(r, c), "version": str(r.last_update_id)}]

    def _increase_depth_batch(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        if r.symbol in self.skipped:
            return []
        item = {"asks": _levels(r.asks), "bids": _levels(r.bids), "version": str(r.last_update_id)}
        return [{"items": [item], "eventType": c.event_type}]

    def _limit_depth(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        book = m.book(c.levels)
        return [{"asks": _levels(book.asks), "bids": _levels(book.bids), "eventType": c.event_type,
                 "version": str(book.last_update_id)}]

    def _deals_of(self, r: StepResult, trade_ids: bool) -> list[dict[str, Any]]:
        deals = []
        for t in r.trades:
            deal: dict[str, Any] = {"price": t.price, "quantity": t.qty, "tradeType": 2 if t.buyer_is_maker else 1,
                                    "time": t.time_ms}
            if trade_ids:
                deal["tradeId"] = str(t.trade_id)
            deals.append(deal)
        return deals

    def _aggre_deals(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        return [{"deals": self._deals_of(r, True), "eventType": c.event_type}] if r.trades else []

    def _deals(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        return [{"deals": self._deals_of(r, False), "eventType": c.event_type}] if r.trades else []

    def _ticker(self, m: SymbolMarket) -> dict[str, Any]:
        best = m.best()
        return {"bidPrice": best.bid, "bidQuantity": best.bid_qty, "askPrice": best.ask,
                "askQuantity": best.ask_qty}

    def _aggre_book_ticker(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        return [{**self._ticker(m), "version": str(m.last_update_id)}]

    def _book_ticker(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        return [self._ticker(m)]

    def _book_ticker_batch(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        return [{"items": [self._ticker(m)], "version": str(m.last_update_id)}]

    def _kline(self, r: StepResult, m: SymbolMarket, c: "Channel") -> list[dict[str, Any]]:
        assert c.interval is not None
        seconds = self.kline_seconds[c.interval]
        interval_ms = seconds * 1000
        klines = [k for k in r.closed_klines if k.interval_ms == interval_ms]
        klines.append(m.kline(interval_ms))
        return [{"interval": c.interval, "windowStart": k.open_time // 1000, "openingPrice": k.open,
                 "closingPrice": k.close, "highestPrice": k.high, "lowestPrice": k.low, "volume": k.volume,
                 "amount": k.quote_volume, "windowEnd": k.open_time // 1000 + seconds} for k in klines]


class MexcSimulator(Simulator[MexcConnection], _Counters):
    """A loopback MEXC spot v3 WebSocket server on 127.0.0.1.

    Use ``async with MexcSimulator() as sim:`` (or ``start()``/``stop()``); connect to
    ``sim.ws_url()`` (``sim.ws_url("key")`` for private channels).

    Args:
        rate: Market steps per second of the paced publisher; 0: no publisher,
            the test calls ``step(n)``.
        max_connection_age: Seconds after which the server closes a connection
            with 1001 (MEXC: 24 h); None: never.
        max_messages_per_second: Frames a client may send within any 1-s window;
            each one more is recorded in ``violations``.
        max_subscriptions_per_connection: Channels one connection may subscribe to.
        no_subscription_timeout: Seconds after which a connection without a valid
            subscription is closed; None: never.
        idle_timeout: Seconds without a frame from the client after which the
            connection is closed; None: never.
        seed: Seed of the synthetic market.
        depth_levels: Book levels per side.

    Attributes:
        market: The ``SyntheticMarket`` shared by every connection.
        connection_count: Connections accepted so far.
        violations: One line per rate-limit or subscription-cap violation.
        max_incoming_in_window: Most frames any connection sent within 1 s.
        pings_received, idle_closes, no_subscription_closes: Over all connections.
        sent_counts: Pushes sent per channel, over all connections.
    """

    log = log
    _server_name = "mexc-sim"
    _data_binary = True

    def __init__(self, *, rate: float = 10.0, max_connection_age: Optional[float] = None,
                 max_messages_per_second: int = channels.MAX_MESSAGES_PER_SECOND,
                 max_subscriptions_per_connection: int = channels.MAX_SUBSCRIPTIONS_PER_CONNECTION,
                 no_subscription_timeout: Optional[float] = channels.NO_SUBSCRIPTION_TIMEOUT,
                 idle_timeout: Optional[float] = channels.IDLE_TIMEOUT, seed: int = 1, depth_levels: int = 20) -> None:
        Simulator.__init__(self, rate=rate, max_connection_age=max_connection_age, seed=seed,
                           depth_levels=depth_levels)
        _Counters.__init__(self)
        self.max_messages_per_second = max_messages_per_second
        self.max_subscriptions_per_connection = max_subscriptions_per_connection
        self.no_subscription_timeout = no_subscription_timeout
        self.idle_timeout = idle_timeout
        self._reject_next = False
        self._rest = RestServer({"/api/v3/depth": self._rest_depth})
        self.rest_requests: list[tuple[str, int]] = []
        self._rest_faults: deque[tuple[str, Any]] = deque()

    def ws_url(self, listen_key: Optional[str] = None) -> str:
        """The endpoint ``ws://127.0.0.1:<port>/ws``, with ``?listenKey=`` when given."""
        return f"{self.url}/ws?listenKey={listen_key}" if listen_key else f"{self.url}/ws"

    @property
    def rest_url(self) -> str:
        """The REST base URL (``GET /api/v3/depth``), ``http://127.0.0.1:<port>``."""
        return self._rest.url

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Listen for WebSocket connections and, on another port, REST requests."""
        await super().start()
        await self._rest.start()

    async def stop(self) -> None:
        """Stop the REST server, then the WebSocket server."""
        await self._rest.stop()
        await super().stop()

    def _accept(self, request: WSUpgradeRequest) -> Optional[MexcConnection]:
        """A listener for ``/ws`` (with an optional ``listenKey``), None (404) for other paths."""
        path = request.path.decode("latin-1")
        target = urlsplit(path)
        if target.path != "/ws":
            log.info("refused path %r", target.path)
            return None
        listen_key = parse_qs(target.query).get("listenKey", [""])[0] or None
        return MexcConnection(self, path, listen_key)

    # ------------------------------------------------------------------ market data

    def _symbol_of(self, name: str) -> Optional[str]:
        channel = channels.parse_channel(name)
        return None if channel is None else channel.symbol

    def _publish_step(self, results: list[StepResult], skipped: set[str],
                      subscribers: dict[str, list[MexcConnection]]) -> int:
        pushes = _StepPushes(self.market, results, skipped, encode_push,
                             channels.KLINE_INTERVALS)
        sent = 0
        for name, connections in subscribers.items():
            channel = channels.parse_channel(name)
            if channel is not None:     # always: only valid channels are subscribed
                sent += self._deliver(name, pushes.payloads(channel), connections)
        return sent

    # ------------------------------------------------------------------ faults

    def send_raw(self, payload: bytes, binary: bool = True, connection: Optional[MexcConnection] = None) -> None:
        """Send ``payload`` unchanged as one BINARY (or TEXT) frame."""
        super().send_raw(payload, binary, connection)

    def send_malformed(self, payload: bytes = MALFORMED_PUSH, connection: Optional[MexcConnection] = None) -> None:
        """Send a BINARY frame that is not a valid ``PushDataV3ApiWrapper`` (default: a truncated one)."""
        self.send_raw(payload, connection=connection)

    def send_oversized(self, size: int, connection: Optional[MexcConnection] = None) -> None:
        """Send one BINARY frame of exactly ``size`` bytes.

        From about 60 bytes on it is a valid aggregated-deals push of BTCUSDT whose
        ``eventType`` is padded; below that, ``size`` zero bytes (not a valid push).
        """
        self.send_raw(self.oversized_push(size), connection=connection)

    def oversized_push(self, size: int) -> bytes:
        """The payload ``send_oversized(size)`` sends."""
        wrapper = PushDataV3ApiWrapper
        channel = "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT"

        def push(pad: int, send_time: Optional[int]) -> bytes:
            msg = wrapper(channel=channel, symbol="BTCUSDT")
            if send_time is not None:
                msg.sendTime = send_time
            msg.publicAggreDeals.eventType = "x" * pad
            return msg.SerializeToString()
        # The length prefixes grow with the padding: find the longest padding that
        # leaves room for a sendTime field (2 to 11 bytes), then fill the gap with it.
        pad = max(0, size - len(push(0, None)) - 2)
        while pad > 0 and len(push(pad, None)) > size - 2:
            pad -= 1
        gap = size - len(push(pad, None))
        if not 2 <= gap <= 11:
            return bytes(size)
        # A sendTime of 1 << 7k takes k + 1 bytes; -1 takes 10.
        data = push(pad, -1 if gap == 11 else 1 << 7 * (gap - 2))
        assert len(data) == size
        return data

    # ------------------------------------------------------------------ books

    def book(self, symbol: str, levels: Optional[int] = None) -> PartialBook:
        """The simulator's own book of ``symbol``: the truth a client's book is compared with."""
        return self.market.symbol(symbol).book(levels)

    def rest_fault(self, kind: str, value: Any = None) -> None:
        """Answer a coming ``GET /api/v3/depth`` awkwardly (faults queue, one per request).

        Args:
            kind: ``"stale"``: the book of symbol ``value`` as it is now, served
                when asked later (the stream has moved on); ``"ahead"``: the
                current book with ``lastUpdateId`` ``value`` (default 1000)
                versions ahead; ``"429"``: Too Many Requests with
                ``Retry-After: value`` (seconds, default 1); ``"418"``: an IP
                ban, the same way (MEXC documents none; we answer as Binance
                does); ``"slow"``: the answer after ``value`` seconds;
                ``"garbage"``: a body that is not JSON; ``"no_id"``: a
                snapshot without ``lastUpdateId``.
        """
        if kind == "stale":
            kind, value = "stale_book", self.book(str(value))
        self._rest_faults.append((kind, value))

    async def _rest_depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        limit_text = request.query.get("limit", "100")
        limit = int(limit_text) if limit_text.isdigit() else -1
        if not symbol or symbol != symbol.upper() or not 1 <= limit <= 5000:
            return web.json_response({"code": -1121, "msg": "Invalid symbol or limit."}, status=400)
        self.rest_requests.append((symbol, limit))
        book: Optional[PartialBook] = None
        update_id: Optional[int] = None
        if self._rest_faults:
            kind, value = self._rest_faults.popleft()
            if kind in ("429", "418"):
                return web.json_response({"code": int(kind), "msg": "Too Many Requests" if kind == "429" else
                                          "IP banned"}, status=int(kind),
                                         headers={"Retry-After": str(1 if value is None else value)})
            if kind == "garbage":
                return web.Response(body=b"<html>Bad Gateway</html>", status=200, content_type="text/html")
            if kind == "no_id":
                current = self.book(symbol, limit)
                return web.json_response({"bids": current.bids, "asks": current.asks})
            if kind == "slow":
                await asyncio.sleep(float(value))
            elif kind == "stale_book":
                book = value
            elif kind == "ahead":
                book = self.book(symbol, limit)
                update_id = book.last_update_id + (1000 if value is None else int(value))
        if book is None:
            book = self.book(symbol, limit)
        body = {"lastUpdateId": book.last_update_id if update_id is None else update_id,
                "bids": book.bids, "asks": book.asks}
        return web.Response(body=_encode(body), content_type="application/json")

    def send_crossed_diff(self, symbol: str) -> None:
        """Push to ``symbol``'s aggregated depth subscribers an update (the next version) whose bid
        is above the best ask.

        The market's own book is left as it was (only its version advances), so
        a client that resyncs afterwards agrees with ``book()`` again.
        """
        market = self.market.symbol(symbol)
        market.last_update_id += 1
        version = str(market.last_update_id)
        bid = format_price(min(market.asks) + 5)
        for connection in self.connections:
            for name in connection.channels:
                channel = channels.parse_channel(name)
                if channel is None or channel.symbol != market.symbol or channel.kind is not channels.ChannelKind.AGGRE_DEPTH:
                    continue
                body = {"bids": [{"price": bid, "quantity": "1.00000000"}], "eventType": channel.event_type,
                        "fromVersion": version, "toVersion": version}
                connection.send(encode_push(name, channel.body_field, body, symbol=market.symbol,
                                            send_time=int(time.time() * 1000)), True)

    def reject_next_subscription(self) -> None:
        """Refuse every channel of the next SUBSCRIPTION (on any connection) with "Blocked!"."""
        self._reject_next = True

