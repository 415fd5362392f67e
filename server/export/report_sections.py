"""The evidence report's styles and table pieces, the contact sheet of snapshot thumbnails, and the tables of alarms,
commands and removal requests, a request's steps one per row (each paginated in tables of :data:`ROWS_PER_TABLE`
rows; a row taller than a page splits across pages). Their tokens (a command's ``disarm``, ``rejected``,
``wrong_case``) are set in words, Chinese first, as the case page says them; the bundle's JSONL files keep the
tokens."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Flowable, Image, Paragraph, Spacer, Table

from seal_protocol import parse_ts
from server.commands.refusals import OWN_BYTES_SECTION
from server.core.court_clock import court_clock
from server.export.pictures import LOST, LOST_ON_SEAL, NOT_RECEIVED, NOT_STORED_BY_SEAL, REFUSED_BY_COURT
from server.export.report_alarm_marks import alarm_marks
from server.export.report_facts import (
    AlarmFacts,
    CommandFacts,
    HistoryEntry,
    RemovalFacts,
    SnapshotFacts,
)
from server.export.report_text import (
    ZONE_EN,
    ZONE_ZH,
    clip,
    ground_words,
    plain,
    snapshot_lost_words,
    sort_time,
    timed,
)
from server.ingest.quarantine_rows import QUARANTINE_RAW_LIMIT
from server.pdf_glyphs import Glyphs
from server.pdf_layout import TextCell, font_table, markup
from server.words import words

logger = logging.getLogger(__name__)

#: Thumbnails on the contact sheet; the other snapshots are named by their path in the bundle.
CONTACT_SHEET_MAX = 60
THUMB_COLUMNS = 5
THUMB_PX = 240
#: Rows per table: small tables split across pages and lay out in linear time.
ROWS_PER_TABLE = 60
GRID = colors.HexColor("#999999")


class ReportStyles:
    """The report's paragraph styles, all in the embedded CJK font ``font``, and what that font can draw (every text
    of the report goes through :attr:`glyphs`: the characters it replaced are what the report's note is about)."""

    def __init__(self, font: str) -> None:
        self.font = font
        self.glyphs = Glyphs(font)
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
        self.alert = ParagraphStyle("alert", self.cell, textColor=colors.HexColor("#b00000"))


def heading(zh: str, en: str, styles: ReportStyles) -> list[Flowable]:
    return [Paragraph(markup(zh, styles.glyphs), styles.h1), Paragraph(markup(en, styles.glyphs), styles.h1_en)]


def para(zh: str, en: str, styles: ReportStyles) -> list[Flowable]:
    """A paragraph in Chinese, then its English."""
    return [
        Paragraph(markup(zh, styles.glyphs), styles.body),
        Paragraph(markup(en, styles.glyphs), styles.en),
        Spacer(1, 1.5 * mm),
    ]


def cell(zh: str, en: str, styles: ReportStyles, *, alert: bool = False) -> TextCell:
    """A table cell: Chinese, a line break, English (never broken just after a ``-``: :class:`TextCell`)."""
    text = zh + ("\n" + en if en and en != zh else "")
    return TextCell(text, styles.alert if alert else styles.cell, styles.glyphs)


