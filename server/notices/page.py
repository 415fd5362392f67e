"""The public page a notice's QR code opens (``GET /notice/{token}``), and the words both it and the JSON verdict use.

Jinja2 templates in ``templates/``, autoescaped; the page loads nothing from anywhere (no script, font or image), so
it works on any phone and tells the reader nothing the paper does not, besides the seal's and the case's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, partial

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from server.core.court_clock import court_clock
from server.notices.facts import FACT_ROWS, court_day, fact_rows
from server.notices.service import NoticeCheck, Outdated
from server.notices.token import Refusal
from server.notices.wording import OBJECTION_EN, OBJECTION_ZH, WARNING_EN, WARNING_ZH, ruling_line

#: Why a token is not authentic, in Chinese and English.
REFUSAL_TEXT: dict[Refusal, tuple[str, str]] = {
    Refusal.MALFORMED: (
        "二维码内容不完整或不是本院的公告码",
        "the code is incomplete or not a notice code of this court",
    ),
    Refusal.FOREIGN_KEY: ("不是本院签发的公告（签名密钥不符）", "not issued by this court (signed with another key)"),
    Refusal.TAMPERED: ("公告码内容被篡改，签名不符", "the code was altered: its signature does not match"),
    Refusal.EXPIRED: ("公告已过有效期", "the notice has expired"),
    Refusal.UNKNOWN: ("本院无此公告的记录", "this court has no record of this notice"),
    Refusal.SUPERSEDED: ("公告已被本院新签发的公告取代", "the court has replaced it with a newer notice"),
    Refusal.REVOKED: ("公告已被本院撤销", "the court has revoked it"),
    Refusal.LIFTED: ("查封已解除，本公告不再有效", "the seizure has been lifted: the notice no longer stands"),
    Refusal.OUTDATED: (
        "公告已过时：所载内容已不是本院的现行记录",
        "the notice is outdated: what it prints is no longer the court's current record",
    ),
}
#: The labels of the facts a notice prints (field name → Chinese, English), the court's name among them.
FACT_LABELS: dict[str, tuple[str, str]] = {"court": ("法院", "Court")} | {name: (zh, en) for name, zh, en in FACT_ROWS}

#: A case's status (server.seals.models.CaseStatus values), in Chinese and English.
CASE_STATUS_TEXT: dict[str, tuple[str, str]] = {
    "open": ("已立案，尚未查封", "open, not sealed yet"),
    "sealed": ("查封中", "under seizure"),
    "lifting": ("解除查封办理中", "removal of the seizure in progress"),
    "lifted": ("已解除查封", "the seizure has been lifted"),
    "closed": ("已结案", "closed"),
}


def refusal_text(refusal: Refusal) -> tuple[str, str]:
    return REFUSAL_TEXT[refusal]


def outdated_text(outdated: Outdated) -> tuple[str, str]:
    """What changed since an outdated notice was printed, in Chinese and English."""
    zh, en = [], []
    if outdated.term_ended_on is not None:
        day = outdated.term_ended_on.isoformat()
        zh.append(f"本院记录的查封期限已于 {day} 届满")
        en.append(f"the seizure's term as the court records it ended on {day}")
    if outdated.changed:
        labels = [FACT_LABELS.get(name, (name, name)) for name in outdated.changed]
        zh.append(f"纸面所载的{'、'.join(zh for zh, _ in labels)}已与本院现行记录不符")
        en.append(f"what it prints as {', '.join(en for _, en in labels)} is no longer the court's record")
    zh.append("本公告确为本院签发，但已不是现行公告，请以本院现行公告为准或致电法院核实")
    en.append(
        "this is a genuine notice of this court, but no longer current: rely on the court's current notice, "
        "or call the court"
    )
    return "；".join(zh) + "。", "; ".join(en) + "."


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("server.notices", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # a moment as the court's local time, ``2026-12-04 14:35 (UTC+8)``
    env.filters["court_time"] = partial(court_clock, seconds=False, zone=" (UTC+8)")
    return env


def render_notice_page(check: NoticeCheck | None, grounds: Sequence[tuple[str, str, str]] = ()) -> str:
    """The page for ``check``; with ``check`` ``None``, the page saying that nothing can be checked now. ``grounds``
    are those a debtor may ask for the seizure to be lifted on, as the portal takes them: (Chinese, English, article
    of the 查封规定) each (the removal's own list, :data:`server.removal.grounds.GROUND_LABELS`, which the notices may
    not import: the removal revokes notices)."""
    template = _environment().get_template("notice.html")
    refusal = check.refusal if check is not None else None
    facts = check.facts if check is not None else None
    notice = check.notice if check is not None else None
    return template.render(
        check=check,
        facts=facts,
        rows=fact_rows(facts) if facts is not None else [],
        issued_on=court_day(notice.issued_at).isoformat() if notice is not None else "",
        refusal=refusal_text(refusal) if refusal is not None else None,
        outdated=outdated_text(check.outdated) if check is not None and check.outdated is not None else None,
        case_status=CASE_STATUS_TEXT.get(check.case_status or "") if check is not None else None,
        ruling=ruling_line(facts.ruling_no) if facts is not None else None,
        warning=(WARNING_ZH, WARNING_EN),
        objection=(OBJECTION_ZH, OBJECTION_EN),
        grounds=list(grounds),
    )
