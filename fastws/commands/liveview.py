"""A live view of clients' health, one row per stream, refreshed in place on a terminal."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping, Optional, Sequence, TextIO

__all__ = ["LiveView", "book_lines", "format_number", "stream_rows", "write_progress"]

_HEADER = (f"{'exchange':<8} {'stream':<48} {'type':<9} {'msg/s':>8} {'event p50':>9} {'event p99':>9} "
           f"{'core p99':>8} {'state':<12} {'reconn':>6} {'seq gaps':>8}")


def format_number(value: Optional[float], width: int, digits: int = 1) -> str:
    """``value`` right-aligned in ``width`` with ``digits`` decimals; ``-`` for None."""
    return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def stream_rows(exchange: str, health: Mapping[str, Any]) -> list[str]:
    """The view's rows for one client: one per stream of its live connection.

    Columns: messages per second (since the previous health check), the
    exchange's event time to local receive p50/p99 in ms, the connection's
    receive-to-handler-done p99 in us, the state, reconnections and
    sequence gaps (per stream when the adapter reads sequence numbers).
    """
    metrics = health["metrics"]
    core_p99 = metrics["latency_us"]["p99"]
    rows = []
    streams: Mapping[str, Any] = health["streams"]
    if not streams:
        rows.append(f"{exchange:<8} {'(no message yet)':<48} {'':<9} {'':>8} {'':>9} {'':>9} "
                    f"{format_number(core_p99, 8, 0)} {health['state']:<12} {metrics['reconnections']:>6} "
                    f"{metrics['sequence_gaps']:>8}")
    for name, stream in streams.items():
        event = stream.get("event_latency_ms") or {}
        rows.append(f"{exchange:<8} {name[:48]:<48} {stream['type'][:9]:<9} "
                    f"{format_number(stream['messages_per_second'], 8, 0)} {format_number(event.get('p50'), 9, 2)} "
                    f"{format_number(event.get('p99'), 9, 2)} {format_number(core_p99, 8, 0)} {health['state']:<12} "
                    f"{metrics['reconnections']:>6} {stream.get('sequence_gaps', 0):>8}")
    return rows


def _side_cell(level: Optional[tuple[str, str]], price_first: bool) -> str:
    if level is None:
        return f"{'':>16} {'':>18}"
    price, qty = level
    return f"{qty:>16} {price:>18}" if price_first is False else f"{price:<18} {qty:<16}"


def book_lines(exchange: str, book: Any, health: Optional[Mapping[str, Any]], depth: int,
               updates_per_second: Optional[float] = None) -> list[str]:
    """A book's lines in a live view: a status line, then ``depth`` rows of bids beside asks.

    Args:
        exchange: The exchange's name.
        book: An ``OrderBook`` (``fastws.book``), read at the call; while
            invalid, a line says why.
        health: Its entry of ``health_check()["books"]`` (resyncs, seconds
            invalid, last reason), or None.
        depth: Levels shown per side (0: the status line only).
        updates_per_second: The applied updates' rate, when measured.

    The status line gives validity, the update id, the update rate, the
    resyncs, the best bid and ask, the spread (absolute and in basis points of the mid) and the
    levels per side; prices and quantities are the book's exact decimals.
    """
    health = health or {}
    state = "valid" if book.valid else "INVALID"
    bid, ask = book.best_bid(), book.best_ask()
    spread = "-"
    if bid is not None and ask is not None:
        exact_bid, exact_ask = book.bids_exact(1)[0][0], book.asks_exact(1)[0][0]
        spread = f"{_decimal_difference(exact_ask, exact_bid)}"
        mid = (bid[0] + ask[0]) / 2
        if mid > 0:
            spread += f" ({(ask[0] - bid[0]) / mid * 1e4:.3g} bps)"
    best = "-"
    if bid is not None and ask is not None:
        best = f"{_plain(book.bids_exact(1)[0][0])} / {_plain(book.asks_exact(1)[0][0])}"
    lines = [f"{exchange} {book.symbol}: {state}, update {book.update_id}, "
             f"{format_number(updates_per_second, 0, 0).strip()} upd/s, "
             f"resyncs {health.get('resyncs', 0)}, invalid {health.get('seconds_invalid', 0.0):.1f} s, "
             f"bid/ask {best}, spread {spread}, levels {book.bid_count}/{book.ask_count}"]
    if not book.valid:
        lines.append(f"  why: {health.get('last_reason') or 'not synced yet'}")
    if depth > 0:
        bids, asks = book.bids_exact(depth), book.asks_exact(depth)
        lines.append(f"  {'bid qty':>16} {'bid':>18} | {'ask':<18} {'ask qty'}")
        for index in range(max(len(bids), len(asks))):
            left = _side_cell(bids[index] if index < len(bids) else None, False)
            right = _side_cell(asks[index] if index < len(asks) else None, True)
            lines.append(f"  {left} | {right}".rstrip())
    return lines


def _plain(value: Decimal | str) -> str:
    """A decimal without trailing zeros (``"0.02000000"`` -> ``"0.02"``), never in exponent form."""
    return format(Decimal(value).normalize(), "f")


def _decimal_difference(high: str, low: str) -> str:
    """``high - low`` of two decimal strings, exactly, without trailing zeros."""
    return _plain(Decimal(high) - Decimal(low))


def write_progress(stream: TextIO, line: str, final: bool) -> None:
    """A progress line: rewritten in place on a terminal, one line per update otherwise.

    ``final`` ends the line on a terminal (the last update stays); elsewhere
    the final update is left to the command's own summary.
    """
    if stream.isatty():
        stream.write("\r\x1b[K" + line + ("\n" if final else ""))
    elif not final:
        stream.write(line + "\n")
    stream.flush()


class LiveView:
    """Prints health rows; on a terminal each refresh replaces the previous one.

    Args:
        out: Where to print.
        in_place: Redraw over the previous refresh (ANSI cursor moves); by
            default when ``out`` is a terminal. Otherwise each refresh is
            printed below the last, with the time, as a log would be.
    """

    def __init__(self, out: TextIO, in_place: Optional[bool] = None) -> None:
        self.out = out
        self.in_place = out.isatty() if in_place is None else in_place
        self._drawn = 0

    def refresh(self, elapsed: float, healths: Mapping[str, Mapping[str, Any]],
                note: Optional[str] = None, below: Sequence[str] = ()) -> None:
        """Show ``healths`` (client name to ``health_check()``) at ``elapsed`` seconds.

        ``below``: more lines shown under the streams' rows (the books' lines).
        """
        lines = [_HEADER]
        for name, health in healths.items():
            lines.extend(stream_rows(name, health))
        self.show(elapsed, [*lines, *below], note)

    def show(self, elapsed: float, lines: Sequence[str], note: Optional[str] = None) -> None:
        """Show ``lines`` under a ``t = <elapsed> s`` line, over the previous refresh on a terminal."""
        lines = [f"t = {elapsed:6.1f} s" + (f"   {note}" if note else ""), *lines]
        if self.in_place and self._drawn:
            # Up to the first line of the previous refresh, and clear below.
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._drawn = len(lines)

    def event(self, text: str) -> None:
        """Print a line that stays (a fault, a recovery) above the next refresh."""
        if self.in_place and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0
        self.out.write(text + "\n")
        self.out.flush()
