#!/usr/bin/env bash
# Installs what the project needs on Debian 12 / Raspberry Pi OS (bookworm): Debian packages, then a .venv with
# the package and its extras. Idempotent: only what is missing is installed. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  mosquitto            # the MQTT broker (demo and tests start private instances; it is not enabled here)
  mosquitto-clients    # mosquitto_pub/sub, handy for operators
  libasound2-dev       # ALSA headers: simpleaudio is built from source on Linux
  gcc python3-dev python3-venv
  make
  fonts-wqy-zenhei     # the CJK font (TrueType outlines) embedded in the printed notice PDF
  poppler-utils        # pdftotext, pdffonts, pdftoppm: the tests read the notice PDF back with them
  chromium             # the browser the page tests (tests/web/) drive through Playwright's Python API
  openssl              # `openssl ts`: the throw-away time-stamping authority of the tests (seal_dev/tsa.py)
  zip unzip            # Info-ZIP: the tests unzip a bundle and zip it again as a user would (tests/verify/test_rezipped.py)
)
# espeak-ng is needed only to regenerate sounds/*.wav (sounds/make_sounds.sh); the WAVs are committed.

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# pip_install LABEL PIP…: one line per package, pip's reason shown if it fails.
# shellcheck source=scripts/pip_progress.sh
source scripts/pip_progress.sh  # the working directory is the repository (above)

PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"setup: Python >= 3.11 is required, found {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing court-seal with extras [agent,server,dev] into .venv" \
    "(the first time this downloads and builds about 100 packages: a few minutes)"
  pip_install setup .venv/bin/python -m pip install --upgrade pip
  # setuptools' notice that an editable install exists is not news here.
  PYTHONWARNINGS="ignore:Editable installation" pip_install setup .venv/bin/python -m pip install -e '.[agent,server,dev]'
  touch .venv/.installed
fi
