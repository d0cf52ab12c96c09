"""fastws.registry: exchanges found by name through the ``fastws.exchanges`` entry points."""
from __future__ import annotations

from pathlib import Path

import pytest

from exchanges.binance import BinanceWebSocket
from exchanges.binance.simulator import BinanceSimulator
from exchanges.mexc import MexcWebSocket
from exchanges.mexc.simulator import MexcSimulator
from fastws.registry import (ExchangeEntry, ExchangeLoadError, UnknownExchangeError, entry_for_client,
                             exchange_names, get_exchange, load_exchanges)
from fastws.testing.replay import ReplayProfile
from fastws.verify import ComplianceProfile, profile_of
from tests.conftest import installed_distribution
from tests.integration import broken_adapter


def test_the_shipped_exchanges_are_registered() -> None:
    assert {"binance", "mexc"} <= set(exchange_names())
    binance, mexc = get_exchange("binance"), get_exchange("Mexc")
    assert (binance.client, binance.simulator, binance.typed) == (BinanceWebSocket, BinanceSimulator, True)
    assert (mexc.client, mexc.simulator, mexc.typed) == (MexcWebSocket, MexcSimulator, False)
    for entry in (binance, mexc):
        assert isinstance(entry, ExchangeEntry)
        assert isinstance(entry.replay, ReplayProfile) and entry.replay.name == entry.name
        assert isinstance(entry.compliance, ComplianceProfile) and entry.compliance.exchange == entry.name
        assert entry.compliance.simulator is None       # the registry knows the simulator
        assert len(entry.demo_streams) == 4
        assert entry.config().url.startswith("wss://")  # the public endpoint by default


def test_an_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(UnknownExchangeError, match=r"unknown exchange 'kraken' \(known: binance, mexc"):
        get_exchange("kraken")


@pytest.mark.parametrize("value, message", [
    ("tests.no_such_module:EXCHANGE", "cannot load exchange 'broken' .*ModuleNotFoundError"),
    ("fastws.registry:ENTRY_POINT_GROUP", "exchange 'broken' .* is a str, not an ExchangeEntry"),
])
def test_an_entry_that_does_not_load_is_named(tmp_path: Path, value: str, message: str) -> None:
    with installed_distribution(tmp_path, "broken-exchange", f"[fastws.exchanges]\nbroken = {value}\n"):
        assert "broken" in exchange_names()        # listed without importing it
        with pytest.raises(ExchangeLoadError, match=message):
            get_exchange("broken")
        with pytest.raises(ExchangeLoadError):
            load_exchanges()
        # Looking up a client passes over the entry that does not load.
        entry = entry_for_client(BinanceWebSocket)
        assert entry is not None and entry.name == "binance"
    assert "broken" not in exchange_names()


def test_a_client_subclass_finds_its_exchange_and_its_simulator() -> None:
    entry = entry_for_client(broken_adapter.KeyErrorAdapter)
    assert entry is not None and entry.name == "binance"
    assert entry_for_client(broken_adapter.PlainAdapter) is None
    profile = profile_of(broken_adapter.KeyErrorAdapter)
    assert profile is not None and callable(profile.simulator)
    simulator = profile.simulator()
    assert isinstance(simulator, BinanceSimulator) and simulator.rate == 0
    assert profile_of(broken_adapter.PlainAdapter) is None
