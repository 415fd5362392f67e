"""What ``seal-server init --force`` keeps of a court directory it writes again, and how it says what it changed.

A re-run keeps every value the court set: every key of the existing ``server.toml`` (a key the file lacks gets the
value a new court's file has), and the ports, TLS files and TLS ``max_connections`` of the existing ``mosquitto.conf``,
unless an option given now changes them. A file it replaces with other text is first copied to ``<file>.bak`` (its
mode kept), and each change is said: a setting as ``key: old → new``, another file as the lines it lost and gained.
"""

from __future__ import annotations

import difflib
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.config import Settings
from server.errors import ConfigError
from server.seals.broker_files import write_private_file
from server.setup.settings_file import toml_value


@dataclass(frozen=True)
class BrokerListeners:
    """The listeners of an existing ``mosquitto.conf``: the plain one on 127.0.0.1 (the server's) and the TLS one."""

    local_port: int | None = None
    tls_port: int | None = None
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    #: The TLS listener's ``max_connections``.
    tls_max_connections: int | None = None


def existing_settings(settings_file: Path) -> dict[str, Any]:
    """Every value of an existing ``settings_file`` (top-level keys, and one mapping per section); empty if there is
    none. A file that is not TOML, or names what is not a setting, is refused (:class:`ConfigError`): rewriting it
    would lose what it says without anyone knowing."""
    try:
        text = settings_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {settings_file} to keep its settings: {exc}") from None
    try:
        existing = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{settings_file} is not TOML ({exc}): init --force keeps every setting it holds, so correct it first "
            "(or move it away to write a new one)"
        ) from None
    unknown = []
    for name, value in existing.items():
        info = Settings.model_fields.get(name)
        if info is None:
            unknown.append(name)
            continue
        model = info.annotation
        if isinstance(value, dict):
            fields = getattr(model, "model_fields", {})
            unknown += [f"{name}.{key}" for key in value if key not in fields]
    if unknown:
        raise ConfigError(
            f"{settings_file} has {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not a setting "
            "(check-config refuses it too): correct it first, init --force keeps every setting the file holds"
        )
    return existing


def existing_listeners(conf_file: Path) -> BrokerListeners | None:
    """The listeners ``init`` writes, as an existing ``conf_file`` has them; ``None`` if there is no such file."""
    try:
        lines = conf_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {conf_file} to keep its listeners: {exc}") from None
    local_port = tls_port = max_connections = None
    in_tls = False
    files: dict[str, Path] = {}
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "listener" and words[1].isdigit():
            in_tls = False
            if words[2:] == ["127.0.0.1"] and local_port is None:
                local_port = int(words[1])
            elif tls_port is None:
                tls_port, in_tls = int(words[1]), True
        elif len(words) == 2 and words[0] in ("cafile", "certfile", "keyfile"):
            files[words[0]] = Path(words[1])
        elif in_tls and len(words) == 2 and words[0] == "max_connections" and words[1].isdigit():
            max_connections = int(words[1])
    return BrokerListeners(
        local_port, tls_port, files.get("cafile"), files.get("certfile"), files.get("keyfile"), max_connections
    )


def layered(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``layers``, a later layer's values over an earlier's (a section key by key)."""
    values: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            if isinstance(value, dict):
                values[name] = {**values.get(name, {}), **value}
            else:
                values[name] = value
    return values


def flat(values: Mapping[str, Any]) -> dict[str, str]:
    """``values`` as ``{"section.key": TOML text}``."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, dict):
            out |= {f"{name}.{key}": toml_value(item) for key, item in value.items()}
        else:
            out[name] = toml_value(value)
    return out


def setting_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """``key: old → new`` for each setting of ``before`` that ``after`` gives another value, and ``key = new (not in
    the file before)`` for a key ``before`` lacks."""
    old, new = flat(before), flat(after)
    changes = [
        f"{key}: {shown(old[key])} → {shown(value)}" for key, value in new.items() if key in old and old[key] != value
    ]
    changes += [f"{key} = {shown(value)} (not in the file before)" for key, value in new.items() if key not in old]
    return changes


def own_values(existing: Mapping[str, Any], fresh: Mapping[str, Any]) -> list[str]:
    """``key = value`` for each value of ``existing`` that a new court's file (``fresh``) does not have: the court's
    own, which a re-run keeps."""
    old, new = flat(existing), flat(fresh)
    return [f"{key} = {shown(value)}" for key, value in old.items() if new.get(key) != value]


def shown(text: str) -> str:
    """A setting's TOML text as printed: a URL's password (``database_url``'s) masked, as ``check-config`` does."""
    if "://" not in text:
        return text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        value = tomllib.loads(f"v = {text}")["v"]
        url = make_url(value) if isinstance(value, str) else None
    except (tomllib.TOMLDecodeError, ArgumentError, ValueError):
        return text
    if url is None or url.password is None:
        return text
    return toml_value(url.render_as_string(hide_password=True))


@dataclass
class Replaced:
    """What writing one file did: ``backup`` holds the text it replaced (``None``: new, or the same text)."""

    path: Path
    existed: bool
    changed: bool
    backup: Path | None
    diff: list[str]


def replace_file(path: Path, text: str, mode: int, *, private: bool = False) -> Replaced:
    """Write ``text`` to ``path``; an existing file of other text is first copied to ``<path>.bak`` (same mode), and
    is rewritten with its own mode, not ``mode``; ``private``: readable by its owner only, either way."""
    try:
        old = path.read_text(encoding="utf-8")
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        write_private_file(path, text, mode & 0o600 if private else mode)
        return Replaced(path, existed=False, changed=True, backup=None, diff=[])
    new_mode = old_mode & 0o600 if private else old_mode
    if old == text:
        if new_mode != old_mode:
            os.chmod(path, new_mode)
        return Replaced(path, existed=True, changed=False, backup=None, diff=[])
    backup = path.with_name(path.name + ".bak")
    write_private_file(backup, old, new_mode)
    write_private_file(path, text, new_mode)
    diff = [
        line
        for line in difflib.unified_diff(old.splitlines(), text.splitlines(), lineterm="", n=0)
        if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    ]
    return Replaced(path, existed=True, changed=True, backup=backup, diff=diff)
