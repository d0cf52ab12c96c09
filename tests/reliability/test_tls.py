"""TLS: wss:// verifies certificates and host names; secrets stay out of logs and health checks."""
from __future__ import annotations

import logging
import ssl
from typing import Any

import pytest
import trustme

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from exchanges.mexc import MexcWebSocket, mexc_config
from exchanges.mexc.simulator import MexcSimulator
from fastws import ConnectionFailedError, ConnectionState, ExchangeName
from tests.integration.test_binance import Sink


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A private certificate authority, made for these tests."""
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def tls_simulator(ca: trustme.CA, *names: str) -> BinanceSimulator:
    sim = BinanceSimulator(rate=0)
    sim.ssl_context = server_context(ca, *names)
    await sim.start()
    return sim


def binance(sim: BinanceSimulator, sink: Sink, **overrides: Any) -> BinanceWebSocket:
    overrides.setdefault("max_reconnect_attempts", 1)
    overrides.setdefault("reconnect_delay", 0.05)
    return BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url, **overrides),
                            sink.on_message, sink.on_error)


async def test_a_trusted_certificate_connects_over_wss(ca: trustme.CA) -> None:
    sim = await tls_simulator(ca, "127.0.0.1")
    sink = Sink()
    try:
        assert sim.url.startswith("wss://")
        async with binance(sim, sink, ssl_context=client_context(ca)) as ws:
            await ws.subscribe(["btcusdt@trade"])
            sim.step(5)
            await sink.wait(lambda: len(sink.messages) > 0)
            assert ws.state is ConnectionState.CONNECTED
    finally:
        await sim.stop()


@pytest.mark.parametrize("case", ["untrusted certificate", "wrong host name"])
async def test_a_bad_certificate_fails_clearly_and_never_downgrades(ca: trustme.CA, case: str) -> None:
    names = ("127.0.0.1",) if case == "untrusted certificate" else ("exchange.example.org",)
    sim = await tls_simulator(ca, *names)
    sink = Sink()
    # Untrusted: the system's CAs only. Wrong host: our CA, but a certificate for another name.
    overrides = {} if case == "untrusted certificate" else {"ssl_context": client_context(ca)}
    try:
        ws = binance(sim, sink, **overrides)
        with pytest.raises(ConnectionFailedError):
            await ws.start()
        await ws.stop()
        assert sim.connection_count == 0            # no WebSocket was ever accepted, TLS or not
        failures = [str(e) for e in sink.errors]
        assert failures and all("CERTIFICATE_VERIFY_FAILED" in f or "certificate verify failed" in f
                                for f in failures[:-1]), failures
    finally:
        await sim.stop()


def test_an_ssl_context_with_a_plain_url_is_refused() -> None:
    with pytest.raises(ValueError):
        binance_config("ws://127.0.0.1:1", ssl_context=ssl.create_default_context())


async def test_a_listen_key_never_reaches_logs_or_health(mexc_simulator: MexcSimulator,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    secret = "LISTENKEY-7f3a9c1e5b2d4a6f8e0c"
    sink = Sink()
    caplog.set_level(logging.DEBUG)
    ws = MexcWebSocket(ExchangeName("mexc"), mexc_config(mexc_simulator.ws_url()), sink.on_message,
                       sink.on_error, listen_key=secret)
    async with ws:
        await ws.subscribe(["spot@private.orders.v3.api.pb"])
        mexc_simulator.drop(1001)
        await mexc_simulator.wait_connections(2)
        health = await ws.health_check()
    assert mexc_simulator.connections == [] or all(c.listen_key == secret for c in mexc_simulator.connections)
    assert secret not in repr(health)
    assert secret not in caplog.text
    assert all(secret not in str(e) for e in sink.errors)
