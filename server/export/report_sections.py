"""The evidence report's long parts: the timeline (paginated in small tables, so 10,000 events set in bounded
time), the contact sheet of snapshot thumbnails, and the tables of alarms, commands and removal requests."""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Image, Paragraph, Spacer, Table

from server.export.report_facts import (
    AlarmFacts,
    CommandFacts,
    EventFacts,
    HistoryEntry,
    OfflinePeriod,
    RemovalFacts,
    SnapshotFacts,
)
from server.export.report_text import (
    TIMELINE_TYPES,
    court_time,
    event_details,
    event_name,
    outcome_words,
    warning_words,
)
from server.pdf_layout import font_table, markup

logger = logging.getLogger(__name__)

#: Thumbnails on the contact sheet; the other snapshots are named by their path in the bundle.
CONTACT_SHEET_MAX = 60
THUMB_COLUMNS = 5
THUMB_PX = 240
#: Rows of the timeline per table: small tables split and lay out in linear time.
TIMELINE_CHUNK = 60
GRID = colors.HexColor("#999999")


class ReportStyles:
    """The report's paragraph styles, all in the embedded CJK font ``font``."""

    def __init__(self, font: str) -> None:
        self.font = font
        grey = colors.HexColor("#444444")
        base = ParagraphStyle("base", fontName=font, fontSize=10, leading=14, wordWrap="CJK")
        self.body = base
        self.en = ParagraphStyle("en", base, fontSize=8.5, leading=11.5, textColor=grey)
        self.title = ParagraphStyle("title", base, fontSize=22, leading=30, alignment=1)
        self.subtitle = ParagraphStyle("subtitle", base, fontSize=11, leading=15, alignment=1, textColor=grey)
        self.h1 = ParagraphStyle("h1", base, fontSize=14, leading=19, spaceBefore=8, spaceAfter=1)
        self.h1_en = ParagraphStyle("h1_en", self.en, fontSize=10, leading=13, spaceAfter=4)
        self.h2 = ParagraphStyle("h2", base, fontSize=11, leading=15, spaceBefore=5)
        self.cell = ParagraphStyle("cell", base, fontSize=7.5, leading=9.5)
        self.cell_en = ParagraphStyle("cell_en", self.cell, textColor=grey)
        self.alert = ParagraphStyle("alert", self.cell, textColor=colors.HexColor("#b00000"))


def heading(zh: str, en: str, styles: ReportStyles) -> list[Flowable]:
    return [Paragraph(markup(zh), styles.h1), Paragraph(markup(en), styles.h1_en)]


def para(zh: str, en: str, styles: ReportStyles) -> list[Flowable]:
    """A paragraph in Chinese, then its English."""
    return [Paragraph(markup(zh), styles.body), Paragraph(markup(en), styles.en), Spacer(1, 1.5 * mm)]


def cell(zh: str, en: str, styles: ReportStyles, *, alert: bool = False) -> Paragraph:
    """A table cell: Chinese, a line break, English."""
    text = markup(zh) + ("<br/>" + markup(en) if en and en != zh else "")
    return Paragraph(text, styles.alert if alert else styles.cell)


