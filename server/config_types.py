"""The annotated types of the server's settings (:mod:`server.config`): values a TOML file may leave empty."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field


def _empty_means_none(value: Any) -> Any:
    return None if value == "" else value


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
RequiredPath = Annotated[Path, BeforeValidator(_non_empty_path)]

#: A file that may be left out: absent, or ``""`` in the file (as the commented example writes it), is ``None``.
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_means_none)]

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
