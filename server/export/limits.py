"""The size bounds of ``seal-verify``, kept while a bundle is written (``docs/evidence.md``, "Size bounds").

The verifier refuses unread a bundle past any of them (``seal_verify.archive``: a member's bytes, the bytes in all,
the members, the zip's central directory; ``seal_verify.bundle``: the lines of a JSON-lines file, the JSON values of
all ``.json`` and ``.jsonl`` files). The court must never hand out a bundle its own verifier refuses, so the writer
counts each of them as it writes, chunk by chunk, and stops at the first chunk that would pass one: the export is then
refused (:class:`~server.export.errors.BundleTooLarge`) and its temporary files removed.

The bounds are the verifier's own constants, imported (``server`` may import ``seal_verify``; not the reverse). An
export may be given lower ones (:class:`BundleLimits`), never higher.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, fields

import seal_verify.archive as archive
import seal_verify.bundle as layout
from server.export.errors import BundleTooLarge

#: A central directory entry (APPNOTE 4.3.12) without its name, extra field and comment (the writer puts no comment).
DIRECTORY_ENTRY_BYTES = 46
#: The ZIP64 extra field ``zipfile`` gives an entry whose local header starts past ``zipfile.ZIP64_LIMIT`` (2 GiB):
#: its header and the offset. (No member is large enough for its sizes to need one.)
ZIP64_OFFSET_BYTES = 12
#: seal-verify's bounds, by the names of :class:`BundleLimits`.
VERIFIER_BOUNDS = {
    "member_bytes": archive.MAX_MEMBER_BYTES,
    "total_bytes": archive.MAX_TOTAL_BYTES,
    "members": archive.MAX_MEMBERS,
    "directory_bytes": archive.MAX_DIRECTORY_BYTES,
    "lines": layout.MAX_LINES,
    "json_values": layout.MAX_JSON_VALUES,
}


@dataclass(frozen=True)
class BundleLimits:
    """The bounds a bundle is written within: by default seal-verify's; each may be set lower, none higher."""

    member_bytes: int = VERIFIER_BOUNDS["member_bytes"]
    total_bytes: int = VERIFIER_BOUNDS["total_bytes"]
    members: int = VERIFIER_BOUNDS["members"]
    directory_bytes: int = VERIFIER_BOUNDS["directory_bytes"]
    lines: int = VERIFIER_BOUNDS["lines"]
    json_values: int = VERIFIER_BOUNDS["json_values"]

    def __post_init__(self) -> None:
        for bound in fields(self):
            value, most = getattr(self, bound.name), VERIFIER_BOUNDS[bound.name]
            if type(value) is not int or not 0 <= value <= most:
                raise ValueError(f"the bound {bound.name} must be between 0 and seal-verify's {most}, not {value!r}")


#: The bounds of every export: seal-verify's.
VERIFIERS = BundleLimits()


class OverBound(Exception):
    """A bundle being written would pass one of its bounds: what is counted (in both languages), and the bound."""

    def __init__(self, zh: str, en: str, limit: int) -> None:
        super().__init__(f"{en} would pass {limit:,}")
        self.zh, self.en, self.limit = zh, en, limit


class Tally:
    """The counts of one bundle being written, checked against ``limits`` before each member and each chunk is
    written (a chunk is refused whole, before any of it is)."""

    def __init__(self, limits: BundleLimits) -> None:
        self.limits = limits
        self.members = self.directory_bytes = self.total_bytes = self.json_values = 0
        self._path, self._bytes, self._lines, self._json, self._jsonl = "", 0, 0, False, False

    def member(self, path: str, offset: int) -> None:
        """A new member ``path`` is started, its local header at ``offset`` in the zip."""
        limits = self.limits
        self.members += 1
        if self.members > limits.members:
            raise OverBound("文件个数", "the number of files", limits.members)
        far = offset > zipfile.ZIP64_LIMIT
        self.directory_bytes += DIRECTORY_ENTRY_BYTES + len(path.encode("utf-8")) + (ZIP64_OFFSET_BYTES if far else 0)
        if self.directory_bytes > limits.directory_bytes:
            what = "the bytes of the zip's central directory"
            raise OverBound("zip 中央目录的字节数", what, limits.directory_bytes)
        self._path, self._bytes, self._lines = path, 0, 0
        self._json, self._jsonl = path.endswith((".json", ".jsonl")), path.endswith(".jsonl")
        if self._json:
            self._count_values(1)  # a document's own value (json_values counts one per file)

    def chunk(self, data: bytes) -> None:
        """The next ``data`` of the member started last is to be written."""
        limits, path = self.limits, self._path
        if self._bytes + len(data) > limits.member_bytes:
            raise OverBound(f"文件 {path} 的字节数", f"the bytes of {path}", limits.member_bytes)
        if self.total_bytes + len(data) > limits.total_bytes:
            raise OverBound("全部文件的字节数合计", "the bytes of all files", limits.total_bytes)
        if self._jsonl:
            lines = data.count(b"\n")
            if self._lines + lines > limits.lines:
                raise OverBound(f"文件 {path} 的行数", f"the lines of {path}", limits.lines)
            self._lines += lines
        if self._json:
            self._count_values(layout.json_values(data) - 1)  # the verifier's count, less its one per file
        self._bytes += len(data)
        self.total_bytes += len(data)

    def _count_values(self, n: int) -> None:
        if self.json_values + n > self.limits.json_values:
            raise OverBound(
                "JSON 文件中 JSON 值（对象、数组、字符串、数字、键等）的总数",
                "the JSON values (objects, arrays, strings, numbers, keys…) of all JSON files",
                self.limits.json_values,
            )
        self.json_values += n


def too_large(exc: OverBound, events: int, first: str | None, last: str | None) -> BundleTooLarge:
    """The export's refusal of a bundle past ``exc``'s bound, whose ``events`` were received from ``first`` to
    ``last``: Chinese first, then English, with the way out (a shorter time range)."""
    limit = f"{exc.limit:,}"
    if first is None or last is None:
        zh_span, en_span = "", ""
    else:
        zh_span = f"所选 {events:,} 个事件由法院于 {first} 至 {last} 收到；"
        en_span = f"Its {events:,} events were received from {first} to {last}. "
    return BundleTooLarge(
        f"证据包未导出：其{exc.zh}将超过 {limit}，即 seal-verify 读取的上限，seal-verify 会拒绝这样的证据包。"
        f"{zh_span}请分几个较短的时间段导出（命令行 --from/--to，API 参数 from/to）。 / "
        f"Not exported: {exc.en} of the bundle would pass {limit}, the most seal-verify reads (it would refuse the "
        f"bundle unread). {en_span}Export it in shorter time ranges (--from/--to on the command line, from/to "
        "on the API)."
    )
