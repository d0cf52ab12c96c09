"""Through real proxies on 127.0.0.1: tinyproxy (HTTP CONNECT) and dante (SOCKS5).

The Binance simulator (``ws://`` and ``wss://`` with a trustme certificate)
sits behind the proxy; each test starts its proxy process on a free port and
ends it after. That the proxy carried the stream is checked from both ends:
the client's socket is connected to the proxy's port, and the proxy logged
the tunnel to the simulator's port.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from typing import Any, AsyncIterator, Iterator, Optional

import pytest
import trustme

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from fastws import (ConnectionFailedError, ConnectionState, ExchangeName, ExchangeTimeoutError,
                    ProxyFailedError)
from fastws.testing.proxies import (DanteProxy, ProxyProcess, TinyProxy, free_port, process_group,
                                    throwaway_user)
from tests.conftest import open_fds, other_tasks, until
from tests.integration.test_binance import Sink
from tests.reliability.test_rotation import BINANCE_STREAMS, Recorder, check_binance, drive, settle

STREAM = "btcusdt@trade"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A private certificate authority, made for these tests."""
    return trustme.CA()


@pytest.fixture(scope="module")
def proxy_user() -> Iterator[tuple[str, str]]:
    """A system user for dante's username authentication, removed after the module."""
    # URL delimiters in the password: they must travel percent-encoded and arrive intact.
    with throwaway_user(f"p@ss:w/rd%{secrets.token_hex(6)}") as user:
        yield user


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@contextlib.asynccontextmanager
async def simulator(ca: Optional[trustme.CA] = None, *names: str) -> AsyncIterator[BinanceSimulator]:
    """A Binance simulator, ``wss://`` with a certificate for ``names`` when ``ca`` is given."""
    sim = BinanceSimulator(rate=0)
    if ca is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*(names or ("127.0.0.1",))).configure_cert(context)
        sim.ssl_context = context
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def make_proxy(kind: str, sim: BinanceSimulator, user: Optional[str] = None,
               password: Optional[str] = None) -> ProxyProcess:
    if kind == "http":
        return TinyProxy(allow_ports=[sim.port], user=user, password=password)
    return DanteProxy(user=user, password=password, scheme=kind)


def binance(sim: BinanceSimulator, sink: Sink, proxy: str, **overrides: Any) -> BinanceWebSocket:
    overrides.setdefault("max_reconnect_attempts", 3)
    overrides.setdefault("reconnect_delay", 0.05)
    overrides.setdefault("healthy_after", 0.05)
    overrides.setdefault("timeout", 5.0)
    return BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url, proxy=proxy, **overrides),
                            sink.on_message, sink.on_error)


def tunnels(proxy: ProxyProcess, sim: BinanceSimulator) -> int:
    """How many tunnels to ``sim`` the proxy logged."""
    log = proxy.log_text()
    if isinstance(proxy, TinyProxy):
        return log.count(f"CONNECT 127.0.0.1:{sim.port} ")
    return sum("tcp/connect" in line and line.endswith(f" 127.0.0.1.{sim.port}") for line in log.splitlines())


def carried(proxy: ProxyProcess, ws: BinanceWebSocket, sim: BinanceSimulator) -> None:
    """Assert that the live connection goes through ``proxy`` to ``sim``."""
    peer = ws._ws.underlying_transport.get_extra_info("peername")
    assert peer[1] == proxy.port, f"the client's socket is connected to {peer}, not to the proxy"
    assert tunnels(proxy, sim) >= 1, proxy.log_text()


async def receive(ws: BinanceWebSocket, sim: BinanceSimulator, sink: Sink, count: int = 5) -> None:
    """Publish ``count`` steps and wait until messages beyond those seen so far arrive."""
    seen = len(sink.messages)
    await sim.wait_subscribed([STREAM])
    sim.step(count)
    await until(lambda: len(sink.messages) > seen, what="messages through the proxy")


@pytest.mark.parametrize("kind, tls", [("http", False), ("http", True), ("socks5", False), ("socks5", True),
                                       ("socks4", False)])
