#!/usr/bin/env bash
# Installs the seal agent on Raspberry Pi OS (bookworm) from this checkout. Run as root: sudo hardware/install.sh
# It also runs on plain Debian (a PC, a VM): what Debian does not package there is skipped and said so.
#  - Debian packages, an unprivileged `seal` user in the gpio, audio and video groups
#  - /opt/court-seal (code, .venv with the [agent] extra, sounds), /etc/court-seal/agent.toml (from the example)
#  - time synchronisation turned on (timedatectl set-ntp true), if it is off
#  - the device key (created on the device, never leaves it) and the systemd unit, enabled
# It prints the public key to enrol on the court server (`seal-server seal add … --public-key …`).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then echo "install.sh: run as root (sudo $0)" >&2; exit 1; fi
SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/court-seal
CONF_DIR=/etc/court-seal
STATE_DIR=/var/lib/court-seal
# Debian's own Python, whatever `python3` comes first on root's PATH (a pyenv under /root, which the user seal cannot
# read: its .venv would not run as the service), and the one whose site-packages hold python3-lgpio.
SYSTEM_PYTHON=/usr/bin/python3
# Where a running systemd says it is PID 1 (absent in a container, a chroot): the unit's steps need it.
SYSTEMD_RUNNING=/run/systemd/system

skipped=()

# The version apt would install, or nothing when the package is unknown here or has no installation candidate
# (apt-cache policy then says "Candidate: (none)"; LC_ALL=C keeps that word English).
candidate() {
  LC_ALL=C apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" { print $2 }' || true
}

# The seal stamps what it signs with its wall clock, and a Pi has no real-time clock: a time server must discipline
# it (systemd-timesyncd on Raspberry Pi OS). Turned on if it is off; said so, and listed at the end, if it cannot be.
# The seal's heartbeats say whether the clock is synchronised, and the court raises clock_unsynced when it is not.
ensure_ntp() {
  if ! command -v timedatectl >/dev/null 2>&1; then
    skipped+=("time synchronisation (no timedatectl here: make sure a time server disciplines the clock)")
    return 0
  fi
  if [ "$(timedatectl show -p NTP --value 2>/dev/null || true)" != "yes" ]; then
    if timedatectl set-ntp true >/dev/null 2>&1; then
      echo "install.sh: turned on time synchronisation (timedatectl set-ntp true)"
    else
      skipped+=("time synchronisation (timedatectl set-ntp true failed: install systemd-timesyncd or chrony)")
      echo "install.sh: could not turn on time synchronisation (timedatectl set-ntp true failed)" >&2
      return 0
    fi
  fi
  if [ "$(timedatectl show -p NTPSynchronized --value 2>/dev/null || true)" != "yes" ]; then
    echo "install.sh: the clock is not synchronised yet (timedatectl): the seal's heartbeats say so until it is"
  fi
}

# Start the seal with what was just installed, once check-config (as the service's user: root reads a root-only
# password or CA, and may write any state_dir, where the service cannot) passes. A re-run over a running seal (an
# upgrade) restarts it: `systemctl start` leaves a running agent as it is, the old code running over replaced files.
# A check that fails starts and restarts nothing, and says so with check-config's words and the command to run.
start_seal() {
  local active=no checked warnings
  if systemctl is-active --quiet seal-agent.service; then active=yes; fi
  if checked=$(runuser -u seal -- "$PREFIX/.venv/bin/seal-agent" check-config --config "$CONF_DIR/agent.toml" 2>&1); then
    systemctl restart seal-agent.service
    if [ "$active" = yes ]; then
      echo "The configuration is complete: seal-agent restarted, running what was just installed."
    else
      echo "The configuration is complete: seal-agent started."
    fi
    warnings=$(printf '%s\n' "$checked" | grep -vx OK || true)
    if [ -n "$warnings" ]; then echo "check-config warns:"; printf '%s\n' "$warnings" | sed 's/^/  /'; fi
  else
    if [ "$active" = yes ]; then
      echo "install.sh: seal-agent NOT restarted: check-config fails (below), so the agent still running is the" \
        "version installed before. Fix the configuration, then: sudo systemctl restart seal-agent" >&2
    else
      echo "seal-agent not started yet: check-config fails (below). Once it passes: sudo systemctl restart seal-agent"
    fi
    printf '%s\n' "$checked" | sed 's/^/  /'
  fi
}

