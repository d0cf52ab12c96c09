"""Static checks: the subclass, the four methods and their signatures."""
from __future__ import annotations

import inspect
from typing import Any, Optional

from fastws.base import BaseWebSocketInterface
from fastws.verify.report import Status, VerificationReport


# The four methods of the standard: positional arguments after self, and
# whether they must be ``async def`` (True), plain ``def`` (False) or either.
_STANDARD: dict[str, tuple[int, Optional[bool], str]] = {
    "_connect": (0, True, "async def _connect(self) -> None"),
    "_send_subscription_message": (2, True, "async def _send_subscription_message(self, streams, action)"),
    "_parse_message": (1, None, "[async] def _parse_message(self, raw_message)"),
    "_extract_stream_info": (1, False, "def _extract_stream_info(self, message)"),
}


def _check_signature(cls: type, name: str) -> tuple[Status, str]:
    positional, is_async, standard = _STANDARD[name]
    static = inspect.getattr_static(cls, name, None)
    if static is None:
        return Status.FAILED, "missing"
    if isinstance(static, (staticmethod, classmethod)):
        return Status.FAILED, f"must be an instance method: {standard}"
    method = getattr(cls, name)
    if getattr(method, "__isabstractmethod__", False):
        return Status.FAILED, f"not implemented: {standard}"
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return Status.FAILED, f"signature unreadable; the standard: {standard}"
    try:
        signature.bind(object(), *([None] * positional))
    except TypeError as exc:
        return Status.FAILED, f"{name}{signature} cannot be called as {standard} ({exc})"
    coroutine = inspect.iscoroutinefunction(method)
    if inspect.isasyncgenfunction(method):
        return Status.FAILED, f"{name} is an async generator; the standard: {standard}"
    if is_async is True and not coroutine:
        return Status.FAILED, f"must be async def: {standard}"
    if is_async is False and coroutine:
        return Status.FAILED, f"must be a plain def (the core calls it synchronously): {standard}"
    plain = signature.replace(parameters=[p.replace(annotation=inspect.Parameter.empty)
                                          for p in signature.parameters.values()],
                              return_annotation=inspect.Signature.empty)
    return Status.PASSED, f"{'async ' if coroutine else ''}def {name}{plain}"


def _static_checks(cls: Any, report: VerificationReport) -> bool:
    """Subclass, abstract methods, signatures; True when the class may be built."""
    if not (isinstance(cls, type) and issubclass(cls, BaseWebSocketInterface)):
        report.add("subclass of BaseWebSocketInterface", Status.FAILED, f"{cls!r} is not a subclass")
        return False
    report.add("subclass of BaseWebSocketInterface", Status.PASSED,
               " -> ".join(c.__name__ for c in cls.__mro__ if issubclass(c, BaseWebSocketInterface)))
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    report.add("abstract methods implemented", Status.FAILED if abstract else Status.PASSED,
               f"still abstract: {', '.join(abstract)}" if abstract else "none left abstract")
    signatures_ok = True
    for name in _STANDARD:
        status, detail = _check_signature(cls, name)
        signatures_ok = report.add(f"signature {name}", status, detail) and signatures_ok
    return not abstract and signatures_ok
