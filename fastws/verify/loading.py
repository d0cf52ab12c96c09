"""Finding the adapter named ``MODULE:CLASS`` and its compliance profile."""
from __future__ import annotations

import importlib
from typing import Any, Optional

from fastws.verify.profile import ComplianceProfile


class AdapterLoadError(Exception):
    """``MODULE:CLASS`` does not name an importable class."""


def _resolve(target: str) -> Any:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise AdapterLoadError("expected MODULE:CLASS, e.g. exchanges.binance:BinanceWebSocket")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:   # an import error, or any error the module raised while importing
        raise AdapterLoadError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from exc
    value = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise AdapterLoadError(f"{module_name!r} has no attribute {attribute!r}") from None
    return value


def load_adapter(target: str) -> type:
    """The class named by ``"module:Class"``.

    Raises:
        AdapterLoadError: the module does not import or has no such class.
    """
    value = _resolve(target)
    if not isinstance(value, type):
        raise AdapterLoadError(f"{target} is not a class ({type(value).__name__})")
    return value


def profile_of(cls: type) -> Optional[ComplianceProfile]:
    """The adapter's ``compliance`` profile, None when it declares none."""
    profile = getattr(cls, "compliance", None)
    return profile if isinstance(profile, ComplianceProfile) else None
