"""An insider with write access to the database (not the log key, not the code) changes the seals' rows: a seal's
key swapped, a retired key used after a rotation, a binding made up to excuse a removed event. The verifier takes
the seals' keys and unbindings from the audit entries the bundle proves are in the log, so none of these is
trusted (``docs/evidence.md``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from seal_protocol.signing import SigningKey, generate_signing_key, public_key_b64
from seal_verify import verify_bundle
from seal_verify.verdict import BundleVerdict
from server.core.db import SessionFactory, session_scope
from server.evidence.models import Event
from server.seals.models import Seal, SealBinding
from server.seals.registry import register_seal
from tests.server.helpers import CASE_A, CASE_B, message
from tests.verify.world import CourtWorld, build_world, drop_append_only_triggers, read_members

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _set_key(world: CourtWorld, device_id: str, key: SigningKey) -> None:
    """A plain UPDATE of the seal's row: no seal.register entry, nothing in the log."""
    with session_scope(world.session_factory) as session:
        session.execute(update(Seal).where(Seal.device_id == device_id).values(public_key=public_key_b64(key)))


def _forge(world: CourtWorld, seal: str, key: SigningKey) -> bytes:
    """A "disarmed" event of ``seal`` signed with ``key``, stored through the real ingest (its leaf logged)."""
    forged = world.seals[seal].event(payload={"armed": False}, key=key)
    world.ingestor.ingest([message(world.seals[seal].event_topic, forged)])
    return forged


def _verdict(world: CourtWorld, path: Path, forged: bytes | None = None) -> BundleVerdict:
    result = world.export(CASE_A, path)
    if forged is not None:
        assert forged in read_members(result.path)["events.jsonl"].split(b"\n")
    return verify_bundle(result.path, log_key=world.log_key.verifier())


def test_a_key_swapped_in_the_database_signs_no_event_that_verifies(world: CourtWorld, tmp_path: Path) -> None:
    thief = generate_signing_key()
    _set_key(world, "seal-a1", thief)
    forged = _forge(world, "a1", thief)
    verdict = _verdict(world, tmp_path / "case.zip", forged)
    assert not verdict.trusted and verdict.failed == ["event_signatures"], verdict.text()
    problems = "\n".join(verdict.check("event_signatures").problems)
    assert "public_key 不是日志中最后一次登记的公钥" in problems and "last logged registration" in problems
    assert "the signature does not verify with the seal's key, its key when it was logged" in problems


def test_a_retired_key_signs_no_event_after_the_rotation(world: CourtWorld, tmp_path: Path) -> None:
    seal = world.seals["a1"]
    old, new = seal.key, generate_signing_key()
    with session_scope(world.session_factory) as session:  # a genuine re-enrolment, logged as seal.register
        register_seal(
            session,
            actor=None,
            device_id=seal.device_id,
            case_no=CASE_A,
            public_key=public_key_b64(new),
            replace_key=True,
        )
    seal.key = new
    world.send("a1")
    assert _verdict(world, tmp_path / "genuine.zip").trusted  # events under each key, each in its time
    _set_key(world, seal.device_id, old)  # the ingest takes the retired key for a moment
    forged = _forge(world, "a1", old)
    _set_key(world, seal.device_id, new)
    verdict = _verdict(world, tmp_path / "case.zip", forged)
    assert not verdict.trusted and verdict.failed == ["event_signatures"], verdict.text()
    (problem,) = verdict.check("event_signatures").problems
    assert f"seal-a1#{seal.seq}" in problem and "its key when it was logged" in problem


def test_a_gap_is_not_excused_by_a_binding_the_log_does_not_hold(world: CourtWorld, tmp_path: Path) -> None:
    drop_append_only_triggers(world)
    with session_scope(world.session_factory) as session:
        victim = session.scalars(select(Event).where(Event.device_id == "seal-a1", Event.seq == 2)).one()
        victim.case_no = CASE_B  # the intrusion, out of the case
        first = session.scalars(select(SealBinding).where(SealBinding.device_id == "seal-a1")).first()
        assert first is not None
        made_up = SealBinding(
            device_id="seal-a1", case_no=CASE_A, bound_at=first.bound_at - timedelta(days=1), unbound_at=victim.ts
        )
        session.add(made_up)
    verdict = _verdict(world, tmp_path / "case.zip")
    assert not verdict.trusted and verdict.failed == ["hash_chains"], verdict.text()
    assert verdict.check("hash_chains").problems == ["seal-a1: seq 2 missing"]
