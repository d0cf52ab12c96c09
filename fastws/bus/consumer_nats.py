"""A minimal NATS subscriber for live bus delivery: the protocol read in one pass per read.

nats-py builds a ``Msg`` per message, parses its headers with a general header
parser and hands it over through a queue and a task per subscription: about
9 µs of CPU per message here, seven times what the frame core spends on a
WebSocket frame. A bus consumer needs far less of NATS: ``SUB``/``UNSUB``, the
``MSG``/``HMSG`` it receives, ``PING``/``PONG``, and two header values. This
protocol reads every complete message of a read in one loop and hands each
payload (a ``bytes`` slice, the only allocation) to ``on_message`` with its
subscription id, opcode and message id, read straight from the header block.

Plain ``nats://host:port`` servers only (no TLS, no credentials): the link
uses nats-py for anything else, and for JetStream.

Protocol facts (NATS client protocol): the server opens with
``INFO {json}\\r\\n``; the client sends ``CONNECT {json}\\r\\n`` (``headers``:
true to receive ``HMSG``) and ``PING``; a ``PONG`` answers each ``PING``, in
order, so a ``PING`` after ``SUB`` lines confirms the server has them.
``HMSG <subject> <sid> [reply] <header bytes> <total bytes>\\r\\n<headers><payload>\\r\\n``,
``MSG <subject> <sid> [reply] <bytes>\\r\\n<payload>\\r\\n``; headers are
``NATS/1.0\\r\\n`` then ``Key: value\\r\\n`` lines and an empty line.
"""
from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from typing import Callable, Optional
from urllib.parse import urlsplit

from fastws.bus.consumer_read import HmsgLoop

__all__ = ["NatsProtocolError", "NatsReader", "fast_reader_supports"]

# on_message(sid, opcode (0: none or not a digit, -1: no headers), message id or b"", payload, subject)
MessageCallback = Callable[[int, int, bytes, bytes, bytes], None]

_CRLF = b"\r\n"
_OPCODE = b"\r\nFastws-Opcode: "
_MSG_ID = b"\r\nNats-Msg-Id: "
_OPCODE_SIZE = len(_OPCODE)
_MSG_ID_SIZE = len(_MSG_ID)
_EMPTY_HEADERS = len(b"NATS/1.0\r\n\r\n")
_PING = b"PING\r\n"
_PONG = b"PONG\r\n"
# A control line longer than this without its end is not NATS.
_MAX_LINE = 64 * 1024


class NatsProtocolError(Exception):
    """The server sent something that is not the NATS protocol, or an ``-ERR``."""