def grid(
    header: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Flowable | str]],
    widths: Sequence[float | None],
    s: ReportStyles,
) -> Table:
    """A table with a bilingual header row repeated on every page (no header row if ``header`` is empty), whose rows
    split across pages where one is taller than a page (:func:`~server.pdf_layout.font_table`)."""
    commands = [
        ("GRID", (0, 0), (-1, -1), 0.3, GRID),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTSIZE", (0, 0), (-1, -1), 7.5),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if not header:
        return font_table(rows, commands, s.glyphs, split_rows=True, colWidths=list(widths))
    head = [cell(zh, en, s) for zh, en in header]
    commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")))
    return font_table([head, *rows], commands, s.glyphs, split_rows=True, colWidths=list(widths), repeatRows=1)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- snapshots --------------------------------------------------------------------------------------------------


def contact_sheet(snapshots: Sequence[SnapshotFacts], s: ReportStyles) -> list[Flowable]:
    """Up to :data:`CONTACT_SHEET_MAX` thumbnails of the snapshots the court holds, in order of receipt; the rest,
    and those it does not hold, are named by their path in the bundle."""
    held = sorted((x for x in snapshots if x.jpeg is not None), key=lambda x: sort_time(x.received_at))
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
        rows = [list(r) + [""] * (THUMB_COLUMNS - len(r)) for r in chunks(tiles, THUMB_COLUMNS)]
        out.append(font_table(rows, [("VALIGN", (0, 0), (-1, -1), "TOP")], s.glyphs, colWidths=[width] * THUMB_COLUMNS))
    if rest:
        out += [
            Paragraph(markup("其余快照（见证据包中的文件）", s.glyphs), s.h2),
            Paragraph(markup("Other snapshots (files in the bundle)", s.glyphs), s.en),
        ]
        names = [[cell(x.path, "", s), x.device_id, court_clock(x.received_at)] for x in rest]
        header = [("文件", "path"), ("封条", "seal"), timed("收到", "received")]
        for chunk in chunks(names, ROWS_PER_TABLE):
            out.append(grid(header, chunk, [122 * mm, 20 * mm, 32 * mm], s))
    if missing:
        out += [
            Paragraph(markup("法院未存有的快照", s.glyphs), s.h2),
            Paragraph(markup("Snapshots the court does not hold", s.glyphs), s.en),
        ]
        names = [[cell(x.path, "", s), x.device_id, court_clock(x.received_at), _absence(x, s)] for x in missing]
        header = [("文件", "path"), ("封条", "seal"), timed("收到", "received"), ("原因", "why")]
        for chunk in chunks(names, ROWS_PER_TABLE):
            out.append(grid(header, chunk, [72 * mm, 20 * mm, 28 * mm, 54 * mm], s))
    return out


def _absence(snapshot: SnapshotFacts, s: ReportStyles) -> TextCell:
    """Why the court does not hold a picture, as the bundle says (``snapshots.jsonl``): the seal signed that it could
    not store it, or that it lost its copy before the court receipted it (its reason and the event's seq: that the
    court never received it stays the court's word), it never arrived, or the court received and lost it."""
    if snapshot.absent_reason == NOT_STORED_BY_SEAL and snapshot.not_stored:
        szh, sen = _cited(snapshot.not_stored, _not_stored_words)
        return cell(f"封条未能存储，从未发出（{szh}）", f"not stored by the seal, never sent ({sen})", s)
    if snapshot.absent_reason == LOST_ON_SEAL and snapshot.snapshot_lost:
        szh, sen = _cited(snapshot.snapshot_lost, _lost_words)
        return cell(
            f"封条签名声明：法院回执前其副本已在封条上丢失（{szh}）；法院未收到为法院所述",
            f"the seal signed that it lost its copy before the court receipted it ({sen}); that the court never "
            "received it is the court's word",
            s,
        )
    if snapshot.absent_reason == LOST:
        return cell("法院收到后丢失或被改动", "received by the court, then lost or altered", s, alert=True)
    if snapshot.absent_reason == REFUSED_BY_COURT:
        return _refused(snapshot, s)
    if snapshot.absent_reason == NOT_RECEIVED:
        others = [r for r in snapshot.refused if r.get("sha256") != snapshot.sha256]
        if others:
            reasons = "、".join(sorted({str(r.get("reason")) for r in others}))
            return cell(
                f"法院未收到该照片；其主题上收到的 {len(others)} 份其他字节已拒收（{reasons}）",
                f"never received by the court; {len(others)} other byte strings on its topic refused ({reasons})",
                s,
            )
        return cell("法院未收到", "never received by the court", s)
    return cell("—", "", s)


def _not_stored_words(statement: Mapping[str, Any]) -> tuple[str, str]:
    shown = clip(plain(str(statement.get("reason") or "—")), "snapshots.jsonl", 120)
    return shown, shown


def _lost_words(statement: Mapping[str, Any]) -> tuple[str, str]:
    """A ``snapshot_lost`` statement's reason in words, and where the seal says it keeps the file, if it does."""
    wzh, wen = snapshot_lost_words(statement.get("reason"))
    kept = statement.get("kept")
    if not isinstance(kept, str):
        return wzh, wen
    where = clip(plain(kept), "snapshots.jsonl", 120)
    return f"{wzh}，其文件仍保存在封条上（{where}）", f"{wen}; its file is kept on the seal ({where})"


def _cited(
    statements: Sequence[Mapping[str, Any]], reason_words: Callable[[Mapping[str, Any]], tuple[str, str]]
) -> tuple[str, str]:
    """The seals' statements a line lists, the first of each seal, each with its own seal and seq (two seals may
    name one picture, and the line's ``device_id`` is only one of them), in Chinese and English."""
    first: dict[str, Mapping[str, Any]] = {}
    for statement in statements:
        first.setdefault(str(statement.get("device_id")), statement)
    zh, en = [], []
    for device_id, statement in first.items():
        wzh, wen = reason_words(statement)
        seq = statement.get("seq")
        zh.append(f"封条 {plain(device_id)} 签名事件序号 {seq}：{wzh}")
        en.append(f"{plain(device_id)}'s signed event seq {seq}: {wen}")
    return "；".join(zh), "; ".join(en)


def _refused(snapshot: SnapshotFacts, s: ReportStyles) -> TextCell:
    """The court received the bytes the seal signed for and refused to store them as a picture (quarantined)."""
    copy = next(r for r in snapshot.refused if r.get("sha256") == snapshot.sha256)
    reason = clip(str(copy.get("reason")), "snapshots.jsonl", 40)
    try:
        at = court_clock(parse_ts(str(copy.get("received_at"))))
    except ValueError:
        at = "—"
    size = copy.get("size")
    kept = any(r.get("sha256") == snapshot.sha256 and r.get("kept") is True for r in snapshot.refused)
    if kept:
        where = ("字节见证据包 refused/ 目录", "the bytes are in the bundle's refused/")
    elif isinstance(size, int) and size > QUARANTINE_RAW_LIMIT:
        where = ("字节过大，未完整保存", "too large: the quarantine kept only its start")
    else:
        where = ("法院未保存其字节", "the court did not keep its bytes")
    return cell(
        f"法院于 {at}{ZONE_ZH} 收到（{size} 字节）但拒收，存于隔离区（{reason}）；{where[0]}",
        f"received by the court at {at}{ZONE_EN} ({size} bytes) but refused, kept in its quarantine ({reason}); "
        f"{where[1]}",
        s,
        alert=True,
    )


def _tile(snapshot: SnapshotFacts, width: float, s: ReportStyles) -> Table:
    caption = cell(f"{snapshot.sha256[:12]}…", f"{snapshot.device_id} {court_clock(snapshot.received_at)}{ZONE_EN}", s)
    picture: Flowable
    try:
        picture = _thumbnail(snapshot.jpeg or b"", width - 4 * mm)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        logger.warning("snapshot %s cannot be shown as a thumbnail: %s", snapshot.sha256, exc)
        picture = cell("无法解码的图像", "not a readable image", s, alert=True)
    return font_table([[picture], [caption]], [("LEFTPADDING", (0, 0), (-1, -1), 1)], s.glyphs)


def _thumbnail(jpeg: bytes, width: float) -> Image:
    with PILImage.open(io.BytesIO(jpeg)) as image:
        image.thumbnail((THUMB_PX, THUMB_PX))
        small = io.BytesIO()
        image.convert("RGB").save(small, "JPEG", quality=80)
        ratio = image.height / image.width
    small.seek(0)
    return Image(small, width=width, height=width * ratio)


# --- alarms, commands, removal requests --------------------------------------------------------------------------


def _history(
    entries: Sequence[HistoryEntry], step: Callable[[str], tuple[str, str]], where: str, s: ReportStyles
) -> TextCell:
    """One line per step: when, who, what in Chinese and English (``step`` of its action), the note."""
    lines = []
    for h in entries:
        note = f"：{clip(h.note, where)}" if h.note else ""
        lines.append(f"{court_clock(h.at)} {h.actor} {_both(*step(h.action))}{note}")
    return _lines(lines, s)


def _both(zh: str, en: str) -> str:
    """Words on one line, Chinese first: ``已关闭 Closed``."""
    return zh if zh == en else f"{zh} {en}"


def _lines(lines: Sequence[str], s: ReportStyles) -> TextCell:
    return TextCell("\n".join(lines) or "—", s.cell, s.glyphs)


def _row(values: Sequence[Flowable | str], s: ReportStyles) -> list[Flowable]:
    """A table row whose text cells wrap to their column."""
    return [cell(v, "", s) if isinstance(v, str) else v for v in values]


def alarms_table(alarms: Sequence[AlarmFacts], s: ReportStyles) -> list[Flowable]:
    if not alarms:
        return para("无告警。", "No alarms.", s)
    header = [("编号", "id"), ("封条", "seal"), ("类型", "kind"), ("级别", "severity"), ("状态", "state"),
              timed("首次", "opened"), ("次数", "count"), timed("处理经过", "history")]  # fmt: skip
    rows = [_row([str(a.id), a.device_id, _alarm_kind(a, s),
                  cell(*words("severity", a.severity), s), cell(*words("alarm_state", a.state), s),
                  court_clock(a.opened_at), str(a.count),
                  _history(a.history, _alarm_step, "alarms.jsonl", s)], s) for a in alarms]  # fmt: skip
    widths = [10 * mm, 20 * mm, 20 * mm, 15 * mm, 18 * mm, 20 * mm, 10 * mm, None]
    return [grid(header, chunk, widths, s) for chunk in chunks(rows, ROWS_PER_TABLE)]


def _alarm_kind(alarm: AlarmFacts, s: ReportStyles) -> TextCell:
    zh, en = words("alarm_kind", alarm.kind)
    if marks := alarm_marks(alarm):  # simulated (not on site), or a delayed report
        return cell(f"{zh}（{marks[0]}）", f"{en} ({marks[1]})", s, alert=True)
    return cell(zh, en, s)


def commands_table(commands: Sequence[CommandFacts], s: ReportStyles) -> list[Flowable]:
    if not commands:
        return para("未向本案封条发送指令。", "No commands were sent to the case's seals.", s)
    header = [("编号", "id"), ("封条", "seal"), ("指令", "action"), timed("发出", "issued"), ("发出人", "by"),
              ("状态", "state"), ("应答事件序号", "answer seq"), ("应答", "answer")]  # fmt: skip
    rows = [_row([str(c.id), c.device_id, cell(*words("case_command_action", c.action), s), court_clock(c.issued_at),
                  c.issued_by, cell(*words("case_command_state", c.state), s),
                  "—" if c.answer_seq is None else str(c.answer_seq), _answer(c, s)], s)
            for c in commands]  # fmt: skip
    widths = [10 * mm, 20 * mm, 18 * mm, 20 * mm, 20 * mm, 20 * mm, 16 * mm, None]
    return [grid(header, chunk, widths, s) for chunk in chunks(rows, ROWS_PER_TABLE)]


def _answer(command: CommandFacts, s: ReportStyles) -> TextCell:
    """The seal's refusal in words, or the result it reported in words (a result without words as the seal signed
    it, clipped)."""
    if command.reason and command.refused_own_bytes:  # the court's own bytes, which the seal could not verify
        return cell(*words(OWN_BYTES_SECTION, command.reason), s, alert=True)
    if command.reason:
        return cell(*words("case_command_reason", command.reason), s, alert=True)
    if command.answer is None:
        return cell("—", "", s)
    zh, en = words("case_command_result", command.answer)
    return cell(clip(plain(zh), "commands.jsonl"), clip(plain(en), "commands.jsonl"), s)


def _alarm_step(action: str) -> tuple[str, str]:
    """An alarm's step (``acknowledged``, ``closed``): the state it left the alarm in."""
    return words("alarm_state", action)


def _removal_step(action: str) -> tuple[str, str]:
    """A removal request's step (``file``, ``approve``, ``issue_disarm``): as the case page's history says it."""
    return words("removal_step", action)


def removals_table(removals: Sequence[RemovalFacts], s: ReportStyles) -> list[Flowable]:
    """The requests one per row, then their steps one per row (a request may have any number: each view of the
    creditor, each disarm sent again is one)."""
    if not removals:
        return para("无解除查封申请。", "No removal requests.", s)
    header = [("编号", "id"), ("理由", "ground"), ("状态", "state"), ("申请人", "filed by"), timed("申请时间", "filed"),
              ("经过", "steps"), ("证明文件（SHA-256）", "proofs (SHA-256)")]  # fmt: skip
    rows = [_row([str(r.id), cell(*ground_words(r.ground), s), cell(*words("case_removal_state", r.state), s),
                  r.filed_by, court_clock(r.filed_at), str(len(r.history)),
                  _lines([p[:16] + "…" for p in r.proofs], s)], s)
            for r in removals]  # fmt: skip
    widths = [10 * mm, 20 * mm, 18 * mm, 20 * mm, 20 * mm, 12 * mm, None]
    out: list[Flowable] = [grid(header, chunk, widths, s) for chunk in chunks(rows, ROWS_PER_TABLE)]
    steps = [(r.id, h) for r in removals for h in r.history]
    if steps:
        out += [CondPageBreak(30 * mm), Paragraph(markup("申请的经过与决定", s.glyphs), s.h2)]
        out.append(Paragraph(markup("Steps and decisions", s.glyphs), s.en))
        out += _steps_tables(("申请", "request"), steps, _removal_step, "removal.jsonl", s)
    return out


def _steps_tables(
    owner: tuple[str, str],
    steps: Sequence[tuple[int, HistoryEntry]],
    step: Callable[[str], tuple[str, str]],
    where: str,
    s: ReportStyles,
) -> list[Flowable]:
    """Steps one per row — whose (``owner``, by its id), when, who, what (``step`` of its action), the note
    (clipped, pointing to ``where``) — in tables of :data:`ROWS_PER_TABLE` rows."""
    header = [owner, timed("时间", "at"), ("人员", "by"), ("经过", "step"), ("说明", "note")]
    rows = [
        _row([str(owner_id), court_clock(h.at), h.actor, cell(*step(h.action), s), clip(h.note or "—", where)], s)
        for owner_id, h in steps
    ]
    widths = [12 * mm, 20 * mm, 22 * mm, 30 * mm, None]
    return [grid(header, chunk, widths, s) for chunk in chunks(rows, ROWS_PER_TABLE)]
