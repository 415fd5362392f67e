"""The court's side of the bench, in its own process (as the real court is): receipts every event and snapshot.

    .venv/bin/python bench/court.py --port PORT --password-file FILE --key-file FILE

It connects with the court server's account (``server.seals.broker_files.SERVER_USERNAME``), subscribes to every seal's
``event`` and ``snapshot`` topics and answers each message with a receipt naming the SHA-256 of its bytes, signed
with the court key in ``--key-file`` (the one every bench seal pins as ``[commands] server_public_key``), QoS 1 on
``seal/v1/<id>/receipt``. It checks nothing and stores nothing: it stands in for a court that committed every
message at once, so a bench seal's outbox drains as it would with a court that keeps up. It prints ``ready`` once
subscribed and runs until its stdin closes; then it prints how many messages it receipted.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from seal_protocol import MessageKind, parse_topic, subscription_all
from seal_protocol.receipts import encode_receipt
from seal_protocol.signing import SigningKey, load_signing_key
from seal_protocol.topics import receipt_topic
from server.seals.broker_files import SERVER_USERNAME

KINDS = (MessageKind.EVENT, MessageKind.SNAPSHOT)


class BenchCourt:
    """A paho client with the court's account that receipts every event and snapshot it receives, one by one."""

    def __init__(self, port: int, password: str, key: SigningKey) -> None:
        self.key = key
        self.receipted = 0
        self.subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-court", protocol=mqtt.MQTTv5)
        client.username_pw_set(SERVER_USERNAME, password)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        self._client = client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe([(subscription_all(kind), 1) for kind in KINDS])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = parse_topic(message.topic)
        if topic.kind in KINDS:
            digest = hashlib.sha256(message.payload).hexdigest()
            client.publish(receipt_topic(topic.device_id), encode_receipt(topic.device_id, [digest], self.key), qos=1)
            self.receipted += 1

    def run(self) -> None:
        self._client.loop_start()
        try:
            if not self.subscribed.wait(10):
                raise SystemExit("bench court: did not subscribe within 10 s")
            print("ready", flush=True)
            sys.stdin.read()  # until the bench closes our stdin
        finally:
            self._client.disconnect()
            self._client.loop_stop()
        print(f"receipted {self.receipted} message(s)", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="the bench's Mosquitto on 127.0.0.1")
    parser.add_argument("--password-file", type=Path, required=True, help="the court account's MQTT password")
    parser.add_argument("--key-file", type=Path, required=True, help="the court's command key (base64, 32 bytes)")
    args = parser.parse_args(argv)
    password = args.password_file.read_text().strip()
    BenchCourt(args.port, password, load_signing_key(args.key_file)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
