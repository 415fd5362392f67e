"""The notice as an A4 PDF (reportlab): Chinese first, an English line under each part, the court-signed QR code.

The QR code (segno) is drawn as vector squares, so it prints sharp at any size; the CJK font is embedded as a
subset (:mod:`server.notices.fonts`). A notice whose facts have a character that font cannot draw is not printed
(:func:`check_printable`): the paper would name another judge or place than the signed facts its QR code leads to.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import FILL_NON_ZERO
from reportlab.platypus import Flowable, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table

from server.notices.errors import FactsMissing, UnprintableFact
from server.notices.facts import FACT_ROWS, NoticeFacts, fact_rows, missing_facts
from server.notices.wording import WARNING_EN, WARNING_ZH, ruling_line
from server.pdf_glyphs import Glyphs, first_undrawable
from server.pdf_layout import address_lines, font_table, markup, stack

LAW_ZH = (
    "依据：《最高人民法院关于人民法院民事执行中查封、扣押、冻结财产的规定》（封条、公告）；"
    "《中华人民共和国民事诉讼法》关于妨害执行的强制措施的规定；《中华人民共和国刑法》第三百一十四条"
    "（非法处置查封、扣押、冻结的财产罪）。"
)
LAW_EN = (
    "Legal basis: Provisions of the Supreme People's Court on the Seizure, Detention and Freezing of Property in "
    "Civil Enforcement (seals and public notices); Civil Procedure Law of the PRC, on compulsory measures against "
    "obstructing enforcement; Criminal Law of the PRC, Article 314 (unlawful disposal of seized, detained or frozen "
    "property)."
)
QR_SIZE = 48 * mm


@dataclass(frozen=True)
class PrintedNotice:
    """Everything printed: the facts, the notice's id and day of issue, and the URL the QR code holds."""

    facts: NoticeFacts
    notice_id: int
    issued_on: date
    url: str


class QrCode(Flowable):
    """A QR code of ``text`` as vector squares, ``size`` wide including its quiet zone."""

    def __init__(self, text: str, size: float) -> None:
        import segno

        super().__init__()
        self.matrix = segno.make(text, error="m", micro=False).matrix
        self.size = size
        self.width = self.height = size

    def draw(self) -> None:
        count = len(self.matrix) + 8  # 4 modules of quiet zone on each side
        module = self.size / count
        # One path of the dark runs of each row, filled once: adjacent squares filled one by one leave hairline
        # seams where a renderer anti-aliases their shared edges, which can keep a scanner from reading the code.
        path = self.canv.beginPath()
        for row, line in enumerate(self.matrix):
            y = self.size - (row + 5) * module
            column = 0
            while column < len(line):
                if not line[column]:
                    column += 1
                    continue
                start = column
                while column < len(line) and line[column]:
                    column += 1
                path.rect((start + 4) * module, y, (column - start) * module, module)
        self.canv.setFillColor(colors.black)
        self.canv.drawPath(path, stroke=0, fill=1, fillMode=FILL_NON_ZERO)


def render_notice_pdf(notice: PrintedNotice, font: str) -> bytes:
    """The PDF of ``notice``, set in the registered reportlab font ``font`` (a CJK one), on one page: long facts
    (property and address may have 256 characters each) are set smaller until the page holds them.
    :class:`~server.notices.errors.FactsMissing` if a fact every notice prints is missing (no paper says "not
    recorded" of them), :class:`~server.notices.errors.UnprintableFact` if a fact has a character the font cannot
    draw."""
    missing = missing_facts(notice.facts)
    if missing:
        raise FactsMissing(notice.facts.case_no, missing)
    check_printable(notice.facts, font)
    for scale in SCALES:
        pdf, pages = _render(notice, _Styles(font, scale))
        if pages == 1:
            break
    return pdf


def check_printable(facts: NoticeFacts, font: str) -> None:
    """:class:`~server.notices.errors.UnprintableFact` naming the first fact (the court's name heads the paper, then
    the rows in order) with a character the registered font ``font`` cannot draw, or a text direction control."""
    labels = {"court": ("法院", "Court"), **{name: (zh, en) for name, zh, en in FACT_ROWS}}
    found = first_undrawable(Glyphs(font), {name: getattr(facts, name) or "" for name in labels})
    if found is not None:
        name, char = found
        raise UnprintableFact(name, *labels[name], char)


#: The type sizes tried, largest first.
SCALES = (1.0, 0.85, 0.7, 0.55)
#: The page's margins, and the width of text between them.
SIDE_MARGIN = 20 * mm
TEXT_WIDTH = A4[0] - 2 * SIDE_MARGIN


def _render(notice: PrintedNotice, styles: _Styles) -> tuple[bytes, int]:
    facts = notice.facts
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=SIDE_MARGIN,
        rightMargin=SIDE_MARGIN,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title=f"查封公告 Notice of seizure {facts.case_no}",
        author=facts.court,
        subject=f"electronic seal {facts.device_id}",
        creator="court-seal",
        initialFontName=styles.font,
        initialFontSize=10,
    )
    opening_zh, opening_en = ruling_line(facts.ruling_no)
    story = [
        Paragraph(_x(facts.court, styles), styles.court),
        Paragraph(_x("查 封 公 告", styles), styles.title),
        Paragraph(_x("NOTICE OF SEIZURE · ELECTRONIC COURT SEAL", styles), styles.subtitle),
        Spacer(1, 3 * mm),
        _stack(
            [
                Paragraph(_x(opening_zh, styles), styles.zh),
                Paragraph(_x(opening_en, styles), styles.en),
            ],
            styles,
        ),
        Spacer(1, 2 * mm),
        _facts_table(facts, styles),
        Spacer(1, 4 * mm),
        _warning(styles),
        Spacer(1, 2 * mm),
        Paragraph(_x(LAW_ZH, styles), styles.small_zh),
        Paragraph(_x(LAW_EN, styles), styles.small_en),
        Spacer(1, 3 * mm),
        KeepTogether(_qr_block(notice, styles)),
    ]
    doc.build(story)
    return buffer.getvalue(), doc.page


