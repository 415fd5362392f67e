"""Snapshots, addressed by their SHA-256: ``<sha256>.jpg`` in a directory or a bucket, and the check that one is a
JPEG.

An object is written once and completely (:class:`~server.core.object_store.ContentStore`): once the ingest
acknowledges the message, the picture survives a power cut. Writing the same picture twice is harmless: the name is
its content's hash.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from seal_protocol.topics import MAX_SNAPSHOT_BYTES as MAX_SNAPSHOT_BYTES
from server.core.blobs import ObjectBackend
from server.core.object_store import ContentStore

#: Start-of-frame markers (baseline, progressive, lossless, arithmetic …); 0xC4, 0xC8 and 0xCC are not frames.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
#: The frames a snapshot may have: sequential DCT with Huffman coding (baseline, extended), what cameras write.
_SEQUENTIAL_MARKERS = frozenset({0xC0, 0xC1})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
#: A camera's JPEG has a dozen segments before its scan and no fill bytes: bounds that keep the check cheap.
MAX_SEGMENTS_BEFORE_SCAN = 256
MAX_FILL_BYTES = 1024
_MARKER_PREFIX = re.compile(rb"\xff{1,%d}" % (MAX_FILL_BYTES + 1))


#: Metadata (APPn and COM segments) a camera's JPEG carries: OpenCV writes a few hundred bytes, a phone some KiB.
MAX_METADATA_BYTES = 64 * 1024
#: Pictures larger than this many pixels are not what a seal's camera takes (and would cost a decode).
MAX_PIXELS = 40_000_000
#: Compressed data per pixel and colour component: noise at quality 100 needs about 2 bytes; a picture never more.
MAX_BYTES_PER_SAMPLE = 3
_HEADROOM_BYTES = 2048  # the marker segments a JPEG always has (tables, frame and scan headers)
#: A sequential picture codes each colour component in exactly one scan (ITU-T T.81, 4.10), so it has at most as
#: many scans as components: a camera's has one. Only sequential pictures are taken: a progressive one is decoded
#: over the whole picture once per scan, each scan may take a dozen bytes (a few hundred KiB of scans held the ingest
#: of every seal for minutes), and even ten honest scans cost about 120 ms of decoding a MB, against about 20 for a
#: sequential picture: an 8 MiB progressive snapshot held the ingest of every seal for a second.
_SCAN_MARKER = b"\xff\xda"


@dataclass(frozen=True, slots=True)
class _Frame:
    width: int
    height: int
    components: int
    metadata: int  # bytes of APPn and COM segments before the scan
    sof: int  # the start-of-frame marker's second byte (0xC0: baseline)
    scan_at: int  # where the first scan's header begins


def jpeg_problem(data: bytes) -> str | None:
    """Why ``data`` is not a JPEG picture, or ``None`` if it is one.

    Checked by content: the start-of-image marker, a well-formed chain of marker segments up to the start of the
    scan with a frame header of non-zero size before it, the end-of-image marker as the last two bytes; then a
    sequential frame of no more scans than components, no more metadata and no more bytes than a picture of that
    size can hold, and the picture must decode (Pillow) — so arbitrary bytes wrapped in a JPEG's first and last
    markers are not stored as a snapshot, and no picture costs more than about 25 ms of decoding a MB.
    """
    frame = _frame(data)
    if isinstance(frame, str):
        return frame
    if frame.sof not in _SEQUENTIAL_MARKERS:
        kind = "a progressive" if frame.sof in (0xC2, 0xC6, 0xCA, 0xCE) else "a lossless or arithmetic-coded"
        return f"{kind} JPEG (frame 0x{frame.sof:02X}); a snapshot is a sequential (baseline) JPEG, as cameras write"
    if frame.metadata > MAX_METADATA_BYTES:
        return f"{frame.metadata} bytes of JPEG metadata (APPn/COM segments); at most {MAX_METADATA_BYTES}"
    pixels = frame.width * frame.height
    if pixels > MAX_PIXELS:
        return f"a {frame.width}x{frame.height} picture is larger than {MAX_PIXELS} pixels"
    fits = pixels * frame.components * MAX_BYTES_PER_SAMPLE + frame.metadata + _HEADROOM_BYTES
    if len(data) > fits:
        return f"{len(data)} bytes is more than a {frame.width}x{frame.height} JPEG can hold ({fits})"
    # Counted from the first scan on (metadata before it, an EXIF thumbnail say, may hold scans of its own): outside
    # marker segments a 0xFF byte is followed by 0x00 or a marker, so this counts every scan, never fewer.
    scans = data.count(_SCAN_MARKER, frame.scan_at)
    if scans > frame.components:
        return (
            f"{scans} scans; a sequential JPEG of {frame.components} colour components has at most {frame.components}"
        )
    return _decode_problem(data)


def _decode_problem(data: bytes) -> str | None:
    """Why the picture does not decode, or ``None``. Decoded at an eighth of its size (libjpeg's DCT scaling,
    Pillow's ``draft``): every byte of every scan is still read and entropy-decoded — what a broken or cut picture
    fails — but the inverse DCTs and the colour conversion, most of a full decode's time, are done on an eighth of
    the pixels (a 40-megapixel baseline picture: about 65 ms instead of 240)."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as picture:
            picture.draft(picture.mode, (max(1, picture.width // 8), max(1, picture.height // 8)))
            picture.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"the JPEG does not decode: {exc}"
    return None


def _frame(data: bytes) -> _Frame | str:
    """The picture's size from the marker segments before the scan, or why they are not a JPEG's."""
    if len(data) < 4 or data[:3] != b"\xff\xd8\xff":
        return "does not start with a JPEG start-of-image marker"
    if data[-2:] != b"\xff\xd9":
        return "does not end with a JPEG end-of-image marker"
    pos, frame, metadata = 2, None, 0
    for _segment in range(MAX_SEGMENTS_BEFORE_SCAN):
        run = _MARKER_PREFIX.match(data, pos)  # a marker's 0xFF, and any 0xFF fill bytes before it
        if run is None:
            return f"no JPEG marker at byte {pos}"
        if run.end() - pos > MAX_FILL_BYTES:
            return f"more than {MAX_FILL_BYTES} fill bytes at byte {pos}"
        pos = run.end() - 1
        if pos + 4 > len(data):
            break
        marker = data[pos + 1]
        if marker in _STANDALONE_MARKERS:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2 or pos + 2 + length > len(data):
            return f"JPEG segment 0x{marker:02X} at byte {pos} runs past the end"
        if marker in _SOF_MARKERS:
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            if length < 8 or not height or not width:
                return "JPEG frame header without a picture size"
            frame = (width, height, max(1, data[pos + 9]), marker)
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            metadata += length
        if marker == 0xDA:
            if frame is None:
                return "JPEG scan without a frame header"
            width, height, components, sof = frame
            return _Frame(width, height, components, metadata=metadata, sof=sof, scan_at=pos)
        pos += 2 + length
    else:
        return f"more than {MAX_SEGMENTS_BEFORE_SCAN} marker segments before the scan"
    return "no JPEG scan"


class SnapshotStore(ContentStore):
    """Snapshots: ``<sha256>.jpg`` in ``backend`` (a :class:`~pathlib.Path`: ``snapshot_dir``)."""

    def __init__(self, backend: ObjectBackend | Path, *, on_mismatch: Callable[[str], None] | None = None) -> None:
        super().__init__(backend, ".jpg", kind="snapshot", on_mismatch=on_mismatch)