def fast_reader_supports(url: str) -> bool:
    """True for a plain ``nats://host:port`` URL (no TLS, no credentials)."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    return parts.scheme == "nats" and not parts.username and not parts.password


class NatsReader(asyncio.Protocol):
    """One connection to a NATS server that subscribes and reads messages.

    Args:
        on_message: ``(sid, opcode, msg_id, payload, subject)`` per message: ``opcode``
            is 1 or 2 from ``Fastws-Opcode``, 0 when that header is missing or not one
            digit, -1 for a message without headers; ``msg_id`` is empty when missing.
            Called inside ``data_received``: keep it short.
        on_lost: ``(reason)`` once, when an established connection ends for any reason
            but ``close()``.
    """

    def __init__(self, on_message: MessageCallback, on_lost: Callable[[str], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._transport: Optional[asyncio.Transport] = None
        self._buffer = b""
        self._info: Optional["asyncio.Future[None]"] = None
        self._pongs: deque[asyncio.Future[None]] = deque()
        self._next_sid = 0
        self._closed = False
        self._ping_timer: Optional[asyncio.TimerHandle] = None
        self._outstanding_pings = 0
        # on_lost is for a connection that was made: a failed handshake raises instead.
        self._established = False
        # The compiled loop (fastws.bus.consumer_read), once the owner installs it.
        self._compiled: Optional[HmsgLoop] = None
        self.url = ""

    # ----------------------------------------------------------- connecting
    @classmethod
    async def connect(cls, servers: list[str], on_message: MessageCallback, on_lost: Callable[[str], None], *,
                      timeout: float, name: str, ping_interval: float) -> "NatsReader":
        """Connect to the first server of ``servers`` (in random order) that completes the handshake.

        Raises:
            OSError, asyncio.TimeoutError, NatsProtocolError: no server did.
        """
        loop = asyncio.get_running_loop()
        last: BaseException = OSError("no NATS server given")
        for url in random.sample(servers, len(servers)):
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            reader = cls(on_message, on_lost)
            reader.url = url
            try:
                await asyncio.wait_for(reader._open(loop, parts.hostname or "127.0.0.1", parts.port or 4222,
                                                    name), timeout)
            except asyncio.CancelledError:
                reader.close()
                raise
            except (OSError, asyncio.TimeoutError, NatsProtocolError) as exc:
                reader.close()
                last = exc
                continue
            reader._established = True
            reader._schedule_ping(ping_interval)
            return reader
        raise last

    async def _open(self, loop: asyncio.AbstractEventLoop, host: str, port: int, name: str) -> None:
        self._info = loop.create_future()
        await loop.create_connection(lambda: self, host, port)
        await self._info
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": False,
                   "protocol": 1, "lang": "python-fastws", "version": "1", "name": name}
        self._write(b"CONNECT " + json.dumps(connect).encode() + _CRLF)
        await self.flush()

    # ------------------------------------------------------------- commands
    def use_compiled(self, loop: HmsgLoop) -> None:
        """Read messages with the compiled loop from now on (it feeds the core itself)."""
        self._compiled = loop

    def subscribe(self, subject: str) -> int:
        """``SUB`` ``subject``; returns its subscription id (confirmed by the next ``flush``)."""
        self._next_sid += 1
        self._write(f"SUB {subject} {self._next_sid}\r\n".encode())
        return self._next_sid

    def unsubscribe(self, sid: int) -> None:
        """``UNSUB`` a subscription id."""
        self._write(f"UNSUB {sid}\r\n".encode())

    async def flush(self) -> None:
        """Wait until the server has handled everything sent so far (its ``PONG`` to a ``PING``)."""
        pong = asyncio.get_running_loop().create_future()
        self._pongs.append(pong)
        self._write(_PING)
        await pong

    def close(self) -> None:
        """Close the connection (``on_lost`` is not called)."""
        self._closed = True
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        if self._transport is not None:
            self._transport.close()
        self._fail_waiters(ConnectionError("NATS connection closed"))

    @property
    def is_closed(self) -> bool:
        """True once the connection is closed or lost."""
        return self._closed

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._closed:
            raise ConnectionError("NATS connection closed")
        self._transport.write(data)

    def _schedule_ping(self, interval: float) -> None:
        """Ping every ``interval`` s; two pings without a pong end the connection (a dead server)."""
        def ping() -> None:
            if self._closed:
                return
            if self._outstanding_pings >= 2:
                self._lose(f"no PONG from {self.url} for {2 * interval:g} s")
                return
            self._outstanding_pings += 1
            self._write(_PING)
            self._ping_timer = asyncio.get_running_loop().call_later(interval, ping)
        self._ping_timer = asyncio.get_running_loop().call_later(interval, ping)

    # ---------------------------------------------------------- the protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]   # uvloop's TCPTransport is no asyncio.Transport subclass

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._lose(f"NATS connection to {self.url} lost" + (f": {exc}" if exc else ""))

    def _lose(self, reason: str) -> None:
        if self._closed:
            return
        self.close()
        if self._established:
            self._on_lost(reason)

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters = list(self._pongs)
        self._pongs.clear()
        if self._info is not None and not self._info.done():
            waiters.append(self._info)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()     # retrieved: a lost connection is reported through on_lost

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        if self._compiled is not None:
            try:
                pos = self._compiled.read(buf)
            except (NatsProtocolError, ValueError) as exc:
                self._buffer = b""
                self._lose(f"NATS protocol error from {self.url}: {exc}")
                return
            self._buffer = buf[pos:] if pos < len(buf) else b""
            return
        self._read(buf)

    def _read(self, buf: bytes) -> None:
        """The readable twin of the compiled loop: every complete operation of ``buf``."""
        pos = 0
        size = len(buf)
        find = buf.find
        on_message = self._on_message
        try:
            while pos < size:
                end = find(_CRLF, pos)
                if end < 0:
                    if size - pos > _MAX_LINE:
                        raise NatsProtocolError("control line too long")
                    break
                op = buf[pos:pos + 4]
                if op == b"HMSG":
                    # HMSG <subject> <sid> [reply] <header bytes> <total bytes>
                    args = buf[pos + 5:end].split(b" ")
                    header_size = int(args[-2])
                    start = end + 2
                    stop = start + int(args[-1])
                    if stop + 2 > size:
                        break
                    at = find(_OPCODE, start, start + header_size) + _OPCODE_SIZE
                    # One digit and the line's end, else 0 (refused by the caller);
                    # -1 for a header block without a field ("NATS/1.0\r\n\r\n").
                    opcode = buf[at] - 48 if at >= _OPCODE_SIZE and buf[at + 1] == 13 else \
                        (0 if header_size > _EMPTY_HEADERS else -1)
                    at = find(_MSG_ID, start, start + header_size)
                    msg_id = buf[at + _MSG_ID_SIZE:find(_CRLF, at + _MSG_ID_SIZE, start + header_size)] \
                        if at >= 0 else b""
                    on_message(int(args[1]), opcode, msg_id, buf[start + header_size:stop], args[0])
                    pos = stop + 2
                elif op == b"MSG ":
                    args = buf[pos + 4:end].split(b" ")
                    start = end + 2
                    stop = start + int(args[-1])
                    if stop + 2 > size:
                        break
                    on_message(int(args[1]), -1, b"", buf[start:stop], args[0])    # no headers
                    pos = stop + 2
                else:
                    self._control(buf[pos:end])
                    pos = end + 2
        except (NatsProtocolError, ValueError, IndexError) as exc:
            self._buffer = b""
            self._lose(f"NATS protocol error from {self.url}: {exc}")
            return
        self._buffer = buf[pos:] if pos < size else b""

    def on_control(self, line: bytes) -> None:
        """A control line (``PING``, ``PONG``, ``INFO``, ``-ERR``, ``+OK``), without its CRLF."""
        self._control(line)

    def _control(self, line: bytes) -> None:
        if line == b"PING":
            self._write(_PONG)
        elif line == b"PONG":
            self._outstanding_pings = 0
            if self._pongs:
                pong = self._pongs.popleft()
                if not pong.done():
                    pong.set_result(None)
        elif line.startswith(b"INFO "):
            if self._info is not None and not self._info.done():
                info = json.loads(line[5:])
                if info.get("tls_required") or info.get("auth_required"):
                    raise NatsProtocolError("the server wants TLS or credentials")
                if not info.get("headers", False):
                    raise NatsProtocolError("the server does not support headers")
                self._info.set_result(None)
        elif line.startswith(b"-ERR"):
            raise NatsProtocolError(line.decode(errors="replace"))
        # +OK (verbose is off) and later INFO (cluster changes) need nothing.
