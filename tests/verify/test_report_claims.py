"""The report claims no more than was checked (a hostile review, 2026-12-07): its check table is the exporting
server's own check of the files other than the report, with the server's own log key — not an anchor, and one file
short of the bundle; the checkpoint's root is printed as ``log/checkpoint.txt`` spells it (base64); the closing
section sends the reader to the court's published log key, not the bundle's ``log/key.txt``; and it claims neither
that ``seal-verify`` is the blockchain verification of the Rules on Online Litigation nor that the log alone shows
what a kept checkpoint shows."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from server.core.db import SessionFactory
from tests.server.helpers import CASE_A
from tests.verify.world import build_world, read_members

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def members(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> dict[str, bytes]:
    world = build_world(session_factory, database_url, tmp_path)
    return read_members(world.export(CASE_A, tmp_path / "case.zip").path)


def flat(pdf: bytes) -> str:
    """The report's text without white space (a line may break anywhere in Chinese)."""
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    return re.sub(r"\s+", "", text)


def test_the_check_table_says_it_is_the_exporters_own_check_of_the_other_files(members: dict[str, bytes]) -> None:
    text = flat(members["report.pdf"])
    assert "导出服务器的自检" in text and "Theexportingserver'sself-check" in text
    assert "不构成锚定" in text and "itanchorsnothing" in text
    assert "pinned/已指定" not in text  # the exporter "pinned" only its own key
    key = members["log/key.txt"].decode().strip()
    assert f"导出服务器自身的日志公钥（非独立锚定）/theexportingserver'sownlogkey(noindependentanchor):{key}" in text
    # the table counts the files staged before the report: the bundle has one more, which it says
    staged = len(members) - len({"manifest.json", "manifest.sig", "report.pdf"})
    assert f"{staged}files/{staged}个文件" in text
    assert "不含本报告report.pdf" in text and "notcountingthisreport,report.pdf" in text
    assert "本包的文件比表中所计多一个" in text and "onefilemorethanthetablecounts" in text


def test_the_cover_prints_the_root_as_the_checkpoint_spells_it(members: dict[str, bytes]) -> None:
    root_b64 = members["log/checkpoint.txt"].decode().splitlines()[2]
    text = flat(members["report.pdf"])
    assert f"root(base64,asinlog/checkpoint.txt){root_b64}" in text
    assert "须与法院公布的日志公钥比对" in text


def test_the_closing_sends_the_reader_to_the_courts_published_key(members: dict[str, bytes]) -> None:
    text = flat(members["report.pdf"])
    assert "用log/key.txt中的日志公钥验证签名" not in text and "bythelogkeyinlog/key.txt" not in text
    assert "用法院公布的日志公钥（而非本包的log/key.txt）验证签名" in text
    assert "thelogkeythecourtpublishes(notthebundle'slog/key.txt)" in text


def test_the_closing_claims_no_more_than_the_checks_show(members: dict[str, bytes]) -> None:
    text = flat(members["report.pdf"])
    # Art. 16 of the Rules on Online Litigation is of data stored by blockchain: the court's own log is not one
    assert "seal-verify即此种技术核验" not in text and "seal-verifyissuchaverification" not in text
    assert "区块链" in text and "blockchain" in text
    # the court holds the log key: only a checkpoint kept by someone else (or a pinned time stamp) shows no rewrite
    assert "日志只证明检查点之后未被改写" not in text
    assert "法院持有日志密钥" in text and "Thecourtholdsthelogkey" in text
    assert "私钥不离开设备" not in text and "按设计私钥不出设备" in text


def test_the_closing_names_every_kind_of_leaf_and_what_a_time_stamp_is_checked_against(
    members: dict[str, bytes],
) -> None:
    text = flat(members["report.pdf"])
    assert "每条事件、每条审计记录为一片叶子" in text and "eacheventandauditentryaleaf" in text  # not events only
    # a time stamp is checked without the court, but against the authority's root certificate
    assert "可凭该机构的根证书独立于法院核验（seal-verify--tsa-root）" in text
    assert "againstthatauthority'srootcertificate(seal-verify--tsa-root)" in text
