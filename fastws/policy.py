"""Slow-consumer policies: what a stream does while its handler is behind.

Each stream of a connection is handled in its own order: while an ``async``
handler of one stream is suspended, the later messages of that stream wait in
that stream's backlog and the other streams' messages go on to their handlers.
What waits, and what is given up, is the stream's policy:

- :class:`Lossless` (the default): every message waits, in order. Past
  ``max_backlog`` messages (or the connection's ``max_backlog_bytes``) the
  stream's backlog is abandoned: counted and reported as a gap, never silent.
  An alarm (a WARNING and ``on_backlog("aging", ...)``) when its oldest
  message has waited ``alarm_age`` seconds.
- :class:`Latest`: only the newest waiting message is kept; each one it
  replaces is counted as *conflated*. Only for snapshot-like streams (book
  ticker, partial depth, tickers, klines in progress), whose newest message
  holds everything the older ones said.
- :class:`DropOldest`: the newest ``n`` waiting messages are kept; each older
  one given up is counted as *dropped*. Snapshot-like streams only, too.

A lossy policy on a diff stream (depth diffs, trades) would silently corrupt
what the handler builds from it: ``subscribe`` refuses it (``ValueError``)
before anything is sent. The adapter says which streams are snapshot-like
(``BaseWebSocketInterface._stream_is_snapshot``).

Policies are small frozen objects rather than strings because two of them take
a parameter (``DropOldest(n)``, ``Lossless(alarm_age)``) that a type checker
and the constructor can check; the names ``"lossless"`` and ``"latest"`` (and
``"drop_oldest:N"``) are accepted wherever a policy is, for configuration
files (see :func:`as_policy`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Iterable, Mapping, Optional, Union

if TYPE_CHECKING:
    from fastws._core import FrameHandler

__all__ = ["DropOldest", "Latest", "Lossless", "Policy", "PolicyLike", "apply_policies", "as_policy",
           "policy_problem", "resolve_policies"]


@dataclass(frozen=True)
class Lossless:
    """Every message of the stream waits for its handler, in order.

    Attributes:
        alarm_age: Seconds the oldest waiting message may wait before the
            alarm (a WARNING and ``on_backlog("aging", ...)``, once until the
            stream's backlog empties); None takes the config's
            ``backlog_warning_age``.
    """

    kind: ClassVar[str] = "lossless"
    lossy: ClassVar[bool] = False
    alarm_age: Optional[float] = None

    def __post_init__(self) -> None:
        if self.alarm_age is not None and (isinstance(self.alarm_age, bool)
                                           or not isinstance(self.alarm_age, (int, float))
                                           or not self.alarm_age > 0 or not math.isfinite(self.alarm_age)):
            raise ValueError(f"Lossless(alarm_age=...) must be None or a positive number of seconds, "
                             f"got {self.alarm_age!r}")

    @property
    def keep(self) -> int:
        """Waiting messages kept by the policy itself: 0, no bound but ``max_backlog``."""
        return 0


@dataclass(frozen=True)
class Latest:
    """Only the newest waiting message of the stream is kept (conflation)."""

    kind: ClassVar[str] = "latest"
    lossy: ClassVar[bool] = True

    @property
    def keep(self) -> int:
        """Waiting messages kept: one."""
        return 1


@dataclass(frozen=True)
class DropOldest:
    """The newest ``n`` waiting messages of the stream are kept; older ones are dropped.

    Attributes:
        n: How many waiting messages are kept (at least 1).
    """

    kind: ClassVar[str] = "drop_oldest"
    lossy: ClassVar[bool] = True
    n: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"DropOldest(n) needs an int n >= 1, got {self.n!r}")

    @property
    def keep(self) -> int:
        """Waiting messages kept: ``n``."""
        return self.n


Policy = Union[Lossless, Latest, DropOldest]
"""A slow-consumer policy."""

PolicyLike = Union[Policy, str]
"""A policy, or its name: ``"lossless"``, ``"latest"``, ``"drop_oldest:N"``."""


def as_policy(value: object) -> Policy:
    """The policy ``value`` names.

    Args:
        value: A ``Lossless``, ``Latest`` or ``DropOldest``, or one of the
            names ``"lossless"``, ``"latest"``, ``"drop_oldest:N"``.

    Raises:
        ValueError: an unknown name, or a bad ``N``.
        TypeError: neither a policy nor a str.
    """
    if isinstance(value, (Lossless, Latest, DropOldest)):
        return value
    if not isinstance(value, str):
        raise TypeError(f"a slow-consumer policy is Lossless(), Latest(), DropOldest(n) or its name, "
                        f"got {type(value).__name__}")
    name, _, arg = value.strip().partition(":")
    if name == "lossless" and not arg:
        return Lossless()
    if name == "latest" and not arg:
        return Latest()
    if name == "drop_oldest" and arg.strip().isdigit():
        return DropOldest(int(arg))
    raise ValueError(f"unknown slow-consumer policy {value!r} (lossless, latest or drop_oldest:N)")


def policy_problem(stream: str, policy: Policy, snapshot: bool) -> Optional[str]:
    """Why ``policy`` may not apply to ``stream``, or None when it may.

    Args:
        stream: The stream's name.
        policy: The policy asked for.
        snapshot: The adapter says each message of the stream holds the
            whole state (``_stream_is_snapshot``).
    """
    if policy.lossy and not snapshot:
        return (f"{stream!r} is not a snapshot-like stream (each message does not repeat the whole state): "
                f"{policy.kind} would lose its updates; use Lossless()")
    return None


def resolve_policies(streams: Iterable[str], policy: Optional[PolicyLike], default: Policy,
                     per_stream: Mapping[str, Policy], is_snapshot: Callable[[str], bool]) -> dict[str, Policy]:
    """The policy each of ``streams`` gets, refusing a lossy one on a stream that is not snapshot-like.

    ``policy`` (given to ``subscribe``) wins, then the stream's entry of
    ``per_stream`` (the config's ``stream_policies``), then ``default`` (the
    config's ``slow_consumer_policy``), which applies a lossy policy only to
    the snapshot-like streams: the others stay lossless.

    Args:
        streams: Stream names.
        policy: The policy asked for these streams, or None.
        default: The default policy.
        per_stream: Policies by stream name.
        is_snapshot: The adapter's ``_stream_is_snapshot``.

    Returns:
        Stream -> policy, for every stream whose policy is not the plain
        default ``Lossless()``.

    Raises:
        ValueError: a lossy policy asked (or configured) for a stream that is
            not snapshot-like; nothing is kept then.
        TypeError: ``policy`` is not a policy or a policy's name.
    """
    asked = None if policy is None else as_policy(policy)
    chosen: dict[str, Policy] = {}
    refused: list[str] = []
    for stream in streams:
        explicit = asked if asked is not None else per_stream.get(stream)
        if explicit is not None:
            problem = policy_problem(stream, explicit, is_snapshot(stream))
            if problem is not None:
                refused.append(problem)
                continue
            chosen[stream] = explicit
        elif default.lossy and not is_snapshot(stream):
            continue
        elif default != Lossless():
            chosen[stream] = default
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise ValueError(f"slow-consumer policy refused: {refused[0]}{more}")
    return chosen


def apply_policies(core: "FrameHandler", policies: Mapping[str, Policy], default_alarm_age: float) -> None:
    """Tell a connection's frame core the streams' policies.

    Args:
        core: The connection's ``FrameHandler``.
        policies: Stream -> policy.
        default_alarm_age: The alarm age (seconds) of a ``Lossless()``
            without its own (the config's ``backlog_warning_age``).
    """
    for stream, policy in policies.items():
        alarm = 0.0
        if isinstance(policy, Lossless):
            alarm = policy.alarm_age if policy.alarm_age is not None else default_alarm_age
        core.set_stream_policy(stream, policy.kind, policy.keep, int(alarm * 1e9))
