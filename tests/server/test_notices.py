"""The printed notice and its public page, through the API: the PDF read back with poppler and its QR code decoded with
OpenCV, the page and the JSON verdict for valid, tampered, superseded and revoked tokens, and the seal's state."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol import EventType
from seal_protocol.signing import generate_signing_key, load_or_create_signing_key, load_signing_key, public_key_b64
from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.cli import main
from server.commands.service import to_publish
from server.config import NoticeSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.notices.keys import key_id
from server.notices.models import Notice
from server.notices.service import check_notice, revoke_notice
from server.notices.token import Refusal, b64url, b64url_decode, sign_token, verify_token
from server.seals.cases import add_case, add_court, update_case
from server.seals.registry import register_seal, unbind_seal
from tests.server.auth_helpers import PUBLIC_BASE_URL, add_user, bearer, make_settings
from tests.server.helpers import COURT_CODE, COURT_NAME, SimulatedSeal, message

CASE = f"(2021){COURT_CODE}执1234号"
DEVICE = "seal-0001"
DEBTOR, APPLICANT = "李四海", "王五实业有限公司"
RULING = f"(2021){COURT_CODE}执1234号之一"
WARNING = "未经人民法院许可，隐藏、转移、变卖、毁损查封财产的，依法追究法律责任"
AUTHENTIC = "This is an authentic notice of this court"
NOT_AUTHENTIC = "Not an authentic notice of this court"
NO_LONGER = "A genuine notice of this court, but no longer in force"
NOTICE_PREFIX = f"{PUBLIC_BASE_URL}/notice/"


@dataclass
class World:
    session_factory: SessionFactory
    client: TestClient
    seal: SimulatedSeal
    ingestor: Ingestor
    tmp_path: Path

    def headers(self, username: str = "clerk") -> dict[str, str]:
        return bearer(self.session_factory, username)

    def pdf(self, username: str = "clerk") -> bytes:
        response = self.client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=self.headers(username))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        return response.content

    def send(self, *events: bytes) -> None:
        self.ingestor.ingest([message(self.seal.event_topic, data) for data in events])


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[World]:
    """A court with a phone, a case with every fact and both parties' names, its seal bound, staff and a debtor."""
    with session_scope(session_factory) as session:
        add_court(session, actor=None, code=COURT_CODE, name=COURT_NAME, phone="0510-85000000")
        add_case(
            session,
            actor=None,
            case_no=CASE,
            judge="张法官",
            judge_phone="0510-85001234",
            address="无锡市滨湖区某路1号101室",
            sealed_property="房屋一套及室内设备",
            ruling_no=RULING,
            applicant=APPLICANT,
            debtor=DEBTOR,
            seizure_expires_on=date(2029, 12, 3),
        )
    seal = SimulatedSeal(DEVICE, CASE)
    with session_scope(session_factory) as session:
        register_seal(session, actor=None, device_id=DEVICE, case_no=CASE, public_key=seal.public_key)
    add_user(session_factory, "clerk", Role.CLERK)
    for role in (Role.JUDGE, Role.OFFICER, Role.DEBTOR):
        add_user(session_factory, role.value, role, (CASE,))
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    app = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    with TestClient(app) as client:
        yield World(session_factory, client, seal, ingestor, tmp_path)


def pdf_text(pdf: bytes) -> str:
    """The PDF's text with all white space removed (lines may break anywhere in Chinese)."""
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    return re.sub(r"\s+", "", text)


def pdf_fonts(pdf: bytes) -> list[list[str]]:
    """The rows of ``pdffonts`` (name, type…, emb, sub, uni, object, generation)."""
    out = subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    return [line.split() for line in out.splitlines()[2:]]


