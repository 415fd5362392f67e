# shellcheck shell=bash
# pip_install LABEL PIP_COMMAND...: run pip, showing one line per package as it goes (pip -q would be silent for
# minutes); its full output goes to a temporary file, and if pip fails the last 40 lines of it (the reason: e.g. a
# missing header for a build) are shown and the calling script stops. Sourced by scripts/setup.sh (make demo/test)
# and hardware/install.sh (a seal).
pip_install() {
  local label=$1 log
  shift
  log=$(mktemp -t court-seal-pip.XXXXXX)
  if ! "$@" --progress-bar off 2>&1 | tee "$log" \
      | { grep --line-buffered -E '^(Collecting|Building wheel for|Successfully installed|ERROR)' || true; } \
      | sed -u -e "s/^Collecting \([^ ]*\).*/$label:   \1/" -e "s/^Successfully installed .*/$label: installed/"; then
    echo "$label: pip failed; the end of its output (all of it is in $log):" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  rm -f "$log"
}
