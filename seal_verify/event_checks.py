"""The checks of the seals' own word: each event's signature with its seal's enrolled key, its case, the seals'
hash chains and the meta lines (``docs/evidence.md``, ``docs/protocol.md``); the snapshots are
``seal_verify.snapshot_checks``'s."""

from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, repeat
from typing import Any

from nacl.signing import VerifyKey

from seal_protocol import Envelope, InvalidEnvelope, SignatureError, decode_envelope, parse_ts
from seal_protocol.envelope import is_simulated, reopen_envelope
from seal_protocol.signing import verify_bytes, verify_key_from_b64
from seal_verify.bundle import Bundle, Lines, ObjectLines, load_object
from seal_verify.verdict import Check, cut, shown

#: Keys a seal's record may list (the one enrolled now and its enrolment's): an event that no key verifies is tried
#: with each, so 5,000 keys and 2,000 such events were ten million Ed25519 checks. A seal is enrolled a few times.
MAX_SEAL_KEYS = 64
#: Events that no key of their seal verifies, tried with every key; the rest with the seal's current key only.
MAX_UNVERIFIED = 1000
_PARENTHESES = str.maketrans({"（": "(", "）": ")", "〔": "(", "〕": ")"})


def normalise_case_no(text: str) -> str:
    """Full-width and 〔〕 parentheses as ASCII ones, surrounding white space removed."""
    return text.strip().translate(_PARENTHESES)


@dataclass
class EventLine:
    number: int  # 1-based line number in events.jsonl
    raw: bytes
    envelope: Envelope | None
    problem: str | None


class Events:
    """The lines of events.jsonl, each decoded (protocol.md's rules) as it is iterated: a check's pass over a case
    of a million events holds one line and its envelope at a time, not all of them. The first whole pass decodes
    each line with every rule and remembers which lines are no envelope, and why; later passes build the envelopes of
    the others again without the rules that held (:func:`~seal_protocol.envelope.reopen_envelope`: the checks pass
    over the events some fifteen times). With more than :data:`MAX_REMEMBERED` bad lines nothing is remembered."""

    MAX_REMEMBERED = 10_000

    def __init__(self, lines: Lines | None = None) -> None:
        self._lines = lines if lines is not None else Lines(b"", "events.jsonl")
        self._problems: dict[int, str] | None = None  # after a whole pass: each bad line's number -> why

    def __len__(self) -> int:
        return len(self._lines)

    def __iter__(self) -> Iterator[EventLine]:
        known = self._problems
        problems: dict[int, str] | None = {} if known is None else None
        for number, raw in enumerate(self._lines, start=1):
            if known is not None:
                problem = known.get(number)
                yield EventLine(number, raw, None if problem else reopen_envelope(raw), problem)
                continue
            try:
                envelope = decode_envelope(raw)
            except InvalidEnvelope as exc:
                problem = f"line {number} is not a canonical event envelope: {exc}"
                if problems is not None:
                    problems[number] = problem
                    if len(problems) > self.MAX_REMEMBERED:
                        problems = None
                yield EventLine(number, raw, None, problem)
            else:
                yield EventLine(number, raw, envelope, None)
        if problems is not None:  # (a pass that stopped early remembers nothing)
            self._problems = problems

    def __contains__(self, item: object) -> bool:
        return any(line == item for line in self)


def read_events(bundle: Bundle) -> tuple[Events, str | None]:
    """The lines of events.jsonl (:class:`Events`), or why the file cannot be split."""
    data = bundle.jsonl("events.jsonl")
    if data is None:
        return Events(), "events.jsonl is missing"
    try:
        return Events(Lines(data, "events.jsonl")), None
    except ValueError as exc:
        return Events(), str(exc)