def qr_text(pdf: bytes, tmp_path: Path) -> str:
    """What the QR code on the PDF's page says, read as a phone would: the page as a picture, then OpenCV — looking
    again, nearer or farther, as a phone does when its first look finds nothing."""
    import cv2

    (tmp_path / "notice.pdf").write_bytes(pdf)
    # OpenCV's detectors each miss some codes of this size (version 13) on a flawless picture, which zbar and phones
    # read; which ones depends on the code's content (the token's times), so one look at one size fails now and then.
    for dpi in (200, 300, 150):
        subprocess.run(
            ["pdftoppm", "-r", str(dpi), "-png", "-singlefile", "notice.pdf", "page"], cwd=tmp_path, check=True
        )
        picture = cv2.imread(str(tmp_path / "page.png"))
        for detector in (cv2.QRCodeDetectorAruco(), cv2.QRCodeDetector()):
            text, _points, _code = detector.detectAndDecode(picture)
            if text:
                return str(text)
    return ""


def token_of(url: str) -> str:
    assert url.startswith(NOTICE_PREFIX), url
    return url.removeprefix(NOTICE_PREFIX)


def tampered(token: str) -> str:
    payload, signature = token.split(".")
    members = json.loads(b64url_decode(payload))
    members["x"] += 3650 * 86400  # ten more years
    return b64url(json.dumps(members, separators=(",", ":"), ensure_ascii=False).encode()) + "." + signature


def test_the_pdf_prints_the_case_and_the_warning_in_an_embedded_cjk_font(world: World) -> None:
    pdf = world.pdf()
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    for printed in (CASE, WARNING, COURT_NAME, "张法官", "0510-85001234", "0510-85000000", "房屋一套及室内设备"):
        assert printed in text
    for law in ("最高人民法院关于人民法院民事执行中查封、扣押、冻结财产的规定", "民事诉讼法", "刑法》第三百一十四条"):
        assert law in text
    assert "2029-12-03" in text and DEVICE in text and "Casenumber" in text
    assert DEBTOR not in text and APPLICANT not in text
    fonts = pdf_fonts(pdf)
    assert fonts and all(row[-5] == "yes" for row in fonts), fonts  # every font embedded
    assert any("WenQuanYiZenHei" in row[0] for row in fonts), fonts


def test_the_qr_code_holds_the_notice_url_printed_under_it(world: World) -> None:
    pdf = world.pdf()
    url = qr_text(pdf, world.tmp_path)
    token_of(url)
    assert url in pdf_text(pdf)
    page = world.client.get(url.removeprefix(PUBLIC_BASE_URL))
    assert page.status_code == 200 and AUTHENTIC in page.text


def test_judge_and_officer_print_it_and_the_same_notice_comes_back_until_its_facts_change(world: World) -> None:
    first = qr_text(world.pdf("judge"), world.tmp_path)
    assert qr_text(world.pdf("officer"), world.tmp_path) == first
    with session_scope(world.session_factory) as session:
        update_case(session, actor=None, case_no=CASE, changes={"judge_phone": "0510-85009999"})
    second = qr_text(world.pdf(), world.tmp_path)
    assert second != first
    with session_scope(world.session_factory) as session:
        actions = list(
            session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("notice.%")).order_by(AuditEntry.id))
        )
        notices = list(session.scalars(select(Notice).order_by(Notice.id)))
    assert actions == ["notice.issue", "notice.reprint", "notice.issue"]
    assert [n.superseded_by for n in notices] == [notices[1].id, None]
    old = world.client.get(first.removeprefix(PUBLIC_BASE_URL)).text
    assert NO_LONGER in old and "replaced it with a newer notice" in old and "0510-85001234" in old
    assert AUTHENTIC in world.client.get(second.removeprefix(PUBLIC_BASE_URL)).text


