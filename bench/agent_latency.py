"""Latency and idle cost of the seal agent, measured on the real code paths. Run by hand, not part of the tests:

    .venv/bin/python bench/agent_latency.py [--triggers 200] [--idle-s 30]

What runs: the real ``SealRuntime`` in this process (gpiozero ``MockFactory`` pins, the real ``WarningSpeaker``
playing through simpleaudio into ALSA, the real SQLite outbox, real paho to a private Mosquitto started here), and
two idle ``seal-agent simulate`` processes (without and with a video-file camera) for CPU and memory. A stand-in
court (``bench/court.py``, its own process) receipts every event and snapshot with a court key made for this run,
which every bench seal pins: a seal deletes an event from its outbox only on such a receipt.

ALSA's default device is a file sink whose "file" is a FIFO this bench reads, so the moment the first PCM bytes of a
warning come out of ALSA is observed, not guessed. ALSA reads ``ALSA_CONFIG_PATH`` when the first sound is opened,
so the bench re-executes itself with it set before anything can play.

Figures per trigger (a PIR edge: ``MockPin.drive_high()``; its handler runs on the calling thread, as lgpio's edge
callback thread would on a Pi):
  (a1) edge → simpleaudio accepted the warning's PCM buffer (``WarningSpeaker.on_started``: ``play()`` returned)
  (a2) edge → the first PCM bytes written by ALSA's file plugin arrive in the FIFO
  (b)  edge → the signed ``intrusion`` committed to the outbox, as ``when_intrusion`` sees it: it runs on
       ``seal-trigger-commits`` once the commit is done, after the follow-ups of the triggers before it are started,
       so (b) is the commit plus that hand-over (an upper bound for the commit itself)
  (c)  edge → the broker's PUBACK for that event (``when_delivered``, paho's thread; the event stays in the outbox
       until the court's receipt, which comes after the PUBACK)
The same four again with ``+cam``: a second agent whose camera plays a 640x480 clip (3 fps, the defaults), so each
intrusion first encodes and hashes the ring buffer's pre-trigger JPEGs (its snapshot files are stored after the
commit, on the trigger's follow-up thread). Baselines from the same run make the figures readable as ratios.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

from baselines import baseline_edge, baseline_play, baseline_puback, baseline_sqlite
from bench_support import DEVICE, EDGE_GAP_S, PIR_PIN, WARM_UP, Court, FifoSink, Series, Stamp, machine, write_config
from idle import measure_idle, write_clip

from seal_agent.cli import SWITCH_INTERVAL_S
from seal_dev.broker import PrivateBroker
from server.seals.broker_files import SERVER_USERNAME

TARGETS_MS = {"a2": 20.0, "b": 10.0}


def measure_agent(
    config_path: Path, sink: FifoSink, n: int, *, tag: str = ""
) -> tuple[list[Series], Callable[[], None]]:
    from gpiozero.pins.mock import MockFactory

    from seal_agent.config import load_config
    from seal_agent.devices.speaker import WarningSpeaker
    from seal_agent.runtime import SealRuntime

    config = load_config(config_path)
    [wav] = config.warning.sound_files()
    with wave.open(str(wav)) as w:
        pcm_bytes = w.getnframes() * w.getsampwidth() * w.getnchannels()
    factory = MockFactory()
    started, committed = Stamp(), Stamp()
    acks: dict[int, float] = {}
    acked = threading.Condition()

    def on_delivered(seq: int) -> None:
        with acked:
            acks[seq] = time.perf_counter()
            acked.notify_all()

    speaker = WarningSpeaker(config.warning.sound_files(), on_started=lambda name: started.mark())
    runtime = SealRuntime(config, pin_factory=factory, speaker=speaker)
    runtime.agent.when_intrusion = lambda stored: committed.mark(stored.seq)
    runtime.delivery.when_delivered = on_delivered
    runtime.start()
    assert runtime.publisher.wait_connected(10), "the agent did not connect"
    assert runtime.delivery.events.wait_drained(10), "the court did not receipt agent_started"
    if runtime.camera is not None:  # wait until the camera has learned the background and fills its ring
        monitor = runtime.camera.monitor
        assert monitor.wait_for_state("ok", 10), f"camera {monitor.state}"
        deadline = time.monotonic() + 10
        while monitor.observations < 12 and time.monotonic() < deadline:
            time.sleep(0.1)
    series = [
        Series(f"(a1{tag}) PIR edge -> simpleaudio accepted the warning (play() returned)"),
        Series(f"(a2{tag}) PIR edge -> first warning PCM bytes out of ALSA"),
        Series(f"(b{tag})  PIR edge -> intrusion committed to the outbox"),
        Series(f"(c{tag})  PIR edge -> PUBACK for that intrusion"),
    ]
    pin = factory.pin(PIR_PIN)
    for i in range(n + WARM_UP):
        started.event.clear()
        committed.event.clear()
        sink.arm()
        t0 = time.perf_counter()
        pin.drive_high()  # the agent's handler runs on this thread, as on lgpio's callback thread
        assert committed.event.wait(5) and started.event.wait(5) and sink.first.wait(5), f"trigger {i} stalled"
        with acked:
            assert acked.wait_for(lambda: committed.value in acks, 10), f"no PUBACK for seq {committed.value}"
            ack_at = acks[committed.value]
        assert speaker.wait_done(10) and sink.wait_bytes(pcm_bytes, 5), f"trigger {i}: the warning did not play"
        if i >= WARM_UP:
            for item, at in zip(series, (started.at, sink.first_at, committed.at, ack_at), strict=True):
                item.values.append(at - t0)
        time.sleep(max(0.0, t0 + EDGE_GAP_S - time.perf_counter()))
        pin.drive_low()
        time.sleep(EDGE_GAP_S)
    assert runtime.delivery.events.wait_drained(10), "the court did not receipt every event"

    def close() -> None:
        runtime.close()
        speaker.close()
        factory.close()

    return series, close


# -- main -----------------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=200, help=f"PIR edges measured (after {WARM_UP} warm-up)")
    parser.add_argument("--idle-s", type=float, default=30.0, help="idle CPU window per idle agent, seconds")
    parser.add_argument("--skip-idle", action="store_true", help="latency only")
    parser.add_argument(
        "--camera-triggers", type=int, default=50, help="PIR edges measured with a video-file camera (0: none)"
    )
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=1000 * SWITCH_INTERVAL_S,
        help="sys.setswitchinterval for this process; default: what seal-agent run/simulate set (Python's own: 5)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    work: Path = args.work_dir or Path(tempfile.mkdtemp(prefix="seal-bench-"))
    alsa_conf = work / "alsa-fifo.conf"
    if os.environ.get("ALSA_CONFIG_PATH") != str(alsa_conf):  # before anything plays: set it and start again
        os.mkfifo(work / "alsa-out.fifo")
        alsa_conf.write_text(f'pcm.!default {{ type file; slave.pcm {{ type null }}; file "{work}/alsa-out.fifo"; '
                             'format "raw" }\n')  # fmt: skip
        env = dict(os.environ, ALSA_CONFIG_PATH=str(alsa_conf))
        os.execve(sys.executable, [sys.executable, __file__, *argv, "--work-dir", str(work)], env)

    # The agent logs as in production (INFO, one line per event), into a file rather than the terminal.
    logging.basicConfig(level=logging.INFO, filename=work / "bench.log", format="%(asctime)s %(name)s: %(message)s")
    sys.setswitchinterval(args.switch_interval_ms / 1000)
    print(f"machine: {machine()}; GIL switch interval {1000 * sys.getswitchinterval():g} ms")
    print(f"work directory: {work} ({'kept' if args.keep else 'removed at the end'})\n")
    sink = FifoSink(work / "alsa-out.fifo")
    broker = PrivateBroker(work / "broker", {SERVER_USERNAME: secrets.token_urlsafe(16)})
    broker.start()
    court: Court | None = None
    try:
        from gpiozero.pins.mock import MockFactory

        court = Court(work / "court", broker)
        config_path = write_config(work / "agent", broker, court)
        agent_series, close_agent = measure_agent(config_path, sink, args.triggers)
        try:
            password = (work / "agent" / "mqtt-password").read_text().strip()
            puback = baseline_puback(broker, DEVICE, password, args.triggers)
        finally:
            close_agent()
        edge_factory = MockFactory()
        edge = baseline_edge(edge_factory, args.triggers)
        edge_factory.close()
        commit = baseline_sqlite(work, args.triggers)
        from seal_agent.config import DEFAULT_SOUNDS_DIR

        play_returned, play = baseline_play(DEFAULT_SOUNDS_DIR / "warning_zh.wav", sink, min(args.triggers, 50))
        camera_series: list[Series] = []
        if args.camera_triggers > 0:
            clip = write_clip(work / "room-latency.avi")
            camera_config = write_config(
                work / "agent-camera", broker, court, device_id=f"{DEVICE}-camera", camera=clip
            )
            camera_series, close_camera_agent = measure_agent(camera_config, sink, args.camera_triggers, tag="+cam")
            close_camera_agent()
        a1, a2, b, c = agent_series
        print("latency (the agent in this process; real gpiozero mock pin, simpleaudio, SQLite, paho, Mosquitto)")
        camera_rows: list[str] = []
        if camera_series:
            ca1, ca2, cb, cc = camera_series
            camera_rows = [ca1.row(play_returned), ca2.row(play, TARGETS_MS["a2"]), cb.row(commit), cc.row(puback)]
        for line in (
            a1.row(play_returned),
            a2.row(play, TARGETS_MS["a2"]),
            b.row(commit, TARGETS_MS["b"]),
            c.row(puback),
            *camera_rows,
            edge.row(),
            play_returned.row(),
            play.row(),
            commit.row(),
            puback.row(),
        ):
            print("  " + line)
        if not args.skip_idle:
            print(f"\nidle seal-agent simulate processes ({args.idle_s:g} s window after a 5 s settle)")
            clip = write_clip(work / "room.avi")
            for label, camera in (("no-camera", None), ("camera-file", clip)):
                figures = measure_idle(work, broker, court, label, args.idle_s, camera)
                cpu_ok = "met" if figures.cpu_percent < 2.0 else "MISSED"
                rss_ok = "met" if figures.rss_mb <= 120 else "MISSED"
                print(
                    f"  {label:<12} CPU {figures.cpu_percent:5.2f} % of one core (target < 2 %: {cpu_ok})  "
                    f"RSS {figures.rss_mb:6.1f} MB (peak {figures.peak_rss_mb:.1f}; target <= 120 MB: {rss_ok})  "
                    f"threads {figures.threads}"
                )
    finally:
        if court is not None:
            print(f"\nbench court: {court.close()}")
        broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
