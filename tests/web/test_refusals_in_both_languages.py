"""The pages' refusals in the reader's language: a service's refusal Chinese first (``中文。 / English``), one told in
the catalogue's words (``.saying``) in the page's language only."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from server.core.db import session_scope
from server.seals.cases import set_case_status
from server.seals.models import CaseStatus
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld, csrf_of, ping_form

CASE_URL = f"/cases/{quote(CASE, safe='')}"
HTMX = {"X-Requested-With": "htmx", "HX-Request": "true"}


def test_a_command_without_the_court_s_key_is_refused_in_the_page_s_language(world: PagesWorld, tmp_path: Path) -> None:
    (tmp_path / "court-command.key").unlink()  # read at the first command: the court's key is gone
    with world.client("officer") as client:
        refused = client.post(
            f"{CASE_URL}/commands",
            data=ping_form(client),
            headers=HTMX,
        )
        assert refused.status_code == 409, refused.text
        assert "法院的指令签名密钥不可用" in refused.text and "signing key" not in refused.text
        client.cookies.set("seal_lang", "en")
        refused = client.post(
            f"{CASE_URL}/commands",
            data=ping_form(client),
            headers=HTMX,
        )
        assert refused.status_code == 409 and "the court's signing key is not available" in refused.text.replace(
            "&#39;", "'"
        )
        assert "court-command.key" not in refused.text  # the key's path is the administrator's (the API says it)


def test_the_admin_pages_refuse_chinese_first(world: PagesWorld) -> None:
    with world.client("clerk") as client:
        token = csrf_of(client.get("/admin/cases").text)
        closed = client.post(f"/admin/cases/{quote(CASE, safe='')}/close", data={"csrf_token": token})
        assert closed.status_code == 409
        assert f"案件 {CASE} 仍绑定有封条（{SEAL}），请先解除绑定。 / " in closed.text
        taken = client.post("/admin/cases", data={"case_no": CASE, "csrf_token": token})
        assert taken.status_code == 409 and f"案件 {CASE} 已存在。 / " in taken.text
        wrong = client.post("/admin/cases", data={"case_no": "(2021)苏0214民初1号", "csrf_token": token})
        assert wrong.status_code == 422 and "不是执行案号" in wrong.text
        with session_scope(world.session_factory) as session:
            set_case_status(session, actor=None, case_no=OTHER_CASE, status=CaseStatus.CLOSED)
        code = client.post(f"/admin/cases/{quote(OTHER_CASE, safe='')}/access-code", data={"csrf_token": token})
        assert code.status_code == 409
        assert f"案件 {OTHER_CASE} 目前为“已结案”，被执行人不再需要查询码。 / " in code.text
