"""The report's section on the seals: where each stands, its bindings to the case, and the keys that signed its
events in the bundle, per registration period — what a holder compares with the key recorded when the seal was
installed (``docs/evidence.md``, "Who can forge what"). A key registered that signed nothing proves nothing."""

from __future__ import annotations

from collections.abc import Sequence

from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Paragraph

from seal_verify.verdict import KeyUse
from server.core.court_clock import court_clock
from server.evidence.verdicts import key_fingerprint
from server.export.report_facts import ReportFacts, SealFacts
from server.export.report_sections import ReportStyles, cell, grid, para
from server.export.report_text import timed
from server.pdf_layout import markup


def seals_section(facts: ReportFacts, s: ReportStyles) -> list[Flowable]:
    if not facts.seals:
        return para("本案没有绑定的封条。", "No seal is bound to this case.", s)
    out = para(
        "每个封条的“签名公钥”表按登记期间列出其登记的公钥，以及本包中由该公钥签名的事件。请将每一个签署了事件的公钥"
        "与安装封条时记录的公钥逐一核对：未签署任何事件的公钥不能证明什么。“他案”的登记是法院的记录，不在本包的"
        "日志中，本包无法核对。",
        "Each seal's table of keys lists, per registration, the key registered and the events of this bundle that "
        "key signed. Compare every key that signed events with the one recorded when the seal was installed: a key "
        "that signed nothing proves nothing. A registration in another case is the court's record, not in this "
        "bundle's log: the bundle cannot check it.",
        s,
    )
    for seal in facts.seals:
        rows = [[cell("位置", "location", s), cell(seal.location or "—", "", s)]]
        for b in seal.bindings:
            until = f"{court_clock(b.unbound_at)} {b.unbound_by or ''}" if b.unbound_at else "至今 still bound"
            rows.append(
                [
                    cell(*timed("绑定本案", "bound to the case"), s),
                    cell(f"{court_clock(b.bound_at)} {b.bound_by} — {until}", "", s),
                ]
            )
        header = [timed("登记", "enrolled"), ("签名公钥", "key"), ("本包中由其签名的事件", "events it signed here")]
        out += [
            Paragraph(markup(f"封条 Seal {seal.device_id}", s.glyphs), s.h2),
            grid([], rows, [40 * mm, None], s),
            grid(header, _key_rows(seal, s), [40 * mm, None, 42 * mm], s),
        ]
    return out


def _key_rows(seal: SealFacts, s: ReportStyles) -> list[list[Flowable | str]]:
    """One row per registration (oldest first), each with the events signed with its key while it was in force;
    then the events signed outside any registration of their key (seal-verify warns of them)."""
    rows: list[list[Flowable | str]] = []
    shown: set[int] = set()
    for e in seal.enrolment:
        uses = [n for n, u in enumerate(seal.signed) if u.registered_at == e.at and u.public_key == e.public_key_b64]
        shown.update(uses)
        case = ("本案", "this case") if e.in_case else ("他案", "another case")
        rows.append(
            [
                cell(f"{court_clock(e.at)} {e.actor} {case[0]}", case[1], s),
                _key_cell(e.public_key_b64, s),
                _events_cell([seal.signed[n] for n in uses], s),
            ]
        )
    if not seal.enrolment:  # a seal registered before the court kept its enrolment record
        uses = [n for n, u in enumerate(seal.signed) if u.public_key == seal.public_key_b64]
        shown.update(uses)
        rows.append(
            [
                cell(f"{court_clock(seal.registered_at)} {seal.registered_by}", "无登记记录 no enrolment record", s),
                _key_cell(seal.public_key_b64, s),
                _events_cell([seal.signed[n] for n in uses], s),
            ]
        )
    for n, use in enumerate(seal.signed):
        if n not in shown:
            rows.append(
                [
                    cell("不在其登记期间", "outside a registration of it", s, alert=True),
                    _key_cell(use.public_key, s),
                    _events_cell([use], s),
                ]
            )
    return rows


def _key_cell(public_key_b64: str, s: ReportStyles) -> Flowable:
    """The key's SHA-256 fingerprint, then the key (base64)."""
    return cell(fingerprint(public_key_b64), public_key_b64, s)


def _events_cell(uses: Sequence[KeyUse], s: ReportStyles) -> Flowable:
    if not uses:
        return cell("无", "none", s)
    count = sum(u.events for u in uses)
    seqs = ", ".join(f"seq {u.first_seq}–{u.last_seq}" for u in uses)
    return cell(f"{count} 个事件", f"{count} event(s), {seqs}", s)


def fingerprint(public_key_b64: str) -> str:
    try:
        digest = key_fingerprint(public_key_b64)
    except ValueError:
        return "公钥不是有效的 base64 not valid base64"
    return " ".join(digest[i : i + 4] for i in range(0, len(digest), 4))
