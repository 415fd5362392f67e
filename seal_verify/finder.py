"""What macOS Finder's "Compress" adds to a bundle unzipped and zipped again (``docs/evidence.md``, "Layout of
case.zip"): ``__MACOSX/`` with an AppleDouble file ``__MACOSX/<folder>/._<name>`` (the extended attributes, e.g. the
quarantine flag a downloaded zip leaves on what it held) beside each file or folder, and ``.DS_Store`` files (the
Finder's view of a folder it showed). None is evidence: they are named in a note of ``bundle``, never read as a
member, and each must be exactly what Finder writes — an AppleDouble file whose partner is in the zip, a ``.DS_Store``
in a folder of the layout, an empty ``__MACOSX`` folder entry — so that none can hide a file of its own, shadow a
member (``__MACOSX/events.jsonl`` is no Finder name: it fails as any path outside the layout) or be extracted by
another reader under another name (the entry rules of :mod:`seal_verify.archive` hold for them as for members)."""

from __future__ import annotations

import zipfile

import seal_verify.archive as archive
from seal_verify.verdict import cut

MACOSX = "__MACOSX/"
DS_STORE = ".DS_Store"
#: AppleDouble's magic number (RFC 1740, "AppleSingle/AppleDouble Formats"), big-endian, first in the file.
APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07"
#: A .DS_Store file starts with its alignment word 1 and the magic "Bud1" of its buddy allocator.
DS_STORE_MAGIC = b"\x00\x00\x00\x01Bud1"


def is_finder_name(name: str) -> bool:
    """Whether ``name`` is of the kind Finder adds (it may still fail :func:`finder_problem`)."""
    return name.startswith(MACOSX) or name.rpartition("/")[2] == DS_STORE


def _ds_store_place(name: str, folders: set[str]) -> bool:
    """``name`` is a ``.DS_Store`` at the top or in a folder of the layout that holds members."""
    folder, _, base = name.rpartition("/")
    return base == DS_STORE and (not folder or folder + "/" in folders)


def finder_problem(info: zipfile.ZipInfo, names: set[str], folders: set[str], layout_names: set[str]) -> str | None:
    """What makes ``info`` (an entry whose name :func:`is_finder_name`) other than Finder's own, as far as its
    directory entry shows; ``None`` if nothing (its bytes are checked by :func:`content_problem`). ``names``: every
    entry's name; ``folders``: the layout's folders that hold members (``log/`` …); ``layout_names``: the entries
    that are paths of the layout."""
    name = info.filename
    shown = cut(name)
    if name != info.orig_filename:  # zipfile cut the name at a NUL byte
        return f"{shown} is not a path of the bundle's layout"
    if name.endswith("/"):  # __MACOSX/ or __MACOSX/<folder>/: empty folders
        if name != MACOSX and name.removeprefix(MACOSX) not in folders:
            return f"{shown} is not a folder Finder adds to a bundle (__MACOSX/ and its folders of the layout)"
        return archive.directory_problem(info)
    if name.startswith(MACOSX):
        folder, _, base = name.removeprefix(MACOSX).rpartition("/")
        partner = (folder + "/" if folder else "") + base.removeprefix("._")
        known = (
            partner in layout_names
            or partner + "/" in folders
            or (partner in names and _ds_store_place(partner, folders))
        )
        if not base.startswith("._") or not known or (folder and folder + "/" not in folders):
            return (
                f"{shown} is not a path of the bundle's layout, nor an AppleDouble file Finder adds "
                "(__MACOSX/<folder>/._<name> of a file or folder in the zip)"
            )
    elif not _ds_store_place(name, folders):
        return f"{shown} is not a path of the bundle's layout (a .DS_Store outside the layout's folders)"
    return archive.member_problem(info)


def content_problem(name: str, data: bytes) -> str | None:
    """What in the bytes of the Finder file ``name`` is not of its kind; ``None`` if nothing."""
    if name.startswith(MACOSX) and not data.startswith(APPLEDOUBLE_MAGIC):
        return f"{cut(name)} is not an AppleDouble file (its bytes do not start with 0x00051607)"
    if not name.startswith(MACOSX) and not data.startswith(DS_STORE_MAGIC):
        return f"{cut(name)} is not a Finder .DS_Store file (its bytes do not start with 0x00000001 'Bud1')"
    return None


def finder_note(ignored: list[str]) -> str:
    """The note of ``bundle`` naming the Finder entries ignored: the ``.DS_Store`` files first (few), then
    ``__MACOSX/`` (one a file or folder; the note is cut past 2,000 characters, the count says how many)."""
    named = ", ".join(sorted(ignored, key=lambda name: (name.startswith(MACOSX), name)))
    return (
        f"忽略 {len(ignored)} 个 macOS 访达（Finder）条目（“压缩”时添加的 __MACOSX/ 元数据与 .DS_Store，"
        f"不是证据，未作为证据包文件读取）/ {len(ignored)} macOS Finder entries ignored ({named}): Finder's "
        "Compress adds them (AppleDouble metadata, folder views); they are not evidence and were not read as the "
        "bundle's files"
    )
