"""Compression: permessage-deflate negotiation (RFC 7692) and compressed payloads.

Two unrelated kinds of compression meet a market-data client:

* **permessage-deflate**, a WebSocket extension negotiated in the upgrade
  (``WebSocketConfig.enable_compression``). This module builds the offer and
  checks the server's answer; the frame core (``fastws._core``) inflates and
  deflates the frames.
* **application-level compression**: some exchanges gzip or deflate whole
  messages and send them in binary frames, with or without the extension.
  An adapter's ``_parse_message`` calls ``decompress_message`` for those.

Everything here runs once per connection, except ``decompress_message``
(once per message, and only for the exchanges that need it).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterable, Literal, Optional, Union

from fastws.errors import ConnectionFailedError, InvalidMessageError

__all__ = [
    "EXTENSION_NAME",
    "CompressionNegotiationError",
    "DeflateParameters",
    "offer_header",
    "parse_extension_header",
    "negotiate",
    "decompress_message",
]

EXTENSION_NAME = "permessage-deflate"
# RFC 7692 section 7.1.2: LZ77 window sizes of 2**8 to 2**15 bytes.
MIN_WINDOW_BITS = 8
MAX_WINDOW_BITS = 15

Buffer = Union[bytes, bytearray, memoryview]
Extension = tuple[str, list[tuple[str, Optional[str]]]]


class CompressionNegotiationError(ConnectionFailedError, ValueError):
    """The server's ``Sec-WebSocket-Extensions`` answer breaks RFC 7692 (code 500).

    It names an extension or a parameter the client did not offer, repeats a
    parameter or gives one a value out of range. The same server answers the
    same way every time, so the connection fails instead of being retried
    (it is also a ``ValueError``, which the reconnection policy treats as
    final).
    """


@dataclass(frozen=True)
class DeflateParameters:
    """What a permessage-deflate negotiation settled (RFC 7692 section 7.1).

    Attributes:
        server_no_context_takeover: The server starts every message with an
            empty window: the client inflates each message on its own.
        client_no_context_takeover: The client must compress every message on
            its own.
        server_max_window_bits: The server's LZ77 window (8 to 15).
        client_max_window_bits: The window the client may use (8 to 15).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = MAX_WINDOW_BITS
    client_max_window_bits: int = MAX_WINDOW_BITS


def _check_window_bits(name: str, value: Optional[int]) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) \
            or not MIN_WINDOW_BITS <= value <= MAX_WINDOW_BITS:
        raise ValueError(f"{name} must be an int from {MIN_WINDOW_BITS} to {MAX_WINDOW_BITS}, got {value!r}")


def offer_header(client_window_bits: Optional[int] = None,
                 server_window_bits: Optional[int] = None) -> str:
    """The ``Sec-WebSocket-Extensions`` value the client sends.

    Args:
        client_window_bits: ``client_max_window_bits`` to announce: ``None``
            offers the parameter without a value (the server may pick the
            client's window), a number bounds the client's own window.
        server_window_bits: ``server_max_window_bits`` to ask for (bounds the
            memory of the client's inflater); ``None`` leaves it to the server.

    Returns:
        E.g. ``"permessage-deflate; client_max_window_bits"``.

    Raises:
        ValueError: a window size outside 8..15.
    """
    _check_window_bits("client_window_bits", client_window_bits)
    _check_window_bits("server_window_bits", server_window_bits)
    parts = [EXTENSION_NAME]
    if server_window_bits is not None:
        parts.append(f"server_max_window_bits={server_window_bits}")
    parts.append("client_max_window_bits" if client_window_bits is None
                 else f"client_max_window_bits={client_window_bits}")
    return "; ".join(parts)


_SEPARATORS = frozenset('()<>@,;:\\"/[]?={} \t')


def _is_token(text: str) -> bool:
    return bool(text) and all(33 <= ord(c) < 127 and c not in _SEPARATORS for c in text)


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise CompressionNegotiationError(f"unterminated quoted string in {text!r}")
    parts.append("".join(current))
    return parts


def parse_extension_header(values: Iterable[str]) -> list[Extension]:
    """Parse ``Sec-WebSocket-Extensions`` header values (RFC 6455 section 9.1).

    Args:
        values: Every value of the header (it may come on several lines).

    Returns:
        ``[(extension name, [(parameter, value or None), ...]), ...]`` in
        order; names are lower-cased, quoted values unquoted.

    Raises:
        CompressionNegotiationError: the header is malformed.
    """
    extensions: list[Extension] = []
    for value in values:
        for item in _split(value, ","):
            if not item.strip():
                continue      # RFC 7230 list syntax allows empty elements
            name, *raw_params = [part.strip() for part in _split(item, ";")]
            if not _is_token(name):
                raise CompressionNegotiationError(f"malformed extension name {name!r} in {value!r}")
            params: list[tuple[str, Optional[str]]] = []
            for raw in raw_params:
                key, has_value, param_value = raw.partition("=")
                key = key.strip()
                if not _is_token(key):
                    raise CompressionNegotiationError(f"malformed extension parameter {raw!r} in {value!r}")
                parsed: Optional[str] = None
                if has_value:
                    param_value = param_value.strip()
                    if len(param_value) >= 2 and param_value[0] == param_value[-1] == '"':
                        param_value = param_value[1:-1].replace("\\", "")
                    if not _is_token(param_value):
                        raise CompressionNegotiationError(
                            f"malformed value of extension parameter {raw!r} in {value!r}")
                    parsed = param_value
                params.append((key.lower(), parsed))
            extensions.append((name.lower(), params))
    return extensions


