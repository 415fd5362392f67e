"""The debtor's path end to end: ``seal-server run`` as its own process, a private Mosquitto, and the real agent
code (``SealRuntime`` on gpiozero mock pins, its clock one that the test can move on).

The clerk issues the debtor's access code; the debtor signs in with it and files a removal request with a PDF; the
creditor adds a written view; the seal goes offline; the judge approves — the request waits (``disarm_pending``)
while the broker holds the signed disarm for the seal; the seal comes back, carries it out and answers with its
signed ``command_ack`` — ``disarmed``; an officer confirms the removal on site — ``lifted``, the seal unbound. An
intrusion the seal then records, stamped after the binding ended (beyond the clock-skew allowance), is refused by
the ingest and does not land in the case.
"""

from __future__ import annotations

import base64
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from gpiozero.pins.mock import MockFactory

from seal_dev.broker import PrivateBroker, free_port
from seal_protocol import Envelope, EventType, decode_envelope
from seal_protocol.signing import load_or_create_signing_key, public_key_b64
from server.auth.access import Role
from server.core.db import make_engine, make_session_factory, session_scope
from server.ingest.batch import BINDING_CLOCK_SKEW
from server.migrations.run import init_db
from server.seals.broker_files import SERVER_USERNAME
from server.seals.cases import add_case, add_court
from server.seals.registry import register_seal
from tests.agent.helpers import RuntimeFactory, agent_env, pulse, verify_key, wait_until
from tests.e2e.helpers import SEAL_SERVER, agent_config
from tests.server.auth_helpers import PASSWORD, add_user
from tests.server.helpers import COURT_CODE, COURT_NAME, COURT_PHONE, notice_facts
from tests.server.removal_world import pdf_bytes
from tests.server.test_notices import qr_text, tampered, token_of

CASE = "(2021)苏0214执1234号"
SEAL = "seal-removal-1"


@dataclass
class MovableClock:
    """The seal's clocks: the real ones, the wall clock moved on by ``ahead`` (a seal that speaks later)."""

    ahead: timedelta = field(default_factory=timedelta)

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead


class Court:
    """The running server's API, as one user or another."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)
        self.tokens: dict[str, str] = {}

    def login(self, username: str) -> None:
        response = self.http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        self.tokens[username] = response.json()["access_token"]

    def call(self, who: str, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        response = self.http.request(method, url, headers=headers, **kwargs)
        assert response.status_code == status, f"{method} {url}: {response.status_code} {response.text}"
        return response.json()

    def request(self, request_id: int, who: str = "judge") -> dict[str, Any]:
        shown: dict[str, Any] = self.call(who, "GET", f"/api/removal-requests/{request_id}")
        return shown


def install_court(tmp_path: Path, broker: PrivateBroker, database_url: str, *, ttl_s: float = 300) -> tuple[Path, Path]:
    """A court with a court key, one case, the case's people and a seal's configuration for it; return the server's
    configuration (commands valid ``ttl_s``) and the seal's."""
    court_key, _created = load_or_create_signing_key(tmp_path / "court" / "command.key")
    seal_config = agent_config(tmp_path / SEAL, broker, SEAL, CASE, public_key_b64(court_key))
    engine = make_engine(database_url)
    try:
        init_db(engine)
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            add_court(session, actor=None, code=COURT_CODE, name=COURT_NAME, phone=COURT_PHONE)
            add_case(session, actor=None, case_no=CASE, judge="王法官", debtor="张三", **notice_facts(CASE))
        add_user(factory, "clerk", Role.CLERK)
        for role in (Role.JUDGE, Role.OFFICER, Role.CREDITOR):
            add_user(factory, role.value, role, [CASE])
    finally:
        engine.dispose()
    (tmp_path / "server-mqtt-password").write_text(broker.users[SERVER_USERNAME] + "\n")
    http_port = free_port()
    load_or_create_signing_key(tmp_path / "court" / "notice.key")
    config = tmp_path / "server.toml"
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (tmp_path / store).mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"""database_url = "{database_url}"
snapshot_dir = "{tmp_path / "snapshots"}"
[http]
host = "127.0.0.1"
port = {http_port}
[mqtt]
host = "127.0.0.1"
port = {broker.port}
username = "{SERVER_USERNAME}"
password_file = "{tmp_path / "server-mqtt-password"}"
[auth]
cookie_secure = false
[commands]
signing_key_file = "{tmp_path / "court" / "command.key"}"
ttl_s = {ttl_s}
retry_interval_s = 0.2
[removal]
settle_interval_s = 0.5
[notices]
key_file = "{tmp_path / "court" / "notice.key"}"
public_base_url = "https://seal.court.example"
""",
        encoding="utf-8",
    )
    return config, seal_config


