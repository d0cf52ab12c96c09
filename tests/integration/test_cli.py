"""The README's main job: ``python -m fastws demo`` on the embedded Binance and MEXC simulators."""
import subprocess
import sys


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
