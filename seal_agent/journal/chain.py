"""Whose chain a seal's state directory holds, checked before the agent signs anything.

A seal's events form one chain: ``seq`` 1, 2, … each naming the hash of the one before, signed with the device key
the court enrolled, under the seal's ``device_id``. The outbox holds where the chain stands (its last ``seq`` and
hash). Three things must therefore agree at every start, or the agent refuses to start (:class:`SealStateError`,
whose message says what was lost and what to do):

* **the outbox exists.** ``chain.json`` in the state directory (written once, when the chain begins, outside the
  outbox) records that this state directory began a chain, for which device id and key. An outbox missing, empty or
  without its tables when that record exists is a lost outbox: a new one would sign a second ``seq`` 1, which the
  court refuses (``replayed_seq``), and every later event would be stuck behind it;
* **the key is the chain's.** A device key is created only at a seal's first start (no record, no outbox history);
  a missing key of a seal with a history is lost, never replaced, and a key other than the one recorded (in the
  outbox's ``meta`` and in ``chain.json``) is refused: the court would refuse its events (``bad_signature``);
* **the device id is the chain's.** Events are signed under the device id and published on its topic; another id's
  chain sent under this one is refused by the court (``device_mismatch``). ``case_no`` is not part of this: a seal
  moves between cases (the protocol's rebinding), its chain carries on.

Nothing is written at a start that finds everything recorded, so a seal whose disk is full still starts and guards.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from seal_agent.errors import OutboxError, OutboxMissing, SealStateError
from seal_agent.journal.outbox import Outbox
from seal_protocol import decode_envelope
from seal_protocol.errors import ProtocolError
from seal_protocol.signing import (
    SigningKey,
    load_or_create_signing_key,
    load_signing_key,
    public_key_b64,
    verify_envelope,
    write_durably,
)

logger = logging.getLogger(__name__)

#: The record, next to the outbox, that this state directory began a chain.
CHAIN_RECORD = "chain.json"
#: The outbox's ``meta`` keys of the chain's identity.
DEVICE_ID_SETTING, PUBLIC_KEY_SETTING = "chain_device_id", "chain_public_key"
#: Where the operator reads what to do.
SEE_DOCS = 'docs/reliability.md, "A seal\'s state at start"'


@dataclass(frozen=True, slots=True)
class ChainIdentity:
    """Whose chain: the device id its events are signed under, and the base64 public key that signs them."""

    device_id: str
    public_key: str


def open_chain(state_dir: Path, device_id: str, *, key_path: Path, outbox_path: Path) -> tuple[SigningKey, Outbox]:
    """The device key and the outbox of the seal ``device_id``, once checked to be this seal's chain (see the
    module); the key is created only at the seal's first start. Raise :class:`SealStateError` otherwise."""
    record_path = state_dir / CHAIN_RECORD
    record = read_chain_record(record_path)
    try:
        outbox = Outbox(outbox_path, create=record is None)
    except OutboxMissing as exc:
        assert record is not None  # else the outbox is created
        raise SealStateError(_lost_outbox(exc, record_path, record)) from exc
    try:
        stored = _stored_identity(outbox)
        last_seq = outbox.last_seq
        history = record is not None or stored is not None or last_seq > 0
        key = _device_key(key_path, history=history, known=stored or record, last_seq=last_seq)
        me = ChainIdentity(device_id, public_key_b64(key))
        for where, known in ((str(outbox_path), stored), (str(record_path), record)):
            if known is not None:
                _check(known, me, where=where, outbox=outbox, key_path=key_path)
        if stored is None and last_seq > 0:
            _check_events(outbox, me, key, state_dir=state_dir, key_path=key_path)
        _remember(outbox, record_path, me, in_outbox=stored is None, in_record=record is None)
    except BaseException:
        outbox.close()
        raise
    return key, outbox