# pip_install LABEL PIP…: one line per package, pip's reason shown if it fails.
# shellcheck source=scripts/pip_progress.sh
source "$SRC/scripts/pip_progress.sh"

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-dev gcc libasound2-dev alsa-utils rsync
# python3-lgpio is packaged by Raspberry Pi OS (and Debian on arm), not by Debian on a PC: there the agent still
# installs and runs (mock pins, `seal-agent simulate`), without the Pi's GPIO.
if [ -n "$(candidate python3-lgpio)" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-lgpio
else
  skipped+=("python3-lgpio (not packaged here: no GPIO access; \`seal-agent simulate\` runs on mock pins)")
  echo "install.sh: python3-lgpio has no installation candidate here (not Raspberry Pi OS?): skipped it, going on" >&2
fi

getent group gpio >/dev/null || groupadd --system gpio
id seal >/dev/null 2>&1 || useradd --system --home-dir "$STATE_DIR" --shell /usr/sbin/nologin seal
usermod -a -G gpio,audio,video seal

mkdir -p "$PREFIX" "$CONF_DIR" "$STATE_DIR"
# root owns the installation and nobody else may write in it: systemd runs its .venv and plays its sounds, and the
# README runs its seal-agent with sudo. rsync -a alone kept the checkout's owner (the account that cloned), who could
# then swap the warning WAVs or put a .venv of its own in place.
rsync -a --delete --chown=root:root --chmod=go-w --exclude .git --exclude .venv --exclude var --exclude /court "$SRC"/ "$PREFIX"/
chown root:root "$PREFIX"; chmod go-w "$PREFIX"
foreign=$(find "$PREFIX/.venv" \( ! -user root -o \( -perm /022 ! -type l \) \) -print -quit 2>/dev/null || true)
if [ -n "$foreign" ]; then
  echo "install.sh: $PREFIX/.venv holds files not root's or writable by others: made again" >&2
  rm -rf "$PREFIX/.venv"
elif [ -e "$PREFIX/.venv" ] && ! runuser -u seal -- "$PREFIX/.venv/bin/python" -c '' >/dev/null 2>&1; then
  # made by an earlier install with another Python (one under /root, one since removed): the service could not run
  echo "install.sh: $PREFIX/.venv does not run as the user seal (made with a Python seal cannot run?): made again" >&2
  rm -rf "$PREFIX/.venv"
fi
# --system-site-packages: gpiozero reaches the GPIO through Debian's python3-lgpio (the only pin library that
# drives a Pi 5; it works on a Pi 4 too).
[ -x "$PREFIX/.venv/bin/python" ] || "$SYSTEM_PYTHON" -m venv --system-site-packages "$PREFIX/.venv"
echo "install.sh: installing the agent with its [agent] extra into $PREFIX/.venv"
pip_install install.sh "$PREFIX/.venv/bin/pip" install --upgrade pip
pip_install install.sh "$PREFIX/.venv/bin/pip" install "${PREFIX}[agent]"

if [ ! -f "$CONF_DIR/agent.toml" ]; then
  install -m 0640 -o root -g seal "$PREFIX/hardware/agent.example.toml" "$CONF_DIR/agent.toml"
  echo "install.sh: wrote $CONF_DIR/agent.toml from the example: set device_id, case_no, [mqtt] and [commands]"
fi
chown seal:seal "$STATE_DIR"; chmod 0700 "$STATE_DIR"
touch "$CONF_DIR/mqtt-password"; chown root:seal "$CONF_DIR/mqtt-password"; chmod 0640 "$CONF_DIR/mqtt-password"

# The key first: the court needs it to enrol the seal, and only then hands out the seal's MQTT password.
pubkey=$(runuser -u seal -- "$PREFIX/.venv/bin/seal-agent" keygen --config "$CONF_DIR/agent.toml")

ensure_ntp

# The key and the next steps before anything of systemd's: an installation that cannot go on there (a container) must
# still have handed the installer the key for the court's clerk.
echo
echo "1. Enrol this seal on the court server with its public key:"
echo "     seal-server seal add <device_id> --case '<case_no>' --public-key $pubkey --config court/server.toml"
echo "2. Put the MQTT password it prints into $CONF_DIR/mqtt-password and the broker's CA into"
echo "   $CONF_DIR/ca.pem (TLS is required: the seal refuses plain TCP to a broker elsewhere); paste the court's"
echo "   command key (seal-server court-key) into [commands] server_public_key in $CONF_DIR/agent.toml."
echo "3. Check it as the service's user (it reads what the seal can read) and (re)start it:"
echo "     sudo -u seal $PREFIX/.venv/bin/seal-agent check-config --config $CONF_DIR/agent.toml && sudo systemctl restart seal-agent"
echo

install -D -m 0644 "$PREFIX/hardware/seal-agent.service" /etc/systemd/system/seal-agent.service
if [ -d "$SYSTEMD_RUNNING" ]; then
  systemctl daemon-reload
  systemctl enable seal-agent.service
  start_seal
else
  skipped+=("systemd (not running here: no $SYSTEMD_RUNNING): seal-agent.service is installed but neither enabled nor started; on a machine booted with systemd run: sudo systemctl daemon-reload && sudo systemctl enable seal-agent && sudo systemctl restart seal-agent")
  echo "install.sh: systemd is not running here (a container?): skipped systemctl daemon-reload, enable and start" >&2
fi
if [ "${#skipped[@]}" -gt 0 ]; then
  echo
  echo "Skipped:"
  printf '  - %s\n' "${skipped[@]}"
fi
