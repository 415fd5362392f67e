"""Alarm kinds, their severities, and the alarm's life: open → acknowledged → closed, through one function."""

from __future__ import annotations

from enum import StrEnum

from server.core.states import StateMachine
from server.words import words


class Severity(StrEnum):
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class AlarmKind(StrEnum):
    """What an alarm is about. Incidents fold within the fold window; conditions last until they clear."""

    INTRUSION = "intrusion"
    TAMPER = "tamper"
    CAMERA_BLIND = "camera_blind"
    CAMERA_LOST = "camera_lost"
    OFFLINE = "offline"
    MISSING_EVENTS = "missing_events"
    OUTBOX_FULL = "outbox_full"
    SPEAKER_FAILED = "speaker_failed"
    EVENT_LOST = "event_lost"
    ARM_FAILED = "arm_failed"
    DISARM_FAILED = "disarm_failed"
    SNAPSHOT_LOST = "snapshot_lost"
    CLOCK_UNSYNCED = "clock_unsynced"
    CASE_MISMATCH = "case_mismatch"
    REFUSAL_FLOOD = "refusal_flood"
    SENSOR_FLAPPING = "sensor_flapping"
    SENSOR_STUCK = "sensor_stuck"
    STORAGE_FAILED = "storage_failed"

    @property
    def severity(self) -> Severity:
        return SEVERITY[self]

    @property
    def is_condition(self) -> bool:
        """A condition (offline, missing events, a failed speaker, an arm or a disarm not carried out, an unsynchronised
        clock, a seal configured with another case number, an account flooding refused messages, a seal that says it
        cannot store events, a blind or lost camera, a flapping or stuck sensor) has at most one live alarm per seal
        and case: repeats always fold into it, and the seal's leaving the case closes it
        (:func:`~server.alarms.service.close_left_conditions`)."""
        return self in CONDITIONS


SEVERITY: dict[AlarmKind, Severity] = {
    AlarmKind.INTRUSION: Severity.HIGH,
    AlarmKind.TAMPER: Severity.CRITICAL,
    AlarmKind.CAMERA_BLIND: Severity.MEDIUM,
    AlarmKind.CAMERA_LOST: Severity.MEDIUM,
    AlarmKind.OFFLINE: Severity.HIGH,
    AlarmKind.MISSING_EVENTS: Severity.HIGH,
    AlarmKind.OUTBOX_FULL: Severity.MEDIUM,
    AlarmKind.SPEAKER_FAILED: Severity.HIGH,  # a seal that cannot warn deters nobody
    AlarmKind.EVENT_LOST: Severity.HIGH,  # what happened is not on the record: someone must look
    AlarmKind.ARM_FAILED: Severity.HIGH,  # the seal may stay disarmed on a sealed site
    AlarmKind.DISARM_FAILED: Severity.MEDIUM,  # a lifting waits for it
    AlarmKind.SNAPSHOT_LOST: Severity.HIGH,  # a picture the seal signed as stored will never reach the court
    AlarmKind.CLOCK_UNSYNCED: Severity.MEDIUM,  # the times the seal signs may be wrong: its events' order is not
    AlarmKind.CASE_MISMATCH: Severity.HIGH,  # the seal's events, intrusions included, reach no case until corrected
    AlarmKind.REFUSAL_FLOOD: Severity.HIGH,  # its account floods refused messages: its password may be stolen
    AlarmKind.SENSOR_FLAPPING: Severity.HIGH,  # its edges are counted, not each a trigger: someone must look at it
    AlarmKind.SENSOR_STUCK: Severity.HIGH,  # a PIR reading motion for ever tells nobody of a new arrival
    AlarmKind.STORAGE_FAILED: Severity.HIGH,  # what happens is held in the seal's memory only: a power cut loses it
}

CONDITIONS = frozenset(
    {
        AlarmKind.OFFLINE,
        AlarmKind.MISSING_EVENTS,
        AlarmKind.SPEAKER_FAILED,
        AlarmKind.ARM_FAILED,
        AlarmKind.DISARM_FAILED,
        AlarmKind.CLOCK_UNSYNCED,
        AlarmKind.CASE_MISMATCH,
        AlarmKind.REFUSAL_FLOOD,
        AlarmKind.STORAGE_FAILED,
        # The seal's own health, raised and cleared by its signed events: a camera or a sensor of a seal the case no
        # longer has is not the case's to follow (and a summary of a flapping sensor folds however long after).
        AlarmKind.CAMERA_BLIND,
        AlarmKind.CAMERA_LOST,
        AlarmKind.SENSOR_FLAPPING,
        AlarmKind.SENSOR_STUCK,
    }
)


class AlarmState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"

    @property
    def is_live(self) -> bool:
        """Open or acknowledged: repeats still fold into it and recoveries still close it."""
        return self is not AlarmState.CLOSED


LIVE_STATES = (AlarmState.OPEN.value, AlarmState.ACKNOWLEDGED.value)

_MACHINE = StateMachine(
    AlarmState,
    {
        AlarmState.OPEN: {AlarmState.ACKNOWLEDGED, AlarmState.CLOSED},
        AlarmState.ACKNOWLEDGED: {AlarmState.CLOSED},
        AlarmState.CLOSED: set(),
    },
    refusal=lambda state, target: (
        f"该告警目前为“{words('alarm_state', state)[0]}”，不能再改为“{words('alarm_state', target)[0]}”。 / "
        f"an {state.value} alarm cannot become {target.value}"
    ),
)


def transition(current: AlarmState | str, target: AlarmState) -> AlarmState:
    """The state after moving from ``current`` to ``target``; raise :class:`Conflict` if that move is not allowed."""
    return _MACHINE.transition(current, target)
