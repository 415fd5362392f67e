"""The evidence report (report.pdf in the case's bundle): an A4 PDF in Chinese with English, a pure function of
:class:`ReportFacts` — the cover, the verification summary, the seals, the timeline, the snapshots' contact sheet,
alarms, commands, removal requests, and the closing section on what the evidence shows and does not show.

Set in the notice's embedded CJK font (:mod:`server.notices.fonts`) with the shared table pieces of
:mod:`server.pdf_layout`. Work is bounded: the timeline lists only significant events in small tables and counts
heartbeats per day; at most :data:`~server.export.report_sections.CONTACT_SHEET_MAX` thumbnails are drawn.
"""

from __future__ import annotations

import io
import logging
import time

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, PageBreak, Paragraph, SimpleDocTemplate, Spacer

from seal_protocol import parse_ts
from server.core.court_clock import court_clock
from server.export.event_summary import EventSummary
from server.export.report_closing import closing
from server.export.report_facts import (
    AlarmFacts,
    Binding,
    Check,
    CheckpointFacts,
    CommandFacts,
    EventFacts,
    ExportFacts,
    HistoryEntry,
    OfflinePeriod,
    RemovalFacts,
    ReportFacts,
    SealFacts,
    SnapshotFacts,
    TimestampFacts,
    offline_periods,
)
from server.export.report_seals import seals_section
from server.export.report_sections import (
    ReportStyles,
    alarms_table,
    cell,
    commands_table,
    contact_sheet,
    grid,
    heading,
    para,
    removals_table,
)
from server.export.report_text import SIMULATED, SIMULATED_MEANING, clip, timed
from server.export.report_timeline import timeline, type_counts
from server.notices.fonts import FontChoice, find_font, register_font
from server.pdf_glyphs import placeholder
from server.pdf_layout import markup

__all__ = [
    "AlarmFacts",
    "Binding",
    "Check",
    "CheckpointFacts",
    "CommandFacts",
    "EventFacts",
    "ExportFacts",
    "HistoryEntry",
    "OfflinePeriod",
    "RemovalFacts",
    "ReportFacts",
    "SealFacts",
    "SnapshotFacts",
    "TimestampFacts",
    "offline_periods",
    "render_report",
]

logger = logging.getLogger(__name__)

#: Characters the note on characters not drawn names, at most.
GLYPHS_NOTE_MAX = 8


