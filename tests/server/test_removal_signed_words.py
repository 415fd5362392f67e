"""Signed means true, in words too: nothing the parties read says a seal received, carried out or acknowledged
anything before its signed answer is stored. A command is *issued* (发出) until then; the seals' state after the
judge withdraws an approval is "the signed arm was issued", however many seals are offline; and the debtor, who is
not told which seal was lifted without its acknowledgement, reads words that hold either way.

The catalogue test is pragmatic: it looks for the phrases that claim such a thing (已收到, 已执行, 已撤防, "have
received", "are armed again", …) in every text tied to a state in which no ack need exist."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.api.removal_schemas import SEAL_LABELS, STATE_LABELS
from server.app import create_app
from server.config import CommandSettings
from server.core.db import SessionFactory
from server.removal.messages import MESSAGES
from server.removal.progress import SealStatus
from server.removal.state import RemovalAction, RemovalState
from server.removal.steps import FILE
from server.words import catalogue
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, c, make_world

#: What claims that a seal received, carried out or acknowledged something, or stands armed or disarmed.
ZH_CLAIMS = re.compile(
    r"已收到|已接收|已送达|已执行|执行完毕|已完成|已确认|已(重新)?布防|已解除布防|已撤防|重新布防(?!指令)"
    r"|(?<!等待)(全部|每个|各)(电子)?封条(均|已|均已)?(签名)?确认"
)
EN_CLAIMS = re.compile(
    r"\b(has|have|had)( now)?( been)? (received|carried out|acknowledged|confirmed|executed|disarmed|armed)\b"
    r"|\b(is|are) (now )?(armed|disarmed)\b|\barmed again\b|\bis done\b|\bevery seal (has )?(confirmed|acknowledged)\b"
    r"|\bseals disarmed\b",
    re.IGNORECASE,
)

#: The inbox's messages told while no seal need have acknowledged anything: before the disarm's acks (filing,
#: decisions), of seals that never answered (without_ack), after an abort (no seal has acknowledged its arm), and
#: what the debtor is told in the stead of ``disarmed`` — the same words when a seal was lifted without its ack —
#: and in the stead of ``armed_again``: the same words when the seal heard from had never acknowledged (lifted
#: without its ack, the only seal of the case: no ack at all need exist).
TOLD_WITHOUT_ACK = {
    "filed",
    "view",
    "under_review",
    "cancelled",
    "approved",
    "rejected",
    "without_ack",
    "aborted",
    "disarmed_for_debtor",
    "armed_again_for_debtor",
}
#: Told only once the seals' signed word is stored: every ack (disarmed), the others' acks (disarmed_without_ack),
#: a seal's signed event saying it is armed again (armed_again), the officer's confirmation after the acks (lifted).
TOLD_AFTER_THE_SEALS_WORD = {"disarmed", "disarmed_without_ack", "armed_again", "lifted"}
#: States in which no seal need have acknowledged anything — ``disarmed`` too, for whoever may not learn that a seal
#: was lifted without its acknowledgement (the debtor's words are the same either way).
STATES = [s.value for s in RemovalState if s is not RemovalState.LIFTED]
#: A seal that has not acknowledged (or was lifted without).
UNANSWERED = [
    SealStatus.SENT,
    SealStatus.WAITING_FOR_SEAL,
    SealStatus.REFUSED,
    SealStatus.WITHOUT_ACK,
    SealStatus.PENDING,
]


def claims(text: str) -> list[str]:
    return [m.group(0) for pattern in (ZH_CLAIMS, EN_CLAIMS) for m in pattern.finditer(text)]


def texts_without_an_ack() -> dict[str, str]:
    """Every text of the catalogues the parties read where no signed ack need exist, by where it is."""
    words = catalogue()
    found: dict[str, str] = {}
    for kind in TOLD_WITHOUT_ACK:
        _, zh, en = MESSAGES[kind]
        found[f"inbox {kind}"] = f"{zh}\n{en}"
    keys = [f"case_removal_state.{s}" for s in STATES]
    keys += [f"portal.next_{s}" for s in STATES if s != "disarmed"]  # the portal names states as case_removal_state
    keys += ["portal.next_disarmed_for_debtor", "portal.next_armed_again", "portal.step_disarm"]
    keys += [f"removal_step.{a}" for a in [FILE, *(a.value for a in RemovalAction)]]
    keys += [f"case_seal_progress.{s.value}" for s in UNANSWERED]
    keys += [f"portal.seal_{s}" for s in ("sent", "waiting", "pending", "refused", "without_ack")]
    keys += [f"case_command_state.{s}" for s in ("pending", "rejected", "expired")]
    for key in keys:
        if key in words:
            found[key] = f"{words[key]['zh']}\n{words[key]['en']}"
    for state in STATES:
        found[f"API state_zh {state}"] = STATE_LABELS[RemovalState(state)]
    for status in UNANSWERED:
        found[f"API status_zh {status.value}"] = SEAL_LABELS[status]
    return found


def test_every_inbox_message_is_placed_before_or_after_the_seals_word() -> None:
    """A new message must say whether it may be told before any ack is stored (then it is searched below)."""
    assert set(MESSAGES) == TOLD_WITHOUT_ACK | TOLD_AFTER_THE_SEALS_WORD


def test_nothing_told_without_an_ack_claims_a_seal_did_anything() -> None:
    texts = texts_without_an_ack()
    assert len(texts) > 40  # the catalogue's keys are still where this test looks for them
    found = {where: claims(text) for where, text in texts.items() if claims(text)}
    assert found == {}


def test_the_claims_searched_for_are_found() -> None:
    """The patterns find what they look for (the words before this was fixed), and pass the words that say what
    was issued or is awaited."""
    for said in (
        "电子封条已收到重新布防指令",
        "法官撤销了准予决定，封条重新布防，查封继续有效。",
        "电子封条解除布防已完成",
        "封条已解除布防，待现场拆除",
        "全部封条签名确认解除布防",
        "the seals' disarm is done",
        "the seals are armed again and the seizure stands",
        "Every seal confirmed the disarm",
    ):
        assert claims(said), said
    for said in (
        "已向电子封条发出重新布防指令",
        "解除布防指令已发往每个电子封条，等待每个封条签名确认。",
        "the seals have been sent the signed arm",
        "which have not acknowledged the disarm",
        "Approved: the seals are being disarmed",
    ):
        assert not claims(said), said


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path)
    commands = CommandSettings(signing_key_file=settings.commands.signing_key_file, ttl_s=60)
    with TestClient(create_app(settings.model_copy(update={"commands": commands}), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def neutral() -> str:
    """What the debtor's page says next of a ``disarmed`` request, whether or not every seal acknowledged."""
    return catalogue().get("portal.next_disarmed_for_debtor", {}).get("zh", "(none)")


