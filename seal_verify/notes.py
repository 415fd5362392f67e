"""C2SP signed notes, verifier keys and checkpoints, parsed and checked on their own (``docs/evidence.md``): the one
parser of them in this repository (the server's tests read its checkpoints with it too), written clause by clause from
c2sp.org/signed-note and c2sp.org/tlog-checkpoint, and refusing what ``golang.org/x/mod/sumdb/note`` refuses.

A verifier key is ``<name>+<key id hex>+<base64(0x01 || Ed25519 public key)>``; a signed note is its text (lines
ending in a newline), a blank line, then lines ``— <name> <base64(key id || signature)>``; a checkpoint's text is
the origin, the decimal tree size, the base64 root hash and optional extension lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from seal_verify.errors import NoteError
from seal_verify.verdict import cut

ED25519 = b"\x01"
DASH = "\u2014"
#: golang.org/x/mod/sumdb/note refuses a note of more than 100 signatures ("avoid spending forever parsing a note
#: with many signatures"); each line was a tuple and a decoded stamp here, so 15 million took 4.5 GB. A checkpoint or
#: the manifest's note is a few hundred bytes: one of more than a MiB is no note of a log. (signed-note: verifiers
#: SHOULD limit the signatures and MUST accept at least 16.)
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1024 * 1024
#: The "Unicode spaces" a key name may not contain: the characters of the White_Space property (Unicode's
#: PropList.txt, what Go's ``unicode.IsSpace`` tests; ``str.isspace`` differs, counting U+001C-U+001F too).
WHITE_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))
)
#: A uint64: the largest tree size a checkpoint may state (Go's ``strconv.ParseUint(s, 10, 64)``).
MAX_SIZE = 2**64 - 1


def control_character(text: str) -> str | None:
    """The first ASCII control character (below U+0020) of ``text`` other than the newline, or ``None``: signed-note,
    "Signed notes MUST be valid UTF-8 and MUST NOT contain any ASCII control characters (those below U+0020) other
    than newline"."""
    return next((c for c in text if c < " " and c != "\n"), None)


def key_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a signed-note key name ("Key names MUST be non-empty and MUST NOT contain any Unicode
    spaces or plus (U+002B) characters"; and a note holds no control character), or ``None`` if it can. The log's
    key name is its origin, so this is also what the server's ``[evidence] log_origin`` must pass."""
    if not name:
        return "it is empty"
    if (c := control_character(name)) is not None:
        return f"it contains the ASCII control character U+{ord(c):04X}"
    if (space := next((c for c in name if c in WHITE_SPACE), None)) is not None:
        return f"it contains the space U+{ord(space):04X}"
    if "+" in name:
        return "it contains '+'"
    return None


@dataclass(frozen=True)
class NoteKey:
    name: str
    key_id: bytes
    key: VerifyKey
    text: str

    def same_key(self, other: NoteKey) -> bool:
        """The same name and Ed25519 key, however the key id's hex was spelt (case, white space)."""
        return (self.name, self.key_id, bytes(self.key)) == (other.name, other.key_id, bytes(other.key))


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + ED25519 + public_key).digest()[:4]


