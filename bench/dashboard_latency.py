"""How soon an intrusion is on the judge's screen. Run by hand, not part of the tests:

    .venv/bin/python bench/dashboard_latency.py [--triggers 60]

What runs: a private Mosquitto, ``seal-server run`` as its own process (SQLite, the court's command key so the seal
gets receipts, ``[alarms] fold_window_s = 0`` so that every presence opens an alarm of its own), the real
``SealRuntime`` in this process on gpiozero ``MockFactory`` pins (a silent speaker: the sound is not measured here),
and Debian's chromium through Playwright, signed in as the case's judge on the overview (``/``), its live stream open.

Per trigger (a PIR edge: ``MockPin.drive_high()``; the agent's handler runs on the calling thread):
  (db)      edge → the intrusion's alarm row is committed in the court's database (polled every 2 ms: the baseline,
            the same path without the pages)
  (browser) edge → the alarm's row is in the page's DOM (a MutationObserver notes the wall-clock time it appears;
            browser and bench read the same clock)
The goal is p95 ≤ 1 s for (browser). The ratio of the two p50s says what the pages add.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
import tempfile
import time
from pathlib import Path

import bench_support  # noqa: F401 - puts the checkout on sys.path for seal_dev
from bench_support import PIR_PIN, SilentSpeaker, machine

from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess, seal_config
from server.auth.access import Role
from server.auth.passwords import hash_password
from server.auth.users import assign_case, create_user
from server.core.db import session_scope
from server.seals.broker_files import SERVER_USERNAME
from server.seals.cases import add_case
from server.seals.registry import register_seal

CASE = "(2021)苏0214执1234号"
DEVICE = "seal-bench-web"
PASSWORD = "bench horse battery staple"
WARM_UP = 3
GOAL_P95_S = 1.0

WATCH_ALARMS = """
() => {
  window.__alarmSeen = {};
  const note = () => document.querySelectorAll('[data-alarm-id]').forEach(row => {
    const id = row.getAttribute('data-alarm-id');
    if (!(id in window.__alarmSeen)) { window.__alarmSeen[id] = performance.timeOrigin + performance.now(); }
  });
  note();
  new MutationObserver(note).observe(document.body, { childList: true, subtree: true });
}
"""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]  # nearest rank


def row(name: str, values: list[float], baseline: list[float] | None = None) -> str:
    p50, p95, top = (1000 * v for v in (quantile(values, 0.5), quantile(values, 0.95), max(values)))
    text = f"{name:<62} n={len(values):<4} p50 {p50:7.1f}  p95 {p95:7.1f}  max {top:7.1f} ms"
    if baseline is not None:
        text += f"  p50 x{quantile(values, 0.5) / quantile(baseline, 0.5):.1f} of (db)"
        text += f"  goal p95 <= {1000 * GOAL_P95_S:g} ms: {'met' if p95 <= 1000 * GOAL_P95_S else 'MISSED'}"
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=60, help=f"PIR edges measured (after {WARM_UP} warm-up)")
    parser.add_argument("--gap-s", type=float, default=0.25, help="pause between two presences")
    args = parser.parse_args(argv)

    from gpiozero.pins.mock import MockFactory
    from playwright.sync_api import sync_playwright
    from sqlalchemy import func, select

    from seal_agent.config import load_config
    from seal_agent.runtime import SealRuntime
    from seal_dev.browser import launch, sign_in
    from seal_protocol.signing import load_signing_key
    from server.alarms.models import Alarm

    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as work:
        root = Path(work)
        broker = PrivateBroker(root / "broker", {SERVER_USERNAME: secrets.token_urlsafe(16)})
        broker.start()
        court = CourtProcess(root / "court", broker, extra_settings="[alarms]\nfold_window_s = 0\n")
        factory = MockFactory()
        runtime = None
        try:
            with session_scope(court.session_factory) as session:
                add_case(session, actor=None, case_no=CASE, court="无锡市新吴区人民法院")
                judge = create_user(session, username="judge", role=Role.JUDGE, password_hash=hash_password(PASSWORD))
                assign_case(session, user=judge, case_no=CASE)
            config = seal_config(
                root / DEVICE,
                broker,
                device_id=DEVICE,
                case_no=CASE,
                court_public_key=court.court_public_key,
                warning="repeat_s = 3600\nmax_repeats = 0\ncooldown_s = 0",
                sensors="trigger_burst = 1000000",  # each edge a trigger: a real seal would merge them as flapping
            )
            runtime = SealRuntime(load_config(config), pin_factory=factory, speaker=SilentSpeaker())
            seal_key = load_signing_key(load_config(config).key_path).verify_key  # made when the runtime was built
            key = base64.b64encode(bytes(seal_key)).decode("ascii")
            with session_scope(court.session_factory) as session:
                register_seal(session, actor=None, device_id=DEVICE, case_no=CASE, public_key=key, location="仓库")
            court.start()
            runtime.start()
            assert runtime.publisher.wait_connected(10), "the seal did not connect"
            assert runtime.delivery.events.wait_drained(20), "the court did not receipt agent_started"

            def alarms_stored() -> int:
                with court.reader() as session:
                    return int(session.scalar(select(func.count(Alarm.id))) or 0)

            db: list[float] = []
            browser_s: list[float] = []
            with sync_playwright() as playwright:
                browser = launch(playwright)
                # The bench's own watchers are evaluated as strings, which the pages' CSP (rightly) forbids.
                page = browser.new_page(viewport={"width": 1440, "height": 900}, bypass_csp=True)
                sign_in(page, court.url, "judge", PASSWORD)
                page.wait_for_function("document.body.dataset.live === 'up'", timeout=10000)
                page.evaluate(WATCH_ALARMS)
                pin = factory.pin(PIR_PIN)
                for i in range(args.triggers + WARM_UP):
                    before = alarms_stored()
                    t0 = time.time()
                    pin.drive_high()
                    while alarms_stored() == before:
                        if time.time() - t0 > 10:
                            raise TimeoutError(f"trigger {i}: no alarm in the database: {court.log_tail()}")
                        time.sleep(0.002)
                    t_db = time.time()
                    handle = page.wait_for_function(
                        f"Object.keys(window.__alarmSeen).length >= {before + 1} && "
                        "Math.max(...Object.values(window.__alarmSeen))",
                        timeout=10000,
                        polling=5,
                    )
                    seen_ms = float(handle.json_value())
                    if i >= WARM_UP:
                        db.append(t_db - t0)
                        browser_s.append(seen_ms / 1000 - t0)
                    pin.drive_low()
                    time.sleep(args.gap_s)
                browser.close()
        finally:
            if runtime is not None:
                runtime.close()
            factory.close()
            status = court.stop()
            court.close()
            broker.stop()
    print(f"dashboard latency on {machine()}; chromium headless; {len(db)} presences (after {WARM_UP} warm-up)")
    print(row("(db)      PIR edge -> alarm row committed in the court's database", db))
    print(row("(browser) PIR edge -> alarm row on the judge's overview (DOM)", browser_s, db))
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