async def test_a_stream_flows_through_the_proxy(ca: trustme.CA, kind: str, tls: bool) -> None:
    async with simulator(ca if tls else None) as sim:
        async with make_proxy(kind, sim) as proxy:
            sink = Sink()
            extra = {"ssl_context": client_context(ca)} if tls else {}
            async with binance(sim, sink, proxy.url, **extra) as ws:
                assert sim.url.startswith("wss://" if tls else "ws://")
                await ws.subscribe([STREAM])
                await receive(ws, sim, sink)
                carried(proxy, ws, sim)
                assert ws.state is ConnectionState.CONNECTED
            assert not sink.errors, sink.errors


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_the_exchange_certificate_is_checked_through_the_tunnel(ca: trustme.CA, kind: str) -> None:
    # The simulator's certificate names another host: TLS inside the tunnel must refuse it.
    async with simulator(ca, "exchange.example.org") as sim, make_proxy(kind, sim) as proxy:
        sink = Sink()
        ws = binance(sim, sink, proxy.url, ssl_context=client_context(ca))
        with pytest.raises(ConnectionFailedError):
            await ws.start()
        await ws.stop()
        assert sim.connection_count == 0 and tunnels(proxy, sim) == 1      # the tunnel opened, TLS in it failed
        failure = sink.errors[0]
        assert isinstance(failure, ProxyFailedError) and failure.stage == "through", failure
        assert "CERTIFICATE_VERIFY_FAILED" in str(failure) or "certificate verify failed" in str(failure)
        assert not failure.retryable and ws._reconnection.attempts == 1      # not retried


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_the_right_credentials_open_the_tunnel(proxy_user: tuple[str, str], kind: str) -> None:
    # tinyproxy's configuration takes only plain passwords; dante's system user has delimiters in it.
    user, password = proxy_user if kind == "socks5" else ("trader", "right-pass_1")
    async with simulator() as sim, make_proxy(kind, sim, user, password) as proxy:
        sink = Sink()
        assert "%40" in proxy.url or kind == "http"
        async with binance(sim, sink, proxy.url) as ws:
            await ws.subscribe([STREAM])
            await receive(ws, sim, sink)
            carried(proxy, ws, sim)


@pytest.mark.parametrize("credentials", ["wrong password", "none"])
@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_refused_credentials_fail_at_once_naming_the_proxy(proxy_user: tuple[str, str], kind: str,
                                                               credentials: str) -> None:
    user, password = proxy_user if kind == "socks5" else ("trader", "right-password")
    async with simulator() as sim, make_proxy(kind, sim, user, password) as proxy:
        sink = Sink()
        url = proxy.url_with(user, "wrong-password") if credentials == "wrong password" else proxy.url_with(None, None)
        ws = binance(sim, sink, url, max_reconnect_attempts=5)
        with pytest.raises(ConnectionFailedError):
            await ws.start()
        await ws.stop()
        assert ws.state is ConnectionState.CLOSED and sim.connection_count == 0
        failures = [e for e in sink.errors if isinstance(e, ProxyFailedError)]
        assert len(failures) == 1, sink.errors          # one attempt: wrong credentials are not retried
        failure = failures[0]
        assert failure.stage == "tunnel" and not failure.retryable
        assert "credentials" in failure.message and f"127.0.0.1:{proxy.port}" in failure.message
        if kind == "http":
            assert failure.status in (401, 407)     # tinyproxy answers a CONNECT with 401
        if credentials == "wrong password":
            assert failure.proxy == f"{kind}://***@127.0.0.1:{proxy.port}"
            assert "wrong-password" not in str(failure) and user not in str(failure)


