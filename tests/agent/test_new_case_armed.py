"""A disarm belongs to its case: a seal disarmed at the end of case A's removal and installed on case B's premises
(configured with B's ``case_no``) starts armed, and says why in an ``armed`` event (reason ``new_case``) committed
before it guards. A restart in the same case — however its number is spelt — keeps it disarmed: a seal being removed
does not arm itself when it reboots (docs/protocol.md, "The armed state at start")."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.pir import PirSensor
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import Envelope, EventType, decode_envelope, envelope_hash
from seal_protocol.signing import SigningKey, generate_signing_key
from tests.agent.full_disk import FullDisk
from tests.agent.helpers import RecordingSpeaker, pulse

CASE_1 = "(2024)苏0214执1号"
CASE_1_FULL_WIDTH = "（2024）苏0214执1号"
CASE_2 = "(2024)苏0214执2号"
CASE_3 = "(2024)苏0214执3号"


@dataclass
class Seal:
    """One seal's state directory (its outbox and key); :meth:`start` runs the real agent on it for a case."""

    path: Path
    key: SigningKey = field(default_factory=generate_signing_key)
    pins: MockFactory = field(default_factory=MockFactory)
    speaker: RecordingSpeaker = field(default_factory=RecordingSpeaker)
    outbox: Outbox | None = None
    disk: FullDisk | None = None
    running: tuple[SealAgent, PirSensor] | None = None
    started_after: int = 0  # the last seq before the present run

    def start(self, case_no: str, *, full_disk: bool = False) -> SealAgent:
        self.stop()
        self.outbox = Outbox(self.path / "outbox.sqlite")
        recorder = EventRecorder(
            device_id="seal-a", case_no=case_no, signing_key=self.key, outbox=self.outbox, clock=SystemClock()
        )
        if full_disk:  # the disk is full when the agent starts
            self.disk = FullDisk(recorder)
            self.disk.fill()
        self.started_after = self.outbox.last_seq
        self.speaker = RecordingSpeaker()
        sensor = PirSensor(17, pin_factory=self.pins)
        agent = SealAgent(
            recorder=recorder,
            motion=sensor,
            speaker=self.speaker,
            warning=WarningSettings(repeat_s=600, max_repeats=0, cooldown_s=0),
            heartbeat_s=3600,
        )
        agent.start()
        self.running = (agent, sensor)
        return agent

    def intrusion(self) -> Envelope:
        assert self.running is not None
        pulse(self.pins)
        assert self.running[0].wait_recorded(10)
        return [e for e in self.events() if e.type is EventType.INTRUSION][-1]

    def events(self) -> list[Envelope]:
        assert self.outbox is not None
        return [decode_envelope(e.data) for e in self.outbox.pending(limit=1000)]

    def since_start(self) -> list[Envelope]:
        return [e for e in self.events() if e.seq > self.started_after]

    def stop(self) -> None:
        if self.running is not None:
            agent, sensor = self.running
            agent.stop()
            sensor.close()
            self.running = None
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None


@pytest.fixture
def seal(tmp_path: Path) -> Iterator[Seal]:
    seal = Seal(tmp_path)
    try:
        yield seal
    finally:
        seal.stop()
        seal.pins.reset()


def disarmed_by_court(seal: Seal, case_no: str) -> None:
    agent = seal.start(case_no)
    assert agent.disarm("court command 7", by=7)


def test_a_seal_disarmed_in_one_case_starts_armed_in_another_and_says_why_first(seal: Seal) -> None:
    """The reviewer's case: disarmed by command 7 in case 1, restarted configured for case 2."""
    disarmed_by_court(seal, CASE_1)
    agent = seal.start(CASE_2)
    assert agent.armed, "a seal on case 2 guards disarmed by case 1's disarm"
    told = [(e.type.value, e.case_no, e.payload.get("armed"), e.payload.get("reason")) for e in seal.since_start()]
    assert told == [("armed", CASE_2, None, "new_case"), ("agent_started", CASE_2, True, None)], told
    armed = seal.since_start()[0]
    assert armed.payload == {"reason": "new_case", "by": None, "disarmed_case_no": CASE_1}
    intrusion = seal.intrusion()
    assert (intrusion.payload["armed"], intrusion.payload["warning"]) == (True, "played")
    assert seal.speaker.wait_plays(1), "no warning on site"
    assert agent.changed_by is None  # no court command set this state

    agent = seal.start(CASE_2)  # and it stays armed, with no second armed event, at the next restart
    assert agent.armed
    assert [e.type for e in seal.since_start()] == [EventType.AGENT_STARTED]
    assert [e.type for e in seal.events()].count(EventType.ARMED) == 1


