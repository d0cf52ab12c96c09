"""The exchange registry: an exchange is found by name through an entry point.

An exchange package declares itself in its ``pyproject.toml``::

    [project.entry-points."fastws.exchanges"]
    myexchange = "myexchange.entry:EXCHANGE"

where ``EXCHANGE`` is an ``ExchangeEntry``. ``fastws`` never names an exchange:
the command line (``fastws stream``, ``record``, ``replay``, ``verify``, ``demo``),
the replay server and the verifier ask this module for "the exchange called X",
so a third-party adapter plugs in exactly as the shipped ones do. Its pytest
fixtures are a separate ``pytest11`` entry point, as pytest finds plugins.

Example::

    from fastws.registry import get_exchange

    entry = get_exchange("myexchange")
    async with entry.simulator(rate=0) as sim:
        client = entry.client("myexchange", entry.config(entry.simulator_url(sim)), on_message)
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

if TYPE_CHECKING:
    from fastws.config import WebSocketConfig
    from fastws.testing.replay import ReplayProfile
    from fastws.verify.profile import ComplianceProfile

__all__ = ["ENTRY_POINT_GROUP", "ExchangeEntry", "ExchangeLoadError", "RegistryError", "UnknownExchangeError",
           "entry_for_client", "exchange_names", "get_exchange", "load_exchanges"]

ENTRY_POINT_GROUP = "fastws.exchanges"
"""The entry point group an exchange package registers its ``ExchangeEntry`` in."""


@dataclass(frozen=True)
class ExchangeEntry:
    """Everything ``fastws`` needs to know about one exchange.

    Attributes:
        name: The exchange's name (the entry point's name, lower case).
        client: Its ``BaseWebSocketInterface`` subclass, built as
            ``client(name, config, handler, error_handler)``.
        config: ``config(url=<public endpoint>, **overrides) -> WebSocketConfig``.
        simulator: A loopback server class of the exchange on 127.0.0.1: an async
            context manager taking keyword options (``rate`` at least), with
            ``drop(code)``, ``step(n)`` and ``wait_subscribed(names, timeout)``.
        simulator_url: The URL a client's config takes for a started simulator.
        replay: How the replay server speaks the exchange's control protocol.
        compliance: What ``fastws verify`` sends the client.
        demo_streams: Streams ``fastws demo`` subscribes to on the simulator
            (empty: the exchange is not in the demo).
        typed: The client takes ``typed=True`` (a typed route of msgspec Structs).
        book_symbols: Symbols ``fastws demo`` keeps order books of on the
            simulator (empty: no books in the demo). Only for a client with
            ``subscribe_books`` (``has_books``).
        simulator_rest_url: The REST base URL (order book snapshots) of a
            started simulator; ``config`` takes it as ``rest_url=...``, as it
            takes the public one by default.
    """

    name: str
    client: type
    config: "Callable[..., WebSocketConfig]"
    simulator: Optional[Callable[..., Any]] = None
    simulator_url: Callable[[Any], str] = lambda simulator: str(simulator.url)
    replay: "Optional[ReplayProfile]" = None
    compliance: "Optional[ComplianceProfile]" = None
    demo_streams: Sequence[str] = ()
    typed: bool = False
    book_symbols: Sequence[str] = ()
    simulator_rest_url: Callable[[Any], str] = lambda simulator: str(simulator.rest_url)

    @property
    def has_books(self) -> bool:
        """True when the client keeps order books (``subscribe_books``, ``book``).

        Its config then takes the snapshots' REST base URL as ``rest_url=...``.
        """
        return callable(getattr(self.client, "subscribe_books", None))


class RegistryError(LookupError):
    """An exchange cannot be found or loaded."""


class UnknownExchangeError(RegistryError):
    """No installed package registers an exchange of that name."""


class ExchangeLoadError(RegistryError):
    """The entry point of an exchange does not load to an ``ExchangeEntry``."""


def _entry_points() -> dict[str, EntryPoint]:
    # Read afresh each time: a package installed (or put on sys.path) while the
    # process runs is found on the next lookup.
    return {ep.name.lower(): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def exchange_names() -> list[str]:
    """The names of every registered exchange, sorted (nothing is imported)."""
    return sorted(_entry_points())


def _load(point: EntryPoint) -> ExchangeEntry:
    try:
        value = point.load()
    except Exception as exc:     # an import error, or anything the module raised while importing
        raise ExchangeLoadError(f"cannot load exchange {point.name!r} ({point.value}): "
                                f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(value, ExchangeEntry):
        raise ExchangeLoadError(f"exchange {point.name!r} ({point.value}) is a {type(value).__name__}, "
                                f"not an ExchangeEntry")
    return value


def get_exchange(name: str) -> ExchangeEntry:
    """The registered exchange called ``name`` (case-insensitive).

    Raises:
        UnknownExchangeError: no such exchange (the message lists the known ones).
        ExchangeLoadError: its entry point does not load to an ``ExchangeEntry``.
    """
    points = _entry_points()
    point = points.get(name.lower())
    if point is None:
        known = ", ".join(sorted(points)) or "none installed"
        raise UnknownExchangeError(f"unknown exchange {name!r} (known: {known})")
    return _load(point)


def load_exchanges() -> list[ExchangeEntry]:
    """Every registered exchange, by name.

    Raises:
        ExchangeLoadError: an entry point does not load.
    """
    points = _entry_points()
    return [_load(points[name]) for name in sorted(points)]


def entry_for_client(cls: type) -> Optional[ExchangeEntry]:
    """The registered exchange whose client ``cls`` is or derives from (the nearest), else None.

    Entries that fail to load are passed over.
    """
    entries = []
    for point in _entry_points().values():
        try:
            entries.append(_load(point))
        except ExchangeLoadError:
            continue
    mro = getattr(cls, "__mro__", ())
    for base in mro:
        for entry in entries:
            if entry.client is base:
                return entry
    return None
