"""What the people of a case read in their inboxes about its removal request, Chinese first with English, and who
is told what: the debtor, the creditor and the judge of filings and decisions; the judge of the creditor's views;
the officers when the seals are disarmed and it is time to go on site, and (the debtor too) when a seal says
afterwards that it is armed again. Nothing says that a seal received, carried out or acknowledged anything before
its signed answer is stored: a command is "issued" (发出) until then (tests/server/test_removal_signed_words.py).
The debtor is told nothing that names a seal or how it answered (whoever holds the paper access code would learn
which seal is deaf): not of the judge's decision to lift a seal without its acknowledgement; of the seals being
disarmed only ``removal.disarmed`` in the same neutral words whether or not every seal acknowledged; of a seal's
signed word taking a ``disarmed`` request back only ``removal.armed_again`` in words that name no seal and hold
whether or not it had acknowledged (the state the request went back to is theirs to read anyway)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from server.auth.access import Role
from server.auth.users import case_members
from server.core.court_clock import court_clock
from server.notify.inbox import post_messages
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalRequest
from server.removal.state import RemovalState
from server.words import words

DEBTOR, CREDITOR, JUDGE, OFFICER = Role.DEBTOR, Role.CREDITOR, Role.JUDGE, Role.OFFICER

#: The kind a message is posted as, when not its own.
POSTED_AS = {"disarmed_for_debtor": "disarmed", "armed_again_for_debtor": "armed_again"}
#: kind -> (roles told, zh, en); {no} is the request's number, {case} the case number, {extra} a detail (the same
#: in both, or its words in each language), {views_due} the end of the creditor's time for written views (court
#: time, to the minute: never later than it is), {pending} the name of the state ``disarm_pending`` as every page
#: shows it (the catalogue's ``case_removal_state``: a state a message quotes is one the reader can find). A message
#: to the debtor names no seal and no state of a seal.
MESSAGES: dict[str, tuple[frozenset[Role], str, str]] = {
    "filed": (
        frozenset({DEBTOR, CREDITOR, JUDGE}),
        "案件{case}的被执行人提交了解除查封申请（第{no}号），理由：{extra}。申请执行人可在法官作出决定前、且不晚于 "
        "{views_due}（北京时间）提出书面意见。",
        "The debtor of case {case} filed removal request no. {no} (ground: {extra}). The creditor may give a written "
        "view before the judge decides and no later than {views_due} (China Standard Time, UTC+8).",
    ),
    "view": (
        frozenset({JUDGE}),
        "申请执行人对案件{case}的解除查封申请（第{no}号）提出了书面意见。",
        "The creditor gave a written view on removal request no. {no} of case {case}.",
    ),
    "under_review": (
        frozenset({DEBTOR}),
        "案件{case}的解除查封申请（第{no}号）已由法官受理审查。",
        "Removal request no. {no} of case {case} is under review by the judge.",
    ),
    "cancelled": (
        frozenset({DEBTOR, CREDITOR, JUDGE}),
        "案件{case}的解除查封申请（第{no}号）已由被执行人撤回。",
        "The debtor withdrew removal request no. {no} of case {case}.",
    ),
    "approved": (
        frozenset({DEBTOR, CREDITOR, JUDGE}),
        "法官准予解除案件{case}的查封（申请第{no}号），已向电子封条发出解除布防指令。理由：{extra}",
        "The judge approved lifting the seizure of case {case} (request no. {no}); the seals have been sent the "
        "signed disarm. Reasons: {extra}",
    ),
    "rejected": (
        frozenset({DEBTOR, CREDITOR, JUDGE}),
        "法官驳回了案件{case}的解除查封申请（第{no}号）。理由：{extra}",
        "The judge rejected removal request no. {no} of case {case}. Reasons: {extra}",
    ),
    "disarmed": (
        frozenset({JUDGE, OFFICER}),
        "案件{case}的全部电子封条已确认解除布防（申请第{no}号），请执行人员到场拆除并确认。",
        "Every seal of case {case} has acknowledged the disarm (request no. {no}): an officer may now remove them "
        "on site and confirm it.",
    ),
    # What the debtor is told in their stead (kind removal.disarmed): the same words either way — so words that hold
    # also when a seal was lifted without its acknowledgement (nothing claims that every seal carried out the disarm).
    "disarmed_for_debtor": (
        frozenset({DEBTOR}),
        "案件{case}的解除查封申请（第{no}号）已进入现场拆除环节，执行人员将到场拆除封条。",
        "Removal request no. {no} of case {case} has reached the removal on site: an officer will come to remove "
        "the seals.",
    ),
    "disarmed_without_ack": (
        frozenset({JUDGE, OFFICER}),
        "案件{case}的电子封条（申请第{no}号）：部分封条未确认解除布防，经法官决定解除：{extra}；其余封条均已确认解除布防。"
        "请执行人员到场拆除并确认，并查明未确认封条的状况。",
        "Some seals of case {case} did not acknowledge the disarm (request no. {no}); lifted by the judge's "
        "decision: {extra}. Every other seal has acknowledged it. An officer may now remove the seals on site and "
        "confirm it, recording what became of those that did not acknowledge.",
    ),
    "without_ack": (
        frozenset({CREDITOR, JUDGE, OFFICER}),
        "法官决定：案件{case}的电子封条{extra}未确认解除布防（申请第{no}号），不待其确认即予解除；执行人员到场时请查明其状况。",
        "The judge decided that seal(s) {extra} of case {case}, which have not acknowledged the disarm (request no. "
        "{no}), are lifted without their acknowledgement; the officer on site records what became of them.",
    ),
    "aborted": (
        frozenset({DEBTOR, CREDITOR, JUDGE, OFFICER}),
        "法官撤销了对案件{case}解除查封的准予（申请第{no}号），查封继续，已向电子封条发出重新布防指令。理由：{extra}",
        "The judge withdrew the approval to lift the seizure of case {case} (request no. {no}): the seizure stands "
        "and the seals have been sent the signed arm. Reasons: {extra}",
    ),
    # A seal's signed word, stored after the request was disarmed, says it is not disarmed: back to disarm_pending.
    "armed_again": (
        frozenset({JUDGE, OFFICER}),
        "案件{case}的解除查封申请（第{no}号）：电子封条{extra}此前已确认解除布防（或经法官决定不待其确认），"
        "其后该封条的签名消息表明其未处于解除布防状态（如报告已重新布防）。申请已退回“{pending}”，"
        "请执行人员暂勿到场拆除；须重新发送解除布防指令并待其签名确认，或由法官另行决定。",
        "Removal request no. {no} of case {case}: seal(s) {extra} had acknowledged the disarm (or were lifted "
        "without it by the judge's decision), then said in their signed word that they are not disarmed (e.g. "
        "armed again). The request is back to “{pending}”: officers, do not remove the seals on site yet; "
        "a new disarm must be sent and acknowledged, or the judge decides otherwise.",
    ),
    # What the debtor is told in its stead (kind removal.armed_again), having been told that an officer will come:
    # that this no longer holds, and what comes next. The same words whether the seal heard from had acknowledged
    # or was lifted without its acknowledgement (it may have signed only an event, or a refusal) — so no seal, no
    # "again", no claim that any seal acknowledged or carried out anything.
    "armed_again_for_debtor": (
        frozenset({DEBTOR}),
        "案件{case}的解除查封申请（第{no}号）：此前通知您执行人员将到场拆除封条，但其后收到的电子封条签名消息表明，"
        "并非所有封条都处于解除布防状态（例如封条报告其处于布防状态）。申请已退回“{pending}”，执行人员暂不会到场"
        "拆除封条；须待新的解除布防指令经封条签名确认，或由法官另行决定，届时会再通知您。封条拆除前查封继续有效。",
        "Removal request no. {no} of case {case}: you were told that an officer would come to remove the seals, but "
        "a seal's signed message received since says that not every seal stands disarmed (for instance, a seal "
        "reported itself armed). The request is back to “{pending}”, and no officer will come to remove the seals "
        "for now: a new disarm must be confirmed by the seal's signature, or the judge decides "
        "otherwise; you will be told then. The seizure stands until the seals are removed.",
    ),
    # Words true whether every seal was found and removed or one was recorded destroyed or missing (the officer's
    # finding, server.removal.lifting): like disarmed_for_debtor, nothing says the seals came off.
    "lifted": (
        frozenset({DEBTOR, CREDITOR, JUDGE}),
        "案件{case}：执行人员已到场确认，查封已解除（申请第{no}号）。",
        "Case {case}: an officer confirmed on site; the seizure is lifted (request no. {no}).",
    ),
}


def tell(
    session: Session, request: RemovalRequest, kind: str, *, now: datetime, extra: str | tuple[str, str] = ""
) -> None:
    """Post the ``kind`` message about ``request`` to the inboxes of the roles it concerns; ``extra``: the same text
    in both languages (a person's reasons, seals' ids), or its Chinese and its English."""
    roles, zh, en = MESSAGES[kind]
    extra_zh, extra_en = (extra, extra) if isinstance(extra, str) else extra
    values = {"case": request.case_no, "no": request.id, "views_due": court_clock(request.views_due_at, seconds=False)}
    pending_zh, pending_en = words("case_removal_state", RemovalState.DISARM_PENDING.value)
    post_messages(
        session,
        user_ids=_recipients(session, request, roles),
        kind=f"removal.{POSTED_AS.get(kind, kind)}",
        case_no=request.case_no,
        text_zh=zh.format(**values, extra=extra_zh, pending=pending_zh),
        text_en=en.format(**values, extra=extra_en, pending=pending_en),
        ref=f"removal-request:{request.id}",
        now=now,
    )


def ground_text(ground: RemovalGround) -> tuple[str, str]:
    """The ground of a request in a message: its Chinese and its English words."""
    return ground.label.zh, ground.label.en


def _recipients(session: Session, request: RemovalRequest, roles: Iterable[Role]) -> list[int]:
    wanted = {role.value for role in roles}
    members = [user.id for user in case_members(session, case_no=request.case_no) if user.role in wanted]
    if Role.DEBTOR in wanted and request.filed_by not in members:
        members.append(request.filed_by)  # the filer hears back even if no longer assigned
    return members
