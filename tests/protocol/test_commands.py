import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from seal_protocol.commands import (
    CommandAction,
    CommandRefused,
    RejectReason,
    check_command,
    encode_command,
    new_command,
    refusal_payload,
)
from seal_protocol.signing import generate_signing_key

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
COURT = generate_signing_key()
CASE = "(2021)苏0214执1234号"
OTHER_CASE = "(2022)苏0214执55号"
CASE_FIELD = f'"case_no":"{CASE}"'.encode()


def check(data: bytes, *, last: int = 0, now: datetime = NOW, device: str = "seal-a", case: str = CASE):
    return check_command(
        data, device_id=device, case_no=case, server_key=COURT.verify_key, last_accepted_id=last, now=now
    )


def signed(command_id: int = 5, **kw):
    kw.setdefault("key", COURT)
    kw.setdefault("now", NOW)
    kw.setdefault("case_no", CASE)
    return encode_command(new_command(command_id=command_id, device_id="seal-a", action=CommandAction.DISARM, **kw))


def test_valid_command_accepted():
    command = check(signed())
    assert command.action is CommandAction.DISARM and command.command_id == 5


@pytest.mark.parametrize(
    ("data_kw", "check_kw", "reason"),
    [
        ({"key": generate_signing_key()}, {}, RejectReason.BAD_SIGNATURE),
        ({}, {"device": "seal-b"}, RejectReason.WRONG_DEVICE),
        ({}, {"case": OTHER_CASE}, RejectReason.WRONG_CASE),
        ({"case_no": OTHER_CASE}, {}, RejectReason.WRONG_CASE),
        ({"case_no": "(2021)苏0214执12345号"}, {}, RejectReason.WRONG_CASE),  # one digit more is another case
        ({"ttl": timedelta(seconds=30)}, {"now": NOW + timedelta(seconds=31)}, RejectReason.EXPIRED),
        ({"now": NOW + timedelta(hours=1)}, {}, RejectReason.NOT_YET_VALID),
        ({}, {"last": 5}, RejectReason.REPLAYED),
    ],
)
def test_refusals(data_kw, check_kw, reason):
    with pytest.raises(CommandRefused) as info:
        check(signed(**data_kw), **check_kw)
    assert info.value.reason is reason and info.value.claimed_command_id == 5
    # The court's id only once its signature verified; forged bytes merely claim one.
    assert info.value.command_id == (None if reason is RejectReason.BAD_SIGNATURE else 5)


def test_unsigned_and_malformed():
    unsigned = signed().replace(b'"sig":"', b'"sig":null,"x":"')
    with pytest.raises(CommandRefused) as info:
        check(unsigned)
    assert info.value.reason is RejectReason.MALFORMED
    obj = json.loads(signed())
    obj["sig"] = None
    with pytest.raises(CommandRefused) as info:
        check(json.dumps(obj).encode())
    assert info.value.reason is RejectReason.UNSIGNED
    assert (info.value.command_id, info.value.claimed_command_id) == (None, 5)
    with pytest.raises(CommandRefused) as info:
        check(b"\xff")
    assert info.value.reason is RejectReason.MALFORMED and info.value.command_id is None


def test_tampered_action_fails_signature():
    data = signed().replace(b'"action":"disarm"', b'"action":"arm"')
    with pytest.raises(CommandRefused) as info:
        check(data)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.replace(b'"command_id":', b'"command_id":true,"x":', 1),
        lambda b: b.replace(b'"v":1', b'"v":true'),
        lambda b: b.replace(b'"args":{}', b'"args":{"a":"\\ud800"}'),
        lambda b: b.replace(b'"args":{}', b'"args":{"a":1.5}'),
        lambda b: b.replace(b'"args":{}', b'"args":{"a":1,"a":2}'),
        lambda b: b.replace(b',"device_id"', b', "device_id"'),
        lambda b: b[:-1] + b',"extra":1}',
        lambda b: b.replace(CASE_FIELD + b",", b""),
        lambda b: b.replace(CASE_FIELD, b'"case_no":1234'),
        lambda b: b.replace(CASE_FIELD, b'"case_no":""'),
    ],
    ids=[
        "bool-id",
        "bool-v",
        "surrogate",
        "float",
        "duplicate-key",
        "white-space",
        "extra-field",
        "no-case",
        "int-case",
        "empty-case",
    ],
)
def test_a_command_is_parsed_strictly(change):
    with pytest.raises(CommandRefused) as info:
        check(change(signed()))
    assert info.value.reason is RejectReason.MALFORMED


