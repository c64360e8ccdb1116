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

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH")"
VENV="$BENCH/.venv"
mkdir -p "$BENCH/work"
INSTALL_LOG="$BENCH/work/ferrule-install.log"

skip_setup=0
servers="ferrule,hypercorn,granian,nginx"
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

# ---- Debian packages: h2load (nghttp2-client), nginx, openssl, taskset ----------
if [ "$skip_setup" = 0 ]; then
  missing=()
  command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
  if [[ ",$servers," == *",nginx,"* ]] && ! command -v nginx >/dev/null 2>&1; then
    missing+=(nginx)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "missing ${missing[*]}: install them (apt-get) or run as root" >&2
      exit 1
    fi
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # keep the nginx package from starting a system nginx on port 80
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  fi
fi

# ---- venv with the servers -----------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
if [ "$skip_setup" = 0 ]; then
  say "pip install the servers and Starlette"
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install \
    hypercorn granian starlette uvloop 'maturin>=1.7,<2'
fi

# ---- ferrule, release build from this repo (as run.sh does) --------------------
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

# ---- limits and run --------------------------------------------------------------
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then ulimit -n 1048576; else ulimit -n "$hard"; fi
say "fd limit $(ulimit -n); servers on CPU 0, h2load on CPU 1"
cd "$BENCH"
exec taskset -c 1 "$VENV/bin/python" -m harness.h2 "${args[@]}"
