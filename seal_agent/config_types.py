"""The TOML types of the seal's configuration: values written as strings (paths), and what a value of the wrong type
is told.

The file is validated in pydantic's strict mode (:func:`seal_agent.config.parse_config`): each value must have the TOML
type its key means. ``[pir] pin = true`` is not GPIO1 (the HAT EEPROM's pin), ``heartbeat_s = true`` not one second,
``[tamper] enabled = "off"`` not false, ``port = "1883"`` not a number: each is refused, naming its key. A TOML integer
stays a number for a key that takes fractions (``heartbeat_s = 60``). A path is a string in the file:
:data:`ConfigPath` makes it a ``Path`` before the strict check (strict pydantic takes only ``Path`` objects).
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import ErrorDetails


def _path(value: Any) -> Any:
    return Path(value) if isinstance(value, str) else value


def _optional_path(value: Any) -> Any:
    return None if value == "" else _path(value)


#: A file or directory, written as a string in the file.
ConfigPath = Annotated[Path, BeforeValidator(_path)]

#: A path that may be left out: absent, or ``""`` in the file (as the example configuration writes it), is ``None``.
OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path)]

#: What each of pydantic's strict type errors expected, in Chinese and in English.
_EXPECTED = {
    "int_type": ("整数", "an integer"),
    "float_type": ("数字", "a number"),
    "bool_type": (" true 或 false", "true or false"),
    "string_type": ("加引号的文字", "a string in quotes"),
    "list_type": ("数组 [ … ]", "an array [ … ]"),
    "tuple_type": ("数组 [ … ]", "an array [ … ]"),
    "model_type": ("表 [ … ]", "a table [ … ]"),
    "dict_type": ("表 [ … ]", "a table [ … ]"),
}
#: A path's wrong type is strict pydantic's ``is_instance_of`` error for class ``Path``.
_PATH = ("加引号的路径", "a path in quotes")


def wrong_type(error: ErrorDetails) -> str | None:
    """The words (Chinese, then English) for a value of the wrong TOML type, or None for any other problem:
    ``应为整数，文件中写的是布尔值 true / expected an integer, the file has the boolean true``."""
    kind = error["type"]
    if kind == "is_instance_of" and error.get("ctx", {}).get("class") == "Path":
        expected = _PATH
    elif kind in _EXPECTED:
        expected = _EXPECTED[kind]
    else:
        return None
    value = error["input"]
    given_zh, given_en = _given(value)
    zh = f"应为{expected[0]}，文件中写的是{given_zh}"
    en = f"expected {expected[1]}, the file has {given_en}"
    if isinstance(value, str) and kind in ("int_type", "float_type", "bool_type"):
        zh += "（TOML 的数字和 true、false 不加引号）"
        en += " (TOML writes numbers, true and false without quotes)"
    return f"{zh} / {en}"


def _given(value: Any) -> tuple[str, str]:
    """What the file has, as TOML writes it."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        return f"布尔值 {text}", f"the boolean {text}"
    if isinstance(value, str):
        text = json.dumps(value if len(value) <= 40 else value[:40] + "…", ensure_ascii=False)
        return f"文字 {text}", f"the string {text}"
    if isinstance(value, int):
        return f"整数 {value}", f"the integer {value}"
    if isinstance(value, float):
        return f"小数 {value}", f"the number {value}"
    if isinstance(value, datetime | date | time):
        return f"日期时间 {value.isoformat()}", f"the date-time {value.isoformat()}"
    if isinstance(value, list):
        return "数组", "an array"
    if isinstance(value, dict):
        return "表", "a table"
    return type(value).__name__, type(value).__name__
