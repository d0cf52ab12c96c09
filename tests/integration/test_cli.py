"""The README's main job: ``python -m fastws demo`` on the embedded feed."""
import subprocess
import sys


def test_demo_runs_recovers_and_exits_by_itself() -> None:
    result = subprocess.run([sys.executable, "-m", "fastws", "demo", "--duration", "2", "--rate", "500"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "injecting a server-side drop" in out
    delivered = int(out.split("messages delivered :")[1].split()[0])
    assert delivered > 500
    assert "reconnections      : 1" in out
    assert "gap                :" in out and "peer closed (1001)" in out
