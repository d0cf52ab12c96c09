"""Whether a client is healthy, from its ``health_check()``: connected, and its feed fresh."""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["unhealthy_reasons"]


def unhealthy_reasons(name: str, health: dict[str, Any], max_message_age: Optional[float]) -> list[str]:
    """Why the client ``name`` is not healthy (an empty list when it is).

    Healthy: every connection is CONNECTED and, when it has streams and
    ``max_message_age`` is given, a message came within that many seconds
    (or, before the first message, the connection is younger than that).

    Args:
        name: The client's registered name, the start of every reason.
        health: The client's ``health_check()``.
        max_message_age: Seconds of silence that make a feed stale; ``None``
            checks the state only.
    """
    reasons: list[str] = []
    if "health_check_error" in health:
        return [f"{name}: {health['health_check_error']}"]
    if not health.get("is_connected"):
        reason = f"{name}: state {health.get('state')}"
        open_gaps = [gap for gap in health.get("gaps", ()) if gap.get("end") is None]
        if open_gaps:
            reason += f" since a drop ({open_gaps[-1].get('reason')})"
        if health.get("waiting"):
            reason += f"; {health['waiting']}"
        reasons.append(reason)
        return reasons
    if max_message_age is None or not health.get("subscriptions"):
        return reasons
    age = health.get("last_message_age")
    if age is None:
        uptime = health.get("metrics", {}).get("connection_uptime", 0.0)
        if uptime > max_message_age:
            reasons.append(f"{name}: no message in the {uptime:.1f} s since it connected "
                           f"(limit {max_message_age:g} s)")
    elif age > max_message_age:
        reasons.append(f"{name}: no message for {age:.1f} s (limit {max_message_age:g} s)")
    return reasons
