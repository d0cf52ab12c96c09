"""Prometheus export end to end: a real Prometheus server scrapes clients fed by the simulators.

A ``prometheus`` process (the Debian package; ``scripts/install_test_servers.sh``)
is started per test with a temporary config and storage directory on a free
port of 127.0.0.1, scrapes ``fastws.metrics.serve()`` every 200 ms, and the
test reads the values back through its query API (``/api/v1/query``).
"""
from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from exchanges.binance import BinanceWebSocket, binance_config
from exchanges.binance.simulator import BinanceSimulator
from fastws import ExchangeName
from fastws.metrics import ClientRegistry, MetricsServer, serve
from tests.conftest import open_fds, other_tasks, run_fastws, until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "dashboards" / "fastws.json"
STREAMS = ["btcusdt@depth", "ethusdt@depth@100ms", "btcusdt@trade", "ethusdt@aggTrade"]

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None,
                                reason="the prometheus binary is missing: run scripts/install_test_servers.sh")


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrometheusServer:
    """A real Prometheus scraping ``target`` (host:port) every ``interval``, in ``directory``."""

    def __init__(self, directory: Path, target: str, interval: str = "200ms") -> None:
        self.directory = directory
        self.target = target
        self.interval = interval
        self.port = 0
        self._process: Optional[asyncio.subprocess.Process] = None
        self._session: Optional[aiohttp.ClientSession] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        config = self.directory / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {self.interval}\n  scrape_timeout: {self.interval}\n"
            f"scrape_configs:\n  - job_name: fastws\n    static_configs:\n"
            f"      - targets: ['{self.target}']\n")
        self.port = free_port()
        self._log = open(self.directory / "prometheus.log", "wb")
        self._process = await asyncio.create_subprocess_exec(
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
            stdout=self._log, stderr=self._log)
        self._session = aiohttp.ClientSession()
        deadline = time.monotonic() + timeout
        while True:
            assert self._process.returncode is None, f"prometheus exited: {self.log()}"
            try:
                async with self._session.get(f"{self.url}/-/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready after {timeout} s: {self.log()}"
            await asyncio.sleep(0.1)

    def log(self) -> str:
        return (self.directory / "prometheus.log").read_text(errors="replace")[-2000:]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now."""
        assert self._session is not None
        async with self._session.get(f"{self.url}/api/v1/query", params={"query": expr}) as response:
            body = await response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def values(self, expr: str) -> dict[str, float]:
        """``expr``'s samples by their ``stream`` label (or ``""``)."""
        return {r["metric"].get("stream", ""): float(r["value"][1]) for r in await self.query(expr)}

    async def wait_value(self, expr: str, expected: Callable[[], float], timeout: float = 15.0) -> float:
        """Wait until the single sample of ``expr`` equals ``expected()``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = await self.query(expr)
            value = float(result[0]["value"][1]) if len(result) == 1 else None
            if value == expected():
                return value
            assert time.monotonic() < deadline, f"{expr} = {value}, expected {expected()} after {timeout} s"
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10.0)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
        self._log.close()


async def wait_at_least(prometheus: PrometheusServer, expr: str, least: float, timeout: float = 15.0) -> float:
    """Wait until the single sample of ``expr`` is at least ``least``; return it."""
    deadline = time.monotonic() + timeout
    while True:
        result = await prometheus.query(expr)
        if len(result) == 1 and float(result[0]["value"][1]) >= least:
            return float(result[0]["value"][1])
        assert time.monotonic() < deadline, f"{expr} = {result}, not >= {least} after {timeout} s"
        await asyncio.sleep(0.1)


class Endpoint:
    """GETs of ``/metrics`` and ``/healthz`` of a ``MetricsServer``."""

    def __init__(self, server: MetricsServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of a scrape: (name, sorted labels) -> value."""
        async with self.session.get(self.server.url + "/metrics") as response:
            assert response.status == 200
            text = await response.text()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.server.url + "/healthz") as response:
            return response.status, json.loads(await response.text())


def stream_values(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict[str, float]:
    return {dict(labels)["stream"]: value for (sample, labels), value in samples.items() if sample == name}


def binance_client(sim: BinanceSimulator, **overrides: Any) -> BinanceWebSocket:
    overrides.setdefault("reconnect_delay", 0.05)
    overrides.setdefault("healthy_after", 0.05)
    return BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url, **overrides), lambda *args: None)


