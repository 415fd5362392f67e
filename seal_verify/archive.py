"""The bundle's zip, read strictly (``docs/evidence.md``, "Layout of case.zip"): every reader of it sees the files
seal-verify verifies, and reading it costs no more than its directory declares.

``zipfile`` alone is not enough for either. It reads past what a member declares (a deflate stream is inflated in one
call of up to 1 GiB and then cut at the declared size; bzip2 and LZMA streams without any bound), it makes an object of
every directory entry before anyone can count them, and it ignores fields that other readers act on: Info-ZIP's
Unicode Path extra field (``unzip`` extracts the member under that name), a member's Unix file type (``unzip`` makes a
symbolic link), the end record's counts and disk numbers. Here the end records are checked and the directory's
entries counted first, each member's fields must be those of a plain file (a re-zip's times, owners and empty folder
entries allowed: they change no byte read), and its bytes are inflated by a bounded ``zlib`` call that must end
exactly at the declared size. ``zipfile`` still parses the directory.
"""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import IO

from seal_verify.errors import BundleUnreadable
from seal_verify.verdict import cut

#: A member larger than this is not something the server writes (a snapshot is at most a few MiB).
MAX_MEMBER_BYTES = 256 * 1024 * 1024
#: The bundle is read into memory: more than this in all (as the zip's directory declares it, which also bounds what
#: is inflated) or more members than this is refused before anything is read (a zip bomb of many members).
#: The bench's case of 10,000 events and 1,000 snapshots is about 60 MiB.
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
MAX_MEMBERS = 200_000
#: The central directory of MAX_MEMBERS entries as the server writes them is about 25 MiB.
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024
#: What ``zipfile`` raises on hostile bytes, beyond BadZipFile: NotImplementedError (a RuntimeError) for a "zip
#: version" above 6.3, IndexError and struct.error for a cut extra field, zlib.error for bad deflate data.
ZIP_ERRORS = (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError, IndexError, struct.error, zlib.error)

_END = struct.Struct("<4s4H2LH")  # end of central directory record (APPNOTE 4.3.16)
_LOCATOR = struct.Struct("<4sLQL")  # zip64 end of central directory locator (4.3.15)
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record (4.3.14), no extensible data
_ENTRY = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header (4.3.12)
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header (4.3.7)
_LOCAL_SIGNATURE = b"PK\x03\x04"
_DESCRIPTOR = b"PK\x07\x08"
#: General purpose flags a bundle's member may have: deflate's options (bits 1-2), a data descriptor (bit 3), UTF-8
#: names (bit 11). Encryption (bits 0, 6, 13) and the rest are refused.
_FLAGS = 0x0006 | 0x0008 | 0x0800
_ZIP64_FIELD = 0x0001
#: Extra fields a member may have, by header ID, and the most bytes each holds: ZIP64 sizes (at most three sizes and a
#: disk), and what re-zipping adds: times (0x000a NTFS, 7-Zip; 0x5455 extended timestamp, Info-ZIP, its local block
#: longer than its directory's) and Unix owners (0x7875, 0x7855, 0x5855, Info-ZIP). None names a file or a link or
#: changes a byte extracted (seal-verify reads no times or owners), and none has room to hide a member in.
_KEPT_EXTRA = {_ZIP64_FIELD: 28, 0x000A: 32, 0x5455: 13, 0x5855: 12, 0x7855: 4, 0x7875: 19}
_ZIP64_LOCAL = struct.Struct("<QQ")  # a local header's ZIP64 block: the size, the compressed size
_MAX_VERSION = 63  # zip 6.3, as zipfile's MAX_EXTRACT_VERSION


