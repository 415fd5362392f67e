#!/usr/bin/env bash
# Installs the seal agent on Raspberry Pi OS (bookworm) from this checkout. Run as root: sudo hardware/install.sh
#  - Debian packages, an unprivileged `seal` user in the gpio, audio and video groups
#  - /opt/court-seal (code, .venv with the [agent] extra, sounds), /etc/court-seal/agent.toml (from the example)
#  - the device key (created on the device, never leaves it) and the systemd unit, enabled
# It prints the public key to enrol on the court server (`seal-server seal add … --public-key …`).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then echo "install.sh: run as root (sudo $0)" >&2; exit 1; fi
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/court-seal
CONF_DIR=/etc/court-seal
STATE_DIR=/var/lib/court-seal

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev gcc libasound2-dev alsa-utils rsync

getent group gpio >/dev/null || groupadd --system gpio
id seal >/dev/null 2>&1 || useradd --system --home-dir "$STATE_DIR" --shell /usr/sbin/nologin seal
usermod -a -G gpio,audio,video seal

mkdir -p "$PREFIX" "$CONF_DIR" "$STATE_DIR"
rsync -a --delete --exclude .git --exclude .venv --exclude var "$SRC"/ "$PREFIX"/
[ -x "$PREFIX/.venv/bin/python" ] || python3 -m venv "$PREFIX/.venv"
"$PREFIX/.venv/bin/pip" install -q --upgrade pip
"$PREFIX/.venv/bin/pip" install -q "$PREFIX[agent]"

if [ ! -f "$CONF_DIR/agent.toml" ]; then
  install -m 0640 -o root -g seal "$PREFIX/hardware/agent.example.toml" "$CONF_DIR/agent.toml"
  echo "install.sh: wrote $CONF_DIR/agent.toml from the example: set device_id, case_no, [mqtt] and [commands]"
fi
chown seal:seal "$STATE_DIR"; chmod 0700 "$STATE_DIR"
touch "$CONF_DIR/mqtt-password"; chown root:seal "$CONF_DIR/mqtt-password"; chmod 0640 "$CONF_DIR/mqtt-password"

"$PREFIX/.venv/bin/seal-agent" check-config "$CONF_DIR/agent.toml" || {
  echo "install.sh: fix $CONF_DIR/agent.toml, then run this script again" >&2; exit 2; }
pubkey=$(runuser -u seal -- "$PREFIX/.venv/bin/seal-agent" keygen --config "$CONF_DIR/agent.toml")

install -m 0644 "$PREFIX/hardware/seal-agent.service" /etc/systemd/system/seal-agent.service
systemctl daemon-reload
systemctl enable --now seal-agent.service

echo
echo "Seal agent installed and started. Enrol this seal on the court server with its public key:"
echo "  seal-server seal add <device_id> --case '<case_no>' --public-key $pubkey --config server.toml"
echo "Put the MQTT password the server printed into $CONF_DIR/mqtt-password."