def test_the_page_of_a_valid_token_shows_the_facts_as_printed_and_no_party(world: World) -> None:
    url = qr_text(world.pdf(), world.tmp_path)
    page = world.client.get(f"/notice/{token_of(url)}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert AUTHENTIC in html and "本公告经法院签名核验" in html
    for fact in (
        CASE,
        COURT_NAME,
        "张法官",
        "0510-85001234",
        "0510-85000000",
        "房屋一套及室内设备",
        "2029-12-03",
        DEVICE,
    ):
        assert fact in html
    assert DEBTOR not in html and APPLICANT not in html
    assert f'href="/portal?case_no={quote(CASE, safe="")}"' in html and "查封中" in html  # the portal's form, filled in
    assert "no-referrer" == page.headers["referrer-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    references = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", html)
    assert all(ref.startswith(("/", "tel:")) for ref in references), references
    assert "<script" not in html and "@import" not in html and "url(" not in html


def test_a_tampered_token_is_not_authentic_and_shows_nothing_of_the_notice(world: World) -> None:
    token = token_of(qr_text(world.pdf(), world.tmp_path))
    for forged in (tampered(token), token[:-3], token.replace(".", ".A", 1)):
        page = world.client.get(f"/notice/{forged}")
        assert page.status_code == 200
        assert NOT_AUTHENTIC in page.text and AUTHENTIC not in page.text
        assert CASE not in page.text and "张法官" not in page.text
    assert "signature does not match" in world.client.get(f"/notice/{tampered(token)}").text


@pytest.mark.parametrize(
    "path",
    [
        "",
        "x",
        ".",
        "a.b",
        "%00",
        quote("封条.公告"),
        quote("😀" * 50),
        "x" * 20_000,
        "..%2F..%2Fetc%2Fpasswd",
        "a/b/c",
        quote("<script>alert(1)</script>"),
        "%FF%FE",
    ],
)
def test_any_string_gets_a_page_saying_not_authentic(world: World, path: str) -> None:
    page = world.client.get(f"/notice/{path}")
    assert page.status_code == 200, page.text[:300]
    assert NOT_AUTHENTIC in page.text and "<script>alert" not in page.text


def test_the_json_verdict_is_the_page_s_with_the_facts_that_were_hashed(world: World) -> None:
    token = token_of(qr_text(world.pdf(), world.tmp_path))
    verdict = world.client.get("/api/notices/verify", params={"token": token}).json()
    assert verdict["authentic"] is True and verdict["reason"] is None
    facts = verdict["notice"]["facts"]
    assert facts["case_no"] == CASE and set(facts) & {"debtor", "applicant"} == set()
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    claimed = json.loads(b64url_decode(token.split(".")[0]))["h"]
    assert b64url(hashlib.sha256(canonical).digest()) == claimed
    assert verdict["seal"] == {"armed": None, "armed_at": None, "still_bound": True, "armed_hidden": False}
    assert verdict["case_status"] == "sealed"

    forged = world.client.get("/api/notices/verify", params={"token": tampered(token)}).json()
    assert (forged["authentic"], forged["reason"], forged["notice"]) == (False, "tampered", None)
    assert world.client.get("/api/notices/verify", params={"token": "x" * 2000}).status_code == 422
    key = world.client.get("/api/notices/key").json()
    assert key["algorithm"] == "Ed25519" and json.loads(b64url_decode(token.split(".")[0]))["k"] == key["key_id"]


def test_the_page_tells_the_seal_s_state_from_its_signed_events(world: World) -> None:
    url = qr_text(world.pdf(), world.tmp_path).removeprefix(PUBLIC_BASE_URL)
    assert "尚未收到封条报告的状态" in world.client.get(url).text
    world.send(world.seal.event(EventType.AGENT_STARTED, {"armed": True}), world.seal.event(EventType.ARMED))
    assert "布防中" in world.client.get(url).text
    world.send(world.seal.event(EventType.DISARMED, {"reason": "command", "by": "court"}))
    page = world.client.get(url).text
    assert "已撤防" in page and "disarmed" in page and AUTHENTIC in page
    with session_scope(world.session_factory) as session:  # the binding alone, its notice not revoked
        unbind_seal(session, actor=None, device_id=DEVICE)
    page = world.client.get(url).text
    assert "封条已不再属于本案" in page and NO_LONGER in page  # a notice stands only while its seal is bound
    response = world.client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=world.headers())
    assert response.status_code == 409 and "bound to no case" in response.json()["detail"]