async def test_a_tunnel_the_proxy_forbids_fails_with_its_status() -> None:
    async with simulator() as sim, TinyProxy(allow_ports=[sim.port + 1 if sim.port < 65535 else 1]) as proxy:
        sink = Sink()
        ws = binance(sim, sink, proxy.url)
        with pytest.raises(ConnectionFailedError):
            await ws.start()
        await ws.stop()
        failure = sink.errors[0]
        assert isinstance(failure, ProxyFailedError), failure
        assert (failure.stage, failure.status, failure.retryable) == ("tunnel", 403, False)
        assert f"did not open a tunnel to 127.0.0.1:{sim.port}" in failure.message
        assert len([e for e in sink.errors if isinstance(e, ProxyFailedError)]) == 1


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_a_proxy_that_refuses_connections_is_retried_then_fails(kind: str) -> None:
    port = free_port()      # nothing listens there
    async with simulator() as sim:
        sink = Sink()
        ws = binance(sim, sink, f"{kind}://user:hunter2secret@127.0.0.1:{port}", max_reconnect_attempts=3)
        with pytest.raises(ConnectionFailedError):
            await ws.start()
        await ws.stop()
        failures = [e for e in sink.errors if isinstance(e, ProxyFailedError)]
        assert len(failures) == 1 + 3, sink.errors    # the attempt, then max_reconnect_attempts retries
        for failure in failures:
            assert failure.stage == "connect" and failure.retryable
            assert f"cannot reach the proxy {kind}://***@127.0.0.1:{port}" in failure.message
            assert "hunter2secret" not in str(failure)


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_a_proxy_killed_mid_stream_reconnects_through_the_restarted_proxy(kind: str) -> None:
    async with simulator() as sim, make_proxy(kind, sim) as proxy:
        sink = Sink()
        async with binance(sim, sink, proxy.url, max_reconnect_attempts=0, max_reconnect_delay=0.2) as ws:
            await ws.subscribe([STREAM])
            await receive(ws, sim, sink)
            proxy.kill()
            await until(lambda: ws.state is not ConnectionState.CONNECTED, what="the drop seen")
            # While the proxy is down, each attempt fails naming it, and is retried.
            await until(lambda: any(isinstance(e, ProxyFailedError) for e in sink.errors),
                        what="a failed attempt through the dead proxy")
            refused = [e for e in sink.errors if isinstance(e, ProxyFailedError)]
            # Refused ("connect"), or reset by the dying proxy after it accepted ("through").
            assert all(e.retryable and e.proxy == proxy.url for e in refused), refused
            await proxy.start()
            await ws.wait_for_state(ConnectionState.CONNECTED, timeout=10)
            await receive(ws, sim, sink)
            carried(proxy, ws, sim)
            health = await ws.health_check()
            gaps = health["gaps"]
            assert len(gaps) == 1 and gaps[0]["end"] is not None, gaps
            assert f"through the proxy {kind}://127.0.0.1:{proxy.port}" in gaps[0]["reason"]
            assert proxy.starts == 2 and health["metrics"]["reconnections"] == 1
            assert health["proxy"] == proxy.url


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_rotation_through_the_proxy_loses_and_repeats_nothing(kind: str) -> None:
    # Make-before-break opens each replacement through the same proxy, while the old tunnel still delivers.
    sim = BinanceSimulator(rate=0)
    await sim.start()
    try:
        async with make_proxy(kind, sim) as proxy:
            recorder = Recorder()
            config = binance_config(sim.url, proxy=proxy.url, max_connection_age=0.5, healthy_after=0.05,
                                    reconnect_delay=0.05)
            async with BinanceWebSocket(ExchangeName("binance"), config, recorder.on_dict, recorder.on_error) as ws:
                await ws.subscribe(BINANCE_STREAMS)
                await drive(sim, 1.6)
                await settle(recorder)
                metrics = ws.metrics
                carried(proxy, ws, sim)
            assert recorder.errors == [] and ws.gaps == [] and ws.sequence_gaps == []
            check_binance(recorder)
            assert metrics["rotations"] >= 2 and sim.connection_count == metrics["rotations"] + 1
            assert tunnels(proxy, sim) == sim.connection_count
    finally:
        await sim.stop()


@pytest.mark.parametrize("behaviour", ["hangs up", "never answers"])
@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_a_proxy_that_hangs_up_or_never_answers_is_an_attempt_that_failed(kind: str, behaviour: str) -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)            # the first byte of the CONNECT or SOCKS greeting
        if behaviour == "hangs up":
            writer.close()
        else:
            held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with simulator() as sim:
            sink = Sink()
            ws = binance(sim, sink, f"{kind}://127.0.0.1:{port}", max_reconnect_attempts=1, timeout=0.5)
            with pytest.raises(ConnectionFailedError):
                await asyncio.wait_for(ws.start(), 10)
            await ws.stop()
            assert len(sink.errors) == 1 + 1 + 1, sink.errors     # two attempts, then "gave up"
            for failure in sink.errors[:2]:
                if behaviour == "hangs up":
                    assert isinstance(failure, ProxyFailedError), failure
                    assert (failure.stage, failure.retryable) == ("tunnel", True)
                    assert f"the proxy {kind}://127.0.0.1:{port} did not open a tunnel" in failure.message
                else:
                    assert isinstance(failure, ExchangeTimeoutError), failure
                    assert f"no connection within 0.5 s to {sim.url} through the proxy {kind}://127.0.0.1:{port}" \
                        in failure.message
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_an_https_proxy_is_reached_over_tls(ca: trustme.CA) -> None:
    async with simulator(ca) as sim, TinyProxy(allow_ports=[sim.port]) as proxy, \
            tls_front(ca, proxy.port) as front:
        sink = Sink()
        url = f"https://127.0.0.1:{front}"
        async with binance(sim, sink, url, ssl_context=client_context(ca),
                           proxy_ssl_context=client_context(ca)) as ws:
            await ws.subscribe([STREAM])
            await receive(ws, sim, sink)
            assert ws._ws.underlying_transport.get_extra_info("peername")[1] == front
            assert f"CONNECT 127.0.0.1:{sim.port} " in proxy.log_text()