def _window_bits(name: str, value: Optional[str]) -> int:
    if value is None or not value.isdigit() or not MIN_WINDOW_BITS <= int(value) <= MAX_WINDOW_BITS:
        raise CompressionNegotiationError(
            f"permessage-deflate answer: {name}={value} is not a window size from "
            f"{MIN_WINDOW_BITS} to {MAX_WINDOW_BITS}")
    return int(value)


def negotiate(values: Iterable[str], client_window_bits: Optional[int] = None,
              server_window_bits: Optional[int] = None) -> Optional[DeflateParameters]:
    """Check the server's answer to ``offer_header(client_window_bits, server_window_bits)``.

    Args:
        values: The ``Sec-WebSocket-Extensions`` values of the upgrade
            response (none when the server declined).
        client_window_bits, server_window_bits: What was offered.

    Returns:
        The settled parameters, or ``None`` when the server declined (an
        uncompressed connection).

    Raises:
        CompressionNegotiationError: the answer names another extension or
            more than one, a parameter that was not offered, a repeated
            parameter, a parameter value that is not allowed, or omits
            ``server_max_window_bits`` although it was asked for.
    """
    extensions = parse_extension_header(values)
    if not extensions:
        return None
    names = [name for name, _ in extensions]
    if names != [EXTENSION_NAME]:
        raise CompressionNegotiationError(
            f"the server accepted extension(s) {', '.join(names)}; only one "
            f"{EXTENSION_NAME} was offered")
    seen: set[str] = set()
    server_no_context = client_no_context = False
    server_bits: Optional[int] = None
    client_bits: Optional[int] = None
    for name, value in extensions[0][1]:
        if name in seen:
            raise CompressionNegotiationError(f"permessage-deflate answer repeats {name}")
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise CompressionNegotiationError(f"permessage-deflate answer: {name} takes no value, "
                                                  f"got {value!r}")
            if name == "server_no_context_takeover":
                server_no_context = True
            else:
                client_no_context = True
        elif name == "server_max_window_bits":
            server_bits = _window_bits(name, value)
            if server_window_bits is not None and server_bits > server_window_bits:
                raise CompressionNegotiationError(
                    f"permessage-deflate answer: server_max_window_bits={server_bits} exceeds the "
                    f"{server_window_bits} asked for")
        elif name == "client_max_window_bits":
            # Offered without a value when client_window_bits is None; the
            # answer must then give one (RFC 7692 section 7.1.2.2).
            client_bits = _window_bits(name, value)
            if client_window_bits is not None and client_bits > client_window_bits:
                raise CompressionNegotiationError(
                    f"permessage-deflate answer: client_max_window_bits={client_bits} exceeds the "
                    f"{client_window_bits} offered")
        else:
            raise CompressionNegotiationError(f"permessage-deflate answer has parameter {name!r}, "
                                              "which the client did not offer")
    if server_window_bits is not None and server_bits is None:
        raise CompressionNegotiationError(
            f"permessage-deflate answer omits server_max_window_bits although "
            f"{server_window_bits} was asked for")
    return DeflateParameters(
        server_no_context_takeover=server_no_context,
        client_no_context_takeover=client_no_context,
        server_max_window_bits=server_bits if server_bits is not None else MAX_WINDOW_BITS,
        client_max_window_bits=client_bits if client_bits is not None else (
            client_window_bits if client_window_bits is not None else MAX_WINDOW_BITS),
    )


# zlib's wbits per container: gzip (16 + window), zlib (window), raw (-window).
_WBITS = {"gzip": 16 + MAX_WINDOW_BITS, "zlib": MAX_WINDOW_BITS, "deflate": -MAX_WINDOW_BITS}


def _detect(data: Buffer) -> str:
    head = bytes(memoryview(data)[:2])
    if head == b"\x1f\x8b":
        return "gzip"
    if len(head) == 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return "deflate"


def decompress_message(data: Buffer, max_size: int,
                       format: Literal["auto", "gzip", "zlib", "deflate"] = "auto") -> bytes:
    """Decompress a whole application-level compressed message, bounded.

    For exchanges that gzip or deflate their messages inside binary frames:
    call it in ``_parse_message`` on the view the core hands over (it is read
    in place, never copied) and parse the result. At most ``max_size`` bytes
    are ever produced, so a decompression bomb costs no memory.

    Args:
        data: The compressed message (a ``memoryview`` of the frame is fine).
        max_size: Largest decompressed size accepted, e.g. the connection's
            ``max_frame_size``.
        format: ``"gzip"``, ``"zlib"`` (RFC 1950), ``"deflate"`` (raw, RFC
            1951), or ``"auto"``: gzip or zlib by their header, else raw.

    Returns:
        The decompressed bytes.

    Raises:
        InvalidMessageError: corrupt or truncated data, or more than
            ``max_size`` bytes once decompressed.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be positive, got {max_size!r}")
    kind = _detect(data) if format == "auto" else format
    try:
        wbits = _WBITS[kind]
    except KeyError:
        raise ValueError(f"format must be auto, gzip, zlib or deflate, got {format!r}") from None
    inflater = zlib.decompressobj(wbits)
    try:
        # Bounded: at most max_size + 1 bytes are produced (one more tells
        # a bomb from a message of exactly max_size).
        out = inflater.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise InvalidMessageError(f"corrupt {kind} message: {exc}") from exc
    if len(out) > max_size or inflater.unconsumed_tail:
        raise InvalidMessageError(f"{kind} message inflates to more than {max_size} bytes")
    # A raw deflate message may end at a sync flush (no final block);
    # gzip and zlib carry an end marker and a checksum.
    if kind != "deflate" and not inflater.eof:
        raise InvalidMessageError(f"truncated {kind} message")
    return out