async def delivered_all(sim: BinanceSimulator, ws: BinanceWebSocket) -> None:
    """Wait until the client has every data message the simulator sent."""
    await until(lambda: ws.metrics["messages_delivered"] == sum(sim.sent_counts.values()), 5.0, "all delivered")


@pytest.fixture
async def endpoint() -> AsyncIterator[Callable[..., Awaitable[Endpoint]]]:
    """A factory: ``await endpoint(client, ...)`` registers the clients and serves them on a free port."""
    servers: list[MetricsServer] = []
    session = aiohttp.ClientSession()

    async def make(*clients: Any, **options: Any) -> Endpoint:
        registry = ClientRegistry()
        for client in clients:
            registry.register(client)
        server = await serve(0, clients=registry, **options)
        servers.append(server)
        return Endpoint(server, session)

    yield make
    for server in servers:
        await server.close()
    await session.close()


async def test_prometheus_scrapes_what_health_check_reports(tmp_path: Path, endpoint: Any) -> None:
    async with BinanceSimulator(rate=0) as sim:
        ws = binance_client(sim, metrics_max_streams=2)
        async with ws:
            await ws.subscribe(STREAMS)
            served = await endpoint(ws)
            prometheus = PrometheusServer(tmp_path, f"127.0.0.1:{served.server.port}")
            await prometheus.start()
            try:
                sim.step(40)
                await delivered_all(sim, ws)
                health = await ws.health_check()
                received = health["metrics"]["messages_received"]
                await prometheus.wait_value('fastws_messages_received_total{exchange="binance"}', lambda: received)
                # One scrape holds every figure below: they are read back from Prometheus.
                assert await prometheus.values("fastws_messages_delivered_total") == {
                    "": health["metrics"]["messages_delivered"]}
                assert await prometheus.values("fastws_received_bytes_total") == {
                    "": health["metrics"]["bytes_received"]}
                assert await prometheus.values('fastws_handler_latency_seconds_bucket{le="+Inf"}') == {
                    "": health["metrics"]["messages_delivered"]}
                assert await prometheus.values("fastws_connected") == {"": 1.0}
                assert await prometheus.values('fastws_connection_state{state="connected"}') == {"": 1.0}
                assert await prometheus.values("fastws_subscriptions") == {"": len(STREAMS)}
                assert await prometheus.values("fastws_reconnections_total") == {"": 0.0}

                # The first two streams have their own series, the rest is summed.
                per_stream = {name: s["messages"] for name, s in health["streams"].items()}
                expected = {name: per_stream[name] for name in STREAMS[:2]}
                expected["_other"] = sum(per_stream[name] for name in STREAMS[2:])
                assert await prometheus.values("fastws_stream_messages_total") == expected
                assert await prometheus.values('fastws_stream_event_latency_seconds_bucket{le="+Inf"}') == expected
                assert await prometheus.values("fastws_streams_in_other") == {"": 2.0}
                p50 = await prometheus.values('histogram_quantile(0.5, fastws_stream_event_latency_seconds_bucket'
                                              '{stream="btcusdt@depth"})')
                reported = health["streams"]["btcusdt@depth"]["event_latency_ms"]["p50"] / 1000.0
                # Octave buckets, interpolated: the same bucket as the core's, within a factor 2.
                assert reported / 2 <= p50["btcusdt@depth"] <= reported * 2

                # The event loop blocked for a known time: the lag gauge shows it. The
                # monitor's timer fell due within the block's last loop_lag_interval.
                blocked = 0.4
                least = blocked - ws.config.loop_lag_interval
                time.sleep(blocked)
                lag = await wait_at_least(prometheus, 'fastws_event_loop_lag_seconds{quantile="1"}', least)
                max_ms = (await ws.health_check())["loop_lag"]["max_ms"]
                assert least <= lag <= max_ms / 1000.0 < 5.0
                p50 = await prometheus.values('fastws_event_loop_lag_seconds{quantile="0.5"}')
                assert p50[""] < least                 # one late wake-up among many on time

                # A drop: a reconnection, a closed gap, messages flow again.
                sim.drop(1001)
                await until(lambda: ws.metrics["reconnections"] == 1 and ws.is_connected and ws.gaps[-1].end is not None,
                            10.0, "reconnected")
                await sim.wait_subscribed(STREAMS)
                await prometheus.wait_value("fastws_reconnections_total", lambda: 1.0)
                assert await prometheus.values("fastws_gaps_total") == {"": 1.0}
                gap = ws.gaps[-1]
                assert gap.duration is not None
                seconds = await prometheus.values("fastws_gap_seconds_total")
                assert seconds[""] == pytest.approx(gap.duration)
            finally:
                await prometheus.stop()