def check_end(fp: IO[bytes], size: int) -> list[str]:
    """Problems of the end record (and the ZIP64 one): it must end the file (no archive comment), name disk 0 only,
    count the entries the directory holds, and its directory must end where the records start.
    :class:`BundleUnreadable` if there is no such record or the directory is larger or holds more entries than a
    bundle's — counted here, before ``zipfile`` makes an object of each."""
    if size < _END.size:
        raise BundleUnreadable("not a zip file: too short / 不是 zip 文件")
    fp.seek(size - _END.size)
    signature, disk, first_disk, on_disk, entries, length, offset, comment = _END.unpack(fp.read(_END.size))
    if signature != b"PK\x05\x06" or comment:
        raise BundleUnreadable(
            "no zip end record ends the file: it is no zip, or cut short, or has an archive comment or bytes after "
            "the zip / 文件末尾没有 zip 结束记录（不是 zip 文件、被截断，或末尾有注释或多余字节）"
        )
    problems: list[str] = []
    records = size - _END.size  # where the directory must end
    fields: tuple[int, ...] = (disk, first_disk, on_disk, entries, length, offset)
    if _has_locator(fp, records):  # zipfile then takes the ZIP64 end record just before the locator
        records -= _LOCATOR.size + _END64.size
        wide = _zip64_fields(fp, records, problems)
        if any(n not in (w, most) for n, w, most in zip(fields, wide, _SATURATED, strict=True)):
            problems.append("the zip's end record and its ZIP64 end record differ")
        fields = wide
    disk, first_disk, on_disk, entries, length, offset = fields
    if (disk, first_disk) != (0, 0) or on_disk != entries:
        problems.append("the zip's end record names another disk (a bundle is one file)")
    if entries > MAX_MEMBERS or length > MAX_DIRECTORY_BYTES:
        raise too_large(f"the zip declares {entries} members in a directory of {length} bytes")
    if offset + length != records:
        problems.append(f"the zip's directory is declared at bytes {offset}–{offset + length}, it ends at {records}")
    count = _count_entries(fp, max(records - length, 0), length)
    if count is None:
        problems.append("the zip's directory is not a sequence of entries")
    elif count != entries:
        problems.append(f"the zip's end record counts {entries} entries, its directory holds {count}")
    return problems


#: The end record's fields when the ZIP64 end record holds their values.
_SATURATED = (0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)


def _has_locator(fp: IO[bytes], end: int) -> bool:
    if end < _LOCATOR.size + _END64.size:
        return False
    fp.seek(end - _LOCATOR.size)
    return fp.read(4) == b"PK\x06\x07"


def _zip64_fields(fp: IO[bytes], at: int, problems: list[str]) -> tuple[int, ...]:
    """The disks, counts and directory extent of the ZIP64 end record at ``at``, followed by its locator."""
    fp.seek(at)
    record = _END64.unpack(fp.read(_END64.size))
    _, locator_disk, where, disks = _LOCATOR.unpack(fp.read(_LOCATOR.size))
    if record[0] != b"PK\x06\x06" or record[1] != _END64.size - 12 or (where, locator_disk, disks) != (at, 0, 1):
        problems.append("the zip's ZIP64 end record is not where its locator says, or not of one disk")
    return tuple(record[4:])


def too_large(what: str) -> BundleUnreadable:
    return BundleUnreadable(
        f"{what}, more than a bundle holds (at most {MAX_MEMBERS} members, {MAX_TOTAL_BYTES} bytes, a directory of "
        f"{MAX_DIRECTORY_BYTES} bytes): not read / 证据包过大，未读取"
    )


def _count_entries(fp: IO[bytes], start: int, length: int) -> int | None:
    """The number of entries in the directory at ``start`` (as zipfile will find them), or ``None`` if it is not
    entries end to end; :class:`BundleUnreadable` past MAX_MEMBERS."""
    fp.seek(start)
    directory = fp.read(length)
    at = count = 0
    while at + _ENTRY.size <= len(directory):
        entry = _ENTRY.unpack_from(directory, at)
        if entry[0] != b"PK\x01\x02":
            return None
        at += _ENTRY.size + entry[12] + entry[13] + entry[14]  # name, extra field, comment
        count += 1
        if count > MAX_MEMBERS:
            raise too_large(f"the zip's directory holds more than {MAX_MEMBERS} entries")
    return count if at == len(directory) == length else None


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """What in ``info``'s directory entry is not of a plain file, stored or deflated, which the server writes and any
    reader extracts as the bytes verified; ``None`` if nothing."""
    problem = _entry_problem(info)
    if problem is None and (
        stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG) or info.external_attr & 0x18
    ):
        problem = f"{cut(info.filename)} is not a regular file (a link, a folder, a device: {info.external_attr:#x})"
    return problem