def inbox(world: RemovalWorld, who: str) -> list[dict[str, Any]]:
    response = world.client.get("/api/me/inbox", headers=world.as_(who))
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()
    return messages


def next_step(world: RemovalWorld, who: str) -> str:
    """The request's "what next" sentence on the party's page (the portal, or the creditor's)."""
    prefix = "/portal" if who == "debtor" else "/creditor"
    page = world.client.get(f"{prefix}/cases/{c(CASE_A)}", headers=world.as_(who))
    assert page.status_code == 200, page.text[:300]
    [sentence] = re.findall(r'<p class="next">(.*?)</p>', page.text, re.S)[:1]
    return html.unescape(sentence).strip()


def test_withdrawing_an_approval_tells_that_the_arm_was_issued_not_received(world: RemovalWorld) -> None:
    """Both seals are offline: nothing answered the disarm, nothing has received the arm. Every party reads that
    the signed arm was issued (已向电子封条发出), in the inbox and on the page."""
    request_id = world.filed()
    world.approved(request_id)
    world.ok("judge", request_id, "abort", {"reasons": "债务人未实际清偿"})
    for who in ("debtor", "creditor", "judge", "officer"):
        [told] = [m for m in inbox(world, who) if m["kind"] == "removal.aborted"]
        assert "已向电子封条发出重新布防指令" in told["text_zh"], who
        assert "have been sent the signed arm" in told["text_en"], who
        assert claims(told["text_zh"]) == [] and claims(told["text_en"]) == [], (who, told)
    for who in ("debtor", "creditor"):
        sentence = next_step(world, who)
        assert "已向封条发出重新布防指令" in sentence and claims(sentence) == [], (who, sentence)


def test_the_debtor_is_not_told_every_seal_confirmed_when_one_was_lifted_without_its_ack(
    world: RemovalWorld,
) -> None:
    """seal-a2 never answers and is lifted without its ack by the judge's decision: the debtor's inbox and page say
    the seals will be removed on site — not that the disarm is done, or that every seal confirmed it — in the same
    words as when every seal acknowledged (which seal is deaf is not the debtor's to learn)."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    world.expire(commands["seal-a2"].id)
    body = {"device_ids": ["seal-a2"], "reasons": "封条失联"}
    assert world.ok("judge", request_id, "lift-without-ack", body)["state"] == "disarmed"
    [told] = [m for m in inbox(world, "debtor") if m["kind"] == "removal.disarmed"]
    assert claims(told["text_zh"]) == [] and claims(told["text_en"]) == [], told
    assert next_step(world, "debtor") == neutral() and world.read(request_id, "debtor")["state_zh"] == "待现场拆除封条"
    assert "seal-a2" in next_step(world, "creditor")  # who may see each seal's answer reads which one


def test_the_debtor_reads_the_same_words_when_every_seal_acknowledged(world: RemovalWorld) -> None:
    request_id = world.filed()
    for device_id, row in world.commands(world.approved(request_id)).items():
        world.answer(device_id, row.id)
    assert world.read(request_id, "debtor")["state_zh"] == "待现场拆除封条"
    assert next_step(world, "debtor") == neutral()
    assert "每个电子封条均已签名确认解除布防" in next_step(world, "creditor")  # true here, and the creditor may know


def test_the_debtor_told_the_seals_are_not_all_disarmed_after_all_reads_no_claim(world: RemovalWorld) -> None:
    """seal-a2, the case's other seal, never answers and is lifted without its ack; then its signed heartbeat says
    it is armed: the request goes back to ``disarm_pending``. The debtor's message and page say what happened — a
    seal's signed message, no officer coming for now — and claim nothing a seal has not signed."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    world.expire(commands["seal-a2"].id)
    body = {"device_ids": ["seal-a2"], "reasons": "封条失联"}
    assert world.ok("judge", request_id, "lift-without-ack", body)["state"] == "disarmed"
    world.heard("seal-a2", armed=True)
    assert world.read(request_id, "debtor")["state"] == "disarm_pending"
    [told] = [m for m in inbox(world, "debtor") if m["kind"] == "removal.armed_again"]
    assert claims(told["text_zh"]) == [] and claims(told["text_en"]) == [], told
    sentence = next_step(world, "debtor")
    pending = catalogue()["case_removal_state.disarm_pending"]["zh"]
    assert sentence == catalogue()["portal.next_armed_again"]["zh"].format(state=pending), sentence
    assert claims(sentence) == [], sentence
    assert "执行干警将到场" not in sentence
