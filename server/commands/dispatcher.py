"""The court's side of the ``cmd`` topics: publish pending commands, retry what the broker did not take, expire.

The database is the queue; the MQTT client keeps nothing that matters. Each round (every ``retry_interval_s``, and
at once when the API issues a command or the connection comes up):

1. commands past their expiry without an answer become ``expired`` (an arm or a disarm with its alarm,
   :mod:`server.commands.failures`), and so do pending commands issued for a case their seal is no longer bound to;
   the alarms of arms and disarms whose condition has ended are closed;
2. if connected, the pending commands the broker has not accepted yet are published (QoS 1, by id) and each PUBACK
   awaited — those of at most ``seals_per_round`` seals, the seals whose first such command was never tried first, then
   those tried least recently (:func:`~server.commands.service.to_publish`): seals nobody receives take turns and hold
   up no other. Each command is locked and looked at again as it is handed to paho (:meth:`_publish`): one withdrawn,
   expired, answered or of a seal moved since the round read it is not published. *Accepted* means the broker took it
   for the seal's (persistent) session and is recorded in ``broker_accepted_at`` — it is **not** delivery: the command
   stays ``pending`` until the seal's signed answer arrives through the ingest. A refusal, a timeout, or "No matching
   subscribers" (the seal has no session: never connected, or its session expired, so nobody would get it) leaves it
   unaccepted, with ``publish_error`` and one more ``publish_attempts``; it is published again at its seal's turn, until
   it expires. After one failure, that seal's later commands wait for the next round, so a seal never sees a higher id
   before a lower one. Each goes out with an MQTT v5 *Message Expiry Interval*: the seconds left until its signed
   ``expires_at`` (at least 1; :func:`expiry_interval`), so the broker drops it from the seal's session once it has
   expired, and a seal long away never receives it — not even one booted with its clock behind, whose wall clock
   would take it for valid (docs/protocol.md, "Commands and the seal's clock").

A command may therefore reach a seal twice (a PUBACK lost on a dropped connection): the seal refuses the copy as
``replayed`` and the ingest keeps the first answer. The client has its own id (``<ingest client id>-cmd`` and a
secret suffix, :func:`seal_protocol.transport.mqtt_client_id`) on the court server's account, with a clean session.
``on_changed`` is told, after each round, the (seal, case) of the commands it expired or the broker accepted, and
``on_closed`` the (seal, case) of each arm or disarm alarm it closed — the command's or the alarm's own case, which a
seal that moved has left (the app publishes both on the pages' live bus). At each connection it also clears any
retained message on the seals' ``cmd`` and ``receipt`` topics (:mod:`server.commands.retained_sweep`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy.orm import Session

from seal_protocol import cmd_topic
from seal_protocol.envelope import parse_ts
from seal_protocol.wirejson import loads_wire_json
from server.commands.failures import close_settled, expire_due_and_alarm
from server.commands.models import CourtCommand
from server.commands.retained_sweep import RetainedSweep
from server.commands.service import claim_for_publish, expire_unbound, to_publish
from server.config import CommandSettings, MqttSettings
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.mqtt import RefusedLog, connect_in_background, make_client, publish_problem
from server.core.rounds import RoundLoop
from server.marks.marks import CaughtUp

logger = logging.getLogger(__name__)

#: A command expires once the ingest has caught up this far past its expiry: an answer the seal sent just before it
#: may still be on its way to the broker.
EXPIRY_MARGIN = timedelta(seconds=2)

NO_MATCHING_SUBSCRIBERS = 16  # an MQTT v5 PUBACK reason code that is not a failure


def expiry_interval(signed: bytes, now: datetime) -> int:
    """The Message Expiry Interval (s) to publish the signed command ``signed`` with at ``now``: the whole seconds
    left until its ``expires_at`` (rounded down: the broker never keeps it past its expiry), at least 1."""
    left = (parse_ts(loads_wire_json(signed)["expires_at"]) - now).total_seconds()
    return max(1, int(left))


def _cases_of(session: Session, command_ids: list[int]) -> dict[int, str]:
    """The case each of these commands was issued for, by id (the rows the expiry just wrote: no query)."""
    commands = (session.get(CourtCommand, command_id) for command_id in command_ids)
    return {command.id: command.case_no for command in commands if command is not None}


@dataclass
class Round:
    """What one round did: command ids by publish result, the ids it expired, and those it read as due but found
    withdrawn, expired, settled or of a moved seal when it came to publish them (not published)."""

    published: dict[str, list[int]] = field(default_factory=dict)
    expired: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)


class CommandDispatcher:
    """Publishes commands from the database and expires unanswered ones: :meth:`start` / :meth:`stop`,
    :meth:`wake` after issuing a command, :meth:`run_round` for one round now."""

    def __init__(
        self,
        mqtt_settings: MqttSettings,
        settings: CommandSettings,
        session_factory: SessionFactory,
        *,
        metrics: IngestMetrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        on_changed: Callable[[list[tuple[str, str]]], None] | None = None,
        on_closed: Callable[[list[tuple[str, str]]], None] | None = None,
        mark_forget_s: float = 600.0,
        caught_up_wait_max_s: float = 900.0,
    ) -> None:
        self._mqtt = mqtt_settings
        self._caught_up = CaughtUp("command expiry", forget_s=mark_forget_s, wait_max_s=caught_up_wait_max_s)
        self._on_changed = on_changed
        self._on_closed = on_closed
        self._refused = RefusedLog(mqtt_settings, "cmd")
        self.settings = settings
        self._session_factory = session_factory
        self._metrics = metrics or IngestMetrics()
        self._sweep = RetainedSweep(self._metrics)
        self._clock = clock
        self._loop = RoundLoop("command-dispatcher", self.run_round, settings.retry_interval_s)
        self._connected = threading.Event()
        self._acks: dict[int, ReasonCode] = {}
        self._abandoned: set[int] = set()  # message ids whose PUBACK came too late for us
        self._acks_cond = threading.Condition()
        self._client: mqtt.Client | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def wake(self) -> None:
        """Run a round now (a command was just issued)."""
        self._loop.wake()

    def start(self) -> None:
        if self._client is not None:
            return
        client = make_client(self._mqtt, role="cmd")
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._sweep_message
        self._client = client
        connect_in_background(client, self._mqtt, persistent=False)
        self._loop.start()
        logger.info(
            "command dispatcher: publishing as %s, rounds every %.1f s",
            self._mqtt.username,
            self.settings.retry_interval_s,
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self._client is None:
            return
        self._loop.stop(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None
        self._connected.clear()

    # -- one round -------------------------------------------------------------------------------------------------

    def run_round(self) -> Round:
        changed: set[tuple[str, str]] = set()  # (seal, the command's case: the seal may be bound to another now)
        closed: set[tuple[str, str]] = set()
        try:
            return self._round(changed, closed)
        finally:
            if changed and self._on_changed is not None:
                self._on_changed(sorted(changed))
            if closed and self._on_closed is not None:
                self._on_closed(sorted(closed))

    def _round(self, changed: set[tuple[str, str]], closed_in: set[tuple[str, str]]) -> Round:
        done = Round()
        now = self._clock()
        # One transaction each, as each locks its commands by id (the ingest's order): together, a command expired
        # by the second would be locked after a higher one expired by the first. What each committed is told at
        # once: should the second fail, the first's expiries are not due again, and would never be.
        with self._session_factory() as session:  # expire only what the ingest has caught up past: its answer is in
            judged = self._caught_up.moment(session, now)
        due_before = now if judged >= now else judged - EXPIRY_MARGIN
        expiries = (partial(expire_due_and_alarm, due_before=due_before), expire_unbound)
        for expire in expiries:  # expire_unbound: a binding ended by other means
            with self._session_factory() as session:
                expired = expire(session, now=now)
                of_case = _cases_of(session, [command_id for command_id, _ in expired])
                session.commit()
            for command_id, device_id in expired:
                logger.warning("command %d to %s expired without an answer from the seal", command_id, device_id)
            done.expired += [command_id for command_id, _ in expired]
            changed.update((device_id, of_case[command_id]) for command_id, device_id in expired)
            if expired:
                self._metrics.count_command("expired", "", len(expired))
        with self._session_factory() as session:
            closed = [(a.id, a.kind, a.device_id, a.case_no, a.closed_note) for a in close_settled(session, now=now)]
            session.commit()
        for alarm_id, kind, device_id, case_no, note in closed:
            logger.info("alarm %d (%s, seal %s, case %s) closed: %s", alarm_id, kind, device_id, case_no, note)
            closed_in.add((device_id, case_no))  # the alarm's case: the seal may be bound to another one now
        if not self.connected:
            return done
        with self._session_factory() as session:
            due = [
                (c.id, c.device_id, c.case_no)
                for c in to_publish(session, now=now, seals=self.settings.seals_per_round)
            ]
        held_back: set[str] = set()
        for command_id, device_id, case_no in due:
            if self._loop.stopping or not self.connected:
                break
            if device_id in held_back:
                continue
            outcome = self._publish(command_id, now)
            if outcome is None:  # withdrawn, expired, settled or its seal moved since the round read it
                done.dropped.append(command_id)
                continue
            result, error = outcome
            self._record(command_id, result, error)
            done.published.setdefault(result, []).append(command_id)
            if result == "accepted":
                changed.add((device_id, case_no))
            else:
                held_back.add(device_id)
        return done

    def _publish(self, command_id: int, now: datetime) -> tuple[str, str | None] | None:
        """Publish the command if it may still be (``None`` if not) and wait for the PUBACK: (result, error).

        The command is locked and looked at again (:func:`~server.commands.service.claim_for_publish`) in a
        transaction that ends only once paho has the message: a withdrawal, an expiry, an answer or a move of its
        seal committed before is seen, and one that commits later waits for the hand-over — it comes after the
        publish, which is what the later command it issues (the abort's ``arm``, a higher id) is for. The PUBACK is
        awaited outside: it changes nothing of whether the message goes out (paho sends what it queued, again after
        a reconnect), and inside it would hold the command — and an ingest batch with its answer, or the judge's
        withdrawal — for up to ``publish_timeout_s`` of a slow broker."""
        client = self._client
        if client is None:
            return "not_connected", "the dispatcher is stopped"
        with self._session_factory() as session:
            command = claim_for_publish(session, command_id=command_id, now=now)
            if command is None:
                return None
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = expiry_interval(command.signed, now)  # the round's now
            info = client.publish(cmd_topic(command.device_id), command.signed, qos=1, properties=properties)
        problem = publish_problem(info)
        if problem is not None:
            return "not_connected", f"publish failed: {problem}"
        with self._acks_cond:
            got = self._acks_cond.wait_for(lambda: info.mid in self._acks, self.settings.publish_timeout_s)
            code = self._acks.pop(info.mid, None)
            if not got:
                self._abandoned.add(info.mid)
        if not got or code is None:
            return "timeout", f"no PUBACK within {self.settings.publish_timeout_s} s"
        if code.is_failure:
            return "refused", f"the broker refused the publish: {code}"
        if code.value == NO_MATCHING_SUBSCRIBERS:
            return "no_subscriber", "no subscriber: the seal has no session with the broker (never connected?)"
        return "accepted", None

    def _record(self, command_id: int, result: str, error: str | None) -> None:
        now = self._clock()
        with self._session_factory() as session:
            row = session.get(CourtCommand, command_id, with_for_update=True)
            if row is not None:
                row.publish_attempts += 1
                row.publish_error = error
                row.updated_at = now  # the round's turns go to the seals tried least recently (to_publish)
                if result == "accepted":
                    row.broker_accepted_at = now
                session.commit()
        self._metrics.count_command("published", result)
        if result == "accepted":
            logger.info(
                "command %d published to %s (broker accepted; awaiting the seal's answer)",
                command_id,
                row.device_id if row else "?",
            )
        else:
            logger.warning("command %d not accepted by the broker (%s): %s; retrying", command_id, result, error)

    # -- paho callbacks (paho's network thread) --------------------------------------------------------------------

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: ReasonCode, _p: Any) -> None:
        if reason_code.is_failure:
            self._connected.clear()
            self._refused.refused(reason_code)
            return
        self._refused.accepted()
        self._sweep.start(_client)
        self._connected.set()
        self._loop.wake()
        logger.info("command publisher connected to the broker")

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason_code: ReasonCode, _p: Any
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._loop.stopping:
            logger.warning("command publisher disconnected: %s; reconnecting", reason_code)

    def _on_subscribe(self, client: mqtt.Client, _userdata: Any, mid: int, codes: list[ReasonCode], _p: Any) -> None:
        self._sweep.subscribed(client, mid, codes)

    def _sweep_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._sweep.received(client, message)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason_code: ReasonCode, _p: Any) -> None:
        if self._sweep.published(mid, reason_code):
            return
        with self._acks_cond:
            if mid in self._abandoned:
                self._abandoned.discard(mid)
                return
            self._acks[mid] = reason_code
            self._acks_cond.notify_all()
