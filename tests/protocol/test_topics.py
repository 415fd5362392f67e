import pytest

from seal_protocol import (
    InvalidTopic,
    MessageKind,
    cmd_topic,
    event_topic,
    parse_topic,
    snapshot_topic,
    status_topic,
    subscription_all,
    topic_account,
)
from seal_protocol.status import SealStatus, decode_status, encode_status

SHA = "ab" * 32


def test_topics_round_trip():
    assert event_topic("seal-a") == "seal/v1/seal-a/event"
    assert status_topic("seal-a") == "seal/v1/seal-a/status"
    assert cmd_topic("seal-a") == "seal/v1/seal-a/cmd"
    assert snapshot_topic("seal-a", SHA) == f"seal/v1/seal-a/snapshot/{SHA}"
    assert parse_topic(event_topic("seal-a")).kind is MessageKind.EVENT
    parsed = parse_topic(snapshot_topic("seal-a", SHA))
    assert (parsed.device_id, parsed.kind, parsed.sha256) == ("seal-a", MessageKind.SNAPSHOT, SHA)
    assert subscription_all(MessageKind.EVENT) == "seal/v1/+/event"
    assert subscription_all(MessageKind.SNAPSHOT) == "seal/v1/+/snapshot/+"


@pytest.mark.parametrize("device_id", ["", "A", "a/b", "a+", "#", "a" * 65, "-a"])
def test_bad_device_ids_refused(device_id):
    with pytest.raises(InvalidTopic):
        event_topic(device_id)


@pytest.mark.parametrize(
    "topic",
    ["seal/v2/a/event", "seal/v1/a", "seal/v1/a/bogus", "seal/v1/a/event/x", "seal/v1/a/snapshot/xyz", "other"],
)
def test_bad_topics_refused(topic):
    with pytest.raises(InvalidTopic):
        parse_topic(topic)


def test_status_codec():
    state, ts = decode_status(encode_status(SealStatus.OFFLINE, agent_version="0.1.0", ts="2026-01-01T00:00:00.000Z"))
    assert state is SealStatus.OFFLINE and ts == "2026-01-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="invalid status"):
        decode_status(b'{"state":"sleeping"}')


@pytest.mark.parametrize(
    ("topic", "account"),
    [
        ("seal/v1/seal-a/event", "seal-a"),
        (f"seal/v1/seal-a/snapshot/{SHA}", "seal-a"),
        ("seal/v1/seal-a/snapshot/x17", "seal-a"),  # refused by parse_topic, still under seal-a's account
        ("seal/v1/seal-a/snapshot/", "seal-a"),
        ("seal/v1/seal-a/bogus/deeper", "seal-a"),
        ("seal/v1/seal-a", None),  # no level below: no seal's ACL reaches it
        ("seal/v1//event", None),
        ("seal/v1/Seal-A/event", None),  # not a device id, so no seal's username
        (f"seal/v1/{'a' * 65}/event", None),
        ("seal/v2/seal-a/event", None),
        ("x/seal/v1/seal-a/event", None),
        ("court/feed", None),
        ("", None),
    ],
)
def test_the_account_a_topic_is_under(topic, account):
    assert topic_account(topic) == account
