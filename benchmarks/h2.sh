#!/usr/bin/env bash
# The HTTP/2 benchmark: ferrule, hypercorn, granian (--http 2) and nginx (the
# ceiling, hello only) under h2load, over h2c and TLS, 64 streams on one
# connection and 16 connections x 16 streams, apps hello and Starlette; writes
# benchmarks/results/h2-<date>.md + .json. See benchmarks/README.md
# ("HTTP/2 benchmark").
#
#   benchmarks/h2.sh                          # full run (~10 min, estimated)
#   benchmarks/h2.sh --quick                  # harness check (~1.5 min), measures nothing
#   benchmarks/h2.sh --skip-setup --estimate  # the plan and its duration, nothing run
#   benchmarks/h2.sh --servers ferrule,granian --apps hello --shapes c1m64 --transports tls
#   benchmarks/h2.sh --skip-setup             # reuse the venv and ferrule as they are
#   benchmarks/h2.sh --venv DIR               # another venv with the servers in it
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
parse_args --venv-flag "ferrule,hypercorn,granian,nginx" "$@"
cargo_env

# ---- Debian packages: h2load (nghttp2-client), nginx, openssl, taskset ----------
if [ "$skip_setup" = 0 ]; then
  missing=()
  command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
  if runs_server nginx && ! command -v nginx >/dev/null 2>&1; then
    missing+=(nginx)
  fi
  if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
    echo "missing ${missing[*]}: install them (apt-get) or run as root" >&2
    exit 1
  fi
  apt_install "${missing[@]}"
fi

# ---- venv with the servers, ferrule built from this repo -------------------------
setup_venv "the servers and Starlette" hypercorn granian starlette uvloop 'maturin>=1.7,<2'
build_ferrule

# ---- limits and run --------------------------------------------------------------
raise_fd_limit
say "fd limit $(ulimit -n); servers on CPU 0, h2load on CPU 1"
cd "$BENCH"
exec taskset -c 1 "$VENV/bin/python" -m harness.h2 "${args[@]}"
