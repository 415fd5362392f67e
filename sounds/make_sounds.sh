#!/bin/sh
# Regenerate the seal's spoken warnings with espeak-ng (apt-get install -y espeak-ng).
#
# Mandarin uses the voice "cmn-latn-pinyin": the plain "cmn"/"zh" voices read tone digits aloud in English
# (a known espeak-ng bug). Output: 22,050 Hz, mono, 16-bit PCM WAV. The WAVs are committed, so a seal needs
# no speech synthesiser; run this only to change the wording.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
command -v espeak-ng >/dev/null 2>&1 || { echo "espeak-ng not found: apt-get install -y espeak-ng" >&2; exit 1; }
espeak-ng -v cmn-latn-pinyin -s 150 -w "$here/warning_zh.wav" "法院查控财产，请勿靠近"
espeak-ng -v en-us -s 150 -w "$here/warning_en.wav" "Court-controlled property. Do not approach."
echo "wrote $here/warning_zh.wav $here/warning_en.wav"
