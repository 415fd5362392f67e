"""The verdict: named checks, each ``ok``, ``failed``, ``absent`` (nothing to check), ``warning`` (nothing failed,
but something the bundle shows is suspicious: a seal's chain that may be truncated) or ``unanchored`` (it holds only
against itself: a time stamp whose TSA was not pinned), with a zh-CN and an English line and details; readable as
text (Chinese first) or as JSON. A warning proves no forgery: it does not fail the bundle, but the verdict no longer
reads "every check holds"."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from seal_protocol import utc_now_ms

#: At most this many details of one check are printed as text (all that are kept are in the JSON).
TEXT_DETAILS = 20
#: At most this many problems and notes of one check are kept; the rest are counted (``problems_omitted``): a
#: bundle of a million bad lines made a million problems, each kept and printed in the JSON.
KEPT_DETAILS = 1000
#: A value taken from the bundle (a manifest field, a member's name, a key) is shown with at most this many
#: characters: a manifest whose case_no, exported_at and exported_by were 32 MiB strings (a 150 KB zip) printed
#: 151 MB, as facts and in problems.
SHOWN_CHARS = 200
#: A problem, note or summary is kept with at most this many characters: the bound of a line that embeds a few values
#: (each cut to SHOWN_CHARS), and of one that embeds a value no check foresaw (a library's message).
LINE_CHARS = 2000


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    ABSENT = "absent"
    #: Nothing failed, but the bundle shows something that may hide a forgery (``Check.warnings`` say what).
    WARNING = "warning"
    #: It holds only against itself: nothing outside the bundle vouches for it (``Check.warnings`` say what).
    UNANCHORED = "unanchored"


#: The statuses that are warnings: the verdict names them and no longer reads "every check holds".
WARNINGS = frozenset({Status.WARNING, Status.UNANCHORED})


#: The verdict's last lines when every check holds but the log key came from the bundle itself.
UNANCHORED = (
    "结论：证据包自身一致，但日志公钥未经核对（未给出 --log-key 或保存的检查点）：任何人都能用自己的密钥制作"
    "这样的证据包。请将日志公钥与法院公布的公钥核对后再用 --log-key 验证。",
    "Verdict: NOT ANCHORED — the bundle is self-consistent, but its log key was neither pinned (--log-key) nor "
    "checked against a kept checkpoint: anyone can make such a bundle with a key of their own. Compare the key with "
    "the one the court publishes and verify again with --log-key.",
)
#: The verdict's last lines when every check holds but the kept checkpoint given could not be compared with the
#: bundle's (no consistency proof at hand); the hint follows.
UNPROVEN = (
    "结论：证据包自身一致，但尚未与您保存的检查点比对（缺少一致性证明），因此未经核对。",
    "Verdict: NOT ANCHORED — the bundle is self-consistent, but it could not yet be compared with the checkpoint you "
    "kept: no consistency proof between the two is at hand.",
)

#: Unicode categories of characters that drive a terminal or reorder what it shows (controls, format characters such
#: as U+202E RIGHT-TO-LEFT OVERRIDE, line and paragraph separators), and lone surrogates (no UTF-8 can be written of
#: them). The verdict shows text from the bundle (its manifest's fields, member names) with them escaped: a forged
#: bundle's escape sequences could otherwise hide the real verdict and show a line of their own.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str) -> str:
    """``text`` with every character of :data:`_HIDDEN` shown as a Python escape (``\\x1b``, ``\\u202e``)."""
    if text.isprintable():  # also false for harmless spaces such as U+3000: then look at each character
        return text
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in _HIDDEN else c for c in text)


def cut(text: str, most: int = SHOWN_CHARS) -> str:
    """``text`` if it has at most ``most`` characters; else its first ``most`` and how many more were cut. Every
    value from the bundle that the verdict shows goes through here (:func:`shown`, :func:`shown_fact`)."""
    if len(text) <= most:
        return text
    more = len(text) - most
    return f"{text[:most]}… [{more:,} more characters not shown / 另有 {more:,} 个字符未显示]"


def shown(value: Any) -> str:
    """A value from the bundle as a problem or note embeds it: its ``repr``, cut to :data:`SHOWN_CHARS`."""
    return cut(repr(value))


def shown_fact(value: Any) -> Any:
    """A value from the bundle as a fact of the verdict: a string cut to :data:`SHOWN_CHARS`; any other value
    itself if its JSON is that short, else its JSON, cut."""
    if isinstance(value, str):
        return cut(value)
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return shown(value)
    return value if len(text) <= SHOWN_CHARS else cut(text)


def _json_escape(c: str) -> str:
    if ord(c) <= 0xFFFF:
        return f"\\u{ord(c):04x}"
    high, low = divmod(ord(c) - 0x10000, 0x400)
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def json_text(value: Any) -> str:
    """``value`` as indented JSON (UTF-8 text, not ASCII escapes), with every character of :data:`_HIDDEN` escaped:
    ``json.dumps`` escapes only C0 controls, so C1 controls and bidirectional overrides reached the terminal."""
    text = json.dumps(value, ensure_ascii=False, indent=2)
    return "".join(_json_escape(c) if c != "\n" and unicodedata.category(c) in _HIDDEN else c for c in text)


_MARKS = {
    Status.OK: "✔ 通过 ok",
    Status.FAILED: "✘ 未通过 FAILED",
    Status.ABSENT: "– 无 absent",
    Status.WARNING: "⚠ 警告 WARNING",
    Status.UNANCHORED: "⚠ 未锚定 unanchored",
}


@dataclass
class Check:
    """One named check. ``notes`` are stated facts that do not fail it; ``problems`` are why it failed;
    ``warnings`` why it is a warning (:data:`WARNINGS`): facts that do not fail it but may hide a forgery."""

    name: str
    zh: str
    en: str
    status: Status = Status.OK
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""
    #: Problems, notes and warnings past KEPT_DETAILS, counted but not kept.
    problems_omitted: int = 0
    notes_omitted: int = 0
    warnings_omitted: int = 0

    def fail(self, problem: str) -> None:
        self.status = Status.FAILED
        if len(self.problems) < KEPT_DETAILS:
            self.problems.append(cut(problem, LINE_CHARS))
        else:
            self.problems_omitted += 1

    def note(self, text: str) -> None:
        if len(self.notes) < KEPT_DETAILS:
            self.notes.append(cut(text, LINE_CHARS))
        else:
            self.notes_omitted += 1

    def warn(self, text: str, status: Status = Status.WARNING) -> None:
        """A warning (``status`` one of :data:`WARNINGS`): the check reads so unless it failed."""
        if self.status is not Status.FAILED:
            self.status = status
        if len(self.warnings) < KEPT_DETAILS:
            self.warnings.append(cut(text, LINE_CHARS))
        else:
            self.warnings_omitted += 1

    def not_checked(self, why: str) -> None:
        """This check could not be made (``why``): what it found so far is dropped, it fails with the reason alone —
        a file it needed is in the bundle but was not read, and its absence proves nothing."""
        self.status = Status.FAILED
        self.problems, self.notes, self.warnings = [cut(why, LINE_CHARS)], [], []
        self.problems_omitted = self.notes_omitted = self.warnings_omitted = 0
        self.summary = ""

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
            "summary": cut(self.summary, LINE_CHARS),
            "problems": self.problems,
            "problems_omitted": self.problems_omitted,
            "notes": self.notes,
            "notes_omitted": self.notes_omitted,
            "warnings": self.warnings,
            "warnings_omitted": self.warnings_omitted,
        }


@dataclass(frozen=True)
class KeyUse:
    """The events of one seal that one key signed in the bundle, in one registration period of it: ``registered_at``
    the ``enrolment`` entry that registered the key and was in force when the court received them; ``None`` where
    the seal has no enrolment history (its ``public_key`` signed them), or where they came while another key was
    registered (``seal_keys`` warns of each). What a holder compares with the key recorded at installation."""

    device_id: str
    public_key: str
    registered_at: datetime | None
    events: int
    first_seq: int
    last_seq: int

    def as_json(self) -> dict[str, Any]:
        at = self.registered_at
        return {
            "device_id": cut(self.device_id),
            "public_key": cut(self.public_key),
            "registered_at": None if at is None else utc_now_ms(at),
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
        }


@dataclass
class BundleVerdict:
    """``ok``: no check failed. ``anchored``: the log key was tied to something outside the bundle — pinned with
    ``--log-key``, or a kept checkpoint verified with it. A bundle that is ``ok`` but not ``anchored`` is only
    self-consistent: anyone can make one with a log key (and seal keys) of their own."""

    path: str
    checks: list[Check]
    facts: dict[str, Any] = field(default_factory=dict)
    anchored: bool = False
    #: A kept checkpoint was given but no consistency proof to compare it with: what to fetch. Not anchored then.
    unproven: str = ""
    #: The keys that signed the events that verified, per seal and registration period (``seal_keys``).
    signing_keys: list[KeyUse] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.status is not Status.FAILED for check in self.checks)

    @property
    def trusted(self) -> bool:
        """Every check holds and the log key is anchored: what ``seal-verify`` exits 0 for."""
        return self.ok and self.anchored

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status is Status.FAILED]

    @property
    def warnings(self) -> list[str]:
        """The checks that are warnings (:data:`WARNINGS`): with any, the verdict does not read "every check holds"
        (``seal-verify`` still exits 0 for a trusted bundle: a warning proves no forgery)."""
        return [c.name for c in self.checks if c.status in WARNINGS]

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "trusted": self.trusted,  # what seal-verify exits 0 for: ok and anchored
            "ok": self.ok,
            "anchored": self.anchored,
            "unproven": self.unproven,
            "warnings": self.warnings,  # checks that did not fail but may hide a forgery: read their warnings
            "facts": self.facts,
            "signing_keys": [use.as_json() for use in self.signing_keys],  # what to compare with the installation's
            "checks": [check.as_json() for check in self.checks],
        }

    def text(self) -> str:
        lines = [f"证据包 Evidence bundle: {self.path}"]
        lines += [f"  {key}: {value}" for key, value in self.facts.items()]
        for check in self.checks:
            lines.append(f"{_MARKS[check.status]:<18} {check.zh} / {check.en}")
            if check.summary:
                lines.append(f"    {cut(check.summary, LINE_CHARS)}")
            for label, items, omitted in (
                ("✘", check.problems, check.problems_omitted),
                ("⚠", check.warnings, check.warnings_omitted),
                ("·", check.notes, check.notes_omitted),
            ):
                lines += [f"    {label} {item}" for item in items[:TEXT_DETAILS]]
                more = max(len(items) - TEXT_DETAILS, 0) + omitted
                if more:
                    lines.append(f"    {label} … {more} more / 另有 {more} 条")
        if self.trusted and not self.warnings:
            lines.append("结论：全部检查通过。 Verdict: every check holds.")
        elif self.trusted:
            names = ", ".join(self.warnings)
            lines += [
                f"结论：没有检查未通过，但有警告（{names}）：请先阅读标有 ⚠ 的各行，再依赖本证据包。",
                f"Verdict: no check failed, but with WARNINGS ({names}): read the lines marked ⚠ before relying on "
                "the bundle.",
            ]
        elif self.ok and self.unproven:
            lines += [*UNPROVEN, self.unproven]
        elif self.ok:
            lines += UNANCHORED
        else:
            lines.append(f"结论：检查未通过。 Verdict: FAILED ({', '.join(self.failed)}).")
        if self.warnings and not self.trusted:
            names = ", ".join(self.warnings)
            lines.append(f"另有警告 Warnings too: {names} (⚠).")
        return "\n".join(printable(line) for line in lines)
