"""``fastws bench`` outside a checkout (an installed package): exit status 2 and one line saying
where the benchmark suite lives. (From a checkout: ``test_bench_script.py``.)"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import exchanges
import fastws


def _installed_copy(site: Path) -> None:
    """The imported fastws and exchanges packages (compiled modules included) copied into ``site``,
    as a wheel lays them out: nothing of the repository beside them."""
    for package in (fastws, exchanges):
        source = Path(package.__file__).parent
        shutil.copytree(source, site / source.name, ignore=shutil.ignore_patterns("__pycache__"))


def test_bench_outside_a_checkout_says_where_the_suite_lives(tmp_path: Path) -> None:
    site, elsewhere = tmp_path / "site-packages", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _installed_copy(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import fastws.commands.bench as b; print(b.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr
    out = elsewhere / "report"
    result = subprocess.run([sys.executable, "-m", "fastws", "bench", "--quick", "--out", str(out)],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastws bench: error:"), result.stderr
    assert "repository" in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()
