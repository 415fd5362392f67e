"""What the court's staff are refused with says it in Chinese first, then in English (``中文。 / English``): the API's
JSON ``detail``, the refusals the API's and the pages' own code words, and those of the services the admin pages
show. Machine-read fields (a 422's ``loc`` and ``type``, a 409's ``state``) stay as they are."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from server.alarms.state import AlarmState, transition
from server.app import IN_CHINESE, create_app
from server.auth.access import Role
from server.core.db import SessionFactory
from server.errors import Conflict, Invalid, NotFound
from server.web.i18n import Translator, in_both_languages, said_in_chinese
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import CASE_A, COURT_NAME, SimulatedSeal, register

ROOT = Path(__file__).resolve().parents[2]
#: Where the API's and the pages' refusals are written.
REFUSING = ("server/api", "server/web")
#: Errors whose literal words need not be Chinese: a 404's are never shown as they are — the API's answer says
#: "没有找到…" first, the same for a hidden object as for one that does not exist, and the pages show their own 404.
NOT_SHOWN = {"NotFound", "found"}
#: ``/metrics`` answers a client it does not serve exactly as an unknown URL (FastAPI's own "Not Found").
AS_UNKNOWN_URL = {("server/api/metrics.py", "Not Found")}


def _literal(node: ast.expr) -> str | None:
    """The text of a string literal or f-string (its values as ``{}``), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    return None


def _raised_words(path: Path) -> Iterator[tuple[int, str, str]]:
    """``(line, error, words)`` of each literal message raised in ``path`` (``raise Error("…")``, ``detail="…"``) but
    those raised with the catalogue's words (``.saying(key)``)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
            continue
        call = node.exc
        if isinstance(call.func, ast.Attribute) and call.func.attr == "saying":
            continue  # Error("…").saying(key): told in the catalogue's words, in the reader's language
        name = ast.unparse(call.func).rsplit(".", 1)[-1]
        given = call.args[:1] + [keyword.value for keyword in call.keywords if keyword.arg == "detail"]
        for argument in given:
            text = _literal(argument)
            if text is not None:
                yield node.lineno, name, text


def test_the_refusals_the_api_and_the_pages_write_say_them_in_chinese_first() -> None:
    """Every literal message raised under ``server/api`` and ``server/web`` is ``中文 / English`` (or Chinese from its
    first word): an English-only refusal added there fails here."""
    english_only = []
    for directory in REFUSING:
        for path in sorted((ROOT / directory).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            for line, error, text in _raised_words(path):
                if error in NOT_SHOWN or (where, text) in AS_UNKNOWN_URL or error == "AssertionError":
                    continue
                if not said_in_chinese(text):
                    english_only.append(f"{where}:{line}: {error}({text!r})")
    assert english_only == []


def test_a_refusal_in_english_only_gets_chinese_first() -> None:
    plain = Conflict(f"case {CASE_A!r} is sealed: it cannot become lifted")  # a case number's Chinese is not a word
    assert in_both_languages(plain, "当前状态下不能执行此操作。") == f"当前状态下不能执行此操作。 / {plain}"
    said = Conflict("no seal is bound to case X: there is nothing to lift").saying("refusal.no_seal")
    assert said.said is not None
    assert in_both_languages(said, "unused") == f"{Translator('zh-CN').say(said.said)} / {said}"
    assert in_both_languages(said, "unused").startswith("本案没有在用的电子封条")
    both = Invalid("请填写法院名称。 / a court needs its name")
    assert in_both_languages(both, "unused") == str(both)
    chinese_first = Invalid("通知目标 10.0.0.1 是内网地址，不能接收告警通知。A webhook must not go to 10.0.0.1.")
    assert in_both_languages(chinese_first, "unused") == str(chinese_first)
    assert in_both_languages(NotFound(f"unknown case {CASE_A!r}"), IN_CHINESE[404]).startswith("没有找到该对象")


def test_state_refusals_say_the_states_in_chinese() -> None:
    with pytest.raises(Conflict) as refused:
        transition(AlarmState.CLOSED, AlarmState.ACKNOWLEDGED)
    assert str(refused.value).startswith("该告警目前为“已关闭”，不能再改为“已确认”。 / ")


@pytest.fixture
def client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    add_user(session_factory, "clerk", Role.CLERK)
    register(session_factory, SimulatedSeal("seal-a", CASE_A))
    app = create_app(make_settings(database_url, tmp_path), with_ingest=False)
    with TestClient(app, headers=bearer(session_factory, "clerk")) as instance:
        yield instance


def test_the_api_refuses_in_both_languages(client: TestClient) -> None:
    # a 404: the same Chinese for every object, the English naming it
    missing = client.get(f"/api/cases/{quote('(1999)苏0214执1号', safe='')}")
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"{IN_CHINESE[404]} / unknown case '(1999)苏0214执1号'"

    # a service's refusal, in its own words in both languages
    again = client.post("/api/cases", json={"case_no": CASE_A, "court": COURT_NAME})
    assert again.status_code == 409
    assert again.json()["detail"] == f"案件 {CASE_A} 已存在。 / case {CASE_A!r} already exists"

    # the API's own
    export = f"/api/cases/{quote(CASE_A, safe='')}/export.zip"
    backwards = client.get(export, params={"from": "2026-12-02T00:00:00+08:00", "to": "2026-12-01T00:00:00+08:00"})
    assert backwards.status_code == 422 and backwards.json()["detail"] == "from 晚于 to。 / from is after to"

    # a validator's words in a 422's list: the message in both languages, the machine's fields as they were
    wrong = client.post("/api/cases", json={"case_no": "(2021)苏0214民初1号", "court": COURT_NAME})
    assert wrong.status_code == 422
    assert said_in_chinese(str(wrong.json()["detail"][0]["msg"]).removeprefix("Value error, ")), wrong.text
