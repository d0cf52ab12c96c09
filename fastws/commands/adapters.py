"""The command line's exchanges: adapters found by module name (fastws never imports one directly)."""
from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from fastws.commands import CommandError
from fastws.errors import ExchangeAPIError
from fastws.types import ExchangeName

__all__ = ["EXCHANGES", "Exchange", "load_exchange", "make_client", "start_client"]


@dataclass(frozen=True)
class Exchange:
    """How the command line builds a client of one exchange."""

    name: str
    module: str          # the adapter package
    client: str          # its BaseWebSocketInterface subclass
    config: str          # its config function: (url=<public endpoint>, **overrides) -> WebSocketConfig


EXCHANGES = {
    "binance": Exchange("binance", "exchanges.binance", "BinanceWebSocket", "binance_config"),
    "mexc": Exchange("mexc", "exchanges.mexc", "MexcWebSocket", "mexc_config"),
}


def load_exchange(name: str) -> tuple[Exchange, Any]:
    """The exchange ``name`` and its adapter module; ``CommandError`` when unknown or not importable."""
    exchange = EXCHANGES.get(name.lower())
    if exchange is None:
        raise CommandError(f"unknown exchange {name!r} (known: {', '.join(EXCHANGES)})")
    try:
        return exchange, importlib.import_module(exchange.module)
    except ImportError as exc:
        raise CommandError(f"cannot import the {name} adapter {exchange.module!r}: {exc}") from None


def make_client(name: str, url: Optional[str], handler: Callable[..., Any],
                error_handler: Callable[[Any], Any], *, typed: bool = False, **overrides: Any) -> Any:
    """A client of exchange ``name`` on ``url`` (default: its public endpoint)."""
    exchange, module = load_exchange(name)
    make_config = getattr(module, exchange.config)
    # Without a URL, the config function's default: the exchange's public endpoint.
    config = make_config(url, **overrides) if url else make_config(**overrides)
    cls = getattr(module, exchange.client)
    if typed:
        if exchange.name != "binance":
            raise CommandError(f"--typed: {exchange.name} has no typed route (only binance has)")
        return cls(ExchangeName(exchange.name), config, handler, error_handler, typed=True)
    return cls(ExchangeName(exchange.name), config, handler, error_handler)


async def start_client(client: Any, timeout: float, errors: Sequence[ExchangeAPIError] = ()) -> None:
    """Start ``client`` (connected) within ``timeout`` seconds, or stop it and raise.

    Raises:
        CommandError: not connected in time (with the last of ``errors``, the
            client's reported errors, when there is one), or the connection
            failed for good.
    """
    url = client.config.url
    try:
        await asyncio.wait_for(client.start(), timeout)
    except asyncio.TimeoutError:
        await client.stop()
        last = f": {errors[-1].message}" if errors else ""
        raise CommandError(f"could not connect to {url} within {timeout:g} s{last}") from None
    except ExchangeAPIError as exc:
        await client.stop()
        raise CommandError(f"could not connect to {url}: {exc.message}") from None
