"""The baseline of ``bench/ingest.py``, in its own process (as the court server is): a bare paho subscriber.

    .venv/bin/python bench/bare_subscriber.py --port PORT --password-file FILE --expect N

It connects with the court server's account under its own client id (clean start), subscribes to every seal's
``event`` topic at QoS 1 (paho acknowledges each message as it arrives), and counts. It decodes nothing, checks
nothing and stores nothing: the fastest a Python MQTT client on this machine takes the same stream in. It prints
``ready`` once subscribed, then, after ``--expect`` messages (or when its stdin closes), one line:
``received <count> first <wall-clock s> last <wall-clock s>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from seal_protocol import MessageKind, subscription_all
from server.core.mqtt import send_at_once
from server.seals.broker_files import SERVER_USERNAME


class BareSubscriber:
    def __init__(self, port: int, password: str, expect: int) -> None:
        self.expect = expect
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.subscribed = threading.Event()
        self.done = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare-subscriber", protocol=mqtt.MQTTv5)
        client.username_pw_set(SERVER_USERNAME, password)
        client.on_socket_open = send_at_once  # TCP_NODELAY, as the court's and the seals' clients
        client.on_connect = self._on_connect
        client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        self._client = client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(subscription_all(MessageKind.EVENT), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self.expect:
            self.done.set()

    def run(self) -> None:
        self._client.loop_start()
        try:
            if not self.subscribed.wait(10):
                raise SystemExit("bare subscriber: did not subscribe within 10 s")
            print("ready", flush=True)
            threading.Thread(target=lambda: (sys.stdin.read(), self.done.set()), daemon=True).start()
            self.done.wait()
        finally:
            self._client.disconnect()
            self._client.loop_stop()
        print(f"received {self.count} first {self.first:.6f} last {self.last:.6f}", flush=True)


class BareProcess:
    """The bench's side: this script in a process of its own, started and waited for until ``ready``; then
    :meth:`result` reads its count and the wall-clock time of its last message."""

    def __init__(self, root: Path, port: int, password: str, expect: int) -> None:
        password_file = root / "bare-password"
        password_file.write_text(password + "\n")
        args = [sys.executable, __file__, "--port", str(port), "--password-file", str(password_file)]
        self.process = subprocess.Popen(
            [*args, "--expect", str(expect)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the bare subscriber did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def result(self) -> tuple[int, float]:
        """``(count, last)`` once it has received what it expected (it still runs: read its CPU, then :meth:`stop`)."""
        assert self.process.stdout is not None
        words = self.process.stdout.readline().split()
        return int(words[1]), float(words[5])

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="the bench's Mosquitto on 127.0.0.1")
    parser.add_argument("--password-file", type=Path, required=True, help="the court account's MQTT password")
    parser.add_argument("--expect", type=int, required=True, help="stop after this many messages")
    args = parser.parse_args(argv)
    BareSubscriber(args.port, args.password_file.read_text().strip(), args.expect).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
