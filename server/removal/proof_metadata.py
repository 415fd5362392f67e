"""A proof picture without what a camera or an editor wrote beside the picture: where it was taken (EXIF GPS), the
device, the time, the editor's notes — for the readers who are not the court's (the creditor, the debtor).

The court keeps and reads the file as it was uploaded (its SHA-256 is the record's); :func:`without_metadata` makes
the copy the others are served. Nothing is decoded or encoded again, so the pixels are the same:

- JPEG: the segments are copied but APP1 (EXIF, XMP), APP13 (Photoshop, IPTC), APP3–APP12 and APP15 (makers'
  notes, FlashPix, MPF with its second pictures, …), APP2 other than an ICC profile, and COM (comments); anything
  after the picture's end (EOI) is left out — a phone's second picture (MPF) carries an EXIF of its own. The JFIF
  header (APP0), the ICC profile and Adobe's colour transform (APP14) stay. If the EXIF said how to turn the picture
  (its orientation, 2–8), a new EXIF holding that alone is written, so that a portrait photo is not shown lying.
- PNG: the chunks that draw the picture stay (IHDR, PLTE, IDAT, IEND, tRNS and the colour chunks gAMA, cHRM, sRGB,
  iCCP, sBIT, cICP, and pHYs, bKGD); the others — tEXt, zTXt, iTXt (XMP), eXIf, tIME, makers' own — are left out,
  as is anything after IEND.

A file these rules cannot walk (it decoded when it was checked, yet its segments or chunks do not add up, or its
EXIF cannot be read) is drawn again by Pillow instead, without its metadata: turned upright first by its EXIF
orientation if that EXIF can be read (the copy has no EXIF to say it), with its palette, transparency and ICC
profile; then the pixels of a JPEG may differ slightly, none of its metadata is sent. A file that cannot be drawn
again either is :class:`Uncleanable` — whatever the bytes, never another error: the upload refuses such a picture
(:func:`~server.removal.proofs.check_proof` makes the copy once), and a download answers a clear refusal.
"""

from __future__ import annotations

import io
import logging
import struct

from PIL import Image, ImageOps

from server.errors import Conflict
from server.removal.errors import RemovalError

logger = logging.getLogger(__name__)

#: The media types of the pictures (as :mod:`server.removal.proofs` names them: it makes a copy of each it accepts).
JPEG, PNG = "image/jpeg", "image/png"
ORIENTATION = 0x0112
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
#: The modes Pillow writes as JPEG.
_JPEG_MODES = frozenset({"1", "L", "RGB", "CMYK"})
#: JPEG segments kept whatever they hold: APP0 (JFIF), APP14 (Adobe: the colour transform). APP2 is kept when it is
#: an ICC profile. Every other APPn and COM is left out.
_KEPT_APPS = frozenset({0xE0, 0xEE})
_ICC = b"ICC_PROFILE\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEPT = frozenset(
    {
        b"IHDR",
        b"PLTE",
        b"IDAT",
        b"IEND",
        b"tRNS",
        b"gAMA",
        b"cHRM",
        b"sRGB",
        b"iCCP",
        b"sBIT",
        b"cICP",
        b"pHYs",
        b"bKGD",
    }
)


class Unwalkable(ValueError):
    """The file's segments or chunks do not add up."""


class Uncleanable(RemovalError, Conflict):
    """A picture that can be neither walked nor drawn again: no copy without its metadata can be made (409)."""


def without_metadata(data: bytes, media_type: str) -> bytes:
    """``data`` (a proof file of ``media_type``) without its metadata; a PDF as it is. :class:`Uncleanable`, and
    nothing else, if no such copy can be made."""
    if media_type not in (JPEG, PNG):
        return data
    try:
        return _jpeg(data) if media_type == JPEG else _png(data)
    except Exception as exc:  # whatever the bytes (Unwalkable, or a library's error): drawn again
        logger.warning("a proof %s cannot be walked (%r): it is drawn again without its metadata", media_type, exc)
    try:
        return _redrawn(data)
    except Exception as exc:
        logger.warning("a proof %s cannot be drawn again (%r): no copy without its metadata", media_type, exc)
        raise Uncleanable(
            "this picture cannot be given without its embedded data (where it was taken, …): ask the court for it"
        ).saying("refusal.proof_uncleanable") from None


