"""The README's main job: ``python -m fastws demo`` on the embedded Binance and MEXC simulators (streams and books)."""
import subprocess
import sys
from typing import Any

from tests.conftest import run_fastws


def test_demo_streams_both_exchanges_recovers_and_exits_by_itself() -> None:
    result = subprocess.run([sys.executable, "-m", "fastws", "demo", "--duration", "2", "--rate", "300"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "injecting a server-side drop" in out
    for exchange, stream in (("binance", "btcusdt@depth@100ms"), ("mexc", "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT")):
        summary = out.split(f"summary: {exchange}")[1].split("summary:")[0]
        delivered = int(summary.split("messages delivered :")[1].split()[0])
        assert delivered > 300, exchange
        assert "reconnections      : 1" in summary
        assert "gap                :" in summary and "peer closed (1001)" in summary
        assert stream in summary.split("per stream")[1]
        assert "errors             : 0" in summary
    _check_books(out)


def test_demo_with_redundancy_loses_nothing_to_the_drop_and_shows_each_path() -> None:
    result = subprocess.run([sys.executable, "-m", "fastws", "demo", "--duration", "2", "--rate", "300",
                             "--redundancy", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "injecting a server-side drop of one of the 2 connections" in out
    for exchange in ("binance", "mexc"):
        summary = out.split(f"summary: {exchange}")[1].split("summary:")[0]
        assert "reconnections      : 1" in summary          # the dropped path came back
        assert "gap                :" not in summary        # the other path delivered meanwhile
        assert "sequence gaps      : 0 " in summary and "errors             : 0" in summary
        shares = [float(line.split("first arrivals")[1].split("%")[0])
                  for line in summary.splitlines() if f"{exchange} shard 0 path" in line]
        assert len(shares) == 2 and abs(sum(shares) - 100.0) < 0.5, summary
        # The books never saw the drop: valid throughout, no resync, and the book
        # handler called for every update, whichever path brought it first.
        book_streams = {"binance": "{}@depth@100ms", "mexc": "spot@public.aggre.depth.v3.api.pb@10ms@{}"}
        for line in summary.splitlines():
            if line.strip().startswith("book "):
                assert ": valid," in line and "resyncs 0" in line, line
                symbol = line.split()[1]
                stream = book_streams[exchange].format(symbol.lower() if exchange == "binance" else symbol)
                messages = int(summary.split(stream)[1].split("msgs")[0].split()[-1])
                applied = int(line.split(" updates applied")[0].split()[-1])
                assert applied >= 0.95 * messages, (line, messages)


def _check_books(out: str) -> None:
    """Every exchange the demo keeps books of: shown valid, invalid at the drop, synced again, valid at the end."""
    header = [line for line in out.splitlines() if "; order books of " in line]
    with_books = {line.split()[0]: line.split("; order books of ")[1].split(", ") for line in header}
    assert "binance" in with_books
    for exchange, symbols in with_books.items():
        summary = out.split(f"summary: {exchange}")[1].split("summary:")[0]
        for symbol in symbols:
            assert f"{exchange} {symbol}: valid, update " in out, (exchange, symbol)
            assert f"-> {exchange} {symbol} book invalid (updates lost): resyncing" in out
            assert f"-> {exchange} {symbol} book synced again from a new snapshot" in out
            line = summary.split(f"book {symbol}")[1].splitlines()[0]
            assert line.split(":", 1)[1].startswith(" valid, "), line
            assert int(line.split(" updates applied")[0].split()[-1]) > 100, line
            assert "invalidated 1x, resyncs 1," in line and int(line.split("snapshots ")[1].split(",")[0]) >= 2, line


async def _fastws(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run ``python -m fastws ARGS`` without blocking the loop the simulators run on."""
    return await run_fastws(*args, timeout=timeout)


async def test_stream_prints_messages_as_json(binance_simulator_factory: Any) -> None:
    import msgspec
    sim = await binance_simulator_factory(rate=200)
    code, out, err = await _fastws("stream", "binance", "btcusdt@trade", "btcusdt@depth", "--url", sim.url,
                                   "--json", "--max-messages", "20")
    assert code == 0, err
    messages = [msgspec.json.decode(line) for line in out.splitlines()]
    assert len(messages) == 20
    assert {m["stream"] for m in messages} <= {"btcusdt@trade", "btcusdt@depth"}
    assert all("E" in m["data"] for m in messages)
    assert "20 message(s)" in err


async def test_stream_typed_route_and_live_view(binance_simulator_factory: Any) -> None:
    sim = await binance_simulator_factory(rate=200)
    code, out, err = await _fastws("stream", "binance", "ethusdt@depth@100ms", "--url", sim.url, "--typed",
                                   "--json", "--max-messages", "5")
    assert code == 0, err
    assert out.count('"stream":"ethusdt@depth@100ms"') == 5 and '"U":' in out
    code, out, err = await _fastws("stream", "binance", "ethusdt@depth@100ms", "--url", sim.url, "--view",
                                   "--duration", "2.2")
    assert code == 0, err
    assert out.count("ethusdt@depth@100ms") >= 2 and "orderbook" in out and "connected" in out


async def test_stream_errors_are_one_line(mexc_simulator_factory: Any) -> None:
    sim = await mexc_simulator_factory(rate=0)
    code, out, err = await _fastws("stream", "mexc", "spot@public.aggre.deals.v3.api.pb@100ms@BTCUSDT",
                                   "--url", sim.ws_url(), "--typed")
    assert code == 1
    assert err.strip().splitlines() == ["fastws stream: error: --typed: mexc has no typed route (only binance has)"]
    code, out, err = await _fastws("stream", "binance", "btcusdt@trade", "--url", "ws://127.0.0.1:9/",
                                   "--connect-timeout", "1.5")
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("fastws stream: error: could not connect to ws://127.0.0.1:9")
