"""A loopback server that behaves like Binance's spot market-stream endpoint.

``BinanceSimulator`` is a picows server on 127.0.0.1 that follows the Binance
section of PROTOCOLS.md: raw streams at ``/ws/<stream>``, combined streams at
``/stream?streams=a/b`` (payload ``{"stream":"<name>","data":{...}}``), the
JSON requests (``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``,
``SET_PROPERTY``, ``GET_PROPERTY``) with Binance's error replies, the limits
(5 incoming frames per second, 1024 streams per connection, a maximum
connection age) and the keepalive (a ping every 20 s, a pong within 60 s).

Market data comes from one ``SyntheticMarket`` shared by every connection, so
every client sees the same update ids. With ``rate=0`` nothing is published
until the test calls ``step(n)``; otherwise a timer calls ``step(1)`` ``rate``
times a second. Faults (``drop``, ``reset``, ``mute``, ``mute_stream``, ``skip_sequence``,
``server_shutdown``...) are methods acting on every connection or on one.

Example::

    async with BinanceSimulator(rate=0) as sim:
        transport, listener = await ws_connect(Listener, sim.combined_url(["btcusdt@depth"]))
        await sim.wait_subscribed(["btcusdt@depth"])
        sim.step(100)
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Iterable, Optional, Sequence
from urllib.parse import unquote, urlsplit

import msgspec
from aiohttp import web
from picows import WSCloseCode, WSMsgType, WSTransport, WSUpgradeRequest

from exchanges.binance import streams as _streams
from exchanges.binance.control import BinanceControl, RequestError, encode_reply, error_reply
from exchanges.binance.book import depth_weight
from exchanges.binance.streams import MAX_STREAMS_PER_CONNECTION, StreamKind, is_valid_stream
from fastws.testing._simbase import SimConnection, Simulator
from fastws.testing.market import Kline, PartialBook, StepResult, SymbolMarket, SyntheticMarket, format_price

__all__ = ["ALL_MARKET_STREAMS", "BinanceConnection", "BinanceSimulator", "KLINE_INTERVALS", "stream_paths"]

log = logging.getLogger("exchanges.binance.simulator")

_MINUTE_MS = 60_000
_DAY_MS = 86_400_000
_INTERVAL_MS = {"s": 1000, "m": _MINUTE_MS, "h": 60 * _MINUTE_MS, "d": _DAY_MS, "w": 7 * _DAY_MS,
                "M": 30 * _DAY_MS}
KLINE_INTERVALS: dict[str, int] = {i: int(i[:-1]) * _INTERVAL_MS[i[-1]] for i in _streams.KLINE_INTERVALS}
"""Binance kline intervals (``exchanges.binance.streams``) and their length in ms (a month counts as 30 days)."""

ALL_MARKET_STREAMS = ("!ticker@arr", "!miniTicker@arr", "!bookTicker")
"""All-market streams the simulator publishes: they carry the symbols other streams subscribe to."""

# Stream kind -> the _StepEvents builder of its events.
_BUILDERS = {
    StreamKind.DEPTH_UPDATE: "depth", StreamKind.PARTIAL_DEPTH: "partial", StreamKind.TRADE: "trade",
    StreamKind.AGG_TRADE: "aggTrade", StreamKind.BOOK_TICKER: "bookTicker", StreamKind.TICKER: "ticker",
    StreamKind.MINI_TICKER: "miniTicker", StreamKind.KLINE: "kline",
}

_encode = msgspec.json.Encoder().encode
_CONTROL = BinanceControl()


class _Stream:
    """A parsed stream name: which symbol, which event builder."""

    __slots__ = ("name", "symbol", "kind", "levels", "interval", "interval_ms")

    def __init__(self, name: str, symbol: Optional[str], kind: str, levels: int = 0,
                 interval: str = "") -> None:
        self.name = name
        self.symbol = symbol
        self.kind = kind
        self.levels = levels
        self.interval = interval
        self.interval_ms = KLINE_INTERVALS.get(interval, 0)


_parsed: dict[str, Optional[_Stream]] = {}


def _parse_stream(name: str) -> Optional[_Stream]:
    """The parsed form of a valid stream name (``exchanges.binance.streams``), else None (cached).

    A valid name the simulator has no events for (the rolling-window tickers
    ``<symbol>@ticker_1h``, ``!ticker_1h@arr``) parses to a stream that publishes nothing.
    """
    if name in _parsed:
        return _parsed[name]
    stream: Optional[_Stream] = None
    if isinstance(name, str) and is_valid_stream(name):
        if name[:1] == "!":
            stream = _Stream(name, None, name if name in ALL_MARKET_STREAMS else "")
        else:
            symbol, _, suffix = name.partition("@")
            kind = _BUILDERS.get(_streams.stream_kind(name), "") if not suffix.startswith("ticker_") else ""
            if kind == "partial":
                stream = _Stream(name, symbol.upper(), kind, int(suffix[5:].split("@", 1)[0]))
            elif kind == "kline":
                stream = _Stream(name, symbol.upper(), kind, interval=suffix[6:].split("@", 1)[0])
            else:
                stream = _Stream(name, symbol.upper(), kind)
    if len(_parsed) < 100_000:
        _parsed[name] = stream
    return stream


def _wrap(name: str, payload: bytes) -> bytes:
    """The combined-stream payload: exactly ``msgspec.json.encode({"stream": name, "data": event})``."""
    return b'{"stream":' + _encode(name) + b',"data":' + payload + b"}"


def stream_paths(path: str) -> Optional[tuple[list[str], bool]]:
    """The streams an upgrade path names and whether it is a combined-stream path.

    ``/stream?streams=a/b`` gives ``(["a", "b"], True)``, ``/ws/a`` ``(["a"], False)``,
    ``/ws`` ``([], False)``; any other path None.
    """
    target = urlsplit(path)
    if target.path == "/stream":
        # Not parse_qs: it would read the "+" of "@+08:00" as a space.
        query = next((unquote(v) for k, _, v in (p.partition("=") for p in target.query.split("&"))
                      if k == "streams"), "")
        return [s for s in query.split("/") if s], True
    if target.path == "/ws":
        return [], False
    if target.path.startswith("/ws/"):
        return [target.path[4:]], False
    return None


class _Counters:
    """Keepalive counts kept both per connection and for the whole server."""

    def __init__(self) -> None:
        self.pings_sent = 0
        self.pongs_received = 0
        self.pong_timeouts = 0


class BinanceConnection(SimConnection, _Counters):
    """The server side of one client connection.

    Attributes:
        id: 1 for the first connection accepted, then 2, ...
        path: The request path with its query (``/stream?streams=...``).
        combined: Payloads are wrapped as ``{"stream": ..., "data": ...}``.
        requests: Every decoded request received, in order.
        max_incoming_in_window: Most frames received within any 1-s window.
        pings_sent: Pings sent to the client.
        pongs_received: Pongs echoing one of those pings.
        pong_timeouts: 1 if the connection was closed for a missing pong.
        sent_counts: Data frames sent per stream.
        connected_at: ``time.monotonic()`` at the upgrade.
        muted: Nothing is sent (data, pings, replies) while set.
        close_code: The code of the CLOSE the client sent, if any.
    """

    sim: "BinanceSimulator"

    def __init__(self, sim: "BinanceSimulator", path: str, streams: Sequence[str], combined: bool) -> None:
        SimConnection.__init__(self, sim, path, streams)
        _Counters.__init__(self)
        self.combined = combined
        self._ping_counter = 0
        self._outstanding: dict[bytes, asyncio.TimerHandle] = {}

    @property
    def streams(self) -> list[str]:
        """Subscribed streams in subscription order."""
        return list(self._subscriptions)

    # ------------------------------------------------------------------ life cycle

    def on_ws_connected(self, transport: WSTransport) -> None:
        super().on_ws_connected(transport)
        if self.sim.ping_interval > 0:
            self._later(self.sim.ping_interval, self._send_ping)

    def _cancel_timers(self) -> None:
        super()._cancel_timers()
        self._outstanding.clear()

    def _frames(self, name: str, payloads: list[bytes], cache: dict[str, list[bytes]]) -> list[bytes]:
        if not self.combined:
            return payloads
        combined = cache.get("combined")
        if combined is None:
            combined = cache["combined"] = [_wrap(name, p) for p in payloads]
        return combined

    # ------------------------------------------------------------------ incoming

    def _incoming_limit(self) -> int:
        return self.sim.max_incoming_per_second

    def _over_limit(self) -> bool:
        self.close(WSCloseCode.POLICY_VIOLATION.value, "Too many requests")
        return True

    @property
    def max_streams(self) -> int:
        """Streams this connection may hold (the simulator's ``max_streams_per_connection``)."""
        return self.sim.max_streams_per_connection

    def _on_request(self, text: bytes) -> None:
        try:
            request = _CONTROL.parse(text)
        except RequestError as exc:
            if not self.muted:
                self._reply(error_reply(exc, None))
            return
        self.requests.append(request)
        if not self.muted:
            self._reply(_CONTROL.answer(self, request))

    def _reply(self, reply: dict[str, Any]) -> None:
        if self.transport is not None:
            self.transport.send(WSMsgType.TEXT, encode_reply(reply))

    def subscribe(self, names: list[str]) -> None:
        """Add streams (``ControlSession``); refused once after ``reject_next_subscription``."""
        rejection = self.sim._rejection
        if rejection is not None:
            self.sim._rejection = None
            raise RequestError(*rejection)
        self._subscriptions.update(dict.fromkeys(names))
        self.sim._lift_stream_mutes(names)

    def unsubscribe(self, names: list[str]) -> None:
        """Remove streams (``ControlSession``)."""
        for stream in names:
            self._subscriptions.pop(stream, None)

    @property
    def subscriptions(self) -> dict[str, None]:
        """Subscribed streams (``ControlSession``)."""
        return self._subscriptions

    # ------------------------------------------------------------------ keepalive

    def _send_ping(self) -> None:
        sim = self.sim
        self._later(sim.ping_interval, self._send_ping)
        if self.muted or self.transport is None:
            return
        self._ping_counter += 1
        payload = str(self._ping_counter).encode()
        self.transport.send_ping(payload)
        self.pings_sent += 1
        sim.pings_sent += 1
        self._outstanding[payload] = self._later(sim.pong_timeout, self._pong_missing, payload)

    def _on_pong(self, payload: bytes) -> None:
        handle = self._outstanding.pop(payload, None)
        if handle is None:
            return      # unsolicited: allowed, but it keeps nothing alive
        self.pongs_received += 1
        self.sim.pongs_received += 1
        # A pong answers its ping and every earlier one.
        number = int(payload)
        for key in [k for k in self._outstanding if int(k) < number]:
            self._outstanding.pop(key).cancel()
        handle.cancel()

    def _on_mute(self) -> None:
        self._forget_pings()

    def _forget_pings(self) -> None:
        """Stop waiting for the pongs of the pings sent so far."""
        for handle in self._outstanding.values():
            handle.cancel()
            self._timers.discard(handle)
        self._outstanding.clear()

    def _pong_missing(self, payload: bytes) -> None:
        self.pong_timeouts += 1
        self.sim.pong_timeouts += 1
        log.warning("connection %d: no pong for ping %s within %s s", self.id, payload, self.sim.pong_timeout)
        self.close(WSCloseCode.POLICY_VIOLATION.value, "Pong timeout")
        if self.transport is not None:
            self.transport.disconnect()


class _StepEvents:
    """The events of one publishing step, built once per stream and shared by every connection."""

    def __init__(self, market: SyntheticMarket, results: list[StepResult], skipped: set[str]) -> None:
        self.market = market
        self.results = {r.symbol: r for r in results}
        self.skipped = skipped
        self.event_time = int(time.time() * 1000)

    def payloads(self, stream: _Stream) -> list[bytes]:
        """The raw (uncombined) payloads of ``stream`` for this step."""
        if not stream.kind:
            return []
        if stream.symbol is None:
            return self._all_market(stream.kind)
        result = self.results.get(stream.symbol)
        if result is None:
            return []
        build = getattr(self, "_" + stream.kind)
        return [_encode(event) for event in build(result, self.market.symbol(stream.symbol), stream)]

    def _all_market(self, kind: str) -> list[bytes]:
        if not self.results:
            return []
        markets = [(r, self.market.symbol(r.symbol)) for r in self.results.values()]
        if kind == "!bookTicker":
            return [_encode(self._bookTicker(r, m)[0]) for r, m in markets]
        build = self._ticker if kind == "!ticker@arr" else self._miniTicker
        return [_encode([build(r, m)[0] for r, m in markets])]

    def _depth(self, r: StepResult, m: SymbolMarket, s: _Stream) -> list[dict[str, Any]]:
        if r.symbol in self.skipped:
            return []
        return [{"e": "depthUpdate", "E": self.event_time, "s": r.symbol, "U": r.first_update_id,
                 "u": r.last_update_id, "b": r.bids, "a": r.asks}]

    def _partial(self, r: StepResult, m: SymbolMarket, s: _Stream) -> list[dict[str, Any]]:
        book = m.book(s.levels)
        return [{"lastUpdateId": book.last_update_id, "bids": book.bids, "asks": book.asks}]

    def _trade(self, r: StepResult, m: SymbolMarket, s: _Stream) -> list[dict[str, Any]]:
        return [{"e": "trade", "E": self.event_time, "s": r.symbol, "t": t.trade_id, "p": t.price, "q": t.qty,
                 "T": t.time_ms, "m": t.buyer_is_maker, "M": True} for t in r.trades]

    def _aggTrade(self, r: StepResult, m: SymbolMarket, s: _Stream) -> list[dict[str, Any]]:
        # One aggregate per trade: its id doubles as the aggregate id.
        return [{"e": "aggTrade", "E": self.event_time, "s": r.symbol, "a": t.trade_id, "p": t.price,
                 "q": t.qty, "f": t.trade_id, "l": t.trade_id, "T": t.time_ms, "m": t.buyer_is_maker,
                 "M": True} for t in r.trades]

    def _bookTicker(self, r: StepResult, m: SymbolMarket, s: Optional[_Stream] = None) -> list[dict[str, Any]]:
        best = m.best()
        return [{"u": best.update_id, "s": r.symbol, "b": best.bid, "B": best.bid_qty, "a": best.ask,
                 "A": best.ask_qty}]

    def _ticker(self, r: StepResult, m: SymbolMarket, s: Optional[_Stream] = None) -> list[dict[str, Any]]:
        t, best = m.ticker(), m.best()
        return [{"e": "24hrTicker", "E": self.event_time, "s": r.symbol, "p": t.price_change,
                 "P": t.price_change_percent, "w": t.weighted_avg_price, "x": t.prev_close, "c": t.last,
                 "Q": t.last_qty, "b": best.bid, "B": best.bid_qty, "a": best.ask, "A": best.ask_qty,
                 "o": t.open, "h": t.high, "l": t.low, "v": t.volume, "q": t.quote_volume,
                 "O": t.open_time, "C": t.close_time, "F": t.first_trade_id, "L": t.last_trade_id,
                 "n": t.count}]

    def _miniTicker(self, r: StepResult, m: SymbolMarket, s: Optional[_Stream] = None) -> list[dict[str, Any]]:
        t = m.ticker()
        return [{"e": "24hrMiniTicker", "E": self.event_time, "s": r.symbol, "c": t.last, "o": t.open,
                 "h": t.high, "l": t.low, "v": t.volume, "q": t.quote_volume}]

    def _kline(self, r: StepResult, m: SymbolMarket, s: _Stream) -> list[dict[str, Any]]:
        klines = [k for k in r.closed_klines if k.interval_ms == s.interval_ms]
        klines.append(m.kline(s.interval_ms))
        return [{"e": "kline", "E": self.event_time, "s": r.symbol, "k": _kline_body(k, r.symbol, s.interval)}
                for k in klines]


def _kline_body(k: Kline, symbol: str, interval: str) -> dict[str, Any]:
    return {"t": k.open_time, "T": k.close_time, "s": symbol, "i": interval, "f": k.first_trade_id,
            "L": k.last_trade_id, "o": k.open, "c": k.close, "h": k.high, "l": k.low, "v": k.volume,
            "n": k.trade_count, "x": k.closed, "q": k.quote_volume, "V": k.taker_buy_volume,
            "Q": k.taker_buy_quote_volume, "B": "0"}


class BinanceSimulator(Simulator[BinanceConnection], _Counters):
    """A loopback Binance spot market-stream server on 127.0.0.1.

    Use ``async with BinanceSimulator() as sim:`` (or ``start()``/``stop()``).

    Args:
        rate: Market steps per second of the paced publisher; 0: no publisher,
            the test calls ``step(n)``.
        ping_interval: Seconds between the server's pings (0: no pings).
        pong_timeout: Seconds a ping waits for its pong before the connection is closed.
        max_connection_age: Seconds after which the server closes a connection
            with 1001 (Binance: 24 h); None: never.
        max_incoming_per_second: Frames (text, binary, ping, pong) a client may
            send within any 1-s window; one more closes the connection with 1008.
        max_streams_per_connection: Streams one connection may subscribe to.
        seed: Seed of the synthetic market.
        depth_levels: Book levels per side.

    Attributes:
        market: The ``SyntheticMarket`` shared by every connection.
        connection_count: Connections accepted so far.
        violations: One line per rate-limit violation, for the whole server.
        max_incoming_in_window: Most frames any connection sent within 1 s.
        pings_sent, pongs_received, pong_timeouts: Keepalive counts over all connections.
        sent_counts: Data frames sent per stream, over all connections.
    """

    log = log
    _server_name = "binance-sim"

    def __init__(self, *, rate: float = 10.0, ping_interval: float = 20.0, pong_timeout: float = 60.0,
                 max_connection_age: Optional[float] = None, max_incoming_per_second: int = 5,
                 max_streams_per_connection: int = MAX_STREAMS_PER_CONNECTION, seed: int = 1,
                 depth_levels: int = 20) -> None:
        Simulator.__init__(self, rate=rate, max_connection_age=max_connection_age, seed=seed,
                           depth_levels=depth_levels)
        _Counters.__init__(self)
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_incoming_per_second = max_incoming_per_second
        self.max_streams_per_connection = max_streams_per_connection
        self._rejection: Optional[tuple[int, str]] = None
        self.rest_port = 0
        self.rest_requests: list[tuple[str, int]] = []
        self.rest_weight_used = 0
        self._rest_faults: deque[tuple[str, Any]] = deque()
        self._rest_runner: Optional[web.AppRunner] = None
        # Streams muted alone (mute_stream), each with the timer that lifts it, if any.
        self._muted_streams: dict[str, Optional[asyncio.TimerHandle]] = {}

    # ------------------------------------------------------------------ addresses

    def combined_url(self, streams: Iterable[str] = ()) -> str:
        """The combined-stream URL, with ``?streams=a/b`` when ``streams`` is not empty."""
        names = "/".join(streams)
        return f"{self.url}/stream?streams={names}" if names else f"{self.url}/stream"

    def raw_url(self, stream: str = "") -> str:
        """The raw-stream URL ``/ws/<stream>`` (``/ws`` without a stream)."""
        return f"{self.url}/ws/{stream}" if stream else f"{self.url}/ws"

    @property
    def rest_url(self) -> str:
        """The REST base URL (``GET /api/v3/depth``), ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.rest_port}"

    # ------------------------------------------------------------------ REST

    async def start(self) -> None:
        """Listen for WebSocket connections and, on another port, REST requests."""
        await super().start()
        app = web.Application()
        app.router.add_get("/api/v3/depth", self._depth)
        # Open requests (a "slow" fault, a client not stopped) get 0.5 s at stop.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._rest_runner = runner
        self.rest_port = runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop the REST server, then the WebSocket server."""
        runner, self._rest_runner = self._rest_runner, None
        if runner is not None:
            await runner.cleanup()
        await super().stop()

    def book(self, symbol: str, levels: Optional[int] = None) -> PartialBook:
        """The simulator's own book of ``symbol`` (the truth a client's book is compared with)."""
        return self.market.symbol(symbol).book(levels)

    def rest_fault(self, kind: str, value: Any = None) -> None:
        """Answer a coming ``GET /api/v3/depth`` awkwardly (faults queue, one per request).

        Args:
            kind: ``"stale"``: the book as it is now (``value``: the symbol),
                served later when the stream has moved on; ``"stale_book"``:
                ``value`` (a ``PartialBook`` of ``book()``); ``"ahead"``: the
                current book with ``lastUpdateId`` ``value`` (default 1000) ids
                ahead; ``"429"`` / ``"418"``: that status with ``Retry-After:
                value`` (seconds, default 1); ``"slow"``: the answer after
                ``value`` seconds; ``"status"``: HTTP ``value`` with Binance's
                error body; ``"garbage"``: a body that is not JSON.
        """
        if kind == "stale":
            kind, value = "stale_book", self.book(str(value))
        self._rest_faults.append((kind, value))

    async def _depth(self, request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            limit = -1
        if not symbol or not 1 <= limit <= 5000:
            return web.json_response({"code": -1100, "msg": "Illegal characters found in parameter."},
                                     status=400)
        self.rest_requests.append((symbol, limit))
        self.rest_weight_used += depth_weight(limit)
        headers = {"X-MBX-USED-WEIGHT-1M": str(self.rest_weight_used)}
        body: Any = None
        if self._rest_faults:
            kind, value = self._rest_faults.popleft()
            if kind in ("429", "418"):
                headers["Retry-After"] = str(1 if value is None else value)
                return web.json_response({"code": -1003, "msg": "Way too much request weight used."},
                                         status=int(kind), headers=headers)
            if kind == "status":
                return web.json_response({"code": -1000, "msg": "An unknown error occurred."},
                                         status=int(value), headers=headers)
            if kind == "garbage":
                return web.Response(body=b"<html>not json</html>", status=200, headers=headers)
            if kind == "slow":
                await asyncio.sleep(float(value))
            elif kind == "stale_book":
                body = {"lastUpdateId": value.last_update_id, "bids": value.bids, "asks": value.asks}
            elif kind == "ahead":
                book = self.book(symbol, limit)
                body = {"lastUpdateId": book.last_update_id + (1000 if value is None else int(value)),
                        "bids": book.bids, "asks": book.asks}
        if body is None:
            book = self.book(symbol, limit)
            body = {"lastUpdateId": book.last_update_id, "bids": book.bids, "asks": book.asks}
        return web.Response(body=_encode(body), content_type="application/json", headers=headers)

    def send_crossed_diff(self, symbol: str) -> None:
        """Send depth subscribers of ``symbol`` a diff (next update id) with a bid above the best ask.

        The market's own book is left as it was (only its update id advances),
        so a client that resyncs afterwards agrees with ``book()`` again.
        """
        market = self.market.symbol(symbol)
        market.last_update_id += 1
        bid = format_price(min(market.asks) + 5)
        event = _encode({"e": "depthUpdate", "E": int(time.time() * 1000), "s": market.symbol,
                         "U": market.last_update_id, "u": market.last_update_id,
                         "b": [[bid, "1.00000000"]], "a": []})
        for connection in self.connections:
            for name in connection.streams:
                stream = _parse_stream(name)
                if stream is not None and stream.kind == "depth" and stream.symbol == market.symbol:
                    connection.send(_wrap(name, event) if connection.combined else event)

    # ------------------------------------------------------------------ life cycle

    def _accept(self, request: WSUpgradeRequest) -> Optional[BinanceConnection]:
        """Route an upgrade request: a listener for the stream paths, None (404) for the rest."""
        path = request.path.decode("latin-1")
        found = stream_paths(path)
        if found is None:
            log.info("refused path %r", urlsplit(path).path)
            return None
        streams, combined = found
        if not all(is_valid_stream(s) for s in streams) or len(streams) > self.max_streams_per_connection:
            log.info("refused streams in %r", request.path)
            return None
        return BinanceConnection(self, path, streams, combined)

    # ------------------------------------------------------------------ market data

    def _symbol_of(self, name: str) -> Optional[str]:
        stream = _parse_stream(name)
        return None if stream is None else stream.symbol

    def _publish_step(self, results: list[StepResult], skipped: set[str],
                      subscribers: dict[str, list[BinanceConnection]]) -> int:
        events = _StepEvents(self.market, results, skipped)
        sent = 0
        for name, connections in subscribers.items():
            stream = _parse_stream(name)
            if stream is not None and name not in self._muted_streams:
                sent += self._deliver(name, events.payloads(stream), connections)
        return sent

    # ------------------------------------------------------------------ faults

    def send_malformed(self, payload: bytes = b'{"stream":"btcusdt@depth","data":{"e":',
                       connection: Optional[BinanceConnection] = None) -> None:
        """Send a TEXT frame of invalid JSON."""
        self.send_raw(payload, connection=connection)

    def send_oversized(self, size: int, connection: Optional[BinanceConnection] = None) -> None:
        """Send one TEXT frame of exactly ``size`` bytes (valid JSON from 10 bytes on)."""
        payload = b'{"pad":"' + b"x" * (size - 10) + b'"}' if size >= 10 else b" " * size
        self.send_raw(payload, connection=connection)

    def mute_stream(self, name: str, duration: Optional[float] = None) -> None:
        """Stop sending stream ``name`` on every connection while the other streams flow.

        The market goes on (update ids advance): a muted depth stream misses
        its updates, as when an exchange stops one stream of a connection.
        The mute is lifted by a ``SUBSCRIBE`` naming the stream (from any
        connection), by ``unmute_stream``, or after ``duration`` seconds.
        """
        self.unmute_stream(name)
        handle = None
        if duration is not None:
            handle = asyncio.get_running_loop().call_later(duration, self.unmute_stream, name)
            self._timers.add(handle)
        self._muted_streams[name] = handle
        log.info("stream %s muted%s", name, f" for {duration} s" if duration is not None else "")

    def unmute_stream(self, name: str) -> None:
        """Send stream ``name`` again (undo ``mute_stream``)."""
        if name not in self._muted_streams:
            return
        handle = self._muted_streams.pop(name)
        if handle is not None:
            handle.cancel()
            self._timers.discard(handle)

    @property
    def muted_streams(self) -> list[str]:
        """The streams muted alone (``mute_stream``) now."""
        return list(self._muted_streams)

    def _lift_stream_mutes(self, names: list[str]) -> None:
        """A SUBSCRIBE names these streams: those muted alone flow again."""
        for name in names:
            if name in self._muted_streams:
                log.info("stream %s unmuted by a SUBSCRIBE", name)
                self.unmute_stream(name)

    def reject_next_subscription(self, code: int = 2, msg: str = "Invalid request: rejected by test") -> None:
        """Answer the next SUBSCRIBE (on any connection) with this error; nothing is subscribed."""
        self._rejection = (code, msg)

    def server_shutdown(self, delay: float = 0.5, connection: Optional[BinanceConnection] = None) -> None:
        """Send a ``serverShutdown`` event, then close with 1001 after ``delay`` seconds."""
        event = _encode({"e": "serverShutdown", "E": int(time.time() * 1000)})
        targets = self._targets(connection)
        for target in targets:
            target.send(_wrap("!serverShutdown", event) if target.combined else event)

        def close() -> None:
            self._timers.discard(handle)
            for target in targets:
                target.close(WSCloseCode.GOING_AWAY.value, "Server shutdown")
        handle = asyncio.get_running_loop().call_later(delay, close)
        self._timers.add(handle)
