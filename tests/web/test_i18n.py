"""The pages' catalogue: every key a template or a page module uses is there, in Chinese and in English, with the
same placeholders; every value an open-ended key is built from (roles, alarm kinds, states, severities, event types)
has its words — on the pages and in the evidence report, which words the same tokens from the same catalogue."""

from __future__ import annotations

import re
import string
from pathlib import Path

from seal_protocol import EventType
from seal_protocol.commands import COMMAND_RESULTS, UNVERIFIED_REASONS, CommandAction, RejectReason
from seal_protocol.status import StorageFault
from server.alarms.state import AlarmKind, AlarmState, Severity
from server.auth.access import Role
from server.commands.state import CommandState
from server.notices.facts import REQUIRED_FACTS
from server.removal.disarm import SealStatus
from server.removal.grounds import GROUND_LABELS, RemovalGround
from server.removal.lifting import SealFound
from server.removal.state import RemovalAction, RemovalState
from server.removal.steps import FILE
from server.seals.models import CaseStatus
from server.web import admin_cases, admin_users
from server.web.i18n import Translator, catalogue
from server.web.seal_model import HEALTH_FIELDS, HEARTBEAT_WORDS

WEB = Path(__file__).resolve().parents[2] / "server" / "web"
EXPORT = Path(__file__).resolve().parents[2] / "server" / "export"
#: t("section.key" …), page.t("…"), live.t("…"), self.t(…): a key written out in full.
USED_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_]+)["']""")
#: t("section." ~ value) / t.maybe("section." ~ value, …): a key built from a value.
BUILT_KEY = re.compile(r"""\bt(?:\.maybe)?\(\s*["']([a-z_]+)\.["']\s*~""")
#: A removal request's steps: the filing and each action on it (server/removal/steps.py).
STEPS = [FILE, *(a.value for a in RemovalAction)]
#: Every result a seal's command_ack may report.
RESULTS = [result for results in COMMAND_RESULTS.values() for result in results]


def sources() -> list[Path]:
    return [*WEB.rglob("*.html"), *WEB.rglob("*.py")]


def test_every_key_used_is_in_the_catalogue() -> None:
    used = {key for path in sources() for key in USED_KEY.findall(path.read_text("utf-8"))}
    assert used, "no key found: the pattern no longer matches how pages call t()"
    assert used - catalogue().keys() == set()


def test_every_entry_has_both_languages_and_the_same_placeholders() -> None:
    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    wrong = {
        key: texts
        for key, texts in catalogue().items()
        if set(texts) != {"zh", "en"} or not all(texts.values()) or fields(texts["zh"]) != fields(texts["en"])
    }
    assert wrong == {}


def test_keys_built_from_values_have_words_for_every_value() -> None:
    built = {prefix for path in sources() for prefix in BUILT_KEY.findall(path.read_text("utf-8"))}
    values = {
        "role": [r.value for r in Role],
        "alarm_kind": [k.value for k in AlarmKind],
        "alarm_state": [s.value for s in AlarmState],
        "severity": [s.value for s in Severity],
        "event": [e.value for e in EventType],
        "case_status": [s.value for s in CaseStatus],
        "case_removal_state": [s.value for s in RemovalState],
        "case_seal_progress": [s.value for s in SealStatus],
        "seal_found": [f.value for f in SealFound],
        "case_command_state": [s.value for s in CommandState],
        "case_command_action": [a.value for a in CommandAction],
        "case_command_reason": [r.value for r in RejectReason],
        "case_command_refused_own": sorted(UNVERIFIED_REASONS),
        "case_command_result": RESULTS,
        "removal_step": STEPS,
        "seal_field": list(HEALTH_FIELDS),
        "admin_done": [*admin_users.DONE, *admin_cases.DONE],
        "seal_value": [f"{field}_{value}" for field, values in HEARTBEAT_WORDS.items() for value in values],
        "notice_fact": list(REQUIRED_FACTS),
        "storage_fault": [f.value for f in StorageFault],
    }
    assert built <= values.keys(), "a key is built from values this test does not know: add them here"
    missing = {f"{prefix}.{value}" for prefix in built for value in values[prefix]} - catalogue().keys()
    assert missing == set()


#: words("section", token): the evidence report's words for a token, from the catalogue.
REPORT_WORDS = re.compile(r"""\bwords\(\s*["']([a-z_]+)["']""")


def test_every_token_the_evidence_report_words_has_words() -> None:
    """The report (server/export) sets a command's action, state, refusal reason and result, an alarm's kind,
    severity and steps, a removal request's state and steps in the catalogue's words: each value it may meet has
    them."""
    used = {section for path in EXPORT.glob("*.py") for section in REPORT_WORDS.findall(path.read_text("utf-8"))}
    assert used, "no words() call found: the pattern no longer matches how the report words its tokens"
    values = {
        "case_command_action": [a.value for a in CommandAction],
        "case_command_state": [s.value for s in CommandState],
        "case_command_reason": [r.value for r in RejectReason],
        "alarm_kind": [k.value for k in AlarmKind],
        "alarm_state": [s.value for s in AlarmState],  # an alarm's steps too: acknowledged, closed
        "severity": [s.value for s in Severity],
        "case_command_result": RESULTS,
        "case_removal_state": [s.value for s in RemovalState],
        "removal_step": STEPS,
    }
    assert used <= values.keys(), "the report words values this test does not know: add them here"
    missing = {f"{section}.{value}" for section in used for value in values[section]} - catalogue().keys()
    assert missing == set()
    assert set(GROUND_LABELS) == set(RemovalGround)  # a ground's words are its label


def test_a_missing_key_shows_itself_and_chinese_is_the_default() -> None:
    assert Translator("zh-CN")("no_such.key") == "⟦no_such.key⟧"
    assert Translator("fr")("login.title") == Translator("zh-CN")("login.title") == "登录"
    assert Translator("en")("time.seconds_ago", n=5) == "5 s ago"
