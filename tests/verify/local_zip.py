"""Zips written byte by byte for the tests of local headers: a reader that goes by local headers alone (as Java's
``ZipInputStream``, ``jar x < case.zip``, does), and the forgery that showed such a reader other files than the
central directory (a re-zipped genuine bundle, no log key needed)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header (APPNOTE 4.3.7)
ENTRY = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header (4.3.12)
END = struct.Struct("<4s4H2LH")  # end of central directory record (4.3.16)
TIME, DATE = 0, 0x21  # 1980-01-01 00:00


@dataclass
class Member:
    """One member as written: its name and bytes, and what its local header says (``None``: what the directory says)."""

    name: str
    data: bytes
    local_crc: int | None = None
    local_sizes: tuple[int, int] | None = None  # compressed, uncompressed
    local_extra: bytes = b""
    raw_local: bytes | None = None  # the bytes written instead of the local header, its name and extra field


def local_header(name: str, crc: int, packed: int, size: int, extra: bytes = b"", *, method: int = 0) -> bytes:
    encoded = name.encode()
    version = 45 if extra else 20
    return LOCAL.pack(b"PK\x03\x04", version, 0, 0, method, TIME, DATE, crc, packed, size, len(encoded), len(extra))


def stored_zip(members: list[Member]) -> bytes:
    """The members stored (method 0), each local header as ``members`` say, the directory as their bytes are."""
    out, directory = bytearray(), bytearray()
    for member in members:
        offset, crc, name = len(out), zlib.crc32(member.data), member.name.encode()
        packed, size = member.local_sizes or (len(member.data), len(member.data))
        local_crc = crc if member.local_crc is None else member.local_crc
        header = local_header(member.name, local_crc, packed, size, member.local_extra) + name + member.local_extra
        out += (header if member.raw_local is None else member.raw_local) + member.data
        directory += ENTRY.pack(
            b"PK\x01\x02", 20, 3, 20, 0, 0, 0, TIME, DATE, crc, len(member.data), len(member.data), len(name),
            0, 0, 0, 0, 0o100644 << 16, offset,
        ) + name  # fmt: skip
    start = len(out)
    return bytes(out + directory + END.pack(b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), start, 0))


def by_local_headers(data: bytes) -> dict[str, bytes]:
    """What a reader going by local headers alone extracts: header after header from the file's start, a member's
    sizes from its header, or from its ZIP64 block (found by its ID) where the header says 0xFFFFFFFF, a deflated
    member up to its stream's end, a data descriptor skipped after it; until no local header follows."""
    files: dict[str, bytes] = {}
    at = 0
    while data[at : at + 4] == b"PK\x03\x04":
        _, _, _, flags, method, _, _, _, packed, _, name_length, extra_length = LOCAL.unpack_from(data, at)
        name = data[at + LOCAL.size : at + LOCAL.size + name_length].decode()
        extra = data[at + LOCAL.size + name_length : at + LOCAL.size + name_length + extra_length]
        blocks, block_at = {}, 0
        while block_at + 4 <= len(extra):  # by ID: Info-ZIP's ``zip -fz`` puts its time and owner blocks first
            kind, length = struct.unpack_from("<HH", extra, block_at)
            blocks[kind] = extra[block_at + 4 : block_at + 4 + length]
            block_at += 4 + length
        wide = 1 in blocks
        if wide and packed == 0xFFFFFFFF:
            packed = struct.unpack_from("<Q", blocks[1], 8)[0]
        at += LOCAL.size + name_length + extra_length
        if method == 8:
            inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            files[name] = inflate.decompress(data[at:])
            at = len(data) - len(inflate.unused_data)
        else:
            files[name] = data[at : at + packed]
            at += packed
        if flags & 0x08:
            at += (4 if data[at : at + 4] == b"PK\x07\x08" else 0) + (20 if wide else 12)
    return files


def crc_forcing(prefix: bytes, target: int) -> bytes:
    """Four bytes that make the CRC-32 of ``prefix`` followed by them ``target`` (CRC-32 is affine over GF(2): solve
    for the 32 bits)."""
    base = zlib.crc32(prefix + bytes(4))
    basis: dict[int, tuple[int, int]] = {}
    for bit in range(32):
        vector, combination = zlib.crc32(prefix + (1 << bit).to_bytes(4, "little")) ^ base, 1 << bit
        for top in range(31, -1, -1):
            if vector >> top & 1:
                if top not in basis:
                    basis[top] = (vector, combination)
                    break
                vector, combination = vector ^ basis[top][0], combination ^ basis[top][1]
    want, solution = base ^ target, 0
    for top in range(31, -1, -1):
        if want >> top & 1:
            want, solution = want ^ basis[top][0], solution ^ basis[top][1]
    fix = solution.to_bytes(4, "little")
    assert zlib.crc32(prefix + fix) == target
    return fix


def swallowing_forgery(members: dict[str, bytes], forged: dict[str, bytes]) -> bytes:
    """The review's forgery (F1): the bundle stored, an empty member (``commands.jsonl``) whose local header says
    0xFFFFFFFF and whose ZIP64 block claims the K bytes after it; those K bytes are the next empty member's
    (``removal.jsonl``) local header up to four CRC-forcing bytes in its ZIP64 block (the K bytes' CRC is then 0, an
    empty member's), whose block goes on over a local entry of each ``forged`` file: that entry is the next a local
    reader finds, and a directory reader skips it as removal.jsonl's extra field. Both are placed after
    ``events.jsonl``: a reader going by the directory reads the genuine members, one going by local headers the
    forged files after the genuine ones of their names."""
    assert members["commands.jsonl"] == members["removal.jsonl"] == b""
    fakes = b"".join(
        local_header(name, zlib.crc32(data), len(data), len(data)) + name.encode() + data
        for name, data in forged.items()
    )
    inner_name = b"removal.jsonl"
    head = local_header("removal.jsonl", 0, 0, 0, bytes(8 + len(fakes))) + inner_name
    head += struct.pack("<HH", 1, 4 + len(fakes))
    swallowed = head + crc_forcing(head, 0) + fakes
    k = len(head) + 4
    written: list[Member] = []
    for name in [name for name in members if name not in ("commands.jsonl", "removal.jsonl")]:
        written.append(Member(name, members[name]))
        if name == "events.jsonl":
            written.append(Member("commands.jsonl", b"", local_sizes=(0xFFFFFFFF,) * 2, local_extra=_zip64(k, k)))
            written.append(Member("removal.jsonl", b"", raw_local=swallowed))
    return stored_zip(written)


def _zip64(size: int, packed: int) -> bytes:
    return struct.pack("<HHQQ", 1, 16, size, packed)
