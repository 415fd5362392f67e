"""Proof files of a removal request: PDF, JPEG or PNG, told by their content, never by their name.

:func:`check_proof` reads the type from the magic bytes, then makes sure the file is one: a picture must decode
(Pillow, bounded in pixels), a PDF must have its header, a ``startxref`` pointing inside the file and ``%%EOF`` at
its end. A name whose extension names another type, or a declared content type that is another type, is a lie and
refused; a missing extension and ``application/octet-stream`` (a client that does not know) are not. Files are
stored by their SHA-256 (:class:`ProofStore`), written atomically, once however often they are sent.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from server.core.files import ContentStore
from server.removal.errors import ProofRefused

PDF, JPEG, PNG = "application/pdf", "image/jpeg", "image/png"
#: The extension a stored proof gets, and the extensions a name may carry, per type.
EXTENSIONS = {PDF: (".pdf",), JPEG: (".jpg", ".jpeg"), PNG: (".png",)}
#: Declared types that tell nothing (a client that does not know the type).
UNDECLARED = frozenset({"", "application/octet-stream"})
#: A scan or a phone's photo of a receipt; larger is no document.
MAX_PIXELS = 50_000_000
#: Where a PDF's last ``%%EOF`` must be (writers append a line end or a few bytes after it).
PDF_TAIL_BYTES = 1024
_STARTXREF = re.compile(rb"startxref\s+(\d{1,20})\s+%%EOF")
MAX_FILENAME = 255


@dataclass(frozen=True)
class CheckedProof:
    sha256: str
    media_type: str
    size: int
    filename: str
    data: bytes


def sniff(data: bytes) -> str | None:
    """The type the magic bytes say, or ``None``."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    return None


def check_proof(data: bytes, *, filename: str, declared_type: str, max_bytes: int) -> CheckedProof:
    """``data`` as a proof file, or :class:`ProofRefused` saying why not (naming the file)."""
    name = safe_filename(filename)
    if len(data) > max_bytes:
        raise ProofRefused(f"{name}: {len(data)} bytes, a proof file has at most {max_bytes}")
    if not data:
        raise ProofRefused(f"{name}: the file is empty")
    media_type = sniff(data)
    if media_type is None:
        raise ProofRefused(f"{name}: not a PDF, JPEG or PNG file (by its content)")
    extension = PurePosixPath(name).suffix.lower()
    if extension and extension not in EXTENSIONS[media_type]:
        raise ProofRefused(f"{name}: the name says {extension}, the content is {media_type}")
    declared = declared_type.split(";")[0].strip().lower()
    if declared not in UNDECLARED and declared != media_type:
        raise ProofRefused(f"{name}: declared as {declared}, the content is {media_type}")
    problem = _pdf_problem(data) if media_type == PDF else _picture_problem(data, media_type)
    if problem is not None:
        raise ProofRefused(f"{name}: {problem}")
    return CheckedProof(hashlib.sha256(data).hexdigest(), media_type, len(data), name, data)


def safe_filename(filename: str) -> str:
    """The last part of an uploaded name, without control characters, at most :data:`MAX_FILENAME` characters."""
    base = re.split(r"[\\/]", filename)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return (cleaned or "unnamed")[-MAX_FILENAME:]


def _pdf_problem(data: bytes) -> str | None:
    if not re.match(rb"%PDF-[12]\.\d", data):
        return "no PDF header (%PDF-1.x or %PDF-2.x)"
    tail = data[-PDF_TAIL_BYTES:]
    if b"%%EOF" not in tail:
        return "a PDF must end with %%EOF"
    found = list(_STARTXREF.finditer(tail))
    if not found:
        return "no startxref before the PDF's %%EOF"
    if int(found[-1].group(1)) >= len(data):
        return "the PDF's startxref points past its end"
    return None


def _picture_problem(data: bytes, media_type: str) -> str | None:
    kind = "JPEG" if media_type == JPEG else "PNG"
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as picture:
            width, height = picture.size
            if width * height > MAX_PIXELS:
                return f"a {width}x{height} picture is larger than {MAX_PIXELS} pixels"
            picture.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"the {kind} picture does not decode: {exc}"
    return None


class ProofStore(ContentStore):
    """Proof files: ``<proof_dir>/<sha256>.pdf|.jpg|.png``."""

    def put_proof(self, proof: CheckedProof) -> Path:
        return self.put(proof.sha256, proof.data, EXTENSIONS[proof.media_type][0])

    def proof_path(self, sha256: str, media_type: str) -> Path:
        return self.path_for(sha256, EXTENSIONS[media_type][0])