class CourtServer:
    """``seal-server run`` with ``config`` as its own process, logging to ``log``: :meth:`start`, :meth:`stop`."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        port = next(line for line in config.read_text().splitlines() if line.startswith("port = "))
        self.api = Court(f"http://127.0.0.1:{port.split(' = ')[1]}")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("a") as out:
            self._process = subprocess.Popen(
                [str(SEAL_SERVER), "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=agent_env(),
            )
        assert wait_until(lambda: _connected(self.api), 90), self.log.read_text()

    def stop(self) -> None:
        """SIGTERM, as an operator's restart does; it must exit cleanly."""
        server, self._process = self._process, None
        if server is None:
            return
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        assert server.returncode == 0, self.log.read_text()


@pytest.fixture
def court(tmp_path: Path, broker: PrivateBroker, database_url: str) -> Iterator[tuple[Court, Path, Path]]:
    """The court server running with a court key, one case, a seal installed for it and the case's people."""
    config, seal_config = install_court(tmp_path, broker, database_url)
    server = CourtServer(config, tmp_path / "server.log")
    try:
        server.start()
        yield server.api, seal_config, server.log
    finally:
        server.api.http.close()
        server.stop()


def _connected(api: Court) -> bool:
    try:
        return api.http.get("/api/health").json().get("broker") == "connected"
    except httpx.HTTPError:
        return False


