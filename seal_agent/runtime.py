"""The composition root: the one place where gpiozero, OpenCV, simpleaudio and paho are wired to the seal.

What it wires, in the direction the data flows (edge → warning → journal → delivery):

* the devices (:mod:`seal_agent.devices`: PIR, tamper switch, speaker, camera) feed the seal's behaviour
  (:class:`~seal_agent.behaviour.seal.SealAgent`), which decides and warns;
* every event, whoever raises it (the behaviour, the court command desk, the camera's health, the snapshot
  spool's thinning), is committed by the journal's one :class:`~seal_agent.journal.recorder.EventRecorder`;
* :class:`~seal_agent.journal.delivery.Delivery` drains the journal through the MQTT publisher and takes the
  broker's PUBACKs and the court's receipts itself; the :class:`~seal_agent.behaviour.commands.CommandDesk` takes the
  court's commands;
* the recorder's storage health (:mod:`seal_agent.journal.storage_health`: its commits refused) feeds the publisher's
  retained ``online`` status, which says while the seal cannot store its events.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import TYPE_CHECKING

from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.sensor_bound import SensorLimits
from seal_agent.behaviour.triggers import CameraPolicy
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.config import AgentConfig, court_key, read_password
from seal_agent.errors import failure_reason
from seal_agent.interfaces import Clock, ClockState, Speaker
from seal_agent.state_checks import claim_state_dir
from seal_protocol import EventType
from seal_protocol.signing import SigningKey

if TYPE_CHECKING:
    from seal_agent.devices.evidence import SealCamera
    from seal_agent.journal.outbox import Outbox
    from seal_agent.journal.recorder import EventRecorder
    from seal_agent.journal.snapshot_spool import SnapshotSpool
    from seal_agent.mqtt import MqttPublisher

logger = logging.getLogger(__name__)


class SealRuntime:
    """One seal with its real adapters wired together: what ``run`` and ``simulate`` start.

    ``pin_factory`` None means gpiozero's default (the Pi's GPIO); ``speaker`` None means simpleaudio.
    Build, :meth:`start`, and :meth:`close` (also on error: it closes whatever was opened). A configuration without
    the court's public key is refused (:class:`~seal_agent.errors.ConfigError`): only the court's signed receipts
    empty the outbox. ``reconnect_max_s`` overrides ``[mqtt]``, ``receipt_timeout_s`` / ``receipt_timeout_max_s``
    ``[delivery]`` (tests). ``clock_state`` None means the kernel's (``adjtimex``, the boot id).
    ``simulated`` (``seal-agent simulate``): the seal's pins are not real. Its state directory must be a simulated
    seal's (a new one is marked so) and every event it signs says ``"simulated": true``; without it a simulated seal's
    state directory is refused (:mod:`seal_agent.state_checks`). Tests on mock pins run the real seal: no flag.
    A camera that cannot be opened (no OpenCV, no device) is logged and the seal runs without it. The snapshot spool
    is built camera or not: snapshots an earlier run queued are delivered, and counted in every heartbeat, all the same.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        pin_factory: object | None = None,
        speaker: Speaker | None = None,
        reconnect_max_s: float | None = None,
        retry_s: float = 30.0,
        receipt_timeout_s: float | None = None,
        receipt_timeout_max_s: float | None = None,
        clock: Clock | None = None,
        clock_state: ClockState | None = None,
        simulated: bool = False,
    ) -> None:
        from seal_agent.behaviour.commands import CommandDesk
        from seal_agent.journal.chain import open_chain
        from seal_agent.journal.delivery import Delivery
        from seal_agent.journal.recorder import EventRecorder

        self.config = config
        self.clock = clock or SystemClock()
        self.clock_state = clock_state or _kernel_clock()
        court = court_key(config)
        self._stack = ExitStack()
        try:
            claim_state_dir(config, simulated=simulated)  # a simulated seal's chain, or a real one's: never both
            config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            key, outbox = open_chain(
                config.state_dir, config.device_id, key_path=config.key_path, outbox_path=config.outbox_path
            )  # refuses a state_dir whose outbox or key is lost, or that holds another seal's chain
            self.outbox: Outbox = self._stack.enter_context(outbox)
            self._build_devices(pin_factory, speaker)
            self.publisher = self._build_publisher(reconnect_max_s)
            self.recorder: EventRecorder = EventRecorder(
                device_id=config.device_id, case_no=config.case_no, signing_key=key, outbox=self.outbox,
                clock=self.clock, simulated=simulated,
            )  # fmt: skip
            self.recorder.storage.listener = self.publisher.report_storage  # its status says it cannot store
            self.spool = self._build_spool()
            self._build_camera()
            self.delivery = Delivery(
                self.publisher, self.recorder, court_key=court, clock=self.clock, snapshots=self.spool, retry_s=retry_s,
                receipt_timeout_s=receipt_timeout_s or config.delivery.receipt_timeout_s,
                receipt_timeout_max_s=receipt_timeout_max_s or config.delivery.receipt_timeout_max_s,
            )  # fmt: skip
            self.agent = self._build_agent()
            self.commands = CommandDesk(
                self.agent, self.recorder, self.clock, server_key=court, clock_state=self.clock_state
            )
            self.publisher.bind_commands(self.commands.handle)
            if self.camera is not None:
                self._wire_camera(self.camera, self.recorder)
        except BaseException:
            self._stack.close()
            raise
        self._started = False

    def _build_devices(self, pin_factory: object | None, speaker: Speaker | None) -> None:
        from seal_agent.devices.pir import PirSensor
        from seal_agent.devices.speaker import WarningSpeaker
        from seal_agent.devices.tamper import TamperSwitch

        config = self.config
        if speaker is None:
            real_speaker = WarningSpeaker(config.warning.sound_files(), languages=config.warning.languages)
            self._stack.callback(real_speaker.close)
            speaker = real_speaker
        self.speaker = speaker
        self.sensor = PirSensor(config.pir.pin, pin_factory=pin_factory)
        self._stack.callback(self.sensor.close)
        self.tamper: TamperSwitch | None = None
        if config.tamper.enabled:
            self.tamper = TamperSwitch(config.tamper.pin, pin_factory=pin_factory)
            self._stack.callback(self.tamper.close)

    def _build_publisher(self, reconnect_max_s: float | None) -> MqttPublisher:
        from seal_agent.connection_stamps import STAMP_FILE, ConnectionStamps
        from seal_agent.mqtt import MqttPublisher

        config = self.config
        return MqttPublisher(
            device_id=config.device_id,
            host=config.mqtt.host,
            port=config.mqtt.port,
            username=config.mqtt_username,
            password=read_password(config),
            keepalive_s=config.mqtt.keepalive_s,
            tls_ca_file=config.mqtt.tls_ca_file,
            reconnect_max_s=reconnect_max_s or config.mqtt.reconnect_max_s,
            stamps=ConnectionStamps(config.state_dir / STAMP_FILE),
        )

    def _build_spool(self) -> SnapshotSpool | None:
        from seal_agent.journal.snapshot_spool import SnapshotSpool
        from seal_agent.journal.snapshot_store import SnapshotStore

        directory = self.config.snapshot_dir
        self.camera_unavailable: str | None = None  # why a configured camera is not used (signed: camera_reason)
        try:
            store = SnapshotStore(directory, self.config.camera.snapshot_quota_bytes)
            spool = SnapshotSpool(store, self.recorder)
        except OSError as exc:
            logger.error("snapshot store %s cannot be used (%s): no snapshot is stored or sent", directory, exc)
            self.camera_unavailable = f"snapshot store: {failure_reason(exc)}"
            return None
        if not self.config.camera.enabled and spool.depth():
            logger.warning("no camera configured: the %d snapshot(s) queued before are still delivered", spool.depth())
        return spool

    def _build_camera(self) -> None:
        from seal_agent.devices.camera import CameraError, CameraUnavailable

        self.camera: SealCamera | None = None
        self._camera_monitored = False
        config = self.config.camera
        if not config.enabled or self.spool is None:
            logger.info("no camera configured" if self.spool is not None else "no camera without a snapshot store")
            return
        try:
            from seal_agent.devices.camera import CameraMonitor, open_camera
            from seal_agent.devices.evidence import SealCamera

            source = open_camera(config.source)
            if source is None:
                raise CameraUnavailable(f"[camera] source {config.source!r} names no camera")
            # Until the monitor is started this runtime owns the camera; from then on the monitor does (it closes
            # it, and deliberately leaves open a camera whose read() hangs: closing that one could crash).
            self._stack.callback(lambda: None if self._camera_monitored else source.close())
            monitor = CameraMonitor.from_config(config, source, clock=self.clock.monotonic)
            self.camera = SealCamera(monitor, self.spool)
        except (CameraError, OSError) as exc:
            logger.error("camera %r cannot be used (%s); the seal runs without it", config.source, exc)
            self.camera_unavailable = failure_reason(exc)

    def _build_agent(self) -> SealAgent:
        config = self.config
        return SealAgent(
            recorder=self.recorder,
            motion=self.sensor,
            speaker=self.speaker,
            warning=WarningSettings(
                repeat_s=config.warning.repeat_s,
                max_repeats=config.warning.max_repeats,
                cooldown_s=config.warning.cooldown_s,
            ),
            heartbeat_s=config.heartbeat_s,
            clock=self.clock,
            camera=self.camera,
            camera_policy=CameraPolicy(
                require_motion_confirmation=config.camera.require_motion_confirmation,
                motion_window_s=config.camera.motion_window_s,
            ),
            tamper=self.tamper,
            sensor_limits=SensorLimits(
                burst=config.sensors.trigger_burst,
                refill_s=config.sensors.trigger_refill_s,
                summary_s=config.sensors.summary_s,
                quiet_s=config.sensors.quiet_s,
                stuck_after_s=config.sensors.stuck_after_s,
            ),
            camera_unavailable=self.camera_unavailable if config.camera.enabled else None,
            clock_state=self.clock_state,
        )

    @staticmethod
    def _wire_camera(camera: SealCamera, recorder: EventRecorder) -> None:
        """The camera's health transitions are events of their own (the spool records its thinnings itself)."""
        camera.monitor.on_health = lambda kind, details: recorder.record_or_hold(EventType(kind), details)

    def start(self) -> None:
        self.delivery.start()
        self.agent.start()
        if self.camera is not None:
            self.camera.start()
            self._camera_monitored = True
        self.publisher.start()
        self._started = True

    def close(self) -> None:
        """Stop the camera, the agent and the delivery, send ``offline``, release the pins, the speaker and the
        outbox."""
        if self._started:
            self._started = False
            self.commands.close()  # a command the stopped agent could not follow up is not taken (it comes again)
            if self.camera is not None:
                self.camera.close()
            self.agent.stop()
            self.recorder.close()  # nothing records any more: what the outbox refused is tried once more, or logged
            self.delivery.stop()
            self.publisher.stop()
        self._stack.close()

    def __enter__(self) -> SealRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kernel_clock() -> ClockState:
    from seal_agent.devices.clock_state import KernelClock

    return KernelClock()


def keygen(config: AgentConfig, *, simulated: bool = False) -> tuple[SigningKey, bool]:
    """``seal-agent keygen``: the device key, and whether it was created (only for a state_dir with no chain yet).
    ``simulated`` (``keygen --simulated``): the key of a simulated seal, as for :class:`SealRuntime`."""
    from seal_agent.journal.chain import keygen

    claim_state_dir(config, simulated=simulated)
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return keygen(config.state_dir, key_path=config.key_path, outbox_path=config.outbox_path)