def read_seals(bundle: Bundle, check: Check) -> dict[str, dict[str, Any]]:
    seals = {}
    for path, data in sorted(bundle.under("seals/").items()):
        device_id = path.removeprefix("seals/").removesuffix(".json")
        try:
            record = load_object(data, path)
        except ValueError as exc:
            check.fail(str(exc))
            continue
        if record.get("device_id") != device_id:
            check.fail(f"{path} holds the record of {shown(record.get('device_id'))}")
            continue
        seals[device_id] = record
    return seals


def enrolled_keys(record: dict[str, Any]) -> list[str]:
    """The keys of the seal's ``enrolment`` history, distinct, newest (the last entry) first."""
    enrolment = record.get("enrolment")
    entries = reversed(enrolment) if isinstance(enrolment, list) else ()
    texts = (e.get("public_key") for e in entries if isinstance(e, dict))
    return list(dict.fromkeys(t for t in texts if isinstance(t, str)))


def _key_texts(record: dict[str, Any]) -> list[str]:
    """The seal's keys as its record gives them: those of its ``enrolment`` history, newest first; its
    ``public_key`` only where it has none (a seal registered before the court kept that record). Where it has one,
    ``public_key`` is no key of its own: ``seal_keys`` fails it unless it is the newest registration's."""
    texts = enrolled_keys(record)
    key = record.get("public_key")
    return texts or ([key] if isinstance(key, str) else [])


def _seal_keys(check: Check, device_id: str, record: dict[str, Any]) -> list[tuple[str, VerifyKey]]:
    """The seal's keys (:func:`_key_texts`), each as its record writes it and as a key."""
    texts = _key_texts(record)
    if len(texts) > MAX_SEAL_KEYS:
        check.fail(f"seals/{device_id}.json lists {len(texts)} keys, more than {MAX_SEAL_KEYS} keys a seal has")
        return []
    keys = []
    for text in texts:
        try:
            keys.append((text, verify_key_from_b64(text)))
        except SignatureError:
            continue
    return keys


def check_signatures(
    check: Check, events: Collection[EventLine], seals: dict[str, dict[str, Any]], signed_with: dict[int, str]
) -> int:
    """Each event's signature verifies with a key of its seal; ``signed_with`` gets the key (its text) that verified
    each, by line number (whether it was the seal's key then is ``seal_keys``'). After MAX_UNVERIFIED events that no
    key verifies, the rest are tried with the seal's current key only: each was tried with every key (up to
    MAX_SEAL_KEYS). Returns how many verified events a simulated seal signed (``"simulated": true``,
    docs/protocol.md), each noted as such: they did not happen on a site."""
    keys = {device_id: _seal_keys(check, device_id, record) for device_id, record in seals.items()}
    verified = unverified = 0
    simulated: list[EventLine] = []
    for line in events:
        if line.envelope is None:
            check.fail(line.problem or f"line {line.number} is no event")
            continue
        env = line.envelope
        if env.device_id not in keys:
            check.fail(f"line {line.number} ({env.device_id}#{env.seq}): no seals/{env.device_id}.json")
            continue
        if not keys[env.device_id]:
            check.fail(f"seals/{env.device_id}.json has no valid public key")
            continue
        tried = keys[env.device_id] if unverified < MAX_UNVERIFIED else keys[env.device_id][:1]
        signed = env.signing_bytes()
        text = next((text for text, key in tried if _verifies(key, signed, env.sig)), None)
        if text is None:
            unverified += 1
            check.fail(f"line {line.number} ({env.device_id}#{env.seq}): the signature does not verify")
            continue
        signed_with[line.number] = text
        verified += 1
        if is_simulated(env.payload):
            simulated.append(line)
    for line in simulated:
        check.note(simulated_note(line))
    if unverified > MAX_UNVERIFIED:
        check.note(
            f"after {MAX_UNVERIFIED} events that no key verifies, the rest were checked with the seal's current key "
            "only / 其余事件仅用封条当前公钥核验"
        )
    check.summary = f"{verified} of {len(events)} event signatures verify / {verified}/{len(events)} 个事件签名有效"
    if simulated:
        check.summary += (
            f"; {len(simulated)} of them signed by a simulated seal (seal-agent simulate: not on site) / "
            f"其中 {len(simulated)} 个为模拟事件（模拟封条所签，并非现场实际发生）"
        )
    return len(simulated)


