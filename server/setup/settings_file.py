"""The server's TOML file written out from the settings model itself: every key, its description as a comment.

Walking :class:`~server.config.Settings` (rather than keeping a template beside it) means a new setting appears in
every newly written file with its description, and the test that reads the file back keeps the two in step.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from server.config import Settings

WIDTH = 100


def render_settings(values: Mapping[str, Any], *, header: str = "") -> str:
    """A commented TOML file holding every key of :class:`Settings`: ``values`` (top-level keys, and one mapping per
    section) where given, the model's default elsewhere. A required key missing from ``values`` is an error."""
    unknown = set(values) - set(Settings.model_fields)
    if unknown:
        raise ValueError(f"not settings: {', '.join(sorted(unknown))}")
    lines = [*_comment(header), ""] if header else []
    sections = []
    for name, info in Settings.model_fields.items():
        model = _section_model(info)
        if model is None:
            lines += _key(name, info, values)
        else:
            sections.append((name, info, model))
    for name, info, model in sections:
        given = values.get(name, {})
        unknown = set(given) - set(model.model_fields)
        if unknown:
            raise ValueError(f"not settings of [{name}]: {', '.join(sorted(unknown))}")
        lines += ["", "", *_comment(info.description or ""), f"[{name}]"]
        for key, key_info in model.model_fields.items():
            lines += _key(key, key_info, given, section=name)
    return "\n".join(lines).lstrip("\n") + "\n"


def _section_model(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _key(name: str, info: FieldInfo, values: Mapping[str, Any], *, section: str = "") -> list[str]:
    if name in values:
        value = values[name]
    elif info.is_required():
        raise ValueError(f"{section + '.' if section else ''}{name} is required: give it a value")
    else:
        value = info.get_default(call_default_factory=True)
    return ["", *_comment(info.description or ""), f"{name} = {toml_value(value)}"]


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, WIDTH - 2)]


def toml_value(value: Any) -> str:
    """``value`` as TOML; ``None`` is ``""``, which every optional setting reads as unset."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path | IPv4Network | IPv6Network):
        return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