def test_a_seal_disarmed_in_its_case_stays_disarmed_when_it_restarts_in_it(seal: Seal) -> None:
    disarmed_by_court(seal, CASE_1)
    agent = seal.start(CASE_1)
    assert not agent.armed, "a seal being removed armed itself at a reboot"
    assert EventType.ARMED not in [e.type for e in seal.events()]
    assert [(e.type, e.payload["armed"]) for e in seal.since_start()] == [(EventType.AGENT_STARTED, False)]
    intrusion = seal.intrusion()
    assert (intrusion.payload["armed"], intrusion.payload["warning"]) == (False, "suppressed_disarmed")
    assert seal.speaker.plays == 0
    assert agent.changed_by == 7


def test_the_same_case_number_in_full_width_parentheses_is_the_same_case(seal: Seal) -> None:
    disarmed_by_court(seal, CASE_1)
    agent = seal.start(CASE_1_FULL_WIDTH)
    assert not agent.armed, "the same case, spelt with full-width parentheses, counted as a new case"
    assert EventType.ARMED not in [e.type for e in seal.events()]


def forget_the_case_of_the_state(seal: Seal) -> None:
    """Make the outbox one of an agent that committed no case with the armed state."""
    assert seal.outbox is not None
    seal.stop()
    with sqlite3.connect(seal.path / "outbox.sqlite") as db:
        assert db.execute("DELETE FROM meta WHERE key = 'armed_case'").rowcount == 1


def test_an_older_agents_outbox_tells_the_case_by_its_last_event(seal: Seal) -> None:
    disarmed_by_court(seal, CASE_1)
    forget_the_case_of_the_state(seal)
    assert not seal.start(CASE_1_FULL_WIDTH).armed  # its last event (the disarmed) is case 1's
    forget_the_case_of_the_state(seal)
    agent = seal.start(CASE_2)
    assert agent.armed
    armed = [e for e in seal.events() if e.type is EventType.ARMED]
    # the last committed event before this start was case 1's agent_started (full-width, as then configured)
    assert [e.payload["disarmed_case_no"] for e in armed] == [CASE_1_FULL_WIDTH]


def test_an_older_agents_outbox_without_its_events_keeps_the_state_and_then_knows_its_case(seal: Seal) -> None:
    """Nothing tells which case an older agent was disarmed in once the court receipted its events: the state is
    kept (the seal may be in its removal) and recorded as this case's, so a later move is seen."""
    disarmed_by_court(seal, CASE_1)
    assert seal.outbox is not None
    seal.outbox.court_receipted([envelope_hash(e.data) for e in seal.outbox.pending(limit=1000)])
    forget_the_case_of_the_state(seal)
    assert not seal.start(CASE_2).armed
    assert not seal.start(CASE_2).armed
    assert seal.start(CASE_3).armed
    armed = [e for e in seal.events() if e.type is EventType.ARMED]
    assert [e.payload["disarmed_case_no"] for e in armed] == [CASE_2]


def test_on_a_full_disk_the_seal_starts_armed_and_its_armed_event_and_state_follow_once_there_is_room(
    seal: Seal,
) -> None:
    disarmed_by_court(seal, CASE_1)
    agent = seal.start(CASE_2, full_disk=True)
    assert agent.armed, "a full disk kept the seal disarmed on a new case"
    assert agent.changed_by is None  # command 7 set the state its armed (held in memory) replaces
    pulse(seal.pins)
    assert seal.speaker.wait_plays(1), "no warning on a full disk"
    assert seal.disk is not None
    seal.disk.make_plenty_of_room()
    agent.heartbeat()  # commits the held events first, in their order
    assert agent.wait_recorded(10)
    since = [e for e in seal.since_start() if e.type is not EventType.HEARTBEAT]
    assert [e.type for e in since] == [EventType.ARMED, EventType.AGENT_STARTED, EventType.INTRUSION], since
    assert since[2].payload["armed"] is True
    agent = seal.start(CASE_2)  # its state was committed with it: no second armed event
    assert agent.armed
    assert [e.type for e in seal.events()].count(EventType.ARMED) == 1