def keygen(state_dir: Path, *, key_path: Path, outbox_path: Path) -> tuple[SigningKey, bool]:
    """``seal-agent keygen``: the device key, created (True) only if this state_dir has no chain yet; a lost key of
    a seal with a history is never replaced (:class:`SealStateError`)."""
    if key_path.exists():
        return _device_key(key_path, history=True, known=None, last_seq=0), False
    began = read_chain_record(state_dir / CHAIN_RECORD) is not None
    if began or _holds_chain(outbox_path):
        raise SealStateError(
            f"the device key {key_path} is missing, but this state_dir already holds a chain ({outbox_path}): a new "
            f"key would sign events the court refuses (bad_signature), so none is made. Put the seal's key back at "
            f"{key_path} (from its backup). See {SEE_DOCS}"
        )
    return _device_key(key_path, history=False, known=None, last_seq=0), True


def _holds_chain(outbox_path: Path) -> bool:
    """Whether the outbox at ``outbox_path`` holds a chain: an event, or a recorded chain identity. An outbox a first
    start made before it made the key (killed in between) holds neither; one that cannot be read counts as a chain."""
    if not outbox_path.exists() or outbox_path.stat().st_size == 0:
        return False
    try:
        with Outbox(outbox_path, create=False) as outbox:
            return outbox.last_seq > 0 or _stored_identity(outbox) is not None
    except OutboxMissing:
        return False  # a file without the outbox's tables: nothing was ever recorded in it
    except OutboxError as exc:
        logger.error("cannot read %s (%s): taken to hold a chain", outbox_path, exc)
        return True