def render_report(facts: ReportFacts, *, font: FontChoice | None = None) -> bytes:
    """The report PDF of ``facts``, set in ``font`` (default: the first CJK font the system has, as for the notice;
    :class:`~server.notices.errors.NoticesUnavailable` if there is none)."""
    started = time.perf_counter()
    styles = ReportStyles(register_font(font or find_font(None)))
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=f"电子封条证据报告 Evidence report {facts.case_no}",
        author=facts.court,
        subject=f"case {facts.case_no}, exported {court_clock(facts.export.at)}",
        creator="court-seal",
        initialFontName=styles.font,
        initialFontSize=9,
    )

    def footer(canvas: Canvas, document: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(styles.font, 7)
        line = f"{facts.case_no} · 证据报告 evidence report · 第 {document.page} 页 page"
        canvas.drawString(18 * mm, 8 * mm, styles.glyphs.drawable(line))
        canvas.restoreState()

    events = facts.summary or EventSummary.of(facts.events)
    doc.build(_story(facts, events, styles), onFirstPage=footer, onLaterPages=footer)
    pdf = buffer.getvalue()
    logger.info(
        "evidence report of %s: %d events, %d pages, %d bytes in %.2f s",
        facts.case_no,
        events.count,
        doc.page,
        len(pdf),
        time.perf_counter() - started,
    )
    return pdf


def _story(facts: ReportFacts, events: EventSummary, s: ReportStyles) -> list[Flowable]:
    cover = _cover(facts, events, s)
    story = heading("导出服务器的自检", "The exporting server's self-check", s) + _checks(facts, s)
    story += heading("事件数量", "Events counted", s) + [type_counts(events, s)]
    story += heading("电子封条", "The seals", s) + seals_section(facts, s)
    story += heading("法院隔离区", "The court's quarantine", s) + _quarantine(facts, s)
    story += [PageBreak(), *heading("事件时间线", "Timeline of significant events", s)]
    story += timeline(events, facts.offline, s, commands=facts.commands)
    story += heading("快照", "Snapshots", s) + contact_sheet(facts.snapshots, s)
    story += heading("告警", "Alarms", s) + alarms_table(facts.alarms, s)
    story += heading("指令与应答", "Commands and answers", s) + commands_table(facts.commands, s)
    story += heading("解除查封申请与决定", "Removal requests and decisions", s) + removals_table(facts.removals, s)
    story += [PageBreak(), *closing(facts, s)]
    # Every text is set (and checked by s.glyphs) once the story is made: the note goes on the cover, before its
    # page break, and the footer's case number is already on the cover.
    return [*cover[:-1], *_glyphs_note(s), cover[-1], *story]


def _glyphs_note(s: ReportStyles) -> list[Flowable]:
    """The line that says, once, that characters the font cannot draw were shown by their code point: nothing if
    there was none."""
    replaced = sorted(s.glyphs.replaced)
    if not replaced:
        return []
    shown = "、".join(placeholder(c) for c in replaced[:GLYPHS_NOTE_MAX])
    more = "…" if len(replaced) > GLYPHS_NOTE_MAX else ""
    return para(
        f"注意：本报告的字体无法显示的字符（以及文字方向控制符，未予应用）以其 Unicode 码位标出，如 {shown}{more}"
        f"（共 {len(replaced)} 种）；原文以证据包中的 JSON 文件为准。",
        f"Note: characters the report's font cannot draw (and text direction controls, not applied) are shown by "
        f"their Unicode code point, such as {shown}{more} ({len(replaced)} in all); the exact text is in the "
        "bundle's JSON files.",
        s,
    )


def _cover(facts: ReportFacts, events: EventSummary, s: ReportStyles) -> list[Flowable]:
    export, checkpoint = facts.export, facts.checkpoint
    stamp = facts.timestamp
    rows = [
        ("法院", "court", facts.court),
        ("案号", "case number", facts.case_no),
        ("导出时间", "exported at", f"{court_clock(export.at)} (UTC+8)"),
        ("导出人", "exported by", export.by),
        (*timed("时间范围", "range"), f"{court_clock(export.range_from)} — {court_clock(export.range_to)}"),
        (
            "事件 / 快照 / 审计记录",
            "events / snapshots / audit entries",
            f"{events.count} / {len(facts.snapshots)} / {facts.audit_count}",
        ),
        *_simulated_row(events),
        (
            "告警 / 指令 / 解除申请",
            "alarms / commands / removal requests",
            f"{len(facts.alarms)} / {len(facts.commands)} / {len(facts.removals)}",
        ),
        ("日志", "log origin", checkpoint.origin),
        (
            "检查点",
            "checkpoint",
            f"tree size {checkpoint.size}, root (base64, as in log/checkpoint.txt) {checkpoint.root_b64} "
            f"(hex {checkpoint.root_hex})",
        ),
        (
            "日志公钥（须与法院公布的日志公钥比对）",
            "log key (compare it with the one the court publishes)",
            checkpoint.log_key,
        ),
        (
            "时间戳",
            "time stamp",
            f"{court_clock(stamp.gen_time)} (UTC+8), {stamp.tsa_name}：时间戳机构所称的时间，其证书链须以 "
            "seal-verify --tsa-root 核验 / the time the TSA states; check its chain with seal-verify --tsa-root"
            if stamp
            else "无（本证据包没有时间戳） none: this bundle has no time stamp",
        ),
    ]
    table = grid(
        [("项目", "item"), ("内容", "value")],
        [[cell(zh, en, s), cell(v, "", s)] for zh, en, v in rows],
        [45 * mm, None],
        s,
    )
    return [
        Spacer(1, 10 * mm),
        Paragraph(markup(facts.court, s.glyphs), s.subtitle),
        Paragraph(markup("电子封条证据报告", s.glyphs), s.title),
        Paragraph(markup("EVIDENCE REPORT OF THE ELECTRONIC COURT SEAL", s.glyphs), s.subtitle),
        Spacer(1, 6 * mm),
        table,
        Spacer(1, 4 * mm),
        *para(
            "本报告是证据包 case.zip 的一部分，仅为便于阅读；证据以包内文件为准。核验方法：在任何计算机上运行 "
            "seal-verify case.zip --log-key 公钥（无需联网；公钥须取自法院的公布，而非本包），"
            "它核验每个文件的 SHA-256、清单与检查点的签名、每条事件的签名与包含证明，以及时间戳。",
            "This report is part of the bundle case.zip and only a reading aid: the files in the bundle are the "
            "evidence. To check it, run seal-verify case.zip --log-key KEY on any computer (no network needed; KEY "
            "is the log key the court publishes, not the one in this bundle): it "
            "checks every file's SHA-256, the manifest's and checkpoint's signatures, every event's signature and "
            "inclusion proof, and the time stamp.",
            s,
        ),
        PageBreak(),
    ]


def _simulated_row(events: EventSummary) -> list[tuple[str, str, str]]:
    """The cover's row of the events a simulated seal signed, if any: a simulated intrusion is no intrusion."""
    simulated = events.simulated
    if not simulated:
        return []
    return [(SIMULATED[0], SIMULATED[1], f"{simulated}：{SIMULATED_MEANING[0]} / {SIMULATED_MEANING[1]}")]


def _checks(facts: ReportFacts, s: ReportStyles) -> list[Flowable]:
    if not facts.checks:
        return para("导出时未进行核验。", "No verification was run at export.", s)
    scope = para(
        "下表是导出服务器生成本包时，在加入本报告之前，对报告以外各文件所作的自检（seal-verify，用服务器自身的日志公钥），"
        "不构成锚定：它不能代替用法院公布的日志公钥独立运行 seal-verify。本报告 report.pdf 不在所查文件之列，"
        "本包的文件比表中所计多一个。",
        "The table is the exporting server's own check of the files other than this report, made as it built the "
        "bundle, before the report was added (seal-verify with the server's own log key): it anchors nothing, and "
        "does not replace running seal-verify with the log key the court publishes. This report, report.pdf, is not "
        "among the files checked: the bundle holds one file more than the table counts.",
        s,
    )
    words = {True: ("通过", "passed"), False: ("未通过", "FAILED"), None: ("无此项", "absent")}
    rows = [
        [
            cell(c.zh, c.en, s),
            cell(*(("警告", "WARNING") if c.warning else words[c.ok]), s, alert=c.ok is False or c.warning),
            cell(clip(c.detail or "—", "seal-verify --json"), "", s),
        ]
        for c in facts.checks
    ]
    failed = sum(c.ok is False for c in facts.checks)
    warned = sum(c.warning for c in facts.checks)
    zh_warned = f"，{warned} 项警告（见说明）" if warned else ""
    en_warned = f", {warned} with warnings (see the detail)" if warned else ""
    summary = para(
        f"共 {len(facts.checks)} 项自检，{failed} 项未通过{zh_warned}。",
        f"{len(facts.checks)} checks by the exporting server, {failed} failed{en_warned}.",
        s,
    )
    return [
        *scope,
        *summary,
        grid([("核验项目", "check"), ("结果", "result"), ("说明", "detail")], rows, [60 * mm, 20 * mm, None], s),
    ]


def _quarantine(facts: ReportFacts, s: ReportStyles) -> list[Flowable]:
    """What the court refused of the case's seals while bound to it: messages that are not among the events."""
    if not facts.quarantine:
        return para(
            "本案封条绑定期间，法院未拒收其任何消息。",
            "The court refused no message of the case's seals while they were bound to it.",
            s,
        )
    out = para(
        "以下消息是法院在封条绑定本案期间收到但拒收、存于隔离区的，不在本包的事件之列（法院的记录，非封条签名）。"
        "重放序号（replayed_seq）多为封条换钥后重新开始编号：其事件不会被存入，须以新的设备编号登记。",
        "The court received these messages of the case's seals while bound to it and refused them (kept in its "
        "quarantine): they are not among the bundle's events (the court's record, not signed by the seals). "
        "replayed_seq usually means a seal given a new key started its numbering again: its events will not be "
        "stored until it is registered under a new device id.",
        s,
    )
    rows = [
        [
            str(q.get("device_id")),
            str(q.get("reason")),
            f"{q.get('messages')} / {q.get('copies')}",
            cell(f"{_when(q.get('first_received_at'))} — {_when(q.get('last_received_at'))}", "", s),
        ]
        for q in facts.quarantine
    ]
    header = [("封条", "seal"), ("原因", "reason"), ("消息/份数", "messages/copies"), timed("收到", "received")]
    return [*out, grid(header, rows, [30 * mm, 34 * mm, 26 * mm, None], s)]


def _when(text: object) -> str:
    try:
        return court_clock(parse_ts(str(text)))
    except ValueError:
        return "—"