def b64decode(text: str) -> bytes:
    """Strict standard base64, canonical (RFC 4648 §3.5: pad bits zero, so each value has one spelling: the last
    character of a signature could otherwise be changed among four that decode alike); :class:`ValueError`
    otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64 (its pad bits are not zero)")
    return raw


def parse_key(text: str) -> NoteKey:
    """The verifier key ``text`` (one line, surrounding white space ignored)."""
    text = text.strip()
    parts = text.split("+", 2)
    if len(parts) != 3 or key_name_problem(parts[0]) is not None:
        raise NoteError("not a verifier key (name+keyid+base64)")
    name, hex_id, b64 = parts
    try:
        kid, raw = bytes.fromhex(hex_id), b64decode(b64)
    except ValueError:
        raise NoteError("not a verifier key (name+keyid+base64)") from None
    if len(kid) != 4 or raw[:1] != ED25519 or len(raw) != 33 or key_id(name, raw[1:]) != kid:
        raise NoteError("the verifier key is not an Ed25519 key whose id matches its name")
    return NoteKey(name, kid, VerifyKey(raw[1:]), text)


def open_note(note: bytes, key: NoteKey) -> str:
    """The text of the signed ``note`` (with its final newline) if ``key`` signed it; else :class:`NoteError`.

    c2sp.org/signed-note, clause by clause: valid UTF-8 with no ASCII control character but the newline; the text
    (ending in a newline) is separated from the signatures by the *last* blank line; every line after it is
    ``— <key name> <base64(4-byte key id || signature)>\n`` (any key's: a line that is none makes the note
    malformed); signatures of other keys are ignored, even one that shares the name or the key id (not both); every
    signature with ``key``'s name and key id is verified, and one that does not verify (of the wrong length too)
    rejects the whole note ("SHOULD"; Go stops at the first of a key, this checks each); no verified signature of
    ``key``, no note. Bounds: :data:`MAX_NOTE_BYTES`, :data:`MAX_SIGNATURES`.
    """
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError(f"the note has more than {MAX_NOTE_BYTES} bytes")
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the note is not UTF-8") from None
    if (c := control_character(text)) is not None:
        raise NoteError(f"the note contains the control character U+{ord(c):04X}; a signed note may hold none")
    body, sep, signatures = text.rpartition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise NoteError("not a signed note: a text, a blank line and signature lines expected")
    lines = signatures[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has more than {MAX_SIGNATURES} signature lines")
    body += "\n"
    verified = False
    for name, stamp in [_signature_line(line) for line in lines]:  # all of them, before any verdict
        if name != key.name or stamp[:4] != key.key_id:
            continue
        try:
            key.key.verify(body.encode("utf-8"), _ed25519_signature(stamp[4:]))
        except (BadSignatureError, ValueError):
            raise NoteError(f"the signature by {cut(key.name)} does not verify") from None
        verified = True
    if not verified:
        raise NoteError(f"the note has no signature by {cut(key.name)} (key id {key.key_id.hex()})")
    return body


def _ed25519_signature(signature: bytes) -> bytes:
    if len(signature) != 64:
        raise ValueError("an Ed25519 signature has 64 bytes")
    return signature


def _signature_line(line: str) -> tuple[str, bytes]:
    """The key name and the key id + signature of a line ``— <name> <base64>``: every line after the blank line must
    be one, of any key, with a key name (:func:`key_name_problem`) and at least a key id and a byte of signature (as
    golang.org/x/mod/sumdb/note requires); else :class:`NoteError`."""
    parts = line.split(" ")
    try:
        if len(parts) != 3 or parts[0] != DASH or key_name_problem(parts[1]) is not None:
            raise ValueError
        if len(stamp := b64decode(parts[2])) < 5:
            raise ValueError
    except ValueError:
        raise NoteError(f"a line after the note's text is no signature line: {line[:80]!r}") from None
    return parts[1], stamp


def parse_checkpoint(body: str) -> Checkpoint:
    """The checkpoint whose note text is ``body``; else :class:`NoteError`.

    c2sp.org/tlog-checkpoint: at least three lines, none empty, each ending in a newline (and, as in any note, no
    ASCII control character but the newline): the origin; the tree size in ASCII decimal with no leading zeros
    (``0`` for the empty tree), here at most a uint64; the root hash in standard base64 (canonical, padded), 32
    bytes; then optional extension lines, which must not be empty.
    """
    if not body.endswith("\n") or control_character(body) is not None:
        raise NoteError("not a checkpoint: origin, decimal size and base64 root hash lines expected")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not lines[0]:
        raise NoteError("not a checkpoint: origin, decimal size and base64 root hash lines expected")
    if not all(lines[3:]):
        raise NoteError("the checkpoint has an empty extension line")
    origin, size_text, root_text = lines[:3]
    if not _decimal(size_text):
        raise NoteError("the checkpoint's size is not a decimal number (ASCII digits, no leading zero, a uint64)")
    try:
        root = b64decode(root_text)
    except ValueError:
        raise NoteError("the checkpoint's root hash is not base64") from None
    if len(root) != 32:
        raise NoteError("the checkpoint's root hash is not 32 bytes")
    return Checkpoint(origin, int(size_text), root)


def _decimal(text: str) -> bool:
    """Whether ``text`` is a uint64 in ASCII decimal without leading zeros (``str.isdigit`` also takes "²" and
    "٣", which ``int`` reads or refuses; a length bound first, since ``int`` of 5,000 digits raises)."""
    if not 0 < len(text) <= 20 or not all("0" <= c <= "9" for c in text) or (text[0] == "0" and text != "0"):
        return False
    return int(text) <= MAX_SIZE


def open_checkpoint(note: bytes, key: NoteKey) -> Checkpoint:
    return parse_checkpoint(open_note(note, key))
