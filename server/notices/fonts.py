"""The CJK font embedded in the notice PDF: found where the system keeps it, or named by ``[notices] font_file``.

reportlab embeds a subset of a font with TrueType outlines. OpenType fonts with CFF outlines (Noto Sans CJK, Source
Han) it cannot embed, and its built-in ``STSong-Light`` is not embedded at all (the reader's own fonts would draw
it), so the default is WenQuanYi Zen Hei, which ``scripts/setup.sh`` installs (Debian ``fonts-wqy-zenhei``).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path

from server.notices.errors import NoticesUnavailable

#: Where distributions keep CJK fonts with TrueType outlines, first found first used: (path, index in a .ttc).
KNOWN_FONTS: tuple[tuple[Path, int], ...] = (
    (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), 0),  # Debian, Ubuntu: fonts-wqy-zenhei
    (Path("/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc"), 0),  # Fedora: wqy-zenhei-fonts
    (Path("/usr/share/fonts/wenquanyi/wqy-zenhei/wqy-zenhei.ttc"), 0),  # Arch: wqy-zenhei
    (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), 0),  # Debian, Ubuntu: fonts-wqy-microhei
    (Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"), 0),  # Debian: fonts-droid-fallback
)
HOW_TO = "install Debian's fonts-wqy-zenhei (scripts/setup.sh does) or set [notices] font_file"

_registered: dict[tuple[Path, int], str] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class FontChoice:
    path: Path
    index: int


def find_font(font_file: Path | None, font_index: int = 0) -> FontChoice:
    """The configured font, or the first known one that exists; :class:`NoticesUnavailable` if there is none."""
    if font_file is not None:
        if not font_file.is_file():
            raise NoticesUnavailable(f"[notices] font_file {font_file} does not exist")
        return FontChoice(font_file, font_index)
    for path, index in KNOWN_FONTS:
        if path.is_file():
            return FontChoice(path, index)
    raise NoticesUnavailable(f"no CJK font for the notice: {HOW_TO}")


def register_font(choice: FontChoice) -> str:
    """The reportlab name of ``choice``, registered once per process; :class:`NoticesUnavailable` if reportlab cannot
    embed it (CFF outlines, not a font, unreadable)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    key = (choice.path.resolve(), choice.index)
    with _lock:
        if key in _registered:
            return _registered[key]
        name = "NoticeCJK-" + hashlib.sha256(f"{key[0]}#{key[1]}".encode()).hexdigest()[:8]
        try:
            font = TTFont(name, str(key[0]), subfontIndex=choice.index)
        except (TTFError, OSError) as exc:
            raise NoticesUnavailable(
                f"{choice.path} (index {choice.index}) cannot be embedded in a PDF: {exc}; a CJK font with TrueType "
                "outlines is needed (WenQuanYi Zen Hei)"
            ) from None
        pdfmetrics.registerFont(font)
        _registered[key] = name
        return name
