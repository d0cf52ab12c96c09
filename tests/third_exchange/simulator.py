"""The third exchange's simulator: the generic ``FeedServer`` with its control handler and pushes."""
from __future__ import annotations

from fastws.testing.feed import FeedConnection, FeedServer

from tests.third_exchange.protocol import PATH, ack, decode, encode, is_valid_stream, push

__all__ = ["ThirdControl", "ThirdSimulator"]


class ThirdControl:
    """Answers ``sub``/``unsub`` requests; refuses invalid stream names."""

    def __call__(self, connection: FeedConnection, text: bytes) -> None:
        try:
            request = decode(text)
        except ValueError:
            connection.send_text(encode(ack(None, "bad json")))
            return
        connection.server.requests.append(request)
        op, names, request_id = request.get("op"), request.get("args") or [], request.get("req")
        if op not in ("sub", "unsub"):
            connection.send_text(encode(ack(request_id, "unknown op")))
            return
        bad = [n for n in names if not is_valid_stream(n)]
        if bad:
            connection.send_text(encode(ack(request_id, f"invalid stream {bad[0]}")))
            return
        for name in names:
            if op == "sub":
                connection.streams[name] = None
            else:
                connection.streams.pop(name, None)
        connection.send_text(encode(ack(request_id)))


class ThirdSimulator(FeedServer):
    """A loopback third exchange on 127.0.0.1 (``async with ThirdSimulator(rate=0) as sim``).

    Args:
        rate: Pushes per stream and second (0: call ``step(n)``).
    """

    def __init__(self, *, rate: float = 0.0) -> None:
        super().__init__(rate, control=ThirdControl(), message=push, path=PATH)

    def step(self, n: int = 1) -> int:
        """Push ``n`` trades on every subscribed stream; return frames sent."""
        return self.publish(n)

    def drop(self, code: int = 1001) -> None:
        """Close every connection with ``code``."""
        self.drop_all(code)
