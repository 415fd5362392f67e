"""The parts of a bundle other helpers made: the report PDF (from the records and the staged verdict) and the RFC
3161 time stamp of the checkpoint (a local TSA made with ``openssl ts``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_dev.tsa import LocalTsa, TsaPki, make_tsa_pki
from seal_verify import Status, verify_bundle
from server.core.db import SessionFactory
from server.evidence.tsa import TsaClient
from tests.server.helpers import CASE_A
from tests.verify.world import (
    CourtWorld,
    build_world,
    drop_append_only_triggers,
    read_members,
    resign,
    write_members,
)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPki:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture
def tsa(pki: TsaPki) -> Iterator[LocalTsa]:
    with LocalTsa(pki) as server:
        yield server


def pdf_text(pdf: bytes) -> str:
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def test_the_report_states_the_case_and_the_staged_verdict(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    text = pdf_text(members["report.pdf"])
    assert CASE_A in text
    assert "封条对事件的签名" in text and "the seals' signatures of the events" in text
    assert "9 of 9 event signatures verify" in text


def test_a_tampered_database_is_stated_in_the_report(world: CourtWorld, tmp_path: Path) -> None:
    from sqlalchemy import select

    from server.evidence.models import Event

    drop_append_only_triggers(world)
    with world.session_factory() as session:
        event = session.scalars(select(Event).where(Event.device_id == "seal-a2", Event.seq == 1)).one()
        event.raw = event.raw.replace(b'"armed":true', b'"armed":false')
        session.commit()
    result = world.export(CASE_A, tmp_path / "case.zip")
    assert not result.verified
    assert "8 of 9 event signatures verify" in pdf_text(read_members(result.path)["report.pdf"])


def test_the_checkpoint_carries_its_time_stamp(world: CourtWorld, tmp_path: Path, tsa: LocalTsa, pki: TsaPki) -> None:
    client = TsaClient(tsa.url, roots_file=pki.ca_pem)
    result = world.export(CASE_A, tmp_path / "case.zip", tsa=client)
    members = read_members(result.path)
    assert {"log/checkpoint.tsr", "log/tsa-chain.pem", "report.pdf"} <= members.keys()
    pinned = verify_bundle(result.path, tsa_roots_pem=pki.ca_pem.read_bytes())
    assert pinned.ok, pinned.text()
    assert pinned.check("timestamp").status is Status.OK and not pinned.check("timestamp").notes
    unpinned = verify_bundle(result.path)
    assert unpinned.ok and any("not pinned" in w for w in unpinned.check("timestamp").warnings)
    assert unpinned.check("timestamp").status is Status.UNANCHORED and unpinned.warnings == ["timestamp"]
    assert "unpinned" in unpinned.facts["tsa"] and "unpinned" not in pinned.facts["tsa"]
    other = make_tsa_pki(tmp_path / "other", name="Another TSA")
    wrong = verify_bundle(result.path, tsa_roots_pem=other.ca_pem.read_bytes())
    assert wrong.failed == ["timestamp"], wrong.text()
    assert "Seal Test TSA" in pdf_text(members["report.pdf"])


def test_a_tsa_that_does_not_answer_leaves_the_bundle_without_a_time_stamp(
    world: CourtWorld, tmp_path: Path, pki: TsaPki
) -> None:
    with LocalTsa(pki) as gone:
        url = gone.url
    result = world.export(CASE_A, tmp_path / "case.zip", tsa=TsaClient(url, roots_file=pki.ca_pem, timeout_s=2))
    assert "log/checkpoint.tsr" not in read_members(result.path)
    verdict = verify_bundle(result.path)
    assert verdict.ok and verdict.check("timestamp").status is Status.ABSENT


def test_a_removal_request_and_its_proof_files_are_in_the_bundle(world: CourtWorld, tmp_path: Path) -> None:
    import hashlib
    import json

    from server.auth.access import Role
    from server.auth.users import get_user
    from server.config import RemovalSettings
    from server.core.base import utc_now
    from server.core.db import session_scope
    from server.removal.grounds import RemovalGround
    from server.removal.proofs import ProofStore, check_proof
    from server.removal.service import file_request
    from tests.server.auth_helpers import add_user
    from tests.server.removal_world import pdf_bytes

    add_user(world.session_factory, "debtor-a", Role.DEBTOR, (CASE_A,))
    pdf = pdf_bytes("paid in full")
    proof = check_proof(pdf, filename="receipt.pdf", declared_type="application/pdf", max_bytes=1 << 20)
    with session_scope(world.session_factory) as session:
        file_request(
            session,
            actor=get_user(session, username="debtor-a"),
            case_no=CASE_A,
            ground=list(RemovalGround)[0],
            statement="债务已清偿 / the debt is paid",
            proofs=[proof],
            store=ProofStore(world.settings.proof_dir),
            settings=RemovalSettings(),
            now=utc_now(),
        )
    result = world.export(CASE_A, tmp_path / "case.zip")
    members = read_members(result.path)
    sha = hashlib.sha256(pdf).hexdigest()
    assert members[f"removal/{sha}.pdf"] == pdf
    (request,) = [json.loads(line) for line in members["removal.jsonl"].splitlines()]
    assert request["filed_by"] == "debtor-a" and request["proofs"][0]["present"] is True
    assert request["steps"][0]["action"] == "file"
    assert verify_bundle(result.path).ok
    # a proof file swapped by whoever holds the log key: the file no longer hashes to its name
    members[f"removal/{sha}.pdf"] = pdf_bytes("not paid")
    swapped = verify_bundle(write_members(tmp_path / "swapped.zip", resign(members, world.log_key)))
    assert swapped.failed == ["manifest_files"], swapped.text()
    assert swapped.check("manifest_files").problems == [f"removal/{sha}.pdf: its bytes do not hash to its name"]


def test_a_command_and_the_seals_answer_are_in_the_bundle(world: CourtWorld, tmp_path: Path) -> None:
    import base64
    import json
    from datetime import timedelta

    from sqlalchemy import select

    from seal_protocol import EventType
    from seal_protocol.commands import CommandAction
    from seal_protocol.signing import generate_signing_key
    from server.auth.access import Role
    from server.auth.users import get_user
    from server.commands.service import issue_command
    from server.core.base import utc_now
    from server.core.db import session_scope
    from server.seals.models import Seal
    from tests.server.auth_helpers import add_user

    add_user(world.session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    with session_scope(world.session_factory) as session:
        command = issue_command(
            session,
            seal=session.scalars(select(Seal).where(Seal.device_id == "seal-a1")).one(),
            action=CommandAction.PING,
            args={},
            key=generate_signing_key(),
            ttl=timedelta(minutes=10),
            user=get_user(session, username="judge-a"),
            now=utc_now(),
        )
        command_id, signed = command.id, command.signed
    world.send("a1", EventType.COMMAND_ACK, {"command_id": command_id, "action": "ping", "result": "pong"})
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    (line,) = [json.loads(x) for x in members["commands.jsonl"].splitlines()]
    assert base64.b64decode(line["signed"]) == signed
    assert line["issued_by"] == "judge-a" and line["action"] == "ping"
    assert line["answer_seq"] == world.seals["a1"].seq and line["state"] == "acknowledged"


def test_a_command_the_seal_refused_reads_in_words_in_the_report_and_as_its_token_in_the_jsonl(
    world: CourtWorld, tmp_path: Path
) -> None:
    """The report says the refused disarm and why in words, Chinese first, as the case page does; commands.jsonl and
    events.jsonl keep the protocol's tokens (they are the machine's record)."""
    import json
    import re
    from datetime import timedelta

    from sqlalchemy import select

    from seal_protocol import EventType
    from seal_protocol.commands import CommandAction
    from seal_protocol.signing import generate_signing_key
    from server.auth.access import Role
    from server.auth.users import get_user
    from server.commands.service import issue_command
    from server.core.base import utc_now
    from server.core.db import session_scope
    from server.seals.models import Seal
    from tests.server.auth_helpers import add_user

    add_user(world.session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    with session_scope(world.session_factory) as session:
        command_id = issue_command(
            session,
            seal=session.scalars(select(Seal).where(Seal.device_id == "seal-a1")).one(),
            action=CommandAction.DISARM,
            args={},
            key=generate_signing_key(),
            ttl=timedelta(minutes=10),
            user=get_user(session, username="judge-a"),
            now=utc_now(),
        ).id
    refusal = {"command_id": command_id, "reason": "wrong_case", "detail": "issued for another case"}
    world.send("a1", EventType.COMMAND_REJECTED, refusal)
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    (line,) = [json.loads(x) for x in members["commands.jsonl"].splitlines()]
    assert (line["action"], line["state"], line["reason"]) == ("disarm", "rejected", "wrong_case")
    assert b'"reason":"wrong_case"' in members["events.jsonl"]
    text = re.sub(r"\s+", "", pdf_text(members["report.pdf"]))
    commands = text.split("指令与应答")[-1].split("解除查封申请与决定")[0]
    for said in ("撤防Disarm", "封条拒绝Refusedbytheseal", "案号不符（封条已用于其他案件）"):
        assert said in commands, said
    assert f"指令{command_id}：案号不符（封条已用于其他案件）" in text  # the timeline's refusal event
    assert "wrong_case" not in text and "rejected" not in text