def test_the_case_is_in_the_signed_bytes():
    command = json.loads(signed())
    assert command["case_no"] == CASE
    data = signed().replace(CASE.encode(), OTHER_CASE.encode())
    with pytest.raises(CommandRefused) as info:
        check(data, case=OTHER_CASE)  # the seal of the other case gets a command edited to name its case
    assert info.value.reason is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("issued_for", "configured"),
    [
        (CASE, "（2021）苏0214执1234号"),  # the court's canonical form; the installer typed full-width parentheses
        ("（2021）苏0214执1234号", CASE),  # a case the court stored before numbers were checked
        (CASE, "〔2021〕苏0214执1234号"),
        (CASE, f" {CASE} "),
        ("旧案 2019-17", "旧案 2019-17"),  # a legacy number that is no enforcement case number: compared as written
    ],
)
def test_a_command_for_the_seals_case_in_another_spelling_is_obeyed(issued_for, configured):
    command = check(signed(case_no=issued_for), case=configured)
    assert command.case_no == issued_for


def test_a_command_carried_out_and_delivered_again_is_answered_replayed_whatever_else_is_wrong():
    """Delivered again once it has expired, or once the seal guards another case, a command the seal carried out is
    answered ``replayed`` (it was obeyed), not ``expired`` nor ``wrong_case``; the case is checked last."""
    with pytest.raises(CommandRefused) as info:
        check(signed(ttl=timedelta(seconds=30)), now=NOW + timedelta(minutes=1), last=5)  # id 5 was carried out
    assert info.value.reason is RejectReason.REPLAYED
    with pytest.raises(CommandRefused) as info:
        check(signed(case_no=OTHER_CASE, key=generate_signing_key()))
    assert info.value.reason is RejectReason.BAD_SIGNATURE
    with pytest.raises(CommandRefused) as info:
        check(signed(case_no=OTHER_CASE), device="seal-b")
    assert info.value.reason is RejectReason.WRONG_DEVICE
    with pytest.raises(CommandRefused) as info:
        check(signed(case_no=OTHER_CASE, ttl=timedelta(seconds=30)), now=NOW + timedelta(minutes=1))
    assert info.value.reason is RejectReason.EXPIRED
    with pytest.raises(CommandRefused) as info:
        check(signed(case_no=OTHER_CASE), last=5)  # id 5 was carried out
    assert info.value.reason is RejectReason.REPLAYED
    with pytest.raises(CommandRefused) as info:
        check(signed(case_no=OTHER_CASE), last=4)
    assert info.value.reason is RejectReason.WRONG_CASE


def test_a_replayed_refusal_names_the_refused_bytes_and_the_last_accepted_id():
    """A ``replayed`` refusal signs the SHA-256 of the bytes refused and the seal's last accepted id: the court tells
    the command it sent delivered again (the same bytes) from a new one reusing an id the seal accepted for another
    command (its ids went back: a restored database). Before, it named the id only. Found by a review."""
    data = signed(5)
    with pytest.raises(CommandRefused) as info:
        check(data, last=7)
    assert (info.value.reason, info.value.command_id, info.value.last_accepted_id) == (RejectReason.REPLAYED, 5, 7)
    payload = refusal_payload(info.value, data, "id 5 is not above the last accepted 7")
    assert payload == {
        "command_id": 5,
        "reason": "replayed",
        "detail": "id 5 is not above the last accepted 7",
        "sha256": hashlib.sha256(data).hexdigest(),
        "last_accepted_id": 7,
    }
    with pytest.raises(CommandRefused) as info:  # other verified refusals keep their three fields
        check(signed(5), device="seal-b")
    assert set(refusal_payload(info.value, data, "x")) == {"command_id", "reason", "detail"}