async def test_healthz_is_200_while_connected_and_fresh_then_503_with_the_reason(endpoint: Any) -> None:
    sim = BinanceSimulator(rate=0)
    await sim.start()
    try:
        ws = binance_client(sim, reconnect_delay=0.05, max_reconnect_delay=0.1)
        async with ws:
            await ws.subscribe(STREAMS[:2])
            served = await endpoint(ws, max_message_age=0.5)
            sim.step(3)
            await delivered_all(sim, ws)
            status, body = await served.health()
            assert (status, body["healthy"], body["reasons"]) == (200, True, [])
            assert body["clients"]["binance"]["state"] == "connected"
            assert set(body["clients"]["binance"]["streams"]) == set(STREAMS[:2])

            # Connected, but the feed went quiet past max_message_age.
            await asyncio.sleep(0.7)
            status, body = await served.health()
            assert status == 503 and not body["healthy"]
            assert len(body["reasons"]) == 1
            assert re.fullmatch(r"binance: no message for \d+\.\d s \(limit 0\.5 s\)", body["reasons"][0])

            # The exchange goes away: not connected, with the drop's reason.
            await sim.stop()
            await until(lambda: not ws.is_connected, 5.0, "disconnected")
            status, body = await served.health()
            assert status == 503
            assert body["reasons"][0].startswith("binance: state ")
            assert "since a drop" in body["reasons"][0]
            assert body["clients"]["binance"]["is_connected"] is False
    finally:
        await sim.stop()


class BrokenHealthCheck(BinanceWebSocket):
    """A client whose health_check() raises while ``broken``."""

    broken = False

    async def health_check(self) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("book state corrupt")
        return await super().health_check()


async def test_a_client_whose_health_check_raises_is_reported_and_the_others_still_served(
        endpoint: Any) -> None:
    async with BinanceSimulator(rate=0) as sim:
        good = binance_client(sim)
        bad = BrokenHealthCheck(ExchangeName("binance"), binance_config(sim.url), lambda *args: None)
        async with good, bad:
            await good.subscribe(STREAMS[:1])
            await bad.subscribe(STREAMS[:1])
            served = await endpoint(good, bad)
            sim.step(3)
            await until(lambda: good.metrics["messages_delivered"] == bad.metrics["messages_delivered"] == 3)
            bad.broken = True
            status, body = await served.health()
            assert status == 503
            assert body["reasons"] == ["binance-2: health_check() failed: RuntimeError: book state corrupt"]
            assert body["clients"]["binance"]["is_connected"] is True
            samples = await served.samples()
            errors = {dict(labels)["connection"]: value for (name, labels), value in samples.items()
                      if name == "fastws_export_errors_total"}
            assert errors == {"binance": 0.0, "binance-2": 2.0}      # /healthz's read, then this scrape's
            received = {dict(labels)["connection"]: value for (name, labels), value in samples.items()
                        if name == "fastws_messages_received_total"}
            assert received["binance"] == received["binance-2"] == good.metrics["messages_received"]
            bad.broken = False
            status, body = await served.health()
            assert (status, body["reasons"]) == (200, [])


