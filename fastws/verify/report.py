"""The verifier's report: one check per row, and the table that prints it."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

class Status(str, enum.Enum):
    """The outcome of one check."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Check:
    """One row of the report: a check's name, its status and what was seen."""

    name: str
    status: Status
    detail: str = ""


@dataclass
class VerificationReport:
    """The checks of one adapter, in the order they ran."""

    adapter: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped ones do not count as failures)."""
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        """The failed checks."""
        return [c for c in self.checks if c.status is Status.FAILED]

    def status_of(self, name: str) -> Optional[Status]:
        """The status of the check called ``name``, None if there is none."""
        for check in self.checks:
            if check.name == name:
                return check.status
        return None

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON)."""
        return {"adapter": self.adapter, "passed": self.passed,
                "checks": [{"name": c.name, "status": c.status.value, "detail": c.detail} for c in self.checks]}

    def add(self, name: str, status: Status, detail: str = "") -> bool:
        """Append a check; return True when it passed."""
        self.checks.append(Check(name, status, detail))
        return status is Status.PASSED


def format_report(report: VerificationReport) -> str:
    """The report as a table: one row per check, then a one-line verdict."""
    width = max(len(c.name) for c in report.checks) if report.checks else 10
    lines = [f"compliance of {report.adapter}", f"{'check':<{width}}  {'result':<7}  detail",
             f"{'-' * width}  {'-' * 7}  {'-' * 40}"]
    for check in report.checks:
        lines.append(f"{check.name:<{width}}  {check.status.value:<7}  {check.detail}")
    counts = {s: sum(c.status is s for c in report.checks) for s in Status}
    verdict = "PASSED" if report.passed else "FAILED"
    lines.append(f"{verdict}: {counts[Status.PASSED]} passed, {counts[Status.FAILED]} failed, "
                 f"{counts[Status.SKIPPED]} skipped")
    return "\n".join(lines)
