"""`make demo`: a private Mosquitto (auth on), the court server on SQLite, and simulated seals on two cases.

Everything lives under ./var/demo/ (or --dir) and is made fresh on each run. Ctrl-C (or --seconds N) stops every child
process and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seal_dev.alsa_sink import alsa_file_config  # noqa: E402
from seal_dev.broker import PrivateBroker, free_port  # noqa: E402
from seal_dev.demo_world import ACCOUNTS, CASES, COURT, SEALS, SEIZURE_DAYS, DemoSeal, write_camera_clip  # noqa: E402
from server.setup.court_dir import CourtDir, settings_text  # noqa: E402

logger = logging.getLogger("demo")
BIN = Path(sys.executable).parent


def sound_card_present() -> bool:
    cards = Path("/proc/asound/cards")
    return cards.exists() and "no soundcards" not in cards.read_text()


def run(*args: str | Path, stdin: str | None = None) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, input=stdin)
    if result.returncode != 0:
        raise SystemExit(f"demo: {' '.join(map(str, args))} failed:\n{result.stderr.strip()}")
    return result.stdout


def toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def wait_server(port: int, process: subprocess.Popen[bytes], log: Path, deadline_s: float = 90) -> bool:
    """True once *this* server listens on ``port`` (its own log says so: another program may answer on that port)
    and its health answers 200; False if it exits first."""
    url = f"http://127.0.0.1:{port}/api/health"
    listening = f"Uvicorn running on http://127.0.0.1:{port}"
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if listening in log.read_text(errors="replace"):
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
        time.sleep(0.2)
    raise SystemExit(f"demo: the server did not answer {url} within {deadline_s} s; see {log}")


def start_server(var: Path, broker: PrivateBroker) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``seal-server run`` on 8080, or on a free port if 8080 is (or becomes) taken; return it and its URL."""
    for attempt in range(3):
        port = 8080 if attempt == 0 and _port_free(8080) else free_port()
        conf = _write_server_config(var, broker, port)
        log_path = var / "server.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [BIN / "seal-server", "run", "--config", conf], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            ready = wait_server(port, server, log_path)
        except BaseException:  # not answering in time (or Ctrl-C): it is not left running without its demo
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
            raise
        if ready:
            return server, f"http://127.0.0.1:{port}"
        if "address already in use" not in log_path.read_text(errors="replace"):
            break
        logger.info("port %d was taken meanwhile; trying another", port)
        log_path.rename(var / f"server-port-{port}-taken.log")
    raise SystemExit(f"demo: the server exited with code {server.returncode}; see {log_path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this many seconds (0 = until Ctrl-C)")
    parser.add_argument("--dir", type=Path, default=ROOT / "var" / "demo", help="where the demo keeps its files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s demo: %(message)s", datefmt="%H:%M:%S")

    var = args.dir.resolve()
    if var.exists():
        shutil.rmtree(var)
    var.mkdir(parents=True)

    # The court's broker configuration (as `seal-server init` writes it, on a free port and without the seals' TLS
    # listener), its files beside the server's as in a court's directory. Its password and ACL files are the court
    # server's provisioning output: the server's account first, then one account per seal as it is registered.
    broker = PrivateBroker(var, manage_accounts=False)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server_conf = _write_server_config(var, broker, 8080)  # the port is settled when the server starts
        run(BIN / "seal-server", "init-db", "--config", server_conf)
        run(BIN / "seal-server", "broker", "server-account", "--config", server_conf)
        court_key = run(BIN / "seal-server", "court-key", "--config", server_conf).strip()
        run(BIN / "seal-server", "notice-key", "--config", server_conf)  # signs the QR codes of printed notices
        broker.start()
        code, court, phone, court_address = COURT
        run(
            BIN / "seal-server",
            "court",
            "add",
            code,
            court,
            "--phone",
            phone,
            "--address",
            court_address,
            "--config",
            server_conf,
        )
        expires = (datetime.date.today() + datetime.timedelta(days=SEIZURE_DAYS)).isoformat()
        for case_no, judge, judge_phone, address, sealed, ruling in CASES:
            run(
                BIN / "seal-server",
                "case",
                "add",
                case_no,
                "--config",
                server_conf,
                "--judge",
                judge,
                "--judge-phone",
                judge_phone,
                "--address",
                address,
                "--property",
                sealed,
                "--ruling",
                ruling,
                "--expires",
                expires,
            )

        logins = []
        for role, username, full_name, cases in ACCOUNTS:
            password = secrets.token_urlsafe(12)
            case_args = [arg for case_no in cases for arg in ("--case", case_no)]
            run(
                BIN / "seal-server",
                "user",
                "add",
                username,
                "--role",
                role,
                "--full-name",
                full_name,
                *case_args,
                "--password-stdin",
                "--config",
                server_conf,
                stdin=password + "\n",
            )
            logins.append(f"login: {role} {username} {password}")

        alsa_env = _alsa_file_sink(var)
        camera_clip = write_camera_clip(var / "camera.avi")
        for seal in SEALS:
            agent_conf = _write_agent_config(var, broker, seal, court_key)
            public_key = run(BIN / "seal-agent", "keygen", "--simulated", "--config", agent_conf).strip()
            run(
                BIN / "seal-server",
                "seal",
                "add",
                seal.device_id,
                "--case",
                seal.case_no,
                "--public-key",
                public_key,
                "--location",
                seal.location,
                "--config",
                server_conf,
                "--mqtt-password-file",
                var / seal.device_id / "mqtt-password",
            )

        server, base_url = start_server(var, broker)
        children.append(("server", server))

        for seal in SEALS:
            env = dict(os.environ, **alsa_env.get(seal.device_id, {}))
            log = open(var / f"{seal.device_id}.log", "wb")  # closed with the process
            agent = subprocess.Popen(
                [
                    BIN / "seal-agent",
                    "simulate",
                    "--config",
                    var / seal.device_id / "agent.toml",
                    "--trigger-every",
                    str(seal.trigger_every_s),
                    "--presence-s",
                    "2",
                    "--camera-file",
                    camera_clip,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            children.append((seal.device_id, agent))

        _print_banner(base_url, var, bool(alsa_env), logins)
        started = time.monotonic()
        while not stop.is_set():
            if args.seconds and time.monotonic() - started >= args.seconds:
                break
            for name, child in children:
                if child.poll() is not None:
                    raise SystemExit(f"demo: {name} exited with code {child.returncode}; see {var}/{name}.log")
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for _name, child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in reversed(children):
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within 15 s; killing it", name)
                child.kill()
                child.wait()
        broker.stop()
    logger.info("demo stopped; its data stays in %s until the next run", var)
    return 0


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _write_server_config(var: Path, broker: PrivateBroker, http_port: int) -> Path:
    """``server.toml`` as ``seal-server init`` writes it, for the demo's ports; the notices' QR codes point to the
    address the demo serves (``[notices] public_base_url``), so a notice printed there verifies there."""
    court = CourtDir(var)
    text = settings_text(
        court, http_port=http_port, mqtt_port=broker.port, public_base_url=f"http://127.0.0.1:{http_port}"
    )
    court.settings_file.write_text(text, encoding="utf-8")
    return court.settings_file


def _write_agent_config(var: Path, broker: PrivateBroker, seal: DemoSeal, court_key: str) -> Path:
    state = var / seal.device_id
    state.mkdir(parents=True, exist_ok=True)
    password_file = state / "mqtt-password"  # written by `seal-server seal add --mqtt-password-file`
    path = state / "agent.toml"
    path.write_text(
        f"device_id = {toml_str(seal.device_id)}\n"
        f"case_no = {toml_str(seal.case_no)}\n"
        f"state_dir = {toml_str(str(state))}\n"
        "heartbeat_s = 30\n"
        '[mqtt]\nhost = "127.0.0.1"\n'
        f"port = {broker.port}\n"
        f"password_file = {toml_str(str(password_file))}\n"
        f"[pir]\npin = {seal.pin}\n"
        '[warning]\nlanguages = ["zh", "en"]\nrepeat_s = 10\nmax_repeats = 1\ncooldown_s = 5\n'
        f"[commands]\nserver_public_key = {toml_str(court_key)}\n"
        # a presence every few seconds for as long as the demo runs: a real seal's bound would call that flapping
        "[sensors]\ntrigger_burst = 1000000\n"
    )
    return path


def _alsa_file_sink(var: Path) -> dict[str, dict[str, str]]:
    """Without a sound card, each seal's ALSA default device becomes a file (RECIPES.md)."""
    if sound_card_present():
        return {}
    envs = {}
    for seal in SEALS:
        (var / seal.device_id).mkdir(parents=True, exist_ok=True)
        conf = alsa_file_config(var / seal.device_id / "speaker.raw")  # taken at a speaker's pace
        envs[seal.device_id] = {"ALSA_CONFIG_PATH": str(conf)}
    return envs


def _print_banner(base_url: str, var: Path, file_sink: bool, logins: list[str]) -> None:
    lines = [
        "",
        f"dashboard: {base_url}/    ← 监控总览，用下面的账号登录 / open it and sign in with a login line below",
        "",
        "法院电子封条演示 / Court electronic seal demo",
        f"  server:    {base_url}/docs        (OpenAPI; bound to 127.0.0.1)",
        f"  health:    {base_url}/api/health",
        f"  seals:     {base_url}/api/seals",
    ]
    for case_no, *_ in CASES:
        lines.append(f"  events:    {base_url}/api/cases/{quote(case_no, safe='')}/events   ({case_no})")
    lines += [
        f"  metrics:   {base_url}/metrics",
        "  seals:     " + ", ".join(f"{s.device_id} → {s.case_no}, PIR every {s.trigger_every_s:g} s" for s in SEALS),
        f"  logs:      {var}/server.log, {var}/seal-demo-*.log",
        f"  camera:    both seals watch {var}/camera.avi; snapshots land in {var}/snapshots/",
    ]
    if file_sink:
        lines.append(f"  sound:     no sound card here: the warnings are written to {var}/seal-demo-*/speaker.raw")
    lines += [
        f"  sign in:   {base_url}/login with a line below (the pages: zh-CN, English at the top right); the API:",
        '             POST /api/auth/login {"username": …, "password": …} → cookie and bearer token, or in /docs.',
        "             Accounts (role, username, password), made for this run:",
        *logins,
        '  commands:  as the judge, POST {"action": "disarm"} (or arm, test_warning, snapshot, ping)',
        f"             to {base_url}/api/seals/seal-demo-1/commands; it stays pending until the seal's signed ack.",
        f"  notice:    {base_url}/api/seals/{SEALS[0].device_id}/notice.pdf   ← 查封公告 / the seal notice (PDF;",
        f"             as the judge or the officer); its QR code opens {base_url}/notice/<token>, the public check.",
        "  Ctrl-C stops the demo.",
        "",
    ]
    print("\n".join(lines), flush=True)  # noqa: T201 - CLI output


if __name__ == "__main__":
    sys.exit(main())