def test_a_revoked_notice_is_not_authentic(world: World) -> None:
    url = qr_text(world.pdf(), world.tmp_path).removeprefix(PUBLIC_BASE_URL)
    with session_scope(world.session_factory) as session:
        notice_id = session.scalars(select(Notice.id)).one()
        revoke_notice(session, actor=None, notice_id=notice_id, now=utc_now(), note="公告有误")
    page = world.client.get(url).text
    assert NO_LONGER in page and "revoked" in page
    assert (
        world.client.get("/api/notices/verify", params={"token": token_of(PUBLIC_BASE_URL + url)}).json()["reason"]
        == "revoked"
    )
    assert qr_text(world.pdf(), world.tmp_path).removeprefix(PUBLIC_BASE_URL) != url  # printing issues a new one


def test_creditor_and_debtor_may_not_print_it(world: World) -> None:
    response = world.client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=world.headers("debtor"))
    assert response.status_code == 403


def test_without_key_or_public_address_nothing_is_printed(database_url: str, world: World, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path)
    for notices, what in [
        (NoticeSettings(key_file=tmp_path / "absent.key", public_base_url=PUBLIC_BASE_URL), "notice-key"),
        (NoticeSettings(key_file=tmp_path / "notice.key"), "public_base_url"),
        (
            NoticeSettings(
                key_file=tmp_path / "notice.key", public_base_url=PUBLIC_BASE_URL, font_file=tmp_path / "no.ttf"
            ),
            "font_file",
        ),
    ]:
        app = create_app(settings.model_copy(update={"notices": notices}), with_ingest=False)
        with TestClient(app) as client:
            response = client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=world.headers())
            assert response.status_code == 503 and what in response.json()["detail"], response.text
    with session_scope(world.session_factory) as session:
        assert session.scalars(select(Notice)).all() == []
    keyless = settings.model_copy(update={"notices": NoticeSettings()})
    with TestClient(create_app(keyless, with_ingest=False)) as client:
        page = client.get("/notice/abc.def")
        assert page.status_code == 503 and "暂时无法核验公告" in page.text
        assert client.get("/api/notices/verify", params={"token": "abc"}).status_code == 503
        assert client.get("/api/notices/key").status_code == 503


def test_a_seizure_past_its_term_gets_no_notice(world: World) -> None:
    with session_scope(world.session_factory) as session:
        update_case(
            session, actor=None, case_no=CASE, changes={"seizure_expires_on": utc_now().date() - timedelta(days=1)}
        )
    response = world.client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=world.headers())
    assert response.status_code == 409 and "renew" in response.json()["detail"]


def test_an_expired_notice_still_shows_what_it_printed(world: World) -> None:
    token = token_of(qr_text(world.pdf(), world.tmp_path))
    key = load_signing_key(world.tmp_path / "notice.key").verify_key
    with world.session_factory() as session:
        check = check_notice(session, token=token, keys=[key], now=datetime(2029, 12, 3, 16, 0, tzinfo=UTC))
        assert check.refusal is Refusal.EXPIRED and check.facts is not None and check.facts.case_no == CASE
        before = check_notice(session, token=token, keys=[key], now=datetime(2029, 12, 3, 15, 59, 59, tzinfo=UTC))
        assert before.authentic


def test_a_token_signed_with_another_key_is_not_this_court_s(world: World) -> None:
    other = generate_signing_key()
    token = token_of(qr_text(world.pdf(), world.tmp_path))
    claims = verify_token(token, [load_signing_key(world.tmp_path / "notice.key").verify_key], now=utc_now()).claims
    assert claims is not None
    foreign = sign_token(replace(claims, key_id=key_id(other.verify_key)), other)
    page = world.client.get(f"/notice/{foreign}").text
    assert NOT_AUTHENTIC in page and "not issued by this court" in page and CASE not in page


def verdict_of(world: World, url: str) -> dict[str, object]:
    token = token_of(PUBLIC_BASE_URL + url)
    verdict: dict[str, object] = world.client.get("/api/notices/verify", params={"token": token}).json()
    return verdict