async def test_streams_past_the_cap_are_summed_and_keep_their_series(endpoint: Any) -> None:
    async with BinanceSimulator(rate=0) as sim:
        ws = binance_client(sim, metrics_max_streams=2)
        async with ws:
            await ws.subscribe(STREAMS)
            served = await endpoint(ws)
            sim.step(20)
            await delivered_all(sim, ws)
            samples = await served.samples()
            messages = stream_values(samples, "fastws_stream_messages_total")
            counts = {name: s.messages for name, s in ws._core.stream_stats().items()}
            assert messages == {STREAMS[0]: counts[STREAMS[0]], STREAMS[1]: counts[STREAMS[1]],
                                "_other": counts[STREAMS[2]] + counts[STREAMS[3]]}
            latency = stream_values(samples, "fastws_stream_event_latency_seconds_bucket")
            assert set(latency) == set(messages)

            # Unsubscribed, a stream gives its series up to the next one.
            await ws.unsubscribe(STREAMS[0])
            sim.step(5)
            await until(lambda: ws.metrics["messages_delivered"] == sum(sim.sent_counts.values()), 5.0)
            messages = stream_values(await served.samples(), "fastws_stream_messages_total")
            assert set(messages) == {STREAMS[1], STREAMS[2], "_other"}


async def test_a_stream_resubscribed_by_its_cadence_watchdog_is_counted(endpoint: Any) -> None:
    muted, flowing = "btcusdt@depth@100ms", "ethusdt@depth@100ms"
    async with BinanceSimulator(rate=20.0) as sim:
        ws = binance_client(sim, cadence_floor=0.5)
        async with ws:
            await ws.subscribe([muted, flowing])
            served = await endpoint(ws)
            def delivered(name: str) -> int:
                stats = ws._core.stream_stats().get(name) if ws._core is not None else None
                return 0 if stats is None else stats.messages

            await until(lambda: delivered(muted) >= 25 and delivered(flowing) >= 25, 15.0, "both streams delivering")
            sim.mute_stream(muted)
            await until(lambda: muted not in sim.muted_streams, 15.0, "the muted stream resubscribed")
            samples = await served.samples()
            health = await ws.health_check()
    resubscribes = stream_values(samples, "fastws_stream_resubscribes_total")
    assert resubscribes == {muted: health["cadence"][muted]["resubscribes"], flowing: 0.0}
    assert resubscribes[muted] >= 1
    expected = stream_values(samples, "fastws_stream_expected_interval_seconds")
    assert expected[flowing] == pytest.approx(health["cadence"][flowing]["expected_interval_s"], rel=0.5)
    assert set(stream_values(samples, "fastws_stream_silent_seconds")) == {muted, flowing}


async def test_redundant_paths_count_each_message_of_a_stream_once(endpoint: Any) -> None:
    # Each path receives the whole stream: its figures are the fuller path's, not their sum.
    async with BinanceSimulator(rate=0) as sim:
        ws = binance_client(sim, redundancy=2)
        async with ws:
            await ws.subscribe(STREAMS[:2])
            await until(lambda: sum(len(c.streams) for c in sim.connections if c.is_open) == 4, 10.0,
                        "both paths subscribed")
            served = await endpoint(ws)
            sim.step(20)
            await until(lambda: ws.metrics["redundant_dropped"] == 40, 10.0, "every second copy dropped")
            samples = await served.samples()
    assert stream_values(samples, "fastws_stream_messages_total") == {STREAMS[0]: 20.0, STREAMS[1]: 20.0}
    delivered = [value for (name, _), value in samples.items() if name == "fastws_messages_delivered_total"]
    dropped = [value for (name, _), value in samples.items() if name == "fastws_redundant_dropped_messages_total"]
    assert (delivered, dropped) == ([40.0], [40.0])


async def test_every_metric_the_dashboard_queries_is_in_a_scrape(endpoint: Any) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    exprs += [variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable]
    queried = set(re.findall(r"\bfastws_[a-z_]+", " ".join(exprs)))
    assert len(queried) >= 20
    # The README's section names metrics too.
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Metrics and health"):readme.index("## Commands")]
    documented = set(re.findall(r"\bfastws_[a-z_]+", section))
    assert len(documented) >= 30
    async with BinanceSimulator(rate=0) as sim:
        ws = BinanceWebSocket(ExchangeName("binance"), binance_config(sim.url, rest_url=sim.rest_url),
                              lambda *args: None)
        async with ws:
            await ws.subscribe(STREAMS[:2])
            await ws.subscribe_books(["BTCUSDT"], lambda book: None)
            served = await endpoint(ws)
            for _ in range(40):
                sim.step(1)
                await asyncio.sleep(0.01)
            await until(lambda: (book := ws.book("BTCUSDT")) is not None and bool(book.valid), 5.0, "book valid")
            health = await ws.health_check()
            scraped = {name for name, _ in await served.samples()}
    scraped |= {name.removesuffix("_bucket") for name in scraped}      # a histogram by its own name
    assert {"loop_lag", "cadence", "books"} <= set(health)
    assert queried <= scraped, f"queried by the dashboard, not scraped: {sorted(queried - scraped)}"
    assert documented <= scraped, f"named in the README, not scraped: {sorted(documented - scraped)}"