def read_chain_record(path: Path) -> ChainIdentity | None:
    """The identity ``chain.json`` records, or None if there is no record (an unreadable one is refused)."""
    try:
        data = json.loads(path.read_text("utf-8"))
        return ChainIdentity(str(data["device_id"]), str(data["public_key"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SealStateError(
            f"{path}: cannot read the record of this seal's chain ({exc}); it says which device id and key this "
            f"state_dir's chain belongs to, so the agent does not start without it. See {SEE_DOCS}"
        ) from None


def write_chain_record(path: Path, identity: ChainIdentity) -> None:
    """Write ``chain.json`` atomically and durably (:func:`~seal_protocol.signing.write_durably`)."""
    body = json.dumps({"device_id": identity.device_id, "public_key": identity.public_key}, indent=2) + "\n"
    write_durably(path, body.encode("utf-8"))


def _stored_identity(outbox: Outbox) -> ChainIdentity | None:
    device_id, public_key = outbox.setting(DEVICE_ID_SETTING), outbox.setting(PUBLIC_KEY_SETTING)
    if device_id is None or public_key is None:
        return None
    return ChainIdentity(device_id, public_key)


def _device_key(key_path: Path, *, history: bool, known: ChainIdentity | None, last_seq: int) -> SigningKey:
    try:
        if key_path.exists():
            return load_signing_key(key_path)
        if history:
            whose = f" of {known.device_id!r} (public key {known.public_key})" if known else ""
            raise SealStateError(
                f"the device key {key_path} is missing, but this state_dir holds a chain{whose} whose last event is "
                f"seq {last_seq}: a new key would sign events the court refuses (bad_signature), so none is made. "
                f"Put the seal's key back at {key_path} (from its backup); if it is lost for good, the seal must be "
                f"enrolled anew. See {SEE_DOCS}"
            )
        key, _ = load_or_create_signing_key(key_path)
    except ProtocolError as exc:
        raise SealStateError(f"cannot use the device key {key_path}: {exc}") from None
    except OSError as exc:
        raise SealStateError(f"cannot read or create the device key {key_path}: {exc}") from None
    logger.info("first start: created device key %s; public key %s", key_path, public_key_b64(key))
    return key


def _check(known: ChainIdentity, me: ChainIdentity, *, where: str, outbox: Outbox, key_path: Path) -> None:
    if known.device_id != me.device_id:
        raise SealStateError(_changed_device_id(known.device_id, me, where=where, outbox=outbox, key_path=key_path))
    if known.public_key != me.public_key:
        raise SealStateError(
            f"the device key {key_path} (public key {me.public_key}) is not the key that signed the chain "
            f"{where} records (public key {known.public_key}): the court would refuse its events (bad_signature). "
            f"Put the chain's key back at {key_path}. See {SEE_DOCS}"
        )


def _check_events(outbox: Outbox, me: ChainIdentity, key: SigningKey, *, state_dir: Path, key_path: Path) -> None:
    """An outbox an older agent began records no identity: its oldest unreceipted event says whose chain it is (one
    chain, one device and one key: a start does not verify the whole outbox again)."""
    for event in outbox.pending(after=0, limit=1):
        try:
            envelope = decode_envelope(event.data)
        except ProtocolError:
            return  # not ours to judge here: the court quarantines it
        if envelope.device_id != me.device_id:
            _check(ChainIdentity(envelope.device_id, me.public_key), me, where=str(outbox.path), outbox=outbox,
                   key_path=key_path)  # fmt: skip
        try:
            verify_envelope(envelope, key.verify_key)
        except ProtocolError:
            _check(ChainIdentity(me.device_id, "(another key)"), me, where=str(outbox.path), outbox=outbox,
                   key_path=key_path)  # fmt: skip


def _remember(outbox: Outbox, record_path: Path, me: ChainIdentity, *, in_outbox: bool, in_record: bool) -> None:
    """Record the chain's identity where it is not yet; a full disk only postpones it to the next start."""
    if in_outbox:
        try:
            outbox.set_setting(DEVICE_ID_SETTING, me.device_id)
            outbox.set_setting(PUBLIC_KEY_SETTING, me.public_key)
        except OutboxError as exc:
            logger.warning("cannot record the chain's identity in the outbox yet (%s); tried at the next start", exc)
    if in_record:
        try:
            write_chain_record(record_path, me)
        except OSError as exc:
            logger.warning("cannot write %s yet (%s); tried again at the next start", record_path, exc)


def _changed_device_id(old: str, me: ChainIdentity, *, where: str, outbox: Outbox, key_path: Path) -> str:
    """What to do about a chain of device ``old`` found by a seal configured as ``me``: both repairs, and which one
    the outbox points to (whether anything of it ever reached the broker or the court)."""
    state_dir, path = outbox.path.parent, outbox.path
    reached = _ever_delivered(outbox)
    found = (
        f"Something of {old!r} reached the broker or the court, so {old!r} was enrolled: its events matter."
        if reached
        else f"Nothing in {path} ever reached the broker or the court (no event or snapshot acknowledged or "
        f"receipted): {old!r} was probably never enrolled (the broker refused it), and nothing it holds can reach "
        f"the court."
    )
    return (
        f"{where} holds the chain of device {old!r}, but the configuration says device_id = {me.device_id!r}: its "
        f"events would go out on {me.device_id!r}'s topic and the court would refuse them (device_mismatch). If this "
        f"seal is still {old!r}, set device_id back. To make it {me.device_id!r}: {found} "
        f"(a) If {old!r}'s events matter, start it as {old!r} until it has delivered everything (outbox_depth 0), "
        f"then move {state_dir} aside and start with an empty state_dir and a key the court enrols for "
        f"{me.device_id!r}. (b) If {old!r} was never enrolled, stop the agent and remove {path}, {path}-wal, "
        f"{path}-shm and {state_dir / CHAIN_RECORD} (they hold only {old!r}'s chain); keep {key_path} if the court "
        f"enrolled its key (public key {me.public_key}) for {me.device_id!r}, else remove it too and enrol the key "
        f"`seal-agent keygen` then makes. See {SEE_DOCS}"
    )


def _ever_delivered(outbox: Outbox) -> bool:
    """Whether anything of this outbox ever reached the broker or the court: an event receipted (gone) or
    acknowledged, or a snapshot acknowledged or receipted."""
    return (
        outbox.depth() < outbox.last_seq
        or outbox.unacknowledged_depth() < outbox.depth()
        or bool(outbox.receipted_snapshots())
        or bool(outbox.queued_snapshots(broker_acknowledged=True))
    )


def _lost_outbox(exc: OutboxMissing, record_path: Path, record: ChainIdentity) -> str:
    return (
        f"the outbox is lost: {exc}, but {record_path} says this state_dir began the chain of {record.device_id!r} "
        f"(public key {record.public_key}). A new outbox would sign a second seq 1, which the court refuses "
        f"(replayed_seq), and every later event would be stuck behind it, so the agent does not start. The events it "
        f"held that the court had not receipted are lost with it (the court holds the rest). Restore the outbox "
        f"(with its -wal) from a backup, or continue the chain from the court's last seq and hash: see {SEE_DOCS}"
    )
