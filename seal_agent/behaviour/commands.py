"""Court commands: check each one against the pinned court key, act, and answer with a signed event.

The rule for every command that reaches the seal's ``cmd`` topic:

* :func:`seal_protocol.commands.check_command` decides; a refusal records ``command_rejected``
  ``{command_id, reason, detail}`` (``command_id`` is null when the command could not be read). A command
  issued for another case than the configured ``case_no`` (one decided before the seal was moved, delivered late
  from the broker's session) is refused as ``wrong_case``; spellings of one number (one canonical form) are one
  case.
* An accepted command is carried out first; only then is ``command_ack`` ``{command_id, action, result, …}``
  recorded, and in the same outbox transaction the command's id becomes the last accepted one. A second delivery
  of the same command (a QoS 1 redelivery after a crash) is therefore refused as ``replayed``: its ack exists.
* A :class:`CommandDesk` without a court key refuses every command as ``bad_signature`` (malformed and unsigned
  ones keep their own reason): it obeys nobody rather than anybody. A running seal always has the key: the
  runtime refuses a configuration without ``[commands] server_public_key``, which also verifies the receipts.

Handlers run on paho's network thread, one command at a time; the broker gets its PUBACK when they return. A failure
of the action or of committing the answer (:class:`~seal_agent.errors.OutboxError`, e.g. a full disk) propagates:
the command then stays unacknowledged and the broker delivers it again at the next connection. Every action can
be repeated safely (arm/disarm answer ``already_…``), and an action whose answer was not committed has not
advanced the last accepted id, so the redelivered command is carried out and answered then.

Once the seal stops (:meth:`CommandDesk.close`, before the agent stops), a command is not taken at all
(:class:`~seal_agent.errors.SealStopping`): an ack given then could promise a follow-up (a ``test_warning``'s
``warning_result``) that a stopped agent never records. It stays unacknowledged like one whose answer failed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from seal_agent.behaviour.seal import SealAgent
from seal_agent.behaviour.warning_outcome import WarningStart
from seal_agent.errors import SealStopping
from seal_agent.interfaces import Clock
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType
from seal_protocol.commands import Command, CommandAction, CommandRefused, RejectReason, check_command
from seal_protocol.signing import SigningKey, VerifyKey

logger = logging.getLogger(__name__)

LAST_COMMAND_SETTING = "last_command_id"


class CommandDesk:
    """Receives raw commands for ``agent`` (bind :meth:`handle` to the publisher) and records each answer with
    ``recorder``."""

    def __init__(
        self, agent: SealAgent, recorder: EventRecorder, clock: Clock, *, server_key: VerifyKey | None
    ) -> None:
        self._agent = agent
        self._recorder = recorder
        self._clock = clock
        self._server_key = server_key
        # Without a pinned key, signatures are checked against a key whose private half was thrown away.
        self._nobody = SigningKey.generate().verify_key
        self._lock = threading.Lock()
        self._warning: WarningStart | None = None  # the test warning whose warning_result may follow its ack
        self._closed = False
        self._actions: dict[CommandAction, Callable[[Command], dict[str, Any]]] = {
            CommandAction.DISARM: self._disarm,
            CommandAction.ARM: self._arm,
            CommandAction.TEST_WARNING: self._test_warning,
            CommandAction.SNAPSHOT: self._snapshot,
            CommandAction.PING: self._ping,
        }
        if server_key is None:
            logger.warning("no [commands] server_public_key configured: every court command will be refused")

    @property
    def last_accepted_id(self) -> int:
        return int(self._recorder.outbox.setting(LAST_COMMAND_SETTING) or 0)

    def close(self) -> None:
        """Take no more commands (the seal is stopping); waits for the one being carried out, whose follow-up the
        agent's stop then records."""
        with self._lock:
            self._closed = True

    def handle(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise SealStopping("the seal is stopping: the command is not taken")
            try:
                command = check_command(
                    data,
                    device_id=self._recorder.device_id,
                    case_no=self._recorder.case_no,
                    server_key=self._server_key or self._nobody,
                    last_accepted_id=self.last_accepted_id,
                    now=self._clock.now(),
                )
            except CommandRefused as refused:
                self._reject(refused)
                return
            logger.info("court command %d accepted: %s", command.command_id, command.action.value)
            self._warning = None
            result = self._actions[command.action](command)
            stored = self._recorder.record(
                EventType.COMMAND_ACK,
                {"command_id": command.command_id, "action": command.action.value, **result},
                settings={LAST_COMMAND_SETTING: str(command.command_id)},
            )
            if self._warning is not None:
                self._agent.follow_warning(self._warning, trigger="command_ack", trigger_seq=stored.seq)

    def _reject(self, refused: CommandRefused) -> None:
        detail = str(refused).split(": ", 1)[-1]
        if self._server_key is None and refused.reason is RejectReason.BAD_SIGNATURE:
            detail = "no court public key is configured on this seal ([commands] server_public_key)"
        logger.warning("court command %s refused: %s (%s)", refused.command_id, refused.reason.value, detail)
        self._recorder.record(
            EventType.COMMAND_REJECTED,
            {"command_id": refused.command_id, "reason": refused.reason.value, "detail": detail},
        )

    def _disarm(self, command: Command) -> dict[str, Any]:
        changed = self._agent.disarm(f"court command {command.command_id}", by=command.command_id)
        return {"result": "disarmed" if changed else "already_disarmed"}

    def _arm(self, command: Command) -> dict[str, Any]:
        changed = self._agent.arm(f"court command {command.command_id}", by=command.command_id)
        return {"result": "armed" if changed else "already_armed"}

    def _test_warning(self, command: Command) -> dict[str, Any]:
        self._warning = self._agent.test_warning()
        result, languages = self._warning.settle()
        return {"result": result, "warning_languages": languages}

    def _snapshot(self, command: Command) -> dict[str, Any]:
        if self._agent.camera_state == "none":
            return {"result": "no_camera", "snapshot": None}
        sha = self._agent.snapshot_now()
        return {"result": "taken" if sha else "no_frame", "snapshot": sha}

    def _ping(self, command: Command) -> dict[str, Any]:
        return {"result": "pong", "armed": self._agent.armed, "camera": self._agent.camera_state}