@contextlib.asynccontextmanager
async def tls_front(ca: trustme.CA, port: int) -> AsyncIterator[int]:
    """A TLS listener on a free port that forwards each connection to 127.0.0.1:``port``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    pipes: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        for task in (pipe(reader, up_writer), pipe(up_reader, writer)):
            pipes.add(asyncio.ensure_future(task))

    server = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await server.wait_closed()


async def test_credentials_never_reach_logs_errors_repr_or_health(proxy_user: tuple[str, str],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    secrets_used: list[str] = []
    async with simulator() as sim:
        for kind in ("http", "socks5"):
            # tinyproxy's configuration takes only plain passwords.
            user, password = proxy_user if kind == "socks5" else ("trader", f"tiny{secrets.token_hex(8)}")
            secrets_used += [password, password[::-1]]
            async with make_proxy(kind, sim, user, password) as proxy:
                sink = Sink()
                # Wrong password first (refused), then the right one, then the proxy dies mid-stream.
                wrong = binance(sim, sink, proxy.url_with(user, password[::-1]))
                with pytest.raises(ConnectionFailedError):
                    await wrong.start()
                await wrong.stop()
                seen.append(repr(wrong.config))
                ws = binance(sim, sink, proxy.url, max_reconnect_attempts=0, max_reconnect_delay=0.2)
                async with ws:
                    await ws.subscribe([STREAM])
                    await receive(ws, sim, sink)
                    proxy.kill()
                    await until(lambda: sum(isinstance(e, ProxyFailedError) for e in sink.errors) >= 2,
                                what="attempts through the dead proxy")
                    seen.append(repr(await ws.health_check()))
                    await proxy.start()
                    await ws.wait_for_state(ConnectionState.CONNECTED, timeout=10)
                    health = await ws.health_check()
                    assert health["proxy"] == f"{kind}://***@127.0.0.1:{proxy.port}"
                    seen.append(repr(health))
                    seen.append(repr(ws.config))
                    seen.append(str(ws.config.proxy.redacted))
                for error in sink.errors:
                    cause: Optional[BaseException] = error
                    while cause is not None:
                        seen.append(f"{cause!s} {cause!r}")
                        cause = cause.__cause__ or cause.__context__
    seen += [f"{r.getMessage()} {r.exc_text or ''} {r.__dict__!r}" for r in caplog.records]
    assert len(caplog.records) > 10 and len(seen) > 10
    text = "\n".join(seen)
    assert "***@127.0.0.1" in text
    for secret in secrets_used:
        assert secret not in text


async def test_failed_attempts_through_proxies_leave_no_socket_task_or_process(proxy_user: tuple[str, str]) -> None:
    async with simulator() as sim, make_proxy("http", sim, "trader", "right-pass_1") as tiny, \
            make_proxy("socks5", sim, *proxy_user) as dante:
        held: list[asyncio.StreamWriter] = []       # a proxy that accepts and never answers
        mute = await asyncio.start_server(lambda reader, writer: held.append(writer), "127.0.0.1", 0)
        mute_url = f"socks5://127.0.0.1:{mute.sockets[0].getsockname()[1]}"
        cases = [tiny.url_with("trader", "wrong"), dante.url_with(proxy_user[0], "wrong"), tiny.url_with(None, None),
                 f"http://127.0.0.1:{free_port()}", mute_url, tiny.url, dante.url]
        before = open_fds()
        for url in cases:
            sink = Sink()
            ws = binance(sim, sink, url, max_reconnect_attempts=1, timeout=0.5)
            with contextlib.suppress(ConnectionFailedError):
                await ws.start()
            await ws.stop()
        for writer in held:         # the test's own server side of those connections
            writer.close()
        mute.close()
        await mute.wait_closed()
        await until(lambda: open_fds() <= before, what="every socket closed")
        assert not other_tasks()
        for proxy in (tiny, dante):
            assert proxy.running
        pids = [p._process.pid for p in (tiny, dante) if p._process is not None]
    assert pids and all(process_group(pid) == [] for pid in pids)    # each proxy's whole process group is gone


async def test_a_proxy_that_cannot_start_says_why_and_leaves_nothing() -> None:
    class Misconfigured(TinyProxy):
        def _config(self) -> str:
            return "NoSuchDirective 1\n"

    proxy = Misconfigured(allow_ports=[1])
    with pytest.raises(RuntimeError, match="(?s)tinyproxy did not start on port .*Syntax error"):
        async with proxy:
            pass
    assert not proxy.running and not proxy._folder.exists()
