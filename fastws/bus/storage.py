"""Stream storage: one JetStream stream per exchange holds what its collectors publish.

The stream ``<PREFIX>_<EXCHANGE>`` (``MD_BINANCE``) takes the subjects
``<prefix>.<exchange>.*``, keeps messages for ``max_age`` seconds and at most
``max_bytes`` bytes (oldest dropped first), and drops a message whose ``Nats-Msg-Id``
it has seen within ``duplicate_window`` seconds: the copy a second collector of the
same stream publishes. Keep that window short (it covers the replicas' skew, seconds),
since the server remembers every id in it.

The first collector creates the stream with its settings; the next ones check that
the stream they find has the same settings and refuse to run with a clear
:class:`StreamSettingsError` if not (nothing is changed silently: change a stream's
limits on purpose, with the ``nats`` tool or by deleting it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fastws.bus.subjects import DEFAULT_PREFIX, exchange_wildcard
from fastws.errors import ExchangeAPIError

__all__ = ["StorageSettings", "StreamSettingsError", "ensure_stream", "stream_name"]


class StreamSettingsError(ExchangeAPIError):
    """The exchange's JetStream stream exists with other settings than ours (code 409)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)


@dataclass(frozen=True)
class StorageSettings:
    """Limits of an exchange's JetStream stream.

    Attributes:
        max_age: Seconds a message is kept.
        max_bytes: Bytes the stream keeps at most (oldest messages go first).
        duplicate_window: Seconds within which a repeated ``Nats-Msg-Id`` is dropped.
        replicas: Copies of the stream in a JetStream cluster (1 on one server;
            3 in a 3-node cluster to survive the loss of a node).
        memory: Keep the stream in memory instead of on disk.
    """

    max_age: float = 3600.0
    max_bytes: int = 1024 ** 3
    duplicate_window: float = 5.0
    replicas: int = 1
    memory: bool = False

    def __post_init__(self) -> None:
        if not (self.max_age > 0 and self.max_bytes > 0 and self.duplicate_window > 0 and self.replicas >= 1):
            raise ValueError(f"storage settings must be positive: {self}")
        if self.duplicate_window > self.max_age:
            raise ValueError("duplicate_window cannot be longer than max_age")


def stream_name(exchange: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The JetStream stream of an exchange's subjects: ``MD_BINANCE``."""
    exchange_wildcard(exchange, prefix)      # refuses a name that is not subject-safe
    return f"{prefix}_{exchange}".upper()


def _differences(found: Any, subjects: list[str], settings: StorageSettings) -> list[str]:
    from nats.js.api import StorageType

    wanted = {
        "subjects": subjects,
        "max_age": settings.max_age,
        "max_bytes": settings.max_bytes,
        "duplicate_window": settings.duplicate_window,
        "num_replicas": settings.replicas,
        "storage": StorageType.MEMORY if settings.memory else StorageType.FILE,
    }
    out = []
    for key, value in wanted.items():
        have = getattr(found, key)
        if key == "num_replicas":
            have = have or 1
        if isinstance(value, float):
            same = have is not None and math.isclose(float(have), value, rel_tol=1e-6, abs_tol=1e-6)
        else:
            same = have == value
        if not same:
            out.append(f"{key} {_shown(have)} (ours: {_shown(value)})")
    return out


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


async def ensure_stream(js: Any, exchange: str, settings: StorageSettings = StorageSettings(), *,
                        prefix: str = DEFAULT_PREFIX) -> Any:
    """Create the exchange's stream with ``settings``, or check the one that exists.

    Args:
        js: A ``nats.js.JetStreamContext``.
        exchange: The exchange's registry name.
        settings: The limits wanted.
        prefix: The subjects' first token.

    Returns:
        The stream's ``StreamInfo``.

    Raises:
        StreamSettingsError: the stream exists with other subjects or limits.
    """
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    name = stream_name(exchange, prefix)
    subjects = [exchange_wildcard(exchange, prefix)]
    config = StreamConfig(name=name, subjects=subjects, max_age=settings.max_age, max_bytes=settings.max_bytes,
                          duplicate_window=settings.duplicate_window, num_replicas=settings.replicas,
                          storage=StorageType.MEMORY if settings.memory else StorageType.FILE)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        try:
            return await js.add_stream(config)
        except BadRequestError:
            # Another collector created it meanwhile, with other settings
            # (the same ones make add_stream succeed): say which below.
            info = await js.stream_info(name)
    different = _differences(info.config, subjects, settings)
    if different:
        raise StreamSettingsError(f"JetStream stream {name} exists with other settings: {'; '.join(different)}; "
                                  "change them on purpose (nats stream edit) or use the same settings")
    return info
