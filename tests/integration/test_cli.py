"""The README's main job: ``python -m fastws demo`` on the embedded Binance simulator."""
import subprocess
import sys


def test_demo_streams_binance_recovers_and_exits_by_itself() -> None:
    result = subprocess.run([sys.executable, "-m", "fastws", "demo", "--duration", "2", "--rate", "300"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Binance simulator" in out and "injecting a server-side drop" in out
    delivered = int(out.split("messages delivered :")[1].split()[0])
    assert delivered > 300
    assert "reconnections      : 1" in out
    assert "gap                :" in out and "peer closed (1001)" in out
    for stream in ("btcusdt@depth@100ms", "ethusdt@trade"):
        assert stream in out.split("per stream")[1]
