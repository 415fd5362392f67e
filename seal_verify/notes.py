"""C2SP signed notes, verifier keys and checkpoints, parsed and checked on their own (``docs/evidence.md``).

A verifier key is ``<name>+<key id hex>+<base64(0x01 || Ed25519 public key)>``; a signed note is its body (lines
ending in a newline), a blank line, then lines ``— <name> <base64(key id || signature)>``; a checkpoint's body is
the origin, the decimal tree size and the base64 root hash.
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
#: the manifest's note is a few hundred bytes: one of more than a MiB is no note of a log.
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1024 * 1024


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
    if len(parts) != 3 or not parts[0] or any(c.isspace() for c in parts[0]):
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
    """The body of the signed ``note`` (with its final newline) if ``key`` signed it; else :class:`NoteError`."""
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError(f"the note has more than {MAX_NOTE_BYTES} bytes")
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError("the note is not UTF-8") from None
    body, sep, signatures = text.partition("\n\n")
    if not sep or not body or not signatures.endswith("\n"):
        raise NoteError("not a signed note: a body, a blank line and signature lines expected")
    if signatures.count("\n") > MAX_SIGNATURES:
        raise NoteError(f"the note has more than {MAX_SIGNATURES} signature lines")
    body += "\n"
    stamps = [_signature_line(line) for line in signatures[:-1].split("\n")]
    for name, stamp in stamps:
        if name != key.name or stamp[:4] != key.key_id or len(stamp) != 68:
            continue
        try:
            key.key.verify(body.encode("utf-8"), stamp[4:])
        except (BadSignatureError, ValueError):
            raise NoteError(f"the signature by {cut(key.name)} does not verify") from None
        return body
    raise NoteError(f"the note has no signature by {cut(key.name)} (key id {key.key_id.hex()})")


def _signature_line(line: str) -> tuple[str, bytes]:
    """The key name and the key id + signature of a line ``— <name> <base64>``: every line after the blank line must
    be one, of any key (as golang.org/x/mod/sumdb/note requires); else :class:`NoteError`."""
    parts = line.split(" ")
    try:
        if len(parts) != 3 or parts[0] != DASH or not parts[1] or len(stamp := b64decode(parts[2])) < 5:
            raise ValueError
    except ValueError:
        raise NoteError(f"a line after the note's body is no signature line: {line[:80]!r}") from None
    return parts[1], stamp


def parse_checkpoint(body: str) -> Checkpoint:
    lines = body.split("\n", 3)  # origin, size, root hash, then extension lines (if any) and the final newline
    if len(lines) < 4 or not body.endswith("\n") or not lines[0]:
        raise NoteError("not a checkpoint: origin, decimal size and base64 root hash expected")
    size_text = lines[1]
    if not (size_text.isascii() and size_text.isdigit() and len(size_text) <= 20) or size_text != str(int(size_text)):
        raise NoteError("the checkpoint's size is not a decimal number (of at most 20 digits, a uint64)")
    try:
        root = b64decode(lines[2])
    except ValueError:
        raise NoteError("the checkpoint's root hash is not base64") from None
    if len(root) != 32:
        raise NoteError("the checkpoint's root hash is not 32 bytes")
    return Checkpoint(lines[0], int(size_text), root)


def open_checkpoint(note: bytes, key: NoteKey) -> Checkpoint:
    return parse_checkpoint(open_note(note, key))
