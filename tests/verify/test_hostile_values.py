"""Values in a hostile bundle: JSON of millions of numbers (each an object of its own once parsed), manifest fields
of megabytes that the verdict would print in full, and JSON that seal_protocol.canonical_json writes but RFC 8785
writes otherwise."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from seal_protocol import canonical_json
from seal_verify import verify_bundle
from seal_verify.bundle import MAX_JSON_VALUES, json_values, load_object
from seal_verify.cli import main
from seal_verify.verdict import LINE_CHARS, SHOWN_CHARS, cut, shown_fact
from tests.verify.world import Exported, export_once


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Exported:
    return export_once(tmp_path_factory.mktemp("bundle"), migrated_sqlite)


def _zip(members: dict[str, bytes]) -> io.BytesIO:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    data.seek(0)
    return data


def test_millions_of_numbers_are_refused_at_the_first_with_memory_to_spare(exported: Exported) -> None:
    """log/proofs.jsonl as one line of 4 million floats (16 MiB, a 117 KB zip): the value bound counted no numbers
    and json.loads made an object of 24 bytes (and 8 for its place) of each "1.5," of 4, 231 MiB in all. A number
    with a fraction is refused as the parser meets the first."""
    line = b'{"hashes":[' + b"1.5," * (4 * 2**20 - 1) + b'1.5],"leaf_index":0,"tree_size":19}\n'
    bundle = _zip({**exported.members, "log/proofs.jsonl": line})
    del line
    tracemalloc.start()
    try:
        verdict = verify_bundle(bundle, log_key=exported.log_key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "the number 1.5 has a fraction or an exponent" in verdict.check("inclusion").problems[0]
    assert peak < 80 * 2**20, f"{peak / 2**20:.0f} MiB for a member of 16 MiB"


def test_numbers_true_false_and_null_count_against_the_bound_before_parsing(exported: Exported) -> None:
    """2,000 lines of 21,000 zeros, nulls and trues (98 MiB, 43 million values): none was counted, so all were
    parsed; every JSON value counts now, and the bundle is refused unparsed with the reason."""
    line = b'{"a":[' + b"0,null,true," * 7_000 + b"0]}\n"
    assert json_values(line * 2000) > MAX_JSON_VALUES
    verdict = verify_bundle(_zip({**exported.members, "events-meta.jsonl": line * 2000}), log_key=exported.log_key)
    assert "JSON values" in verdict.check("bundle").problems[0], verdict.check("bundle").problems


def _walk(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(1 + _walk(item) for item in value.values())  # the object, each key and value
    if isinstance(value, list):
        return 1 + sum(_walk(item) for item in value)
    return 1


@pytest.mark.parametrize(
    "text",
    ['{"a":[1,2.5,true,null,"x",{"k":-3}]}', "[]", "[[],{},0]", '{"a":{"b":{"c":[null]}}}', '["a,b:c{",1]', "7"],
)
def test_json_values_is_never_fewer_than_the_values_and_keys(text: str) -> None:
    assert json_values(text.encode()) >= _walk(json.loads(text))
    assert json_values(f"{text}\n{text}\n".encode()) >= 2 * _walk(json.loads(text))


def test_megabytes_of_manifest_fields_print_a_bounded_verdict(
    exported: Exported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """case_no, exported_at, exported_by and range of a megabyte each (no key needed: the verdict fails) were printed
    in full as facts and in problems (151 MB from a 150 KB zip with 32 MiB ones), as was a member's name of 60,000
    characters. Each value is cut to 200 characters, saying how many more there were."""
    big = "A" * 2**20
    head = json.loads(exported.members["manifest.json"])
    head.update(case_no=big, exported_at=big, exported_by=big, range={"from": big, "to": None})
    members = {**exported.members, "manifest.json": canonical_json(head), "N" * 60_000: b"x"}
    path = tmp_path / "flood.zip"
    path.write_bytes(_zip(members).getvalue())
    for extra in ([], ["--json"]):
        assert main([str(path), *extra]) == 1
        out = capsys.readouterr().out
        assert len(out) < 100_000, f"{len(out):,} characters printed {extra}"
        assert f"{2**20 - SHOWN_CHARS:,} more characters not shown" in out
        assert max(len(line) for line in out.splitlines()) <= LINE_CHARS + 200
        if extra:
            facts = json.loads(out)["facts"]
            assert facts["case_no"] == cut(big) and isinstance(facts["range"], str) and len(facts["range"]) < 300
    assert shown_fact({"from": "2026-01-01T00:00:00Z", "to": None}) == {"from": "2026-01-01T00:00:00Z", "to": None}
    assert cut("x" * 250) == "x" * 200 + "… [50 more characters not shown / 另有 50 个字符未显示]"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a":1.0}', "fraction or an exponent"),
        ('{"a":1e+16}', "fraction or an exponent"),
        ('{"a":1e-07}', "fraction or an exponent"),
        ('{"a":9007199254740993}', "outside ±(2**53 - 1)"),
        ('{"\uffff":1,"\U0001f600":2}', "above U+D7FF"),
        ('{"a":"\\ud800"}', "lone surrogate"),
        ('{"a":NaN}', "NaN is not JSON"),
    ],
)
def test_json_that_rfc_8785_writes_otherwise_is_not_canonical(text: str, reason: str) -> None:
    """seal-verify took these as canonical, though RFC 8785 writes each otherwise (or not at all): a third party
    verifying by docs/evidence.md ("RFC 8785") reached another verdict."""
    with pytest.raises(ValueError, match="not canonical JSON|not JSON") as raised:
        load_object(text.encode(), "x.json")
    assert reason in str(raised.value)


@pytest.mark.parametrize("path", ["manifest.json", "case.json", "events.jsonl", "audit.jsonl", "log/proofs.jsonl"])
def test_an_honest_bundles_json_is_rfc_8785_byte_for_byte(exported: Exported, path: str) -> None:
    for line in exported.members[path].splitlines():
        assert rfc8785.dumps(load_object(line, path)) == line


def test_megabytes_in_snapshot_lines_print_a_bounded_verdict(
    exported: Exported, capsys: pytest.CaptureFixture[str]
) -> None:
    """A snapshots.jsonl line's sha256, device_id and not_stored of a megabyte each: every problem names them cut
    (the snapshots' checks embedded them whole). (A seal may sign any name for a picture, so the name is not
    required to be a SHA-256: tests/web/test_hostile_signed_events.py.)"""
    big = "B" * 2**20
    lines = [
        {"sha256": big, "present": False},
        {**json.loads(exported.members["snapshots.jsonl"].splitlines()[0]), "device_id": big, "not_stored": [big]},
    ]
    members = {**exported.members, "snapshots.jsonl": b"".join(canonical_json(line) + b"\n" for line in lines)}
    verdict = verify_bundle(_zip(members), log_key=exported.log_key)
    shown = verdict.text()
    assert not verdict.trusted
    assert len(shown) < 100_000, f"{len(shown):,} characters"
    assert "more characters not shown" in shown