async def test_serve_close_leaves_nothing_behind() -> None:
    # libuv keeps one descriptor (on /dev/null) per loop from its first listening
    # socket on, for accept()'s EMFILE case: a first server opens it.
    await (await serve(0, clients=ClientRegistry())).close()
    fds, tasks = open_fds(), other_tasks()
    server = await serve(0, clients=ClientRegistry())
    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/metrics") as response:
            assert response.status == 200
            assert "process_cpu_seconds_total" in await response.text()
        async with session.get(server.url + "/healthz") as response:
            assert response.status == 200
            assert await response.json() == {"healthy": True, "reasons": [], "clients": {}}
    await server.close()
    await server.close()
    assert other_tasks() == tasks
    assert open_fds() == fds
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(server.url + "/metrics")


async def test_serve_refuses_a_port_in_use() -> None:
    server = await serve(0, clients=ClientRegistry())
    try:
        with pytest.raises(OSError):
            await serve(server.port, clients=ClientRegistry())
    finally:
        await server.close()


async def scrape_while_running(args: list[str], port: int, until_text: Callable[[str], bool],
                               timeout: float = 30.0) -> tuple[str, int, str]:
    """Run ``python -m fastws ARGS``; scrape its /metrics until ``until_text``; return the scrape,
    the /healthz status seen with it and the command's stderr."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "fastws", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    text, status = "", 0
    try:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while not until_text(text):
                assert process.returncode is None, "the command ended before its metrics were seen"
                assert time.monotonic() < deadline, f"no such scrape within {timeout} s: {text[-2000:]}"
                await asyncio.sleep(0.2)
                try:
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                        text = await response.text()
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        status = response.status
                except aiohttp.ClientConnectionError:
                    continue
        _, err = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    return text, status, err.decode()


def sample_value(text: str, name: str, **labels: str) -> Optional[float]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def test_stream_command_serves_metrics_and_health() -> None:
    async with BinanceSimulator(rate=200) as sim:
        port = free_port()
        text, status, err = await scrape_while_running(
            ["stream", "binance", "btcusdt@depth", "--url", sim.url, "--duration", "4", "--json",
             "--metrics-port", str(port)], port,
            lambda text: (sample_value(text, "fastws_messages_received_total") or 0) > 10)
        assert status == 200
        assert sample_value(text, "fastws_stream_messages_total", stream="btcusdt@depth") > 0
        assert f"metrics at http://127.0.0.1:{port}/metrics" in err


async def test_demo_command_serves_metrics_of_every_exchange() -> None:
    port = free_port()
    text, _, _ = await scrape_while_running(
        ["demo", "--duration", "4", "--rate", "100", "--metrics-port", str(port)], port,
        lambda text: all((sample_value(text, "fastws_messages_received_total", exchange=name) or 0) > 0
                         for name in ("binance", "mexc")))
    assert sample_value(text, "fastws_pool_connections", exchange="binance") == 1.0


async def test_metrics_port_must_be_a_port_and_free() -> None:
    status, _, err = await run_fastws("stream", "binance", "btcusdt@trade", "--metrics-port", "70000")
    assert status == 2 and "a port is 0-65535, got 70000" in err
    async with BinanceSimulator(rate=0) as sim:
        taken = await serve(0, clients=ClientRegistry())
        try:
            status, _, err = await run_fastws("stream", "binance", "btcusdt@trade", "--url", sim.url,
                                              "--duration", "1", "--metrics-port", str(taken.port))
        finally:
            await taken.close()
    assert status == 2 and f"--metrics-port {taken.port}: " in err
