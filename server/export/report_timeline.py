"""The report's timeline: every significant event one per row, the periods without news, heartbeats counted per
seal and day, and the count of every event by type.

10,000 events must set in bounded time, so the timeline's cells are plain text wrapped here with cached glyph
widths (reportlab's CJK paragraphs measure every character again, ~1 ms per cell), in tables of
:data:`ROWS_PER_TABLE` rows that split across pages in linear time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable, Paragraph, Table

from seal_protocol.envelope import is_simulated
from server.commands.refusals import refused_own_bytes
from server.core.court_clock import court_clock
from server.export.event_summary import EventSummary, Found
from server.export.report_facts import CommandFacts, EventFacts, OfflinePeriod
from server.export.report_sections import GRID, ROWS_PER_TABLE, ReportStyles, cell, chunks, grid, para
from server.export.report_text import (
    SIMULATED,
    SIMULATED_MEANING,
    clip,
    event_details,
    event_name,
    outcome_words,
    plain,
    sort_time,
    timed,
    warning_words,
)
from server.pdf_glyphs import Glyphs
from server.pdf_layout import font_table, markup, text_lines

TIMELINE_HEADER = [
    timed("封条时钟", "seal's clock"),
    timed("法院收到", "received"),
    ("封条", "seal"),
    ("序号", "seq"),
    ("事件", "event"),
    ("说明", "details"),
]
TIMELINE_WIDTHS = [22 * mm, 22 * mm, 20 * mm, 10 * mm, 30 * mm, 70 * mm]
CELL_SIZE = 7
CELL_LEADING = 8.5
PADDING = 2.5
ALERT = colors.HexColor("#b00000")

_Row = tuple[list[str], bool]


def timeline(
    events: EventSummary,
    offline: Sequence[OfflinePeriod],
    s: ReportStyles,
    *,
    commands: Sequence[CommandFacts] = (),
) -> list[Flowable]:
    """The significant events (with the warning as signed, and for a warning that had started, the outcome its
    ``warning_result`` reported), the periods without news, and the heartbeats counted per seal and day.
    ``commands``: the case's commands, so that a seal's refusal of the court's own bytes, which it could not verify,
    reads as such and not as a refusal of forged bytes."""
    published = {(c.device_id, c.id): c.signed_sha256 for c in commands}
    rows: list[tuple[float, _Row]] = [
        (sort_time(e.received_at), _event_row(e, events.results, events.decisions, published)) for e in events.listed
    ]
    for period in offline:
        until = court_clock(period.until) if period.until else "导出时 the export"
        note = (
            f"至 {until}，法院未收到该封条的任何消息（法院时钟，UTC+8）",
            f"until {until} the court heard nothing from this seal (court's clock, UTC+8)",
        )
        cells = ["", court_clock(period.since), period.device_id, "", "离线 offline", _two(*note)]
        rows.append((sort_time(period.since), (cells, True)))
    rows.sort(key=lambda item: item[0])
    out: list[Flowable] = []
    if events.left_out:
        out += para(
            f"本案重要事件过多，时间线只逐条列出最早收到的 {len(events.listed):,} 条；"
            f"另有 {events.left_out:,} 条未列出，见证据包中的 events.jsonl（上文的事件数量包括全部事件）。",
            f"The case has too many significant events to list: the timeline lists the first {len(events.listed):,} "
            f"received; {events.left_out:,} more are not listed here but are in the bundle's events.jsonl (the counts "
            "above include every event).",
            s,
        )
    if not rows:
        out += para("本案在导出范围内没有需要逐条列出的事件。", "No significant events in the exported range.", s)
    for chunk in chunks([row for _, row in rows], ROWS_PER_TABLE):
        out.append(_text_table(chunk, s))
    return out + _heartbeats(events, s)


def _event_row(
    event: EventFacts, results: Found, decisions: Found, published: Mapping[tuple[str, int], str | None]
) -> _Row:
    claimed = event.payload.get("claimed_command_id") if event.type == "command_rejected" else None
    own = isinstance(claimed, int) and refused_own_bytes(event.payload, published.get((event.device_id, claimed)))
    zh, en = event_details(event.type, event.payload, own_command=own)
    alert = event.type in {
        "intrusion",
        "tamper",
        "outbox_full",
        "command_rejected",
        "event_lost",
        "clock_stepped",
        "snapshot_lost",
    }
    warning = _signed_warning(event)
    if warning is not None:
        words = warning_words(warning)
        if words is not None:
            zh, en = _join(zh, words[0]), _join(en, words[1])
        alert = alert or _failed(warning)
        if warning.get("warning") == "pending_confirmation":
            decided = decisions.get((event.device_id, event.type, event.seq))
            said = warning_words(decided) if decided is not None else None
            dzh, den = said or ("未收到摄像头的决定", "no decision received")
            zh, en = _join(zh, "摄像头确认后：" + dzh), _join(en, "after the camera's check: " + den)
            alert = alert or (decided is not None and _failed(decided))
            warning = decided or {}
        if warning.get("warning") in ("started", "deferred_cooldown"):  # a warning_result follows
            outcome = results.get((event.device_id, event.type, event.seq))
            ozh, oen = outcome_words(outcome)
            zh, en = _join(zh, ozh), _join(en, oen)
            alert = alert or (outcome is not None and _failed(outcome))
    name = _two(*event_name(event.type))
    if is_simulated(event.payload):  # first in its row: a simulated intrusion must not read as a real one
        name = f"{name}\n{SIMULATED[0]} / {SIMULATED[1]}"
        zh = _join(SIMULATED_MEANING[0], zh) if zh else SIMULATED_MEANING[0]
        en = _join(SIMULATED_MEANING[1], en) if en else SIMULATED_MEANING[1]
    cells = [
        court_clock(event.ts),
        court_clock(event.received_at),
        event.device_id,
        str(event.seq),
        name,
        _two(clip(plain(zh), "events.jsonl"), clip(plain(en), "events.jsonl")),  # the seal's words, one line each
    ]
    return cells, alert


def _signed_warning(event: EventFacts) -> Mapping[str, Any] | None:
    """The warning part of an event's payload (a test_warning command's result is its warning), if it has one."""
    if event.type == "command_ack":
        if event.payload.get("action") != "test_warning":
            return None
        return {**event.payload, "warning": event.payload.get("result")}
    return event.payload if "warning" in event.payload else None


def _failed(warning: Mapping[str, Any]) -> bool:
    languages = warning.get("warning_languages")
    return warning.get("warning") == "failed" or (
        isinstance(languages, list) and any(isinstance(x, Mapping) and x.get("result") == "failed" for x in languages)
    )


def _join(first: str, second: str) -> str:
    return f"{first}；{second}" if first else second


def _two(zh: str, en: str) -> str:
    return f"{zh}\n{en}" if en and en != zh else zh


def _text_table(rows: Sequence[_Row], s: ReportStyles) -> Table:
    """A timeline table of plain-text cells wrapped to their columns; alert rows in red."""
    head = [  # each language on lines of its own, wrapped to the column as the cells are
        "\n".join(wrap(text, s.glyphs, width - 2 * PADDING) for text in pair)
        for pair, width in zip(TIMELINE_HEADER, TIMELINE_WIDTHS, strict=True)
    ]
    body = [
        [wrap(text, s.glyphs, width - 2 * PADDING) for text, width in zip(cells, TIMELINE_WIDTHS, strict=True)]
        for cells, _alert in rows
    ]
    commands: list[tuple[object, ...]] = [
        ("GRID", (0, 0), (-1, -1), 0.3, GRID),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTSIZE", (0, 0), (-1, -1), CELL_SIZE),
        ("LEADING", (0, 0), (-1, -1), CELL_LEADING),
        ("LEFTPADDING", (0, 0), (-1, -1), PADDING),
        ("RIGHTPADDING", (0, 0), (-1, -1), PADDING),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    commands += [("TEXTCOLOR", (4, n), (5, n), ALERT) for n, (_c, alert) in enumerate(rows, 1) if alert]
    return font_table([head, *body], commands, s.glyphs, colWidths=TIMELINE_WIDTHS, repeatRows=1)


def wrap(text: str, glyphs: Glyphs, width: float, size: float = CELL_SIZE) -> str:
    """``text`` (each character the font cannot draw shown by its placeholder) broken into lines no wider than
    ``width`` points (but for a hanging 、 or ）) as :func:`~server.pdf_layout.text_lines` breaks it: between any two
    CJK characters, between Latin words (a word wider than the line is cut), never just after a ``-``."""
    font = glyphs.font
    return "\n".join(text_lines(glyphs.drawable(text), lambda run: _width(run, font, size), width))


def _width(token: str, font: str, size: float) -> float:
    return sum(_char_width(char, font, size) for char in token)


@cache
def _char_width(char: str, font: str, size: float) -> float:
    return float(stringWidth(char, font, size))


def _heartbeats(events: EventSummary, s: ReportStyles) -> list[Flowable]:
    if not events.heartbeats:
        return []
    rows = [[device, day, str(count)] for (device, day), count in sorted(events.heartbeats.items())]
    header = [("封条", "seal"), ("日期（封条时钟，UTC+8）", "day (seal's clock, UTC+8)"), ("心跳次数", "heartbeats")]
    return [
        Paragraph(markup("心跳（按封条、日期汇总，不逐条列出）", s.glyphs), s.h2),
        Paragraph(markup("Heartbeats, counted per seal and day, not listed one by one", s.glyphs), s.en),
        *[grid(header, chunk, [40 * mm, 40 * mm, 30 * mm], s) for chunk in chunks(rows, ROWS_PER_TABLE)],
    ]


def type_counts(events: EventSummary, s: ReportStyles) -> Table:
    """How many events of each type each seal sent (every line of events.jsonl is counted here), a simulated seal's
    apart (marked, and counted in a row of their own)."""
    rows = [
        [device, cell(*_simulated_name(kind) if simulated else event_name(kind), s, alert=simulated), str(n)]
        for (device, kind, simulated), n in sorted(events.types.items())
    ]
    rows.append([cell("合计", "total", s), "", str(events.count)])
    if events.simulated:
        of_which = (
            "其中模拟事件（模拟封条所签，并非现场实际发生）",
            "of which simulated (a simulated seal's: not on site)",
        )
        rows.append([cell(*of_which, s, alert=True), "", str(events.simulated)])
    return grid([("封条", "seal"), ("事件类型", "event type"), ("条数", "count")], rows, [40 * mm, 70 * mm, 25 * mm], s)


def _simulated_name(kind: str) -> tuple[str, str]:
    zh, en = event_name(kind)
    return f"{zh}（{SIMULATED[0]}）", f"{en} ({SIMULATED[1]})"
