"""Finding the adapter to verify (``MODULE:CLASS`` or a registered exchange) and its compliance profile."""
from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Optional

from fastws.registry import RegistryError, entry_for_client, get_exchange
from fastws.verify.profile import ComplianceProfile


class AdapterLoadError(Exception):
    """``MODULE:CLASS`` does not name an importable class."""


def _resolve(target: str) -> Any:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise AdapterLoadError("expected MODULE:CLASS (e.g. mypackage.client:MyWebSocket) "
                               "or the name of a registered exchange")
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
    """The class named by ``"module:Class"``, or the client of the registered exchange ``target``.

    Raises:
        AdapterLoadError: the module does not import or has no such class; no
            registered exchange of that name.
    """
    if ":" not in target:
        try:
            return get_exchange(target).client
        except RegistryError as exc:
            raise AdapterLoadError(str(exc)) from None
    value = _resolve(target)
    if not isinstance(value, type):
        raise AdapterLoadError(f"{target} is not a class ({type(value).__name__})")
    return value


def profile_of(cls: type) -> Optional[ComplianceProfile]:
    """The adapter's compliance profile, None when it has none.

    The class's ``compliance`` attribute, else its registered exchange's
    (``fastws.registry``: the entry whose client ``cls`` is or derives from). A
    profile that names no simulator gets that exchange's simulator (built with
    the profile's ``simulator_options``) and its URL.
    """
    profile = getattr(cls, "compliance", None)
    entry = entry_for_client(cls)
    if not isinstance(profile, ComplianceProfile):
        profile = entry.compliance if entry is not None else None
    if profile is None or profile.simulator is not None or entry is None or entry.simulator is None:
        return profile
    return dataclasses.replace(
        profile, simulator=functools.partial(entry.simulator, **dict(profile.simulator_options)),
        simulator_url=entry.simulator_url)
