"""What the report's table of alarms says beside an alarm's kind: raised by a simulated seal's event (not on site),
or by an event whose time by the seal's clock lies far from when the court received it — a delayed report (when it
happened by the seal's clock, how much later the court received it; the seal's clock synchronised by its own word)
or a time in doubt (the seal's clock not synchronised, or never said so: how far apart the two times are, and no
delay claimed). A folded alarm's opening report, if delayed or in doubt, is named first, then its latest
(:mod:`server.alarms.event_details`)."""

from __future__ import annotations

from server.export.report_facts import AlarmFacts, ReportTiming
from server.export.report_text import SIMULATED, court_time


def alarm_marks(alarm: AlarmFacts) -> tuple[str, str] | None:
    """The marks of ``alarm`` in Chinese and in English (each language's joined); ``None`` for most alarms."""
    marks = [SIMULATED] if alarm.simulated else []
    folded = alarm.count > 1
    if folded and alarm.opening is not None:
        marks.append(_timing(alarm.opening, ("首次报告", "first report")))
    if alarm.report is not None:
        marks.append(_timing(alarm.report, ("最近一次报告", "latest report") if folded else None))
    return ("；".join(m[0] for m in marks), "; ".join(m[1] for m in marks)) if marks else None


def _timing(report: ReportTiming, which: tuple[str, str] | None) -> tuple[str, str]:
    happened = court_time(report.ts)
    zh_of, en_of = (f"{which[0]}（序号 {report.seq}）— ", f"{which[1]} (seq {report.seq}) — ") if which else ("", "")
    if report.delayed_s is not None:
        late = _span(report.delayed_s)
        return (
            f"{zh_of}迟报：据封条时钟发生于 {happened}，法院晚 {late} 才收到",
            f"{en_of}delayed report: happened {happened} by the seal's clock, received by the court {late} later",
        )
    apart = _span(abs(report.clock_gap_s or 0))
    said = (
        ("封条自报时钟未同步", "the seal said its clock was not synchronised")
        if report.clock_synced is False
        else ("封条未报告时钟是否同步", "the seal did not say whether its clock was synchronised")
    )
    return (
        f"{zh_of}时间存疑：{said[0]}，据其时钟发生于 {happened}，与法院收到时间相差 {apart}，无法判断是否迟报",
        f"{en_of}time in doubt: {said[1]}; {happened} by its clock, {apart} from the court's receipt; whether it was "
        "reported late cannot be told",
    )


def _span(seconds: int) -> str:
    """``36 h``, ``3 d``, ``5 min``: to the largest whole unit (the pages' ``t.span``)."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
