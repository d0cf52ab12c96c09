"""Finishing a coroutine that the frame core started and that suspended.

The core drives ``async`` parsers and handlers with ``send(None)`` so that one
which completes at once costs no Task. When one suspends, it has already
yielded a future; the Task that finishes it must wait on that same future and
then resume the coroutine where it stopped, which is what
:func:`continue_coroutine` does.
"""
from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any


@types.coroutine
def continue_coroutine(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """Resume ``coro``, which has already yielded ``yielded``, to completion.

    Awaited from a Task: the Task waits on each yielded future exactly as if it
    had run ``coro`` from the start; a cancellation is thrown into ``coro``.

    Returns:
        The coroutine's return value.
    """
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # noqa: BLE001 - forwarded into the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value