def grid(
    header: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Flowable | str]],
    widths: Sequence[float | None],
    s: ReportStyles,
) -> Table:
    """A table with a bilingual header row repeated on every page (no header row if ``header`` is empty)."""
    commands = [
        ("GRID", (0, 0), (-1, -1), 0.3, GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTSIZE", (0, 0), (-1, -1), 7.5),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]
    if not header:
        return font_table(rows, commands, s.font, colWidths=list(widths))
    head = [cell(zh, en, s) for zh, en in header]
    commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")))
    return font_table([head, *rows], commands, s.font, colWidths=list(widths), repeatRows=1)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- timeline ---------------------------------------------------------------------------------------------------

TIMELINE_HEADER = [("封条时钟", "seal's clock"), ("法院收到", "received"), ("封条", "seal"), ("序号", "seq"),
                   ("事件", "event"), ("说明", "details")]  # fmt: skip
TIMELINE_WIDTHS = [24 * mm, 24 * mm, 22 * mm, 11 * mm, 30 * mm, None]


def timeline(events: Sequence[EventFacts], offline: Sequence[OfflinePeriod], s: ReportStyles) -> list[Flowable]:
    """The significant events one per row (with the warning as signed, and for a warning that had started, the
    outcome its ``warning_result`` reported), the periods without news, and the heartbeats counted per seal and day."""
    results = {
        (e.device_id, e.payload.get("trigger"), e.payload.get("trigger_seq")): e.payload
        for e in events
        if e.type == "warning_result"
    }
    decisions = {
        (e.device_id, "intrusion", e.payload.get("trigger_seq")): e.payload
        for e in events
        if e.type == "snapshot_taken" and "warning" in e.payload
    }
    rows: list[tuple[Any, list[Flowable | str]]] = []
    for event in events:
        if event.type in TIMELINE_TYPES:
            rows.append((event.received_at, _event_row(event, results, decisions, s)))
    for period in offline:
        note = cell("此期间法院未收到该封条的任何消息", "the court heard nothing from this seal", s, alert=True)
        rows.append((period.since, [court_time(period.since), court_time(period.until), period.device_id, "",
                                    cell("离线", "offline", s, alert=True), note]))  # fmt: skip
    rows.sort(key=lambda item: item[0])
    out: list[Flowable] = []
    if not rows:
        out += para("本案在导出范围内没有需要逐条列出的事件。", "No significant events in the exported range.", s)
    for chunk in _chunks([row for _, row in rows], TIMELINE_CHUNK):
        out.append(grid(TIMELINE_HEADER, chunk, TIMELINE_WIDTHS, s))
    out += _heartbeats(events, s)
    return out


#: Events found by (device_id, trigger type, trigger seq): the warning results and the camera's decisions.
_Found = Mapping[tuple[Any, Any, Any], Mapping[str, Any]]


def _event_row(event: EventFacts, results: _Found, decisions: _Found, s: ReportStyles) -> list[Flowable | str]:
    name = event_name(event.type)
    zh, en = event_details(event.type, event.payload)
    alert = event.type in {"intrusion", "tamper", "outbox_full", "command_rejected"}
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
        if warning.get("warning") == "started":
            outcome = results.get((event.device_id, event.type, event.seq))
            ozh, oen = outcome_words(outcome)
            zh, en = _join(zh, ozh), _join(en, oen)
            alert = alert or (outcome is not None and _failed(outcome))
    return [
        court_time(event.ts),
        court_time(event.received_at),
        event.device_id,
        str(event.seq),
        cell(name[0], name[1], s, alert=alert),
        cell(zh, en, s, alert=alert),
    ]


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


def _heartbeats(events: Sequence[EventFacts], s: ReportStyles) -> list[Flowable]:
    days = Counter((e.device_id, court_time(e.ts)[:10]) for e in events if e.type == "heartbeat")
    if not days:
        return []
    rows = [[device, day, str(count)] for (device, day), count in sorted(days.items())]
    header = [("封条", "seal"), ("日期（封条时钟）", "day (seal's clock)"), ("心跳次数", "heartbeats")]
    return [
        Paragraph(markup("心跳（按封条、日期汇总，不逐条列出）"), s.h2),
        Paragraph(markup("Heartbeats, counted per seal and day, not listed one by one"), s.en),
        grid(header, rows, [40 * mm, 40 * mm, 30 * mm], s),
    ]


def type_counts(events: Sequence[EventFacts], s: ReportStyles) -> Table:
    """How many events of each type each seal sent (every line of events.jsonl is counted here)."""
    counts = Counter((e.device_id, e.type) for e in events)
    rows = [[device, cell(*event_name(kind), s), str(n)] for (device, kind), n in sorted(counts.items())]
    rows.append([cell("合计", "total", s), "", str(len(events))])
    return grid([("封条", "seal"), ("事件类型", "event type"), ("条数", "count")], rows, [40 * mm, 70 * mm, 25 * mm], s)


# --- snapshots --------------------------------------------------------------------------------------------------


def contact_sheet(snapshots: Sequence[SnapshotFacts], s: ReportStyles) -> list[Flowable]:
    """Up to :data:`CONTACT_SHEET_MAX` thumbnails of the snapshots the court holds, in order of receipt; the rest,
    and those it does not hold, are named by their path in the bundle."""
    held = sorted((x for x in snapshots if x.jpeg is not None), key=lambda x: (x.received_at is None, x.received_at))
    shown, rest = held[:CONTACT_SHEET_MAX], held[CONTACT_SHEET_MAX:]
    missing = [x for x in snapshots if x.jpeg is None]
    out = para(
        f"共 {len(snapshots)} 张快照：法院存有 {len(held)} 张，缩略图 {len(shown)} 张；未存有 {len(missing)} 张。",
        f"{len(snapshots)} snapshots: the court holds {len(held)}, {len(shown)} shown as thumbnails; "
        f"{len(missing)} not held.",
        s,
    )
    width = (170 * mm) / THUMB_COLUMNS
    tiles = [_tile(x, width, s) for x in shown]
    if tiles:
        rows = [list(r) + [""] * (THUMB_COLUMNS - len(r)) for r in _chunks(tiles, THUMB_COLUMNS)]
        out.append(font_table(rows, [("VALIGN", (0, 0), (-1, -1), "TOP")], s.font, colWidths=[width] * THUMB_COLUMNS))
    for title, items in ((("其余快照（见证据包中的文件）", "Other snapshots (files in the bundle)"), rest),
                         (("法院未存有的快照", "Snapshots the court does not hold"), missing)):  # fmt: skip
        if items:
            out += [Paragraph(markup(title[0]), s.h2), Paragraph(markup(title[1]), s.en)]
            names = [[cell(x.path, "", s), x.device_id, court_time(x.received_at)] for x in items]
            header = [("文件", "path"), ("封条", "seal"), ("收到", "received")]
            for chunk in _chunks(names, TIMELINE_CHUNK):
                out.append(grid(header, chunk, [110 * mm, 28 * mm, 32 * mm], s))
    return out


def _tile(snapshot: SnapshotFacts, width: float, s: ReportStyles) -> Table:
    caption = cell(f"{snapshot.sha256[:16]}…", f"{snapshot.device_id} {court_time(snapshot.received_at)}", s)
    picture: Flowable
    try:
        picture = _thumbnail(snapshot.jpeg or b"", width - 4 * mm)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        logger.warning("snapshot %s cannot be shown as a thumbnail: %s", snapshot.sha256, exc)
        picture = cell("无法解码的图像", "not a readable image", s, alert=True)
    return font_table([[picture], [caption]], [("LEFTPADDING", (0, 0), (-1, -1), 1)], s.font)


def _thumbnail(jpeg: bytes, width: float) -> Image:
    with PILImage.open(io.BytesIO(jpeg)) as image:
        image.thumbnail((THUMB_PX, THUMB_PX))
        small = io.BytesIO()
        image.convert("RGB").save(small, "JPEG", quality=80)
        ratio = image.height / image.width
    small.seek(0)
    return Image(small, width=width, height=width * ratio)


# --- alarms, commands, removal requests --------------------------------------------------------------------------


def _history(entries: Sequence[HistoryEntry], s: ReportStyles) -> Paragraph:
    lines = [f"{court_time(h.at)} {h.actor} {h.action}" + (f"：{h.note}" if h.note else "") for h in entries]
    return Paragraph("<br/>".join(markup(line) for line in lines) or "—", s.cell)


def alarms_table(alarms: Sequence[AlarmFacts], s: ReportStyles) -> list[Flowable]:
    if not alarms:
        return para("无告警。", "No alarms.", s)
    header = [("编号", "id"), ("封条", "seal"), ("类型", "kind"), ("级别", "severity"), ("状态", "state"),
              ("首次", "opened"), ("次数", "count"), ("处理经过", "history")]  # fmt: skip
    rows = [[str(a.id), a.device_id, a.kind, a.severity, a.state, court_time(a.opened_at), str(a.count),
             _history(a.history, s)] for a in alarms]  # fmt: skip
    widths = [10 * mm, 20 * mm, 20 * mm, 13 * mm, 17 * mm, 22 * mm, 10 * mm, None]
    return [grid(header, chunk, widths, s) for chunk in _chunks(rows, TIMELINE_CHUNK)]


def commands_table(commands: Sequence[CommandFacts], s: ReportStyles) -> list[Flowable]:
    if not commands:
        return para("未向本案封条发送指令。", "No commands were sent to the case's seals.", s)
    header = [("编号", "id"), ("封条", "seal"), ("指令", "action"), ("发出", "issued"), ("发出人", "by"),
              ("状态", "state"), ("应答事件序号", "answer seq"), ("应答", "answer")]  # fmt: skip
    rows = [[str(c.id), c.device_id, c.action, court_time(c.issued_at), c.issued_by, c.state,
             "—" if c.answer_seq is None else str(c.answer_seq), cell(c.answer or "—", "", s)]
            for c in commands]  # fmt: skip
    widths = [10 * mm, 20 * mm, 18 * mm, 24 * mm, 18 * mm, 18 * mm, 16 * mm, None]
    return [grid(header, chunk, widths, s) for chunk in _chunks(rows, TIMELINE_CHUNK)]


def removals_table(removals: Sequence[RemovalFacts], s: ReportStyles) -> list[Flowable]:
    if not removals:
        return para("无解除查封申请。", "No removal requests.", s)
    header = [("编号", "id"), ("理由", "ground"), ("状态", "state"), ("申请人", "filed by"), ("申请时间", "filed"),
              ("证明文件", "proofs"), ("经过与决定", "history and decision")]  # fmt: skip
    rows = [[str(r.id), r.ground, r.state, r.filed_by, court_time(r.filed_at),
             cell("\n".join(p[:16] + "…" for p in r.proofs) or "—", "", s), _history(r.history, s)]
            for r in removals]  # fmt: skip
    widths = [10 * mm, 20 * mm, 16 * mm, 18 * mm, 24 * mm, 24 * mm, None]
    return [grid(header, chunk, widths, s) for chunk in _chunks(rows, TIMELINE_CHUNK)]
