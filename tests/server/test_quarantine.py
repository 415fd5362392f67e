"""The clerk reads the quarantine over the API and on the command line: what arrived (size, hex/ASCII preview, the
bytes in base64), from which seal account and topic, when, and why; filtered and paged; hostile bytes never reach a
terminal raw."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth.access import Role
from server.cli import main
from server.core.db import SessionFactory, session_scope
from server.ingest.models import QuarantinedMessage
from server.ingest.quarantine_cli import terminal_safe
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.ingest_world import Court, make_court
from tests.server.test_cli import write_config

HOSTILE = b'\x1b]0;owned\x07\x1b[2J\r\n\x00\xff\xfe{"seq": 1}'
EARLY = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def court(session_factory: SessionFactory, tmp_path: Path) -> Court:
    """Three refused messages: two hostile rows of seal-a and seal-b, then one the real ingest refused."""
    court = make_court(session_factory, tmp_path)
    with session_scope(session_factory) as session:
        session.add_all(
            [
                QuarantinedMessage(
                    received_at=EARLY,
                    topic="seal/v1/seal-a/events\x1b[31m",
                    device_id="seal-a",
                    reason="bad_signature",
                    detail="signature does not verify \u202e\x1b[2J",
                    size=len(HOSTILE) + 1000,
                    raw=HOSTILE,
                ),
                QuarantinedMessage(
                    received_at=EARLY + timedelta(hours=1),
                    topic="seal/v1/seal-b/events",
                    device_id="seal-b",
                    reason="bad_signature",
                    detail="signature does not verify",
                    size=3,
                    raw=b"abc",
                ),
            ]
        )
    court.send(court.a, b"\x07 not an envelope")
    court.send(court.a, b"\x07 not an envelope")  # the same bytes again: one row, two copies
    assert len(court.quarantine()) == 3
    return court


@pytest.fixture
def client(database_url: str, court: Court, tmp_path: Path) -> Iterator[TestClient]:
    add_user(court.session_factory, "clerk", Role.CLERK)
    add_user(court.session_factory, "judge", Role.JUDGE, [court.a.case_no])
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as instance:
        instance.headers.update(bearer(court.session_factory, "clerk"))
        yield instance


def test_the_clerk_lists_the_quarantine_newest_first(client: TestClient, court: Court) -> None:
    page = client.get("/api/quarantine").json()
    assert page["next_before"] is None
    newest, second, oldest = page["messages"]
    assert newest["device_id"] == "seal-a" and newest["topic"] == court.a.event_topic
    assert newest["size"] == newest["stored_size"] == len(b"\x07 not an envelope") and newest["reason"]
    assert newest["copies"] == 2 and newest["last_received_at"] is not None
    assert newest["sha256"] == hashlib.sha256(b"\x07 not an envelope").hexdigest()
    assert (second["device_id"], oldest["device_id"]) == ("seal-b", "seal-a")
    assert oldest == oldest | {
        "reason": "bad_signature",
        "size": len(HOSTILE) + 1000,
        "stored_size": len(HOSTILE),
        "preview_hex": HOSTILE.hex(" "),
        "preview_ascii": '.]0;owned..[2J.....{"seq": 1}',
        "received_at": "2026-01-01T08:00:00Z",
        "copies": 1,
        "last_received_at": None,
    }
    assert "raw_base64" not in oldest  # a page previews; one message has its bytes
    one = client.get(f"/api/quarantine/{oldest['id']}").json()
    assert base64.b64decode(one["raw_base64"], validate=True) == HOSTILE
    assert client.get("/api/quarantine/999999").status_code == 404


def test_filters_and_paging(client: TestClient) -> None:
    def ids(**params: object) -> list[str]:
        response = client.get("/api/quarantine", params=params)
        assert response.status_code == 200, response.text
        return [m["device_id"] + ":" + m["reason"] for m in response.json()["messages"]]

    assert ids(reason="bad_signature") == ["seal-b:bad_signature", "seal-a:bad_signature"]
    assert len(ids(device_id="seal-a")) == 2 and ids(device_id="seal-b") == ["seal-b:bad_signature"]
    assert ids(since="2026-01-01T08:30:00+00:00", reason="bad_signature") == ["seal-b:bad_signature"]
    assert ids(since="2026-01-01T16:30:00+08:00", reason="bad_signature") == ["seal-b:bad_signature"]
    first = client.get("/api/quarantine", params={"limit": 2}).json()
    assert len(first["messages"]) == 2 and first["next_before"] == first["messages"][-1]["id"]
    rest = client.get("/api/quarantine", params={"limit": 2, "before": first["next_before"]}).json()
    assert len(rest["messages"]) == 1 and rest["next_before"] is None
    for bad in ({"reason": "Bad Signature"}, {"device_id": "SEAL A"}, {"limit": 0}, {"since": "yesterday"}):
        assert client.get("/api/quarantine", params=bad).status_code == 422


def test_only_the_clerk_reads_the_quarantine(client: TestClient, court: Court) -> None:
    judge = bearer(court.session_factory, "judge")
    assert client.get("/api/quarantine", headers=judge).status_code == 403
    assert client.get("/api/quarantine/1", headers=judge).status_code == 403


@pytest.fixture
def config(tmp_path: Path, database_url: str, court: Court, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return write_config(tmp_path, database_url)


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_quarantine_list_on_the_command_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quarantine", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert not any(CONTROL.search(line) for line in lines)
    fields = lines[2].split("\t")
    assert fields[1:7] == [
        "2026-01-01T08:00:00+00:00",
        "seal-a",
        "bad_signature",
        f"{len(HOSTILE) + 1000} B",
        "1x",
        "seal/v1/seal-a/events\\x1b[31m",
    ]
    assert fields[7] == "signature does not verify \\u202e\\x1b[2J"
    assert fields[8] == HOSTILE[:16].hex(" ") + " …"
    assert lines[0].split("\t")[5] == "2x"

    args = ["quarantine", "list", "--config", str(config), "--reason", "bad_signature", "--device", "seal-b"]
    assert main(args) == 0
    assert [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()] == ["seal-b"]
    assert main(["quarantine", "list", "--config", str(config), "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and re.fullmatch(r"\(more: --before \d+\)", out[1])
    assert main(["quarantine", "list", "--config", str(config), "--since", "2026-01-01T09:00:00Z"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_quarantine_show_dumps_the_bytes_safely(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quarantine", "list", "--config", str(config), "--device", "seal-a", "--reason", "bad_signature"]) == 0
    message_id = capsys.readouterr().out.split("\t", 1)[0]
    assert main(["quarantine", "show", message_id, "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert not CONTROL.search(out)
    assert "00000000  1b 5d 30 3b 6f 77 6e 65 64 07 1b 5b 32 4a 0d 0a  .]0;owned..[2J.." in out
    assert f"kept: {len(HOSTILE)} bytes" in out


def test_bad_quarantine_arguments_are_usage_errors(config: Path) -> None:
    for bad in (["--since", "2026-01-01T09:00:00"], ["--limit", "0"], ["--before", str(2**64)]):
        with pytest.raises(SystemExit) as exit_info:
            main(["quarantine", "list", "--config", str(config), *bad])
        assert exit_info.value.code == 2
    assert main(["quarantine", "show", "424242", "--config", str(config)]) == 1


def test_terminal_safe() -> None:
    assert terminal_safe("plain 案号 (2021)") == "plain 案号 (2021)"
    assert terminal_safe("a\x1b[2Jb\r\n\t\x00\u202e\\") == "a\\x1b[2Jb\\r\\n\\t\\x00\\u202e\\\\"
