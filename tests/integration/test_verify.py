"""The compliance verifier: both shipped adapters pass live, broken ones fail the right checks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import msgspec
import pytest

from exchanges.binance import BinanceWebSocket
from exchanges.mexc import MexcWebSocket
from fastws.verify import ComplianceProfile, Status, VerificationReport, format_report, verify_adapter
from tests.conftest import other_tasks
from tests.integration import broken_adapter

ROOT = Path(__file__).resolve().parents[2]
LIVE = ["live connect", "live subscribe (ack)", "live receive", "live drop and recovery",
        "live health_check keys", "live metrics counting"]


def failed(report: VerificationReport) -> set[str]:
    return {c.name for c in report.failed}


@pytest.mark.parametrize("cls", [BinanceWebSocket, MexcWebSocket])
async def test_shipped_adapter_passes_every_check_live(cls: type) -> None:
    report = await verify_adapter(cls)
    assert report.passed, format_report(report)
    # Nothing skipped: the samples and the live round trip really ran.
    assert all(c.status is Status.PASSED for c in report.checks), format_report(report)
    names = [c.name for c in report.checks]
    for name in ["_parse_message samples", "_extract_stream_info types", "_parse_message malformed", *LIVE]:
        assert name in names
    metrics = next(c for c in report.checks if c.name == "live metrics counting").detail
    assert "reconnections=1" in metrics
    assert not other_tasks()


@pytest.mark.parametrize("cls, check, seen", [
    (broken_adapter.KeyErrorAdapter, "_parse_message malformed", "KeyError"),
    (broken_adapter.NonDictAdapter, "_parse_message samples", "returned list, not a dict"),
    (broken_adapter.WrongStreamTypeAdapter, "_extract_stream_info types", "not a StreamType"),
])
async def test_broken_frame_handling_fails_its_check(cls: type, check: str, seen: str) -> None:
    report = await verify_adapter(cls)
    assert not report.passed
    assert check in failed(report)
    assert seen in next(c.detail for c in report.checks if c.name == check)
    # The rest of the adapter is Binance's: its live round trip still passes.
    assert all(report.status_of(name) is Status.PASSED for name in LIVE), format_report(report)


async def test_malformed_frames_raising_other_than_exchange_errors_fail_only_that_check() -> None:
    report = await verify_adapter(broken_adapter.KeyErrorAdapter, live=False)
    assert failed(report) == {"_parse_message malformed"}
    assert all(report.status_of(name) is Status.SKIPPED for name in LIVE)


async def test_decode_errors_are_accepted_only_when_declared() -> None:
    report = await verify_adapter(broken_adapter.DecodeErrorAdapter, live=False)
    assert failed(report) == {"_parse_message malformed"}
    assert "DecodeError" in next(c.detail for c in report.checks if c.name == "_parse_message malformed")
    profile = BinanceWebSocket.compliance
    lenient = ComplianceProfile(samples=profile.samples, config=profile.config,
                                decode_errors=(msgspec.DecodeError,))
    report = await verify_adapter(broken_adapter.DecodeErrorAdapter, profile=lenient, live=False)
    assert failed(report) == set()


async def test_samples_also_go_through_the_adapters_subscribed_routes() -> None:
    report = await verify_adapter(BinanceWebSocket, live=False)
    assert failed(report) == set()
    # The depth and trade samples' streams are routed (dict route, whole frame).
    assert "2 through its subscribed route" in next(c.detail for c in report.checks
                                                    if c.name == "_parse_message samples")


async def test_a_route_that_delivers_other_than_parse_message_fails_the_samples() -> None:
    report = await verify_adapter(broken_adapter.WrongRouteAdapter, live=False)
    assert failed(report) == {"_parse_message samples"}
    detail = next(c.detail for c in report.checks if c.name == "_parse_message samples")
    assert "through its subscribed route the handler gets ({'e': 'depthUpdate'" in detail, detail
    assert "through _parse_message ({'stream': 'btcusdt@depth@100ms'" in detail, detail


async def test_an_adapter_that_does_not_wait_for_the_ack_fails_live() -> None:
    report = await verify_adapter(broken_adapter.NoAckAdapter)
    assert failed(report) == {"live subscribe (ack)"}
    assert report.status_of("live receive") is Status.SKIPPED
    assert not other_tasks()


async def test_wrong_signatures_and_missing_methods_fail_statically() -> None:
    report = await verify_adapter(broken_adapter.WrongSignatureAdapter)
    assert failed(report) == {"signature _connect", "signature _send_subscription_message",
                              "signature _parse_message", "signature _extract_stream_info"}
    assert report.status_of("instantiate") is Status.SKIPPED
    report = await verify_adapter(broken_adapter.AbstractAdapter)
    assert failed(report) == {"abstract methods implemented", "signature _extract_stream_info"}
    report = await verify_adapter(dict)
    assert failed(report) == {"subclass of BaseWebSocketInterface"}


async def test_without_a_profile_samples_and_live_are_skipped_not_passed() -> None:
    report = await verify_adapter(broken_adapter.PlainAdapter)
    assert report.passed
    for name in ["_parse_message samples", "_extract_stream_info types", *LIVE]:
        assert report.status_of(name) is Status.SKIPPED
    assert report.status_of("_parse_message malformed") is Status.PASSED
    assert "skipped" in format_report(report).splitlines()[-1]


def fastws(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastws", "verify", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_cli_passes_a_shipped_adapter() -> None:
    result = fastws("exchanges.binance:BinanceWebSocket")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "live drop and recovery" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("PASSED: 16 passed, 0 failed")


def test_cli_fails_a_broken_adapter_with_the_table() -> None:
    result = fastws("tests.integration.broken_adapter:KeyErrorAdapter", "--no-live")
    assert result.returncode == 1
    row = next(line for line in result.stdout.splitlines() if line.startswith("_parse_message malformed"))
    assert "failed" in row and "KeyError" in row
    assert result.stdout.strip().splitlines()[-1].startswith("FAILED:")


def test_cli_json_report() -> None:
    result = fastws("exchanges.mexc:MexcWebSocket", "--no-live", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is True
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["_parse_message samples"] == "passed"
    assert statuses["live connect"] == "skipped"


@pytest.mark.parametrize("target", ["no_such_module:Adapter", "exchanges.binance:NoSuchClass", "exchanges.binance"])
def test_cli_target_that_does_not_load_is_one_line(target: str) -> None:
    result = fastws(target)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastws verify: error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_script_is_the_same_command() -> None:
    script = ROOT / "scripts" / "verify_websocket_compliance.py"
    result = subprocess.run([sys.executable, str(script), "tests.integration.broken_adapter:NonDictAdapter",
                             "--no-live"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1
    assert "_parse_message samples" in result.stdout and "FAILED:" in result.stdout
    result = subprocess.run([sys.executable, str(script), "exchanges.mexc:MexcWebSocket"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_fixture_passes_a_compliant_adapter(
        adapter_compliance: Callable[..., Awaitable[VerificationReport]]) -> None:
    report = await adapter_compliance(MexcWebSocket)
    assert report.status_of("live drop and recovery") is Status.PASSED


async def test_fixture_fails_the_test_with_the_table(
        adapter_compliance: Callable[..., Awaitable[VerificationReport]]) -> None:
    with pytest.raises(pytest.fail.Exception) as failure:
        await adapter_compliance(broken_adapter.WrongStreamTypeAdapter, live=False)
    text: Any = str(failure.value)
    assert "_extract_stream_info types" in text and "FAILED:" in text