def _jpeg(data: bytes) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        raise Unwalkable("no SOI")
    out, orientation = [b"\xff\xd8"], _orientation_segment(data)  # written after the JFIF header, which comes first
    at, size = 2, len(data)
    while True:
        while at + 1 < size and data[at] == 0xFF and data[at + 1] == 0xFF:
            at += 1  # fill bytes before a marker
        if at + 1 >= size or data[at] != 0xFF:
            raise Unwalkable(f"no marker at {at}")
        marker = data[at + 1]
        if marker == _EOI:
            out.append(b"\xff\xd9")
            return b"".join(out)  # what follows the picture (an MPF's second picture, a trailer) is left out
        if 0xD0 <= marker <= 0xD7 or marker in (0x01, _SOI):
            out.append(data[at : at + 2])
            at += 2
            continue
        if at + 4 > size:
            raise Unwalkable("a segment's length is cut off")
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if end > size or end < at + 4:
            raise Unwalkable(f"a segment at {at} runs past the end")
        if marker != 0xE0 and orientation:
            out.append(orientation)
            orientation = b""
        if _kept(marker, data[at + 4 : end]):
            out.append(data[at:end])
        at = end
        if marker == _SOS:
            scan_end = _scan_end(data, at)
            out.append(data[at:scan_end])
            at = scan_end


def _kept(marker: int, body: bytes) -> bool:
    if marker == 0xFE:  # COM
        return False
    if 0xE0 <= marker <= 0xEF:
        return marker in _KEPT_APPS or (marker == 0xE2 and body.startswith(_ICC))
    return True


def _scan_end(data: bytes, at: int) -> int:
    """Where the entropy-coded data from ``at`` ends: at the first marker that is no stuffed byte or restart."""
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= len(data):
            raise Unwalkable("the scan runs to the end of the file")
        following = data[at + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            at += 2
        elif following == 0xFF:
            at += 1
        else:
            return at


def _orientation_segment(data: bytes) -> bytes:
    """An APP1 holding an EXIF with the picture's orientation alone, or nothing if it needs none."""
    try:
        with Image.open(io.BytesIO(data)) as picture:
            orientation = picture.getexif().get(ORIENTATION)
    except Exception as exc:  # Pillow's EXIF reader raises what it meets (SyntaxError, TypeError, struct.error, …)
        raise Unwalkable(f"its EXIF cannot be read: {exc!r}") from None
    if not isinstance(orientation, int) or not 2 <= orientation <= 8:
        return b""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    body = exif.tobytes()
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def _png(data: bytes) -> bytes:
    if not data.startswith(_PNG_SIGNATURE):
        raise Unwalkable("no PNG signature")
    out, at = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(data):
            raise Unwalkable(f"the chunk {kind!r} runs past the end")
        if kind in _PNG_KEPT:
            out.append(data[at:end])
        at = end
        if kind == b"IEND":
            return b"".join(out)
    raise Unwalkable("no IEND")


def _redrawn(data: bytes) -> bytes:
    """The picture drawn again: turned upright by its EXIF orientation first (the copy has no EXIF to say so), its
    palette and transparency kept (a palette with transparent alpha drawn as RGBA), its ICC profile kept; nothing
    else of its ``info`` (EXIF, text, comments, XMP) is written."""
    with Image.open(io.BytesIO(data)) as picture:
        kind = picture.format or "PNG"
        picture.load()
        try:
            upright = ImageOps.exif_transpose(picture)  # a copy: the palette and the transparency stay with it
        except Exception as exc:  # an EXIF that cannot be read: drawn as it lies, the orientation unknown
            logger.warning("a proof's EXIF cannot be read (%r): drawn without turning it", exc)
            upright = picture.copy()
            upright.info.pop("exif", None)
    if upright.mode == "PA" or (kind == "JPEG" and upright.mode not in _JPEG_MODES):
        upright = upright.convert("RGBA" if kind != "JPEG" else "RGB")
    for key in [key for key in upright.info if key not in ("transparency", "icc_profile")]:
        del upright.info[key]
    out = io.BytesIO()
    upright.save(out, format=kind, **({"quality": 95} if kind == "JPEG" else {}))
    return out.getvalue()
