"""What the court's MQTT client costs per message received, against paho's own client taking the same stream.

    .venv/bin/python bench/mqtt_client.py                    # 4 rounds of 40,000 messages each way
    .venv/bin/python bench/mqtt_client.py --rounds 6 --messages 60000

A private Mosquitto with the court's configuration; 4 seals (their own accounts) publish 600-byte QoS 1 messages as
fast as paho lets them, from another process. This process receives them with ``manual_ack`` and acknowledges them in
batches of up to 500 from a second thread, as the ingest does — either through paho's ``Client`` (``on_message``,
``ack()`` per message) or through the court's :class:`server.core.mqtt.TolerantClient` (buffered reads,
``on_plain_publish``, ``ack_many``). Printed: this process's CPU time per message received (the publisher is another
process), each round, the two alternating; then the medians and their ratio. Nothing is stored or decoded: this is
the MQTT client's own cost, which ``bench/ingest.py`` measures as part of the court's.
"""

from __future__ import annotations

import argparse
import queue
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_support  # noqa: F401 - puts the checkout on sys.path
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from seal_dev.broker import PrivateBroker
from seal_protocol import event_topic
from server.core.mqtt import TolerantClient, send_at_once
from server.seals.broker_files import SERVER_USERNAME

SEALS = 4
BATCH = 500


def publish(port: int, accounts: list[tuple[str, str]], count: int) -> None:
    """The publisher process: each account on a thread of its own, ``count`` messages in all."""

    def run(device_id: str, password: str) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-bench", protocol=mqtt.MQTTv5)
        client.username_pw_set(device_id, password)
        client.max_inflight_messages_set(100)
        connected = threading.Event()
        client.on_connect = lambda *_: connected.set()
        client.connect("127.0.0.1", port)
        client.loop_start()
        if not connected.wait(10):
            raise SystemExit(f"{device_id}: not connected")
        payload = b"x" * 600
        infos = [client.publish(event_topic(device_id), payload, qos=1) for _ in range(count // len(accounts))]
        for info in infos:
            info.wait_for_publish(120)
        client.disconnect()
        client.loop_stop()

    threads = [threading.Thread(target=run, args=account) for account in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def receive(court: bool, port: int, password: str, count: int, accounts: list[tuple[str, str]]) -> float:
    """Receive ``count`` messages with the court's client (``court``) or paho's; µs of this process's CPU each."""
    cls = TolerantClient if court else mqtt.Client
    client = cls(CallbackAPIVersion.VERSION2, client_id=f"bench-{'court' if court else 'paho'}", protocol=mqtt.MQTTv5)
    client.manual_ack_set(True)
    client.username_pw_set(SERVER_USERNAME, password)
    client.on_socket_open = send_at_once
    received: queue.Queue[tuple[int, int]] = queue.Queue()
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe("seal/v1/+/event", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    if isinstance(client, TolerantClient):
        client.on_plain_publish = lambda topic, payload, qos, mid: received.put((mid, qos))
    client.on_message = lambda _c, _u, message: received.put((message.mid, message.qos))
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("the receiver did not subscribe")
    done = threading.Event()

    def acknowledge() -> None:
        taken = 0
        while taken < count:
            batch = [received.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(received.get_nowait())
                except queue.Empty:
                    break
            taken += len(batch)
            if isinstance(client, TolerantClient):
                client.ack_many(batch)
            else:
                for mid, qos in batch:
                    client.ack(mid, qos)
        done.set()

    threading.Thread(target=acknowledge, daemon=True).start()
    publisher = subprocess.Popen([sys.executable, __file__, "--publish", str(port), str(count), *_flat(accounts)])
    cpu = time.process_time()
    if not done.wait(300):
        raise SystemExit("not every message arrived within 300 s")
    cpu = time.process_time() - cpu
    publisher.wait(60)
    client.disconnect()
    client.loop_stop()
    return cpu / count * 1e6


def _flat(accounts: list[tuple[str, str]]) -> list[str]:
    return [part for account in accounts for part in account]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--publish"]:
        port, count, rest = int(argv[1]), int(argv[2]), argv[3:]
        publish(port, list(zip(rest[::2], rest[1::2], strict=True)), count)
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="rounds, each client once per round (4)")
    parser.add_argument("--messages", type=int, default=40000, help="messages per run (40,000)")
    args = parser.parse_args(argv)
    accounts = [(f"seal-bench-{n:05d}", secrets.token_urlsafe(12)) for n in range(SEALS)]
    password = secrets.token_urlsafe(16)
    figures: dict[str, list[float]] = {"paho": [], "court": []}
    with tempfile.TemporaryDirectory() as scratch:
        broker = PrivateBroker(Path(scratch) / "broker", {SERVER_USERNAME: password, **dict(accounts)})
        broker.start()
        try:
            print(f"{args.messages:,} messages of 600 bytes, QoS 1, from {SEALS} seals; CPU of the receiving process")
            for n in range(args.rounds):
                for name in ("paho", "court") if n % 2 == 0 else ("court", "paho"):
                    figure = receive(name == "court", broker.port, password, args.messages, accounts)
                    figures[name].append(figure)
                    print(f"  round {n + 1}: {name:5s} {figure:6.1f} µs a message", flush=True)
        finally:
            broker.stop()
    paho, court = statistics.median(figures["paho"]), statistics.median(figures["court"])
    print(f"median: paho's client {paho:.1f} µs, the court's {court:.1f} µs a message: {court / paho:.2f} × paho's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
