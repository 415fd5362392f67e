"""While the case is being lifted (a removal approved, the disarm under way, the officer not yet come), the debtor's
portal does not show whether its seals are armed — as the notice's public page does not
(:attr:`server.seals.models.CaseStatus.hides_armed_state`, one rule for both): a debtor told that a seal stands
disarmed could go in before the officer comes. The page says why, and that the seals stay in force; the creditor,
who may see the seals' status, still sees it."""

from __future__ import annotations

import html
import re

import pytest

from seal_protocol import EventType
from server.words import catalogue
from tests.web.conftest import CASE, SEAL, PagesWorld
from tests.web.portal_world import Portal, make_portal, q


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def status_part(page: str) -> str:
    """The page's case-status section (the case's status and its seals)."""
    [part] = re.findall(r'<section id="case-status".*?</section>', page, re.S)
    return part


def test_the_debtor_is_not_told_the_seals_armed_state_while_the_case_is_lifted(portal: Portal) -> None:
    words = catalogue()
    hidden = words["portal.armed_hidden_while_lifting"]
    armed, disarmed = words["portal.armed"]["zh"], words["portal.disarmed"]["zh"]
    seal = portal.world.seal
    portal.world.ingest((seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True, "uptime_s": 5})))
    with portal.code_client() as client:  # under seizure: the seal's signed word, as it is
        part = status_part(client.get(f"/portal/cases/{q(CASE)}").text)
        assert f'data-device="{SEAL}" data-armed="1"' in part and armed in part and hidden["zh"] not in part

    request_id = portal.file()
    commands = portal.approve(request_id)  # the case is being lifted: the disarm goes out
    portal.acknowledge(commands[SEAL])  # the seal answers the disarm, signed, and says it stands disarmed
    portal.world.ingest((seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": False, "uptime_s": 9})))
    with portal.code_client() as client:
        part = status_part(client.get(f"/portal/cases/{q(CASE)}").text)  # read: settled first; no officer has come yet
        assert portal.state(request_id) == "disarmed"
        assert f'data-device="{SEAL}" data-armed="hidden"' in part
        assert 'data-armed="0"' not in part and 'data-armed="1"' not in part
        assert disarmed not in part and armed not in part.replace(words["portal.armed_hidden"]["zh"], "")
        assert hidden["zh"] in part
        listing = client.get("/portal").text  # the list of the debtor's cases: no count of armed seals either
        assert words["portal.seal_count_hidden"]["zh"].format(n=1) in listing
        assert words["portal.seal_count"]["zh"].format(n=1, armed=0) not in listing
    with portal.code_client() as client:  # in English too: the truthful sentence, in the reader's language
        client.cookies.set("seal_lang", "en")
        part = status_part(client.get(f"/portal/cases/{q(CASE)}").text)
        assert hidden["en"] in html.unescape(part) and words["portal.disarmed"]["en"] not in part
    with portal.world.client("creditor") as client:  # seal:status: the creditor reads the seal's signed word
        part = status_part(client.get(f"/creditor/cases/{q(CASE)}").text)
        assert f'data-device="{SEAL}" data-armed="0"' in part and hidden["zh"] not in part
