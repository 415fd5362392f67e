"""What the report's table of alarms says beside an alarm's kind: raised by a simulated seal's event (not on site),
or by an event the court received well after the seal says it happened (a delayed report: when it happened by the
seal's clock, how much later the court received it; :mod:`server.alarms.event_details`)."""

from __future__ import annotations

from server.export.report_facts import AlarmFacts
from server.export.report_text import SIMULATED, court_time


def alarm_marks(alarm: AlarmFacts) -> tuple[str, str] | None:
    """The marks of ``alarm`` in Chinese and in English (each language's joined); ``None`` for most alarms."""
    marks = [SIMULATED] if alarm.simulated else []
    if alarm.delayed_s is not None:
        happened, late = court_time(alarm.ts), _span(alarm.delayed_s)
        marks.append(
            (
                f"迟报：据封条时钟发生于 {happened}，法院晚 {late} 才收到",
                f"delayed report: happened {happened} by the seal's clock, received by the court {late} later",
            )
        )
    return ("；".join(m[0] for m in marks), "; ".join(m[1] for m in marks)) if marks else None


def _span(seconds: int) -> str:
    """``36 h``, ``3 d``, ``5 min``: to the largest whole unit (the pages' ``t.span``)."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
