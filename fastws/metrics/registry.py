"""The clients whose metrics are exported, each under a name of its own."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from fastws.client import BaseWebSocketInterface

__all__ = ["ClientRegistry", "DEFAULT_REGISTRY", "register", "registered", "unregister"]


class ClientRegistry:
    """Clients by name, in the order they were registered.

    The name is the ``connection`` label of every series of the client and
    its key in ``/healthz``: by default the exchange's name, with ``-2``,
    ``-3`` ... for a second or third client of the same exchange.
    """

    def __init__(self) -> None:
        self._clients: dict[str, BaseWebSocketInterface] = {}

    def register(self, client: BaseWebSocketInterface, name: Optional[str] = None) -> str:
        """Export ``client`` (again under its name if it is registered already); return the name.

        Raises:
            ValueError: ``name`` is taken by another client.
        """
        for known, other in self._clients.items():
            if other is client:
                return known
        if name is None:
            name, number = str(client.exchange), 1
            while name in self._clients:
                number += 1
                name = f"{client.exchange}-{number}"
        elif name in self._clients:
            raise ValueError(f"a client is registered under the name {name!r} already")
        self._clients[name] = client
        return name

    def unregister(self, client: BaseWebSocketInterface) -> None:
        """Stop exporting ``client`` (nothing happens if it is not registered)."""
        for name, other in list(self._clients.items()):
            if other is client:
                del self._clients[name]

    def clients(self) -> list[tuple[str, BaseWebSocketInterface]]:
        """``(name, client)`` of every registered client, in registration order."""
        return list(self._clients.items())


#: The registry that ``register()``, ``FastwsCollector()`` and ``serve()`` use by default.
DEFAULT_REGISTRY = ClientRegistry()


def register(client: BaseWebSocketInterface, name: Optional[str] = None) -> str:
    """Export ``client``'s metrics and health (``DEFAULT_REGISTRY``); return its name.

    A registered client stays exported until ``unregister``: one that was
    stopped shows as closed in ``/healthz`` (HTTP 503).
    """
    return DEFAULT_REGISTRY.register(client, name)


def unregister(client: BaseWebSocketInterface) -> None:
    """Stop exporting ``client`` (``DEFAULT_REGISTRY``)."""
    DEFAULT_REGISTRY.unregister(client)


def registered() -> list[tuple[str, BaseWebSocketInterface]]:
    """``(name, client)`` of every client in ``DEFAULT_REGISTRY``."""
    return DEFAULT_REGISTRY.clients()
