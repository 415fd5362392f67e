"""A picture a trigger's event named and the seal's signed follow-up says it could not store is shown on the case
page as not stored by the seal, not as "not arrived yet" (it will never arrive)."""

from __future__ import annotations

import hashlib

from seal_protocol import EventType
from tests.web.conftest import PagesWorld
from tests.web.test_case_pages import CASE_URL


def test_the_case_page_tells_a_picture_the_seal_could_not_store_from_one_on_its_way(world: PagesWorld) -> None:
    on_its_way, never = (hashlib.sha256(bytes([n])).hexdigest() for n in (1, 2))
    seal = world.seal
    intrusion = {"armed": True, "warning": "played", "camera": "ok", "snapshots": [world.snapshot, on_its_way, never]}
    world.ingest((seal.event_topic, seal.event(EventType.INTRUSION, intrusion)))
    trigger_seq = seal.seq
    follow = {
        "snapshots": [],
        "not_stored": [{"sha256": never, "reason": "ENOSPC: No space left on device"}],
        "trigger": "intrusion",
        "trigger_seq": trigger_seq,
    }
    world.ingest((seal.event_topic, seal.event(EventType.SNAPSHOT_TAKEN, follow)))
    with world.client("judge") as client:
        page = client.get(CASE_URL).text
    assert "1 张图片尚未送达" in page  # on_its_way
    assert "1 张图片封条未能存储" in page  # never: the seal said so, signed


def test_a_follow_up_of_another_trigger_or_malformed_changes_nothing(world: PagesWorld) -> None:
    missing = hashlib.sha256(b"x").hexdigest()
    seal = world.seal
    world.ingest((seal.event_topic, seal.event(EventType.INTRUSION, {"armed": True, "snapshots": [missing]})))
    for trigger_seq, listed in ((seal.seq + 5, [{"sha256": missing}]), ([seal.seq], [{"sha256": missing}]),
                                (seal.seq, "all"), (seal.seq, [missing])):  # fmt: skip
        payload = {"snapshots": [], "not_stored": listed, "trigger": "intrusion", "trigger_seq": trigger_seq}
        world.ingest((seal.event_topic, seal.event(EventType.SNAPSHOT_TAKEN, payload)))
    with world.client("judge") as client:
        page = client.get(CASE_URL).text
    assert "1 张图片尚未送达" in page and "封条未能存储" not in page