@pytest.mark.timeout(300)
def test_the_debtor_s_path_from_the_access_code_to_the_lifted_seal(
    court: tuple[Court, Path, Path],
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    database_url: str,
) -> None:
    api, seal_config, log = court
    clock = MovableClock()
    # The seal is installed: its key registered with the court, bound to the case; it starts and speaks.
    first = runtimes(seal_config, clock=clock)
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            key = base64.b64encode(bytes(verify_key(seal_config))).decode("ascii")
            register_seal(session, actor=None, device_id=SEAL, case_no=CASE, public_key=key, location="仓库大门")
    finally:
        engine.dispose()
    first.start()
    for who in ("clerk", "judge", "officer", "creditor"):
        api.login(who)
    assert wait_until(lambda: api.call("judge", "GET", f"/api/seals/{SEAL}")["last_event_at"] is not None, 30), (
        log.read_text()
    )

    # The officer prints the seal's notice; its QR's URL carries a token the court signed: it verifies, a tampered
    # one does not.
    pdf = api.http.get(f"/api/seals/{SEAL}/notice.pdf", headers={"Authorization": f"Bearer {api.tokens['officer']}"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF"), pdf.text
    url = qr_text(pdf.content, log.parent)
    assert url.startswith("https://seal.court.example/notice/"), url
    token = token_of(url)
    verdict = api.http.get("/api/notices/verify", params={"token": token}).json()
    assert verdict["authentic"] is True, verdict
    assert api.http.get("/api/notices/verify", params={"token": tampered(token)}).json()["authentic"] is False
    page = api.http.get(f"/notice/{token}")
    assert page.status_code == 200 and CASE in page.text

    # The clerk issues the debtor's access code (printed for the debtor); the debtor signs in with it and files.
    case = quote(CASE, safe="")
    code = api.call("clerk", "POST", f"/api/cases/{case}/access-code", status=201)["code"]
    signed_in = api.http.post("/api/auth/access-code", json={"case_no": CASE, "code": code})
    assert signed_in.status_code == 200, signed_in.text
    api.tokens["debtor"] = signed_in.json()["access_token"]
    filed = api.call(
        "debtor",
        "POST",
        f"/api/cases/{case}/removal-requests",
        status=201,
        data={"ground": "paid_in_full", "statement": "案款已全部付清，附银行转账回单。"},
        files=[("files", ("转账回单.pdf", pdf_bytes("bank transfer 50000 CNY"), "application/pdf"))],
    )
    request_id = filed["request_id"]
    assert filed["state"] == "submitted" and filed["proofs"][0]["media_type"] == "application/pdf"
    assert [m["kind"] for m in api.call("creditor", "GET", "/api/me/inbox")] == ["removal.filed"]

    # The creditor gives a written view; the judge sees it.
    api.call(
        "creditor",
        "POST",
        f"/api/removal-requests/{request_id}/views",
        status=201,
        json={"text": "款已收到，同意解除。"},
    )
    assert [v["text"] for v in api.request(request_id)["views"]] == ["款已收到，同意解除。"]

    # The seal goes offline; the judge takes the request up and approves: the disarm waits for the seal.
    first.close()
    api.call("judge", "POST", f"/api/removal-requests/{request_id}/review", json={"note": "受理"})
    approved = api.call("judge", "POST", f"/api/removal-requests/{request_id}/approve", json={"reasons": "债务已清偿"})
    assert approved["state"] == "disarm_pending"
    assert api.call("judge", "GET", f"/api/cases/{case}")["status"] == "lifting"
    [progress] = approved["seals"]
    assert (progress["device_id"], progress["status"]) == (SEAL, "sent")
    command_url = f"/api/commands/{progress['command_id']}"
    assert wait_until(lambda: api.call("judge", "GET", command_url)["broker_accepted_at"] is not None, 30)
    time.sleep(1)  # accepted by the broker for the seal's session, yet not delivered: still pending
    assert api.call("judge", "GET", command_url)["state"] == "pending"
    assert api.request(request_id, "debtor")["state"] == "disarm_pending"

    # The seal reconnects: it gets the signed disarm, carries it out, and its signed ack settles the request.
    second = runtimes(seal_config, clock=clock)
    second.start()
    # (The case's list does not settle on read: the server's own round does, woken by the ingest storing the ack.)
    listed = f"/api/cases/{case}/removal-requests"
    assert wait_until(lambda: api.call("debtor", "GET", listed)[0]["state"] == "disarmed", 30), log.read_text()
    shown = api.request(request_id)
    assert (shown["seals"][0]["status"], shown["seals"][0]["armed"]) == ("disarmed", False)  # its signed events say
    assert api.call("judge", "GET", command_url)["result"]["result"] == "disarmed"
    assert [s["actor"] for s in shown["history"] if s["action"] == "confirm_disarmed"] == ["-"]

    # The officer confirms the removal on site: the seal is unbound, the seizure lifted.
    lifted = api.call("officer", "POST", f"/api/removal-requests/{request_id}/lifted", json={"note": "现场拆除"})
    assert lifted["state"] == "lifted"
    assert api.call("judge", "GET", f"/api/cases/{case}")["status"] == "lifted"
    [binding] = api.call("clerk", "GET", f"/api/seals/{SEAL}/bindings")
    assert binding["unbound_by"] == "officer" and binding["unbound_at"] is not None

    # Later, the seal (still running) records an intrusion, stamped after the binding ended plus the skew allowance.
    clock.ahead = BINDING_CLOCK_SKEW + timedelta(minutes=1)
    pulse(mock_pins)
    assert wait_until(lambda: any(e.type == EventType.INTRUSION for e in _refused(api)), 30), log.read_text()
    [intrusion] = [e for e in _refused(api) if e.type == EventType.INTRUSION]
    unbound_at = datetime.fromisoformat(binding["unbound_at"])
    assert intrusion.case_no == CASE and intrusion.occurred_at > unbound_at + BINDING_CLOCK_SKEW
    assert api.call("judge", "GET", f"/api/cases/{case}/events?type=intrusion")["events"] == []
    kinds = [m["kind"] for m in api.call("debtor", "GET", "/api/me/inbox")]
    assert kinds[0] == "removal.lifted" and "removal.approved" in kinds


def _refused(api: Court) -> list[Envelope]:
    """The seal's events the ingest refused because it was no longer bound then (signed, and stamped when)."""
    refused = api.call("clerk", "GET", f"/api/quarantine?device_id={SEAL}")["messages"]
    ids = [m["id"] for m in refused if m["reason"] == "unbound_seal"]
    raws = [base64.b64decode(api.call("clerk", "GET", f"/api/quarantine/{i}")["raw_base64"]) for i in ids]
    return [decode_envelope(raw) for raw in raws]
