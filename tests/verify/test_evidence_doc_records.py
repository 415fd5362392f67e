"""docs/evidence.md ("The form of the court's records") states the whole form ``records`` holds the court's records
to: every key of each file with the kind of its value, and the alarm kinds, severities and states. A verifier written
from the document alone must reach seal-verify's verdict, so the document's tables are held here to
``seal_verify.records.SHAPES``, to ``seal_verify.alarm_records`` and to the server's enums: a key or an alarm kind
added to the code and not to the document fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator

from seal_verify import alarm_records
from seal_verify.records import SHAPES, Many, Obj, Shape
from server.alarms.state import AlarmKind, AlarmState, Severity
from tests.agent.helpers import REPO

#: How the document words each kind of value of :data:`SHAPES`.
WORDS = {
    "str": "string",
    "count": "count",
    "bool": "`true`/`false`",
    "null": "`null`",
    "object": "any object",
    "ts": "ts",
    "date": "date",
    "sha256": "SHA-256",
    "base64": "base64",
    "media_type": "media type",
}
#: The document's name of a file :data:`SHAPES` names otherwise.
FILE_NAMES = {"seals/": "seals/<device_id>.json"}


def _section() -> str:
    text = (REPO / "docs" / "evidence.md").read_text(encoding="utf-8")
    start = text.index("\n### The form of the court's records\n")
    return text[start : text.index("\n## ", start)]


def _table(section: str, header: str) -> list[list[str]]:
    """The rows of the table whose header row is ``header``, each a list of its cells."""
    start = section.index(header + "\n")
    rows = []
    for line in section[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _word(shape: Shape, plural: bool = False) -> str:
    if isinstance(shape, str):
        return " or ".join(WORDS[kind] for kind in shape.split("|"))
    if isinstance(shape, tuple):
        return " or ".join(_word(one) for one in shape)
    if isinstance(shape, Many):
        return "list of " + _word(shape.item, plural=True)
    return "objects" if plural else "object"


def _rows(obj: Obj, prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, words)`` of each key of ``obj`` and of the objects inside it (``a.b``, ``a[].b``)."""
    for key, shape in obj.keys.items():
        yield f"{prefix}{key}", _word(shape)
        inner: Shape | None = shape
        if isinstance(inner, tuple):
            inner = next((one for one in inner if isinstance(one, Obj)), None)
        if isinstance(inner, Many) and isinstance(inner.item, Obj):
            yield from _rows(inner.item, f"{prefix}{key}[].")
        elif isinstance(inner, Obj):
            yield from _rows(inner, f"{prefix}{key}.")


def test_the_documented_form_of_each_record_file_is_the_one_seal_verify_checks() -> None:
    stated: set[tuple[str, str, str]] = set()
    current = ""
    for file, key, words in _table(_section(), "| file | key | value |"):
        current = file.strip("`") or current
        stated.add((current, key.strip("`"), words))
    checked = {(FILE_NAMES.get(path, path), key, words) for path, obj in SHAPES.items() for key, words in _rows(obj)}
    assert len(checked) > 90  # every file of SHAPES, nested keys included
    assert sorted(checked - stated) == [], "checked by seal-verify, not stated in docs/evidence.md"
    assert sorted(stated - checked) == [], "stated in docs/evidence.md, not what seal-verify checks"


def test_the_documented_alarm_values_are_seal_verify_s_and_the_server_s() -> None:
    stated = {
        key.strip("`"): set(re.findall(r"`([^`]+)`", values)) for key, values in _table(_section(), "| key | values |")
    }
    assert stated["kind"] == alarm_records.ALARM_KINDS == {kind.value for kind in AlarmKind}
    assert stated["severity"] == alarm_records.SEVERITIES == {severity.value for severity in Severity}
    assert stated["state"] == alarm_records.STATES == {state.value for state in AlarmState}
    assert set(stated) == {"kind", "severity", "state"}