def test_unbinding_the_seal_by_hand_revokes_its_notice(world: World) -> None:
    """The paper left on the door no longer verifies as a standing seizure once its seal is taken off the case."""
    url = qr_text(world.pdf(), world.tmp_path).removeprefix(PUBLIC_BASE_URL)
    assert world.client.delete(f"/api/seals/{DEVICE}/binding", headers=world.headers("officer")).status_code == 204
    verdict = verdict_of(world, url)
    assert (verdict["authentic"], verdict["reason"]) == (False, "revoked")
    assert NO_LONGER in world.client.get(url).text
    with world.session_factory() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "notice.revoke")).all()
        assert (entry.actor, entry.details["reason"]) == ("officer", "unbound")
        assert "unbound by hand" in entry.details["note"]


def test_a_seal_moved_to_another_case_on_the_command_line_leaves_no_notice_or_command_of_the_old_one(
    world: World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``seal-server seal add --case`` of a bound seal moves it: the old case's binding ends as by an unbinding by
    hand, in the same transaction. Before, the old notice stayed on record and its disarm stayed pending: moved back
    (a mistaken case number corrected), the notice verified again and the disarm was publishable again."""
    url = qr_text(world.pdf(), world.tmp_path).removeprefix(PUBLIC_BASE_URL)
    issued = world.client.post(
        f"/api/seals/{DEVICE}/commands", json={"action": "disarm"}, headers=world.headers("judge")
    )
    assert issued.status_code == 202, issued.text
    command_id = issued.json()["command_id"]
    other = f"(2021){COURT_CODE}执5678号"
    with session_scope(world.session_factory) as session:
        add_case(session, actor=None, case_no=other)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = ["--config", str(cli_config(world.tmp_path, database_url))]
    for case_no in (other, CASE):  # away and back
        assert main(["seal", "add", DEVICE, "--case", case_no, "--public-key", world.seal.public_key, *config]) == 0
    verdict = verdict_of(world, url)
    assert (verdict["authentic"], verdict["reason"]) == (False, "revoked")
    assert NO_LONGER in world.client.get(url).text
    command = world.client.get(f"/api/commands/{command_id}", headers=world.headers("judge")).json()
    assert command["state"] == "expired"
    with world.session_factory() as session:
        assert command_id not in [row.id for row in to_publish(session, now=utc_now())]
        [revoked] = session.scalars(select(AuditEntry).where(AuditEntry.action == "notice.revoke")).all()
        [expired] = session.scalars(select(AuditEntry).where(AuditEntry.action == "command.expire")).all()
    for entry in (revoked, expired):
        # the case's own entries, read by its judge and exported with it: they do not name the case it went to
        assert (entry.case_no, entry.details["note"]) == (CASE, f"seal unbound from case {CASE}: moved to another case")
    assert revoked.details["reason"] == "unbound"
    assert AUTHENTIC in world.client.get(qr_text(world.pdf(), world.tmp_path).removeprefix(PUBLIC_BASE_URL)).text


def cli_config(tmp_path: Path, database_url: str) -> Path:
    """A ``server.toml`` for ``seal-server`` commands on the world's database."""
    (tmp_path / "cli-mqtt-password").write_text("unused\n")
    path = tmp_path / "server.toml"
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (tmp_path / store).mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'''database_url = "{database_url}"
snapshot_dir = "{tmp_path / "snapshots"}"
[mqtt]
password_file = "{tmp_path / "cli-mqtt-password"}"
''',
        encoding="utf-8",
    )
    return path


