"""The one parser of signed notes and checkpoints (``seal_verify.notes``) against c2sp.org/signed-note and
c2sp.org/tlog-checkpoint, clause by clause, and the server's test oracle (``server.evidence.checkpoints
.open_checkpoint``) being that parser: each case is one clause, with a note that breaks it and, where it matters,
the honest note next to it. The cases marked "was" were decided otherwise before (a finding of the evidence review)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from nacl.signing import SigningKey

from seal_verify import notes
from seal_verify.errors import NoteError
from server.evidence.checkpoints import Checkpoint as ServerCheckpoint
from server.evidence.checkpoints import LogKey, open_checkpoint, sign_checkpoint, verifier_key
from server.evidence.errors import ProofError

NAME = "court.example/seal-log"
KEY = SigningKey(hashlib.sha256(b"the log key of these tests").digest())
OTHER = SigningKey(hashlib.sha256(b"a witness").digest())
ROOT = base64.b64encode(hashlib.sha256(b"root").digest()).decode()
VERIFIER = verifier_key(NAME, KEY.verify_key)
BODY = f"{NAME}\n5\n{ROOT}\n"
KID = notes.key_id(NAME, bytes(KEY.verify_key))


def stamp(
    body: str, name: str = NAME, key: SigningKey = KEY, *, signature: bytes | None = None, kid: bytes | None = None
) -> str:
    """The signature line of ``body`` by ``key`` under ``name`` (or carrying ``signature``, or key id ``kid``)."""
    raw = key.sign(body.encode()).signature if signature is None else signature
    kid = notes.key_id(name, bytes(key.verify_key)) if kid is None else kid
    return f"\u2014 {name} {base64.b64encode(kid + raw).decode()}\n"


def signed(body: str, before: str = "", after: str = "") -> bytes:
    return f"{body}\n{before}{stamp(body)}{after}".encode()


def checkpoint_body(size: str = "5", root: str = ROOT, origin: str = NAME, extensions: str = "") -> str:
    return f"{origin}\n{size}\n{root}\n{extensions}"


NON_CANONICAL_ROOT = ROOT[:-2] + chr(ord(ROOT[-2]) + 1) + "="  # pad bits not zero: the same 32 bytes
assert base64.b64decode(NON_CANONICAL_ROOT) == base64.b64decode(ROOT) and NON_CANONICAL_ROOT != ROOT

#: (case, note, reason): notes that break one clause, each refused with ``reason`` in the error.
REFUSED: list[tuple[str, bytes, str]] = [
    # signed-note: "MUST be valid UTF-8 and MUST NOT contain any ASCII control characters ... other than newline"
    ("U+0001 in an extension line (was accepted)", signed(checkpoint_body(extensions="x\x01y\n")), "U+0001"),
    ("NUL in the origin (was accepted)", signed(checkpoint_body(origin="court\x00log")), "U+0000"),
    ("tab in the origin (was accepted)", signed(checkpoint_body(origin="court\tlog")), "U+0009"),
    ("ESC in another key's line (was accepted)", signed(BODY, after=stamp(BODY, "w\x1bitness", OTHER)), "U+001B"),
    ("CRLF line ends", signed(BODY).replace(b"\n", b"\r\n"), "U+000D"),
    ("not UTF-8", signed(BODY).replace(NAME.encode(), b"court\xff"), "not UTF-8"),
    # "a text ending in newline, followed by a blank line, followed by one or more signature lines"
    ("no final newline (server's was accepted)", signed(BODY)[:-1], "not a signed note"),
    ("no blank line", signed(BODY).replace(b"\n\n", b"\n"), "not a signed note"),
    ("no signature line", BODY.encode() + b"\n", "not a signed note"),
    ("a blank line after the signatures", signed(BODY) + b"\n", "not a signed note"),
    # "em dash (U+2014), space (U+0020), key name, space, base64-encoded signature, newline"
    ("garbage after the signature (server's was accepted)", signed(BODY, after="garbage\n"), "no signature line"),
    ("a hyphen for the em dash", signed(BODY).replace("\u2014".encode(), b"-"), "no signature line"),
    ("no space after the dash", signed(BODY).replace("\u2014 ".encode(), "\u2014".encode()), "no signature line"),
    ("two spaces before the signature", signed(BODY).replace(f"{NAME} ".encode(), f"{NAME}  ".encode()), "no sign"),
    ("a signature that is no base64", signed(BODY, after=f"\u2014 {NAME} !!!!\n"), "no signature line"),
    ("a signature of fewer than 5 bytes", signed(BODY, after=f"\u2014 {NAME} AAAAAA==\n"), "no signature line"),
    # "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or plus (U+002B) characters"
    ("a key name with U+00A0 (was ignored)", signed(BODY, after=stamp(BODY, "w\u00a0x", OTHER)), "no signature line"),
    ("a key name with U+3000 (was ignored)", signed(BODY, after=stamp(BODY, "w\u3000x", OTHER)), "no signature line"),
    ("a key name with '+' (was ignored)", signed(BODY, after=stamp(BODY, "w+x", OTHER)), "no signature line"),
    ("an empty key name", signed(BODY, after=stamp(BODY, "", OTHER)), "no signature line"),
    # "If the key name and ID match a known key, verifiers MUST verify the signature" (and SHOULD reject the note)
    (
        "a short signature by the key before a good one (was skipped)",
        signed(BODY, stamp(BODY, signature=b"\0" * 10)),
        "does not verify",
    ),
    (
        "a long signature by the key before a good one (was skipped)",
        signed(BODY, stamp(BODY, signature=b"\0" * 65)),
        "does not verify",
    ),
    (
        "a bad signature by the key before a good one",
        signed(BODY, stamp(BODY, signature=b"\0" * 64)),
        "does not verify",
    ),
    (
        "a bad signature by the key after a good one (was accepted)",
        signed(BODY, after=stamp(BODY, signature=b"\0" * 64)),
        "does not verify",
    ),
    ("a signature of another text", signed(BODY).replace(b"\n5\n", b"\n6\n"), "does not verify"),
    # "If no signature from a known key verifies successfully, clients MUST reject the note"
    ("only another key's signature", f"{BODY}\n{stamp(BODY, NAME, OTHER)}".encode(), "no signature by"),
    (
        "the key's id under another name",
        f"{BODY}\n{stamp(BODY, 'other.example/log', kid=KID)}".encode(),
        "no signature by",
    ),
    # bounds (signed-note: verifiers SHOULD limit the signatures, MUST accept 16)
    ("101 signature lines", signed(BODY, before=stamp(BODY, "w", OTHER) * 100), "more than 100"),
    ("more than a MiB", signed(BODY, after=f"\u2014 w {'A' * (1 << 20)}\n"), "more than"),
    # tlog-checkpoint: "a sequence of at least three non-empty lines"; the origin "MUST be non-empty"
    ("an empty origin (server's was accepted)", signed(checkpoint_body(origin="")), "not a checkpoint"),
    ("two lines", signed(f"{NAME}\n5\n"), "not a checkpoint"),
    ("an empty extension line", signed(checkpoint_body(extensions="\nx\n")), "empty extension line"),
    # the tree size: "the ASCII decimal representation ... with no leading zeroes (unless the tree is empty)"
    ("a leading zero", signed(checkpoint_body("05")), "not a decimal number"),
    ("'00'", signed(checkpoint_body("00")), "not a decimal number"),
    ("an empty size", signed(checkpoint_body("")), "not a decimal number"),
    ("'²' (server's raised ValueError)", signed(checkpoint_body("\u00b2")), "not a decimal number"),
    ("Arabic-Indic '٣' (server's was accepted)", signed(checkpoint_body("\u0663")), "not a decimal number"),
    ("fullwidth '５'", signed(checkpoint_body("\uff15")), "not a decimal number"),
    ("a sign", signed(checkpoint_body("+5")), "not a decimal number"),
    ("a space", signed(checkpoint_body(" 5")), "not a decimal number"),
    ("an underscore", signed(checkpoint_body("1_0")), "not a decimal number"),
    ("2^64, no uint64 (was accepted)", signed(checkpoint_body(str(2**64))), "not a decimal number"),
    ("20 nines (was accepted)", signed(checkpoint_body("9" * 20)), "not a decimal number"),
    ("5,000 digits", signed(checkpoint_body("9" * 5000)), "not a decimal number"),
    # the root hash: "the base64 encoding of the root" (RFC 4648 §4, standard alphabet, padded; canonical here)
    ("a non-canonical base64 root (server's was accepted)", signed(checkpoint_body(root=NON_CANONICAL_ROOT)), "base64"),
    ("a root without its padding", signed(checkpoint_body(root=ROOT.rstrip("="))), "base64"),
    ("a URL-safe root", signed(checkpoint_body(root=base64.urlsafe_b64encode(b"\xfb" * 32).decode())), "base64"),
    ("a root of 31 bytes", signed(checkpoint_body(root=base64.b64encode(b"\1" * 31).decode())), "32 bytes"),
    ("a root of 33 bytes", signed(checkpoint_body(root=base64.b64encode(b"\1" * 33).decode())), "32 bytes"),
]

#: (case, note, the checkpoint's (origin, size, extension-free root) or None for a note that is no checkpoint).
ACCEPTED: list[tuple[str, bytes, tuple[str, int] | None]] = [
    (
        "the server's own form",
        sign_checkpoint(ServerCheckpoint(NAME, 5, base64.b64decode(ROOT)), KEY).encode(),
        (NAME, 5),
    ),
    ("size 0", signed(checkpoint_body("0")), (NAME, 0)),
    ("size 2^64 - 1", signed(checkpoint_body(str(2**64 - 1))), (NAME, 2**64 - 1)),
    ("extension lines", signed(checkpoint_body(extensions="one\ntwo three\n")), (NAME, 5)),
    ("an origin that is not the key name, with a space", signed(checkpoint_body(origin="a log")), ("a log", 5)),
    ("U+007F, no ASCII control character below U+0020", signed(checkpoint_body(origin="a\x7flog")), ("a\x7flog", 5)),
    # "Verifiers MUST ignore signatures from unknown keys, even if they share a name or ID (but not both)"
    ("another key's signature first", signed(BODY, before=stamp(BODY, "witness.example", OTHER)), (NAME, 5)),
    ("another key under the same name", signed(BODY, before=stamp(BODY, NAME, OTHER)), (NAME, 5)),
    ("100 signature lines", signed(BODY, before=stamp(BODY, "w", OTHER) * 99), (NAME, 5)),
    ("a good signature twice", signed(BODY, after=stamp(BODY)), (NAME, 5)),
    # "The note text MAY contain empty lines; the text is separated from the signatures by the last empty line"
    ("a text with empty lines (was refused)", signed("one\n\n\nfour\n"), None),
    ("a text of one empty line", signed("\n"), None),
]


def server_open(note: bytes) -> tuple[str, int, bytes]:
    try:
        checkpoint = open_checkpoint(note, VERIFIER)
    except ProofError as exc:
        raise NoteError(str(exc)) from None
    return checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash


def verifier_open(note: bytes) -> tuple[str, int, bytes]:
    checkpoint = notes.open_checkpoint(note, notes.parse_key(VERIFIER))
    return checkpoint.origin, checkpoint.size, checkpoint.root


PARSERS: dict[str, Callable[[bytes], tuple[str, int, bytes]]] = {"seal_verify": verifier_open, "server": server_open}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(("case", "note", "reason"), REFUSED, ids=[c[0] for c in REFUSED])
def test_a_note_that_breaks_a_clause_is_refused(parser: str, case: str, note: bytes, reason: str) -> None:
    with pytest.raises(NoteError) as refused:
        PARSERS[parser](note)
    assert reason in str(refused.value), case


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(("case", "note", "expected"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_a_note_that_keeps_every_clause_opens(
    parser: str, case: str, note: bytes, expected: tuple[str, int] | None
) -> None:
    text = notes.open_note(note, notes.parse_key(VERIFIER))
    assert note.startswith(text.encode() + b"\n"), case  # the signed text: up to the last blank line
    if expected is None:
        with pytest.raises(NoteError, match="not a checkpoint|decimal"):
            PARSERS[parser](note)
        return
    origin, size, root = PARSERS[parser](note)
    assert (origin, size, root) == (*expected, base64.b64decode(ROOT))


def test_the_server_signs_what_the_parser_reads_back() -> None:
    checkpoint = ServerCheckpoint(NAME, 12345, hashlib.sha256(b"x").digest())
    assert open_checkpoint(sign_checkpoint(checkpoint, KEY), VERIFIER) == checkpoint
    assert open_checkpoint(sign_checkpoint(checkpoint, KEY).encode(), VERIFIER) == checkpoint


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("court.example/seal-log", None),
        ("法院/日志", None),
        ("a\x7fb", None),
        ("", "empty"),
        ("a b", "space U+0020"),
        ("a\u00a0b", "space U+00A0"),
        ("a\u2028b", "space U+2028"),
        ("a\u3000b", "space U+3000"),
        ("a\u0085b", "space U+0085"),
        ("a+b", "'+'"),
        ("a\x01b", "control character U+0001"),
        ("a\x1cb", "control character U+001C"),
        ("a\nb", "space U+000A"),
    ],
)
def test_key_names_follow_the_signed_note_rule(name: str, problem: str | None) -> None:
    found = notes.key_name_problem(name)
    if problem is None:
        assert found is None
    else:
        assert problem in (found or "")


@pytest.mark.parametrize("name", ["court\x01log", "court log", "court+log", "court\u00a0log", ""])
def test_a_verifier_key_and_the_log_key_need_a_key_name(name: str) -> None:
    public = bytes(KEY.verify_key)
    encoded = base64.b64encode(notes.ED25519 + public).decode()
    text = f"{name}+{notes.key_id(name, public).hex()}+{encoded}"
    with pytest.raises(NoteError, match="not a verifier key"):
        notes.parse_key(text)
    with pytest.raises(ValueError, match="cannot name its key"):
        LogKey(None, name)
