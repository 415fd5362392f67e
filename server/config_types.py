"""The annotated types of the server's settings (:mod:`server.config`): values a TOML file may leave empty, values
it writes as strings or arrays, and what a value of the wrong type is told.

The file is validated in pydantic's strict mode (:func:`server.config.parse_settings`): each value must have the TOML
type its key means. ``[http] port = true`` is not port 1, ``cookie_secure = "no"`` not false, ``batch_linger_ms =
"5"`` not a number: each is refused, naming its key. A TOML integer stays a number for a key that takes fractions
(``offline_grace_s = 60``). Strict pydantic takes a ``Path`` only as an object and a tuple only as a tuple: the types
below make a path written as a string a ``Path``, an array a tuple, before the strict check.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, IPvAnyNetwork
from pydantic_core import ErrorDetails, PydanticKnownError


def _empty_means_none(value: Any) -> Any:
    return None if value == "" else value


def _path(value: Any) -> Any:
    return Path(value) if isinstance(value, str) else value


def _optional_path(value: Any) -> Any:
    return None if value == "" else _path(value)


def _array(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _not_a_number(value: Any) -> Any:
    # pydantic's network type ignores strict mode: it takes the number 5 as 0.0.0.5/32
    if isinstance(value, int | float):
        raise PydanticKnownError("string_type")
    return value


def _public_url(value: Any) -> Any:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return value
    if len(value) > 200:
        raise ValueError("at most 200 characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// address with a host name, such as https://seal.court.example")
    if parts.query or parts.fragment or value.endswith("/") or any(c.isspace() for c in value):
        raise ValueError("no trailing slash, query, fragment or spaces: the notice's path is added to it")
    return value


#: The server's public address (``https://host[:port][/path]``), ``""`` or absent meaning unset.
PublicUrl = Annotated[str | None, BeforeValidator(_public_url)]


def _non_empty_path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("must name a file or directory: an empty path would be read as the current directory")
    return value


#: A file or directory that must be given: ``""`` is refused (``Path("")`` is ``.``, the current directory).
RequiredPath = Annotated[Path, BeforeValidator(_path), BeforeValidator(_non_empty_path)]

#: A file that may be left out: absent, or ``""`` in the file (as the commented example writes it), is ``None``.
OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path)]

#: An IP address or CIDR network, written as a string.
Network = Annotated[IPvAnyNetwork, BeforeValidator(_not_a_number)]

#: A list of networks, a TOML array.
Networks = Annotated[tuple[Network, ...], BeforeValidator(_array)]

#: A list of strings, a TOML array.
Texts = Annotated[tuple[str, ...], BeforeValidator(_array)]

#: An http(s) URL that may be left out (``""`` is ``None``), such as a time-stamping authority's.
OptionalHttpUrl = Annotated[
    Annotated[str, Field(pattern=r"^https?://[^\s/]+\S*$", max_length=2048)] | None,
    BeforeValidator(_empty_means_none),
]

#: A name that may be left out: absent, or ``""`` in the file, is ``None``.
OptionalName = Annotated[str | None, BeforeValidator(_empty_means_none)]

#: An S3 bucket's name (3–63 lowercase letters, digits, dots and hyphens) that may be left out (``""`` is ``None``).
BucketName = Annotated[
    Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")] | None, BeforeValidator(_empty_means_none)
]

#: A TCP port that may be left out: absent, or ``""`` in the file, is ``None``.
OptionalPort = Annotated[int | None, BeforeValidator(_empty_means_none)]

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
    ``应为整数，文件中写的是布尔值 true / expected an integer, the file has the boolean true``. (The seal's
    configuration says it alike: seal_agent/config_types.py.)"""
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
    if isinstance(value, list | tuple):
        return "数组", "an array"
    if isinstance(value, dict):
        return "表", "a table"
    return type(value).__name__, type(value).__name__