def simulated_note(line: EventLine) -> str:
    env = line.envelope
    assert env is not None
    return (
        f"模拟事件 / simulated: line {line.number} ({cut(env.device_id)}#{env.seq}, {env.type.value}, {env.ts}) — "
        "模拟封条所签（seal-agent simulate，模拟引脚），并非现场实际发生 / signed by a simulated seal (seal-agent "
        "simulate, mock pins): it did not happen on site"
    )


def _verifies(key: VerifyKey, signed: bytes, sig: str | None) -> bool:
    try:
        verify_bytes(key, signed, sig)
    except SignatureError:
        return False
    return True


def check_case(check: Check, events: Collection[EventLine], case_no: Any) -> None:
    if not isinstance(case_no, str):
        check.fail(f"case.json has no case_no string ({shown(case_no)})")
        return
    want = normalise_case_no(case_no)
    for line in events:
        if line.envelope is not None and normalise_case_no(line.envelope.case_no) != want:
            env = line.envelope
            check.fail(f"line {line.number} ({env.device_id}#{env.seq}) is of case {env.case_no}, not {cut(case_no)}")
    check.summary = f"case {cut(case_no)} / 案号 {cut(case_no)}"


@dataclass(frozen=True, slots=True)
class _Link:
    """What the chain check keeps of an event line: its number, the SHA-256 of its bytes (hex), the hash it names
    and its ``ts`` — not its bytes and envelope."""

    number: int
    digest: str
    prev_hash: str | None
    occurred_at: datetime


def check_chains(
    check: Check, events: Collection[EventLine], seals: dict[str, dict[str, Any]], received: dict[int, datetime]
) -> None:
    """Each seal's hash chain; ``received``: when the server received each event line (:func:`received_times`),
    so that a gap is excused by an unbinding between the two events by either clock."""
    by_device: dict[str, dict[int, _Link]] = defaultdict(dict)
    for line in events:
        env = line.envelope
        if env is None:
            continue
        links = by_device[env.device_id]
        if env.seq in links:
            check.fail(f"{env.device_id}: seq {env.seq} twice (lines {links[env.seq].number}, {line.number})")
            continue
        digest = hashlib.sha256(line.raw).hexdigest()
        links[env.seq] = _Link(line.number, digest, env.prev_hash, env.occurred_at)
    for device_id, links in sorted(by_device.items()):
        _check_chain(check, device_id, links, _unbindings(seals.get(device_id, {})), received)
    check.summary = f"{len(by_device)} seal chain(s) / {len(by_device)} 条封条哈希链"


def _check_chain(
    check: Check,
    device_id: str,
    links: dict[int, _Link],
    unbindings: list[datetime],
    received: dict[int, datetime],
) -> None:
    seqs = sorted(links)
    if seqs[0] == 1 and links[1].prev_hash is not None:
        check.fail(f"{device_id}: seq 1 names a previous event")
    elif seqs[0] > 1:
        check.note(f"{device_id}: the chain starts at seq {seqs[0]} (earlier events are outside this case or range)")
    for before, after in zip(seqs, seqs[1:], strict=False):
        if after != before + 1:
            gap = f"{device_id}: seqs {before + 1}–{after - 1} missing" if after > before + 2 else None
            gap = gap or f"{device_id}: seq {before + 1} missing"
            if _unbound_between(links[before], links[after], unbindings, received):
                check.note(gap + " (the seal was bound to another case meanwhile)")
            else:
                check.fail(gap)
            continue
        if links[after].prev_hash != links[before].digest:
            check.fail(f"{device_id}: seq {after} does not name the hash of seq {before}")
    check.note(f"{device_id}: seq {seqs[0]}–{seqs[-1]}, {len(seqs)} events")


