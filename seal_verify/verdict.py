"""The verdict: named checks, each ``ok``, ``failed`` or ``absent`` (nothing to check), with a zh-CN and an English
line and details; readable as text (Chinese first) or as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: At most this many details of one check are printed as text (all are in the JSON).
TEXT_DETAILS = 20


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    ABSENT = "absent"


_MARKS = {Status.OK: "✔ 通过 ok", Status.FAILED: "✘ 未通过 FAILED", Status.ABSENT: "– 无 absent"}


@dataclass
class Check:
    """One named check. ``notes`` are stated facts that do not fail it; ``problems`` are why it failed."""

    name: str
    zh: str
    en: str
    status: Status = Status.OK
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: str = ""

    def fail(self, problem: str) -> None:
        self.status = Status.FAILED
        self.problems.append(problem)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def absent(self, why: str) -> Check:
        self.status = Status.ABSENT
        self.summary = why
        return self

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "zh": self.zh,
            "en": self.en,
            "status": self.status.value,
            "summary": self.summary,
            "problems": self.problems,
            "notes": self.notes,
        }


@dataclass
class BundleVerdict:
    path: str
    checks: list[Check]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.status is not Status.FAILED for check in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status is Status.FAILED]

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "facts": self.facts,
            "checks": [check.as_json() for check in self.checks],
        }

    def text(self) -> str:
        lines = [f"证据包 Evidence bundle: {self.path}"]
        lines += [f"  {key}: {value}" for key, value in self.facts.items()]
        for check in self.checks:
            lines.append(f"{_MARKS[check.status]:<18} {check.zh} / {check.en}")
            if check.summary:
                lines.append(f"    {check.summary}")
            for label, items in (("✘", check.problems), ("·", check.notes)):
                lines += [f"    {label} {item}" for item in items[:TEXT_DETAILS]]
                if len(items) > TEXT_DETAILS:
                    lines.append(
                        f"    {label} … {len(items) - TEXT_DETAILS} more / 另有 {len(items) - TEXT_DETAILS} 条"
                    )
        if self.ok:
            lines.append("结论：全部检查通过。 Verdict: every check holds.")
        else:
            lines.append(f"结论：检查未通过。 Verdict: FAILED ({', '.join(self.failed)}).")
        return "\n".join(lines)