def test_a_clerk_revokes_a_notice_saying_why(world: World) -> None:
    url = qr_text(world.pdf(), world.tmp_path).removeprefix(PUBLIC_BASE_URL)
    with world.session_factory() as session:
        notice_id = session.scalars(select(Notice.id)).one()
    revoke = f"/api/notices/{notice_id}/revoke"
    assert world.client.post(revoke, json={"note": "x"}, headers=world.headers("judge")).status_code == 403
    assert world.client.post(revoke, json={"note": ""}, headers=world.headers()).status_code == 422
    assert world.client.post(revoke, json={"note": " "}, headers=world.headers()).status_code == 422
    revoked = world.client.post(revoke, json={"note": "公告内容有误"}, headers=world.headers())
    assert revoked.status_code == 200, revoked.text
    assert (revoked.json()["reason"], revoked.json()["note"]) == ("revoked", "公告内容有误")
    assert world.client.post(revoke, json={"note": "again"}, headers=world.headers()).status_code == 409
    assert world.client.post("/api/notices/99/revoke", json={"note": "x"}, headers=world.headers()).status_code == 404
    verdict = verdict_of(world, url)
    assert (verdict["authentic"], verdict["reason"]) == (False, "revoked")


def test_the_public_verdict_does_not_tell_when_the_seal_last_spoke(world: World) -> None:
    """A seal's heartbeats say whether it is armed: the time of the latest would tell anyone at the door when the
    seal last spoke (whether it is offline, or whether jamming it worked). The verdict gives the state only."""
    url = qr_text(world.pdf(), world.tmp_path).removeprefix(PUBLIC_BASE_URL)
    world.send(world.seal.event(EventType.HEARTBEAT, {"armed": True}))
    verdict = verdict_of(world, url)
    assert verdict["seal"] == {"armed": True, "armed_at": None, "still_bound": True, "armed_hidden": False}
    assert "as signed by the seal at" not in world.client.get(url).text


def test_notices_signed_with_a_retired_key_still_verify_where_it_is_listed(
    database_url: str, world: World, tmp_path: Path
) -> None:
    """The court replaces its notice key. Notices already on doors were signed with the old one: with its public key
    in ``[notices] retired_public_keys`` they still verify (and ``/api/notices/key`` lists it); without, they read
    as not this court's — the reason to list a replaced key that did not leak."""
    old_token = token_of(qr_text(world.pdf(), world.tmp_path))
    old_public = public_key_b64(load_signing_key(tmp_path / "notice.key"))
    new_key = tmp_path / "notice-2.key"
    load_or_create_signing_key(new_key)
    settings = make_settings(database_url, tmp_path)

    def verdicts(retired: tuple[str, ...]) -> tuple[dict[str, object], dict[str, object]]:
        notices = NoticeSettings(key_file=new_key, public_base_url=PUBLIC_BASE_URL, retired_public_keys=retired)
        with TestClient(create_app(settings.model_copy(update={"notices": notices}), with_ingest=False)) as client:
            verdict = client.get("/api/notices/verify", params={"token": old_token}).json()
            return verdict, client.get("/api/notices/key").json()

    verdict, key = verdicts(())
    assert (verdict["authentic"], verdict["genuine"], verdict["reason"]) == (False, False, "foreign_key")
    assert key["retired"] == []
    verdict, key = verdicts((old_public,))
    assert (verdict["authentic"], verdict["genuine"], verdict["reason"]) == (True, True, None), verdict
    assert key["retired"] == [
        {"public_key": old_public, "key_id": key_id(load_signing_key(tmp_path / "notice.key").verify_key)}
    ]
    assert key["public_key"] == public_key_b64(load_signing_key(new_key))
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        NoticeSettings(retired_public_keys=("not a key",))


def test_the_paper_and_the_page_say_which_printed_facts_only_the_online_check_covers(world: World) -> None:
    """The QR code's token holds the notice no., the seal, the case and the dates, not the phones or the address: a
    paper that keeps a genuine code but prints another phone passes an offline check. Both tell the reader to
    compare the printed facts with the court's page."""
    pdf = world.pdf()
    text = pdf_text(pdf).replace(" ", "").replace("\n", "")
    assert "本纸所印电话、地址等须与扫码所见法院网页逐项一致" in text
    assert "mustmatchthecourt'spagelinebyline" in text
    html = world.client.get(qr_text(pdf, world.tmp_path).removeprefix(PUBLIC_BASE_URL)).text
    assert 'id="compare-paper"' in html and "只有与本页核对才可信" in html and "above all a phone number" in html
