"""Proof files of a removal request: PDF, JPEG or PNG, told by their content, never by their name.

:func:`check_proof` reads the type from the magic bytes, then makes sure the file is one: a picture must decode
(Pillow, bounded in pixels, a few at a time), a PDF must have its header, ``%%EOF`` at its end and a ``startxref``
pointing at a cross-reference table (with its trailer) or stream. Call it with no transaction open: decoding takes
a while. A name whose extension names another type, or a declared content type that is another type, is a lie and
refused; a missing extension and ``application/octet-stream`` (a client that does not know) are not. An extension
that is none of the three types' is refused whatever the content (read as Windows saves the name: "回单.hta." is an
.hta). A proof is downloaded under a name the server builds (:func:`download_name`), never the uploaded one. Files are
stored by their SHA-256 (:class:`ProofStore`), written once and completely, however often they are sent.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from server.core.blobs import Blob, ObjectBackend
from server.core.object_store import ContentStore
from server.errors import Said
from server.removal.errors import ProofRefused
from server.removal.pdf_content import ACTIVE_WORDS, TooComplex, Unreadable, active_content
from server.removal.proof_metadata import JPEG, PNG, Uncleanable, without_metadata
from server.removal.refusals import RefusedProofs

logger = logging.getLogger(__name__)

PDF = "application/pdf"
#: The extension a stored proof gets, and the extensions a name may carry, per type.
#: What each type is called in a refusal.
KINDS = {PDF: "PDF", JPEG: "JPEG", PNG: "PNG"}
EXTENSIONS = {PDF: (".pdf",), JPEG: (".jpg", ".jpeg", ".jpe", ".jfif"), PNG: (".png",)}
#: Every extension a proof's name may end in: a name ending in another is refused, whatever the file holds.
ALLOWED_EXTENSIONS = frozenset(extension for extensions in EXTENSIONS.values() for extension in extensions)
#: What Windows drops from the end of a name when it saves a file: "回单.hta." and "回单.hta " are saved as 回单.hta.
_DROPPED_AT_END = re.compile(r"[\s.]+$")
#: Declared types that tell nothing (a client that does not know the type).
UNDECLARED = frozenset({"", "application/octet-stream"})
#: Other names clients give the three types.
ALIASES = {"image/jpg": JPEG, "image/pjpeg": JPEG, "image/x-png": PNG}
#: A phone's photo of a receipt (12 megapixels), an A4 page scanned at 400 dpi (15.5); larger is no document, and
#: decoding it would hold a worker (and ~75 MB) for nothing.
MAX_PIXELS = 25_000_000
#: At most this many pictures are decoded at once, whatever the number of uploads: the others wait their turn.
MAX_CONCURRENT_DECODES = 2
#: Where a PDF's last ``%%EOF`` must be (writers append a line end or a few bytes after it).
PDF_TAIL_BYTES = 1024
_STARTXREF = re.compile(rb"startxref\s+(\d{1,20})\s+%%EOF")
#: A cross-reference table's start: ``xref``, its first subsection (first object, count) and first entry.
_XREF_TABLE = re.compile(rb"\s*xref\s+\d{1,10}[ \t]+\d{1,10}\s+\d{10}[ \t]\d{5}[ \t][nf]")
#: A cross-reference stream's start: an indirect object whose dictionary follows.
_XREF_STREAM = re.compile(rb"\s*\d{1,10}\s+\d{1,5}\s+obj\s*<<")
_TRAILER = re.compile(rb"trailer\s*<<")
#: How much of a trailer or cross-reference stream dictionary is looked at.
PDF_DICT_BYTES = 4096
MAX_FILENAME = 255

decoding_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)


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
        raise ProofRefused(f"{name}: {len(data)} bytes, a proof file has at most {max_bytes}").saying(
            "refusal.proof_too_large", name=name, size=len(data), max=max_bytes
        )
    if not data:
        raise ProofRefused(f"{name}: the file is empty").saying("refusal.proof_empty", name=name)
    media_type = sniff(data)
    if media_type is None:
        raise ProofRefused(f"{name}: not a PDF, JPEG or PNG file (by its content)").saying(
            "refusal.proof_type", name=name
        )
    kind = KINDS[media_type]
    extension = name_extension(name)
    if extension and extension not in ALLOWED_EXTENSIONS:
        raise ProofRefused(
            f"{name}: 不接收扩展名为 {extension} 的文件，只接收 PDF、JPEG、PNG 文件（.pdf、.jpg、.jpeg、.png）"
            f" / files ending in {extension} are not accepted, only PDF, JPEG or PNG files (.pdf, .jpg, .jpeg, .png)"
        ).saying("refusal.proof_extension", name=name, extension=extension)
    if extension and extension not in EXTENSIONS[media_type]:
        raise ProofRefused(f"{name}: the name says {extension}, the content is {media_type}").saying(
            "refusal.proof_name_lie", name=name, extension=extension, kind=kind
        )
    declared = declared_type.split(";")[0].strip().lower()
    declared = ALIASES.get(declared, declared)
    if declared not in UNDECLARED and declared != media_type:
        raise ProofRefused(f"{name}: declared as {declared}, the content is {media_type}").saying(
            "refusal.proof_type_lie", name=name, kind=kind
        )
    if media_type == PDF:
        problem = _pdf_problem(data)
        if problem is not None:
            raise ProofRefused(f"{name}: {problem}").saying("refusal.proof_broken_pdf", name=name)
        _check_pdf_content(data, name)
    else:
        _check_picture(data, kind, name)
    return CheckedProof(hashlib.sha256(data).hexdigest(), media_type, len(data), name, data)


def safe_filename(filename: str) -> str:
    """The last part of an uploaded name, without control characters, at most :data:`MAX_FILENAME` characters."""
    base = re.split(r"[\\/]", filename)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip()
    return (cleaned or "unnamed")[-MAX_FILENAME:]


def name_extension(name: str) -> str:
    """The extension ``name`` has where it is saved, lowercase ("" if none): after what Windows drops from its end
    (``PurePosixPath("回单.hta.").suffix`` is "", and Windows saves 回单.hta)."""
    return PurePosixPath(_DROPPED_AT_END.sub("", name)).suffix.lower()


def download_name(filename: str, media_type: str) -> str:
    """The name a proof file is served under, built here: the stem of its uploaded name (cleaned as
    :func:`safe_filename` cleans it, without what Windows drops from its end) and the extension of ``media_type``,
    the type its content was found to be — never an extension the uploader chose. A PDF filed as "回单.hta." (before
    such names were refused) is downloaded as 回单.pdf, which no browser or desktop opens as anything but a PDF."""
    cleaned = _DROPPED_AT_END.sub("", safe_filename(filename))
    stem = _DROPPED_AT_END.sub("", PurePosixPath(cleaned).stem if name_extension(cleaned) else cleaned)
    return f"{stem or 'proof'}{EXTENSIONS[media_type][0]}"


def _pdf_problem(data: bytes) -> str | None:
    """A light check of a PDF's structure (no parser): its header; ``startxref`` and ``%%EOF`` at its end; and at the
    offset ``startxref`` gives, a cross-reference table (``xref`` and its first entry, then a trailer dictionary
    naming the document's root) or a cross-reference stream (an object whose dictionary is ``/Type /XRef`` and
    names the root). Any bytes between a header and a ``startxref`` are no PDF."""
    if not re.match(rb"%PDF-[12]\.\d", data):
        return "no PDF header (%PDF-1.x or %PDF-2.x)"
    tail_at = max(0, len(data) - PDF_TAIL_BYTES)
    tail = data[tail_at:]
    if b"%%EOF" not in tail:
        return "a PDF must end with %%EOF"
    found = list(_STARTXREF.finditer(tail))
    if not found:
        return "no startxref before the PDF's %%EOF"
    offset, startxref_at = int(found[-1].group(1)), tail_at + found[-1].start()
    if offset >= startxref_at:
        return "the PDF's startxref does not point before itself"
    if _XREF_TABLE.match(data, offset):  # (white space before it allowed: a writer's stray line end)
        trailer = _TRAILER.search(data, offset, startxref_at)
        if trailer is None:
            return "the PDF's cross-reference table has no trailer"
        dictionary = data[trailer.end() : trailer.end() + PDF_DICT_BYTES]
    elif stream := _XREF_STREAM.match(data, offset):
        dictionary = data[stream.end() : stream.end() + PDF_DICT_BYTES].split(b"stream", 1)[0]
        if re.search(rb"/Type\s*/XRef\b", dictionary) is None:
            return "the object startxref points at is no cross-reference stream"
    else:
        return "startxref does not point at a cross-reference table or stream"
    if re.search(rb"/Root\s+\d+\s+\d+\s+R", dictionary) is None:
        return "the PDF's trailer names no document root (/Root)"
    return None


def _check_pdf_content(data: bytes, name: str) -> None:
    """:class:`ProofRefused` if the PDF has active content (:func:`~server.removal.pdf_content.active_content`), or
    compressed objects that cannot be checked for it."""
    try:
        found = active_content(data)
    except TooComplex as exc:
        logger.info("refused proof %r: %s", name, exc)
        raise ProofRefused(
            f"{name}: 此 PDF 结构过于复杂（流或压缩内容过多），无法检查，请另存或打印为新的 PDF，或拍照后上传"
            " / the PDF is too complex to be checked (too many streams or filters): "
            "save or print it as a new PDF, or send a photo of it"
        ).saying("refusal.proof_pdf_too_complex", name=name) from None
    except Unreadable as exc:
        logger.info("refused proof %r: %s", name, exc)
        raise ProofRefused(
            f"{name}: 此 PDF 含有无法检查的压缩内容（可能已加密或损坏），请另存或打印为新的 PDF，或拍照后上传"
            " / the PDF has compressed content that cannot be checked (encrypted or damaged): "
            "save or print it as a new PDF, or send a photo of it"
        ).saying("refusal.proof_pdf_unreadable", name=name) from None
    if found is not None:
        zh, en = ACTIVE_WORDS[found]
        raise ProofRefused(
            f"{name}: 此 PDF 含有{zh}，为安全起见不予接收，请打印或另存为不含脚本和附件的 PDF 后上传"
            f" / the PDF contains {en}, which is not accepted for safety: "
            "print or save it as a PDF without scripts or attachments and send that"
        ).saying("refusal.proof_active_pdf", name=name, what=Said(f"pdf_active.{found}"))


def _check_picture(data: bytes, kind: str, name: str) -> None:
    """:class:`ProofRefused` unless ``data`` decodes as a ``kind`` (JPEG or PNG) picture of at most
    :data:`MAX_PIXELS` (refused from its header when larger)."""
    try:
        with Image.open(io.BytesIO(data), formats=[kind]) as picture:
            width, height = picture.size
            too_large = width * height > MAX_PIXELS
            if not too_large:
                with decoding_slots:
                    picture.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # the decoder's words are for the log: they name its internals (an object's address), not the file's fault
        logger.info("refused proof %r: the %s picture does not decode: %r", name, kind, exc)
        raise ProofRefused(
            f"{name}: 图片无法打开（可能已损坏），请重新拍摄或导出后上传 / the {kind} picture cannot be opened "
            "(it may be damaged): take or export it again and send it"
        ).saying("refusal.proof_broken_picture", name=name) from exc
    if too_large:
        raise ProofRefused(f"{name}: a {width}x{height} picture is larger than {MAX_PIXELS} pixels").saying(
            "refusal.proof_too_many_pixels", name=name, width=width, height=height, megapixels=MAX_PIXELS // 1_000_000
        )
    try:
        with decoding_slots:
            without_metadata(data, JPEG if kind == "JPEG" else PNG)  # what is accepted, the parties can be served
    except Uncleanable as exc:
        logger.info("refused proof %r: the %s picture cannot be copied without its metadata: %r", name, kind, exc)
        raise ProofRefused(
            f"{name}: 图片无法打开（可能已损坏），请重新拍摄或导出后上传 / the {kind} picture cannot be opened "
            "(it may be damaged): take or export it again and send it"
        ).saying("refusal.proof_broken_picture", name=name) from None


class ProofStore(ContentStore):
    """Proof files: ``<sha256>.pdf|.jpg|.png`` in ``backend`` (a :class:`~pathlib.Path`: ``proof_dir``)."""

    def __init__(self, backend: ObjectBackend | Path, *, on_mismatch: Callable[[str], None] | None = None) -> None:
        super().__init__(backend, kind="removal proof", on_mismatch=on_mismatch)
        #: The cases' filings refused for their files lately (in this process): see :mod:`server.removal.refusals`.
        self.refused = RefusedProofs()

    def put_proof(self, proof: CheckedProof) -> bool:
        """Store the proof: ``True`` if this call wrote it, ``False`` if it was there already."""
        return self.put(proof.sha256, proof.data, EXTENSIONS[proof.media_type][0])

    def remove_proof(self, sha256: str, media_type: str) -> None:
        self.remove(sha256, EXTENSIONS[media_type][0])

    def open_proof(self, sha256: str, media_type: str) -> Blob | None:
        return self.open(sha256, EXTENSIONS[media_type][0])

    def read_proof(self, sha256: str, media_type: str) -> bytes | None:
        """The proof's bytes, checked against their SHA-256 (:meth:`ContentStore.read`); ``None`` if missing."""
        return self.read(sha256, EXTENSIONS[media_type][0])
