"""One real seal among the bench's simulated ones: PIR edge → its ``intrusion`` row in the court's database.

The real ``SealRuntime`` on gpiozero ``MockFactory`` pins (a silent speaker, as in ``bench/dashboard_latency.py``),
registered in the court's database and pinning the court's key. :meth:`PirProbe.measure` drives the PIR pin high and
polls the court's database (every 2 ms, its own connection) until the seal's ``intrusion`` row is committed.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

from bench_support import PIR_PIN, Series
from sqlalchemy import func, select

from seal_agent.interfaces import WarningPlayback
from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess, seal_config
from server.core.db import session_scope
from server.evidence.models import Event
from server.seals.registry import register_seal

DEVICE = "seal-bench-pir"


class SilentSpeaker:
    """The warning "plays" at once (the speaker's latency is bench/agent_latency.py's business)."""

    def play_warning(self) -> WarningPlayback | None:
        playback = WarningPlayback(("zh",))
        playback.finished("zh", "played")
        playback.end()
        return playback

    def stop(self) -> None:
        pass

    def is_playing(self) -> bool:
        return False


class PirProbe:
    def __init__(self, directory: Path, broker: PrivateBroker, court: CourtProcess, case_no: str) -> None:
        from gpiozero.pins.mock import MockFactory

        from seal_agent.config import load_config
        from seal_agent.runtime import SealRuntime
        from seal_protocol.signing import load_signing_key

        self.court = court
        config = seal_config(
            directory,
            broker,
            device_id=DEVICE,
            case_no=case_no,
            court_public_key=court.court_public_key,
            heartbeat_s=3600,
            warning="repeat_s = 3600\nmax_repeats = 0\ncooldown_s = 0",
        )
        self.factory = MockFactory()
        self.runtime = SealRuntime(load_config(config), pin_factory=self.factory, speaker=SilentSpeaker())
        key = base64.b64encode(bytes(load_signing_key(load_config(config).key_path).verify_key)).decode("ascii")
        with session_scope(court.session_factory) as session:
            register_seal(session, actor=None, device_id=DEVICE, case_no=case_no, public_key=key)

    def start(self) -> None:
        self.runtime.start()
        assert self.runtime.publisher.wait_connected(30), "the PIR seal did not connect"
        assert self.runtime.delivery.events.wait_drained(60), "the court did not receipt agent_started"

    def _intrusions(self) -> int:
        with self.court.session_factory() as session:
            query = select(func.count()).select_from(Event).where(Event.device_id == DEVICE, Event.type == "intrusion")
            return int(session.scalar(query) or 0)

    def measure(self, triggers: int, gap_s: float, series: Series) -> None:
        pin = self.factory.pin(PIR_PIN)
        for _ in range(triggers):
            before = self._intrusions()
            t0 = time.perf_counter()
            pin.drive_high()
            while self._intrusions() == before:
                if time.perf_counter() - t0 > 30:
                    raise TimeoutError("no intrusion row within 30 s")
                time.sleep(0.002)
            series.values.append(time.perf_counter() - t0)
            pin.drive_low()
            time.sleep(gap_s)

    def close(self) -> None:
        self.runtime.close()
        self.factory.close()
