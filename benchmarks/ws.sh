#!/usr/bin/env bash
# The WebSocket benchmark: ferrule, uvicorn (websockets and wsproto), hypercorn
# and granian on apps/ws_echo.py, driven by the native load generator
# benchmarks/wsload; writes benchmarks/results/ws-<date>.md + .json.
# See benchmarks/README.md ("WebSocket benchmark").
#
#   benchmarks/ws.sh                          # full run (~7 min, estimated)
#   benchmarks/ws.sh --quick                  # harness check (~1 min), measures nothing
#   benchmarks/ws.sh --servers ferrule,granian --cases echo64
#   benchmarks/ws.sh --skip-setup             # reuse the venv, ferrule and wsload as they are
#   benchmarks/ws.sh --venv DIR               # another venv with the servers in it
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH")"
VENV="$BENCH/.venv"
mkdir -p "$BENCH/work"
INSTALL_LOG="$BENCH/work/ferrule-install.log"

skip_setup=0
servers="ferrule,uvicorn-websockets,uvicorn-wsproto,hypercorn,granian"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-setup) skip_setup=1 ;;
    --venv) VENV="$2"; shift ;;
    --venv=*) VENV="${1#--venv=}" ;;
    --servers) servers="$2"; args+=("$1" "$2"); shift ;;
    --servers=*) servers="${1#--servers=}"; args+=("$1") ;;
    *) args+=("$1") ;;
  esac
  shift
done

say() { echo "== $*"; }
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# ---- venv with the servers ---------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
if [ "$skip_setup" = 0 ]; then
  say "pip install the servers (uvicorn[standard] brings websockets; wsproto apart)"
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install \
    'uvicorn[standard]' wsproto hypercorn granian
fi

# ---- ferrule, release build from this repo (as run.sh does) ------------------
if [ "$skip_setup" = 0 ] && [[ ",$servers," == *",ferrule,"* ]]; then
  say "building ferrule from $REPO (release; log: ${INSTALL_LOG#$REPO/})"
  export CARGO_TARGET_DIR="$BENCH/work/cargo-target"
  "$VENV/bin/python" -m pip --disable-pip-version-check -q uninstall -y ferrule >/dev/null 2>&1 || true
  if "$VENV/bin/python" -m pip --disable-pip-version-check -q install --no-build-isolation "$REPO" \
      >"$INSTALL_LOG" 2>&1; then
    say "ferrule installed"
  else
    say "ferrule failed to build/install: it will be skipped (tail of the log:)"
    tail -n 15 "$INSTALL_LOG" | sed 's/^/   /'
  fi
  unset CARGO_TARGET_DIR
fi

# ---- the load generator --------------------------------------------------------
WSLOAD="$BENCH/wsload/target/release/wsload"
if [ "$skip_setup" = 0 ] || [ ! -x "$WSLOAD" ]; then
  say "cargo build --release (benchmarks/wsload)"
  (cd "$BENCH/wsload" && cargo build --release --quiet)
fi

# ---- limits and run ------------------------------------------------------------
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then ulimit -n 1048576; else ulimit -n "$hard"; fi
say "fd limit $(ulimit -n); servers on CPU 0, wsload on CPU 1"
cd "$BENCH"
exec taskset -c 1 "$VENV/bin/python" -m harness.ws --wsload "$WSLOAD" "${args[@]}"