def _unbindings(seal: dict[str, Any]) -> list[datetime]:
    """When the seal was unbound from this case, by its record's bindings, sorted (read once per seal: each gap
    read every binding, so gaps times bindings made hours of work)."""
    bindings = seal.get("bindings")
    if not isinstance(bindings, list):
        return []
    moments = (moment(b.get("unbound_at")) for b in bindings if isinstance(b, dict))
    return sorted(m for m in moments if m is not None)


def _unbound_between(before: _Link, after: _Link, unbindings: list[datetime], received: dict[int, datetime]) -> bool:
    """Whether the seal was unbound from this case between the two events. ``unbound_at`` is of the server's clock,
    an event's ``ts`` of the seal's, which may be off by any amount (``clock_stepped``): the window runs from the
    earlier of the first event's ``ts`` and ``received_at`` (the server's clock) to the later of the second's, so
    either clock being right places the unbinding in it."""
    start, end = before.occurred_at, after.occurred_at
    start = min(start, received.get(before.number, start))
    end = max(end, received.get(after.number, end))
    at = bisect.bisect_left(unbindings, start)
    return at < len(unbindings) and unbindings[at] <= end


def received_times(bundle: Bundle, events: Collection[EventLine]) -> dict[int, datetime]:
    """When the server received each event line, by line number: its ``events-meta.jsonl`` line's ``received_at``,
    of those meta lines that are about their event line and name a time (``event_meta`` fails the others)."""
    try:
        metas = ObjectLines(bundle.jsonl("events-meta.jsonl"), "events-meta.jsonl")
    except ValueError:
        return {}
    found: dict[int, datetime] = {}
    for line, meta in zip(events, metas, strict=False):
        env, at = line.envelope, moment(meta.get("received_at"))
        if env is not None and at is not None and _about(meta, env):
            found[line.number] = at
    return found


def _about(meta: dict[str, Any], env: Envelope) -> bool:
    """Whether the meta line names the event ``env``."""
    return (meta.get("device_id"), _strict(meta.get("seq")), meta.get("event_id")) == (
        env.device_id,
        env.seq,
        str(env.event_id),
    )


def _strict(value: Any) -> Any:
    """``value``, but a JSON ``true``/``false`` not as the integers 1/0 Python takes them for."""
    return str(value) if isinstance(value, bool) else value


def moment(value: Any) -> datetime | None:
    try:
        return parse_ts(value)
    except ValueError:
        return None


def check_meta(check: Check, bundle: Bundle, events: Collection[EventLine]) -> list[int | None]:
    """Check events-meta.jsonl; the leaf index of each event line (``None`` where unknown)."""
    try:
        metas = ObjectLines(bundle.jsonl("events-meta.jsonl"), "events-meta.jsonl")
    except ValueError as exc:
        check.fail(str(exc))
        return [None] * len(events)
    if bundle.jsonl("events-meta.jsonl") is None:
        check.fail("events-meta.jsonl is missing")
    if len(metas) != len(events):
        check.fail(f"events-meta.jsonl has {len(metas)} lines for {len(events)} events")
    indices: list[int | None] = []
    last = -1
    for line, meta in zip(events, chain(metas, repeat({}, len(events) - len(metas))), strict=False):
        index = meta.get("leaf_index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            indices.append(None)
            continue
        indices.append(index)
        if moment(meta.get("received_at")) is None:
            check.fail(f"events-meta.jsonl line {line.number}: received_at {shown(meta.get('received_at'))} is no time")
        env = line.envelope
        if env is not None and not _about(meta, env):
            check.fail(f"events-meta.jsonl line {line.number} is not about event line {line.number}")
        if index <= last:
            check.fail(f"event line {line.number}: leaf index {index} is not after {last} (reordered or twice)")
        last = max(last, index)
    return indices
