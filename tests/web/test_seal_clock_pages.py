"""The pages show what a seal signs about its clock: a ``clock_stepped`` on the case's timeline with its words and
the step, and on the seal's page the heartbeat's clock state (nothing for a seal from before it)."""

from __future__ import annotations

from urllib.parse import quote

from seal_protocol import EventType
from tests.web.conftest import CASE, SEAL, PagesWorld
from tests.web.test_seal_audit_admin_pages import HEARTBEAT

STEP = {
    "step_ms": 259_200_000,
    "before": "2026-11-23T08:00:00.000Z",
    "after": "2026-11-26T08:00:00.000Z",
    "synced": True,
}


def test_a_clock_step_is_on_the_case_timeline_with_its_size(world: PagesWorld) -> None:
    world.ingest((world.seal.event_topic, world.seal.event(EventType.CLOCK_STEPPED, STEP)))
    with world.client("judge") as client:
        html = client.get(f"/cases/{quote(CASE, safe='')}").text
        assert 'data-type="clock_stepped"' in html and "封条时钟跳变" in html
        assert "step_ms: +3 d 0 h 0 min 0.000 s" in html and "synced: true" in html
        client.cookies.set("seal_lang", "en")
        assert "Seal clock stepped" in client.get(f"/cases/{quote(CASE, safe='')}").text


def test_the_seal_page_shows_the_heartbeat_s_clock_state(world: PagesWorld) -> None:
    seal = world.seal
    world.ingest((seal.event_topic, seal.event(EventType.HEARTBEAT, HEARTBEAT)))
    with world.client("judge") as client:
        html = client.get(f"/seals/{SEAL}").text
        assert 'data-field="clock"' not in html  # a seal from before: nothing said of its clock
        world.ingest(
            (
                seal.event_topic,
                seal.event(EventType.HEARTBEAT, {**HEARTBEAT, "clock": {"synced": False, "max_error_ms": 16000}}),
            )
        )
        html = client.get(f"/seals/{SEAL}").text
        assert 'class="item bad" data-field="clock" data-value="unsynced"' in html and "未同步" in html
        assert 'data-field="clock_max_error_ms"' not in html  # unsynchronised, the kernel's bound means nothing
        world.ingest(
            (
                seal.event_topic,
                seal.event(EventType.HEARTBEAT, {**HEARTBEAT, "clock": {"synced": True, "max_error_ms": 9}}),
            )
        )
        html = client.get(f"/seals/{SEAL}").text
        assert 'class="item" data-field="clock" data-value="synced"' in html and "已同步" in html
        assert 'data-field="clock_max_error_ms" data-value="9 ms"' in html
