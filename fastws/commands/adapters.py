"""The command line's exchanges: found by name through ``fastws.registry``."""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, Sequence

from fastws.commands import CommandError, UsageError
from fastws.errors import ExchangeAPIError
from fastws.registry import ExchangeEntry, RegistryError, exchange_names, get_exchange, load_exchanges
from fastws.types import ExchangeName

__all__ = ["exchange_names", "load_exchange", "make_client", "start_client"]


def load_exchange(name: str) -> ExchangeEntry:
    """The registered exchange ``name``; ``CommandError`` when unknown or not loadable."""
    try:
        return get_exchange(name)
    except RegistryError as exc:
        raise CommandError(str(exc)) from None


def make_client(name: str, url: Optional[str], handler: Callable[..., Any],
                error_handler: Callable[[Any], Any], *, typed: bool = False, **overrides: Any) -> Any:
    """A client of exchange ``name`` on ``url`` (default: its public endpoint).

    Raises:
        CommandError: an unknown exchange, or ``typed`` for one without a typed route.
        UsageError: ``url`` is not a valid endpoint.
    """
    exchange = load_exchange(name)
    if typed and not exchange.typed:
        typed_ones = ", ".join(e.name for e in load_exchanges() if e.typed) or "none"
        raise CommandError(f"--typed: {exchange.name} has no typed route (only {typed_ones} has)")
    options = {"typed": True} if typed else {}
    try:
        # Without a URL, the config function's default: the exchange's public endpoint.
        config = exchange.config(url, **overrides) if url else exchange.config(**overrides)
        return exchange.client(ExchangeName(exchange.name), config, handler, error_handler, **options)
    except ValueError as exc:     # the config's (or the client's) check of the endpoint
        if url is None:
            raise
        raise UsageError(f"--url {url}: {exc}") from None


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