def directory_problem(info: zipfile.ZipInfo) -> str | None:
    """What in the directory entry ``info`` (a name ending in ``/``, as ``zip -r``, ``shutil.make_archive``, 7-Zip
    and Windows write for each folder) is not of an empty folder; ``None`` if nothing: then it is ignored."""
    problem = _entry_problem(info)
    kind = stat.S_IFMT(info.external_attr >> 16)
    if problem is None and (info.file_size, info.compress_size, info.CRC) != (0, 0, 0):
        problem = f"{cut(info.filename)} is a folder's entry with content ({info.file_size} bytes)"
    elif problem is None and (kind not in (0, stat.S_IFDIR) or info.external_attr & 0x08):
        problem = f"{cut(info.filename)} is not a folder (a link, a file, a device: attributes {info.external_attr:#x})"
    return problem


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    """What in the directory entry ``info`` no reader reads alike: a compression other than store or deflate,
    encryption, a comment, another disk, an extra field of names or links (:func:`_extra_problem`)."""
    name = cut(info.filename)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"{name} is compressed with method {info.compress_type}; a bundle is deflated or stored"
    if info.flag_bits & ~_FLAGS or info.extract_version > _MAX_VERSION:
        return f"{name} is encrypted or of a zip feature a bundle has not (flags {info.flag_bits:#06x})"
    problem = _extra_problem(info.extra)
    if problem is not None:
        return f"{name} has {problem}"
    if info.comment or info.volume:
        return f"{name} has a comment or starts on another disk"
    return None


def _extra_blocks(extra: bytes) -> dict[int, bytes] | None:
    """The extra field's blocks by header ID; ``None`` if they do not fill it exactly or an ID comes twice (readers
    differ on which one counts)."""
    blocks, at = dict[int, bytes](), 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind in blocks:
            return None
        blocks[kind] = extra[at + 4 : at + 4 + length]
        at += 4 + length
    return blocks if at == len(extra) else None


def _extra_problem(extra: bytes) -> str | None:
    """What in an extra field is more than times, owners and ZIP64 sizes (:data:`_KEPT_EXTRA`): a name (Info-ZIP's
    Unicode Path, which ``unzip`` extracts under), a link's target, encryption, a kind no reader here knows, a block
    longer than its kind holds."""
    blocks = _extra_blocks(extra)
    if blocks is None:
        return "extra fields that do not parse into blocks of one ID each"
    others = sorted(kind for kind, data in blocks.items() if len(data) > _KEPT_EXTRA.get(kind, -1))
    if others:
        shown_ids = ", ".join(f"{kind:#06x}" for kind in others)
        return (
            f"extra fields {shown_ids} (of names, links or keys, or too long for times and owners); a bundle has none"
        )
    return None


@dataclass(frozen=True)
class Placed:
    """A member whose local header agrees with its directory entry, and where its compressed bytes start."""

    info: zipfile.ZipInfo
    data_at: int


def place_members(fp: IO[bytes], infos: list[zipfile.ZipInfo], start_dir: int) -> tuple[list[Placed], list[str]]:
    """The members whose local header agrees with their directory entry (:func:`_local_problem`), and the problems:
    bytes before, between or after the members (a hidden entry that a reader going by local headers would show
    instead), a member that overlaps another, a local header that differs. Every byte of a bundle is then covered by
    what is verified."""
    expected, problems, placed = 0, [], list[Placed]()
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < expected:
            problems.append(f"{cut(info.filename)} overlaps the member before it in the zip")
            continue
        if info.header_offset != expected:
            problems.append(f"bytes {expected}–{info.header_offset} of the zip belong to no member")
        fp.seek(info.header_offset)
        raw = fp.read(_LOCAL.size)
        if len(raw) != _LOCAL.size:
            problems.append(f"{cut(info.filename)}: its local header is cut short")
            return placed, problems
        head = _LOCAL.unpack(raw)
        name, extra = fp.read(head[10]), fp.read(head[11])
        data_at = info.header_offset + _LOCAL.size + head[10] + head[11]
        expected = data_at + info.compress_size
        blocks = _extra_blocks(extra)
        if info.flag_bits & 0x08:
            expected += _descriptor_length(fp, expected, info, wide=_ZIP64_FIELD in (blocks or {}))
        problem = _local_problem(head, name, blocks, info)
        if problem is None:
            placed.append(Placed(info, data_at))
        else:
            problems.append(problem.format(name=cut(info.filename)))
    if expected != start_dir:
        problems.append(f"bytes {expected}–{start_dir} of the zip belong to no member")
    return placed, problems


_DIFFERS = "{name}: its local header is not its directory entry"