class _Styles:
    def __init__(self, font: str, scale: float = 1.0) -> None:
        self.font = font
        self.glyphs = Glyphs(font)

        def style(name: str, parent: ParagraphStyle | None, size: float, leading: float, **kw: Any) -> ParagraphStyle:
            return ParagraphStyle(name, parent, fontName=font, fontSize=size * scale, leading=leading * scale, **kw)

        grey = colors.HexColor("#333333")
        red = colors.HexColor("#b00000")
        base = style("base", None, 11, 15, wordWrap="CJK")
        self.court = style("court", base, 18, 24, alignment=TA_CENTER)
        self.title = style("title", base, 28, 34, alignment=TA_CENTER, spaceBefore=2)
        self.subtitle = style("subtitle", base, 10, 13, alignment=TA_CENTER)
        self.zh = base
        self.en = style("en", base, 8.5, 11, textColor=grey)
        self.label_zh = style("label_zh", base, 11, 14)
        self.label_en = style("label_en", self.en, 7.5, 9.5)
        self.value = style("value", base, 12, 16)
        self.warning_zh = style("warning_zh", base, 15, 21, textColor=red)
        self.warning_en = style("warning_en", self.en, 9.5, 12.5)
        self.small_zh = style("small_zh", base, 8.5, 12)
        self.small_en = style("small_en", self.en, 7, 9)
        self.url = style("url", base, 6.5, 8.5)


def _x(text: str, styles: _Styles) -> str:
    return markup(text, styles.glyphs)


def _table(
    rows: list[list[Flowable]], commands: Sequence[tuple[object, ...]], styles: _Styles, **kwargs: object
) -> Table:
    return font_table(rows, commands, styles.glyphs, split_rows=False, **kwargs)


def _stack(rows: list[Flowable], styles: _Styles) -> Table:
    return stack(rows, styles.glyphs)


def _facts_table(facts: NoticeFacts, styles: _Styles) -> Table:
    data: list[list[Flowable]] = [
        [
            _stack([Paragraph(_x(zh, styles), styles.label_zh), Paragraph(_x(en, styles), styles.label_en)], styles),
            _value(v, styles),
        ]
        for zh, en, v in fact_rows(facts)
    ]
    commands = [
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, colors.HexColor("#999999")),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    return _table(data, commands, styles, colWidths=[38 * mm, None])


def _value(text: str, styles: _Styles) -> Paragraph:
    return Paragraph(_x(text, styles), styles.value)


def _warning(styles: _Styles) -> Table:
    rows: list[list[Flowable]] = [
        [Paragraph(_x(WARNING_ZH, styles), styles.warning_zh)],
        [Paragraph(_x(WARNING_EN, styles), styles.warning_en)],
    ]
    commands = [
        ("BOX", (0, 0), (-1, -1), 1.5, colors.HexColor("#b00000")),
        ("LEFTPADDING", (0, 0), (-1, -1), 8),
        ("RIGHTPADDING", (0, 0), (-1, -1), 8),
        ("TOPPADDING", (0, 0), (0, 0), 6),
        ("BOTTOMPADDING", (0, -1), (-1, -1), 6),
    ]
    return _table(rows, commands, styles)


def _qr_block(notice: PrintedNotice, styles: _Styles) -> list[Flowable]:
    caption = _stack(
        [
            Paragraph(
                _x(
                    "扫描二维码：核验本公告真伪，查看封条现状，了解申请解除查封的方式和联系电话。"
                    "本纸所印电话、地址等须与扫码所见法院网页逐项一致。",
                    styles,
                ),
                styles.zh,
            ),
            Paragraph(
                _x(
                    "Scan the code to check that this notice is authentic, see the seal's current state, and learn how "
                    "to ask for the seizure to be lifted and whom to call. The phones, address and other facts printed "
                    "here must match the court's page line by line.",
                    styles,
                ),
                styles.en,
            ),
            Spacer(1, 6 * mm),
            Paragraph(_x(f"{notice.facts.court}", styles), styles.zh),
            Paragraph(_x(f"{notice.issued_on.isoformat()}　公告编号 Notice no. {notice.notice_id}", styles), styles.zh),
        ],
        styles,
    )
    commands = [("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (0, 0), 0)]
    table = _table([[QrCode(notice.url, QR_SIZE), caption]], commands, styles, colWidths=[QR_SIZE + 4 * mm, None])
    style = styles.url
    lines = address_lines(notice.url, lambda text: stringWidth(text, style.fontName, style.fontSize), TEXT_WIDTH * 0.98)
    return [table, Paragraph("<br/>".join(_x(line, styles) for line in lines), style)]
