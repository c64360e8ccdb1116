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

. "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
parse_args --venv-flag "ferrule,uvicorn-websockets,uvicorn-wsproto,hypercorn,granian" "$@"
cargo_env

# ---- venv with the servers, ferrule built from this repo -----------------------
setup_venv "the servers (uvicorn[standard] brings websockets; wsproto apart)" \
  'uvicorn[standard]' wsproto hypercorn granian
build_ferrule

# ---- the load generator --------------------------------------------------------
WSLOAD="$BENCH/wsload/target/release/wsload"
if [ "$skip_setup" = 0 ] || [ ! -x "$WSLOAD" ]; then
  say "cargo build --release (benchmarks/wsload)"
  (cd "$BENCH/wsload" && cargo build --release --quiet)
fi

# ---- limits and run ------------------------------------------------------------
raise_fd_limit
say "fd limit $(ulimit -n); servers on CPU 0, wsload on CPU 1"
cd "$BENCH"
exec taskset -c 1 "$VENV/bin/python" -m harness.ws --wsload "$WSLOAD" "${args[@]}"