def _local_problem(
    head: tuple[bytes | int, ...], name: bytes, blocks: dict[int, bytes] | None, info: zipfile.ZipInfo
) -> str | None:
    """What a reader going by the local header finds otherwise than the directory entry says: another name, method
    or flag (but deflate's options, bits 1-2), or other CRC and sizes (:func:`_local_values`); ``None`` if nothing.
    The extra fields may differ in times and owners (``zip -r`` writes a longer 0x5455 block locally), the times too:
    neither changes a byte extracted."""
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    kept = blocks is not None and all(len(data) <= _KEPT_EXTRA.get(kind, -1) for kind, data in blocks.items())
    stated = _local_values(head, blocks) if blocks is not None and kept else None
    true = (info.CRC, info.compress_size, info.file_size)
    if (
        head[0] != _LOCAL_SIGNATURE
        or name != info.orig_filename.encode(encoding)
        or (int(head[3]) ^ info.flag_bits) & ~0x0006
        or head[4] != info.compress_type
        or stated is None
    ):
        return _DIFFERS
    if not info.flag_bits & 0x08:
        return None if stated == true else _DIFFERS
    if any(value not in (0, want) for value, want in zip(stated, true, strict=True)):  # 0, or Info-ZIP's true size
        return _DIFFERS
    if info.compress_type == zipfile.ZIP_STORED and stated[1] != info.compress_size:
        return (
            "{name} is stored with its sizes after its data (a data descriptor), not in its local header: a reader "
            "going by local headers cannot tell where it ends"
        )
    return None


def _local_values(head: tuple[bytes | int, ...], blocks: dict[int, bytes]) -> tuple[int, int, int] | None:
    """The CRC, compressed size and size a reader going by the local header takes: from the header itself, or with
    both sizes 0xFFFFFFFF from its ZIP64 block, which must then hold exactly the two sizes (APPNOTE 4.5.3) — never
    another value a streaming reader would go by instead. ``None`` if the sizes are in neither alone."""
    crc, packed, size = int(head[7]), int(head[8]), int(head[9])
    if _ZIP64_FIELD not in blocks:
        return crc, packed, size
    block = blocks[_ZIP64_FIELD]
    if (packed, size) != (0xFFFFFFFF, 0xFFFFFFFF) or len(block) != _ZIP64_LOCAL.size:
        return None
    size, packed = _ZIP64_LOCAL.unpack(block)
    return crc, packed, size


def _descriptor_length(fp: IO[bytes], at: int, info: zipfile.ZipInfo, *, wide: bool) -> int:
    """The length of the data descriptor at ``at`` (with or without its signature; of 8-byte sizes if ``wide``: the
    local header had a ZIP64 block); 0 if it does not repeat the directory entry's CRC and sizes (then the bytes
    after the member are reported as belonging to none)."""
    fields = struct.Struct("<LQQ" if wide else "<3L")
    fp.seek(at)
    raw = fp.read(4 + fields.size)
    signed = raw[:4] == _DESCRIPTOR
    body = raw[4:] if signed else raw[: fields.size]
    if len(body) != fields.size or fields.unpack(body) != (info.CRC, info.compress_size, info.file_size):
        return 0
    return fields.size + (4 if signed else 0)


def check_sizes(info: zipfile.ZipInfo) -> bool:
    """Whether the member is stored (else deflated); :class:`BundleUnreadable` if it is larger than a member may be,
    or its compressed size is more than its deflate stream can take."""
    if info.file_size > MAX_MEMBER_BYTES:
        raise BundleUnreadable(f"{cut(info.filename)} is larger than {MAX_MEMBER_BYTES} bytes")
    stored = info.compress_type == zipfile.ZIP_STORED
    most = info.file_size if stored else info.file_size + info.file_size // 1000 + 64  # deflate's stored blocks
    if info.compress_size > most or (stored and info.compress_size != info.file_size):
        raise BundleUnreadable(
            f"{cut(info.filename)}: {info.compress_size} compressed bytes for {info.file_size} bytes"
        )
    return stored


def read_member(fp: IO[bytes], member: Placed) -> bytes:
    """The member's bytes: stored, or deflated by a stream that inflates to exactly its declared size (one byte past
    it at most is ever made), with its CRC; :class:`BundleUnreadable` otherwise."""
    info = member.info
    stored = check_sizes(info)
    fp.seek(member.data_at)
    raw = fp.read(info.compress_size)
    if len(raw) != info.compress_size:
        raise BundleUnreadable(f"{cut(info.filename)} is cut short")
    data = raw
    if not stored:
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflate.decompress(raw, info.file_size + 1)
        except zlib.error as exc:
            raise BundleUnreadable(f"{cut(info.filename)} is not deflate data: {exc}") from None
        if not inflate.eof or inflate.unused_data or inflate.unconsumed_tail or len(data) != info.file_size:
            raise BundleUnreadable(
                f"{cut(info.filename)}: its deflate stream is not exactly its {info.file_size} bytes"
            )
    if zlib.crc32(data) != info.CRC:
        raise BundleUnreadable(f"{cut(info.filename)}: its CRC is not its bytes'")
    return data
