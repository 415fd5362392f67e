from datetime import UTC, datetime, timedelta

import pytest

from seal_protocol.commands import (
    CommandAction,
    CommandRefused,
    RejectReason,
    check_command,
    encode_command,
    new_command,
)
from seal_protocol.signing import generate_signing_key

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
COURT = generate_signing_key()


def check(data: bytes, *, last: int = 0, now: datetime = NOW, device: str = "seal-a"):
    return check_command(data, device_id=device, server_key=COURT.verify_key, last_accepted_id=last, now=now)


def signed(command_id: int = 5, **kw):
    kw.setdefault("key", COURT)
    kw.setdefault("now", NOW)
    return encode_command(new_command(command_id=command_id, device_id="seal-a", action=CommandAction.DISARM, **kw))


def test_valid_command_accepted():
    command = check(signed())
    assert command.action is CommandAction.DISARM and command.command_id == 5


@pytest.mark.parametrize(
    ("data_kw", "check_kw", "reason"),
    [
        ({"key": generate_signing_key()}, {}, RejectReason.BAD_SIGNATURE),
        ({}, {"device": "seal-b"}, RejectReason.WRONG_DEVICE),
        ({"ttl": timedelta(seconds=30)}, {"now": NOW + timedelta(seconds=31)}, RejectReason.EXPIRED),
        ({"now": NOW + timedelta(hours=1)}, {}, RejectReason.NOT_YET_VALID),
        ({}, {"last": 5}, RejectReason.REPLAYED),
    ],
)
def test_refusals(data_kw, check_kw, reason):
    with pytest.raises(CommandRefused) as info:
        check(signed(**data_kw), **check_kw)
    assert info.value.reason is reason and info.value.command_id == 5


def test_unsigned_and_malformed():
    unsigned = signed().replace(b'"sig":"', b'"sig":null,"x":"')
    with pytest.raises(CommandRefused) as info:
        check(unsigned)
    assert info.value.reason is RejectReason.MALFORMED
    import json

    obj = json.loads(signed())
    obj["sig"] = None
    with pytest.raises(CommandRefused) as info:
        check(json.dumps(obj).encode())
    assert info.value.reason is RejectReason.UNSIGNED
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
    ],
    ids=["bool-id", "bool-v", "surrogate", "float", "duplicate-key", "white-space", "extra-field"],
)
def test_a_command_is_parsed_strictly(change):
    with pytest.raises(CommandRefused) as info:
        check(change(signed()))
    assert info.value.reason is RejectReason.MALFORMED
