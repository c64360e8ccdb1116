#!/usr/bin/env bash
# One command for the whole benchmark: installs what it needs (Debian
# packages, a venv of its own with the servers and ferrule built from this
# repo), then runs every server on the same apps and writes
# benchmarks/results/<date>.md + .png + .json.  See benchmarks/README.md.
#
#   benchmarks/run.sh                 # full run (~50 min)
#   benchmarks/run.sh --quick         # short sanity run (~4 min)
#   benchmarks/run.sh --servers granian,uvicorn --repeat 5
#   benchmarks/run.sh --skip-setup    # reuse the venv and the installed ferrule
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH")"
VENV="$BENCH/.venv"
mkdir -p "$BENCH/work"
INSTALL_LOG="$BENCH/work/ferrule-install.log"

skip_setup=0
servers="ferrule,granian,uvicorn,hypercorn,nginx"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --skip-setup) skip_setup=1 ;;
    --servers) servers="$2"; args+=("$1" "$2"); shift ;;
    --servers=*) servers="${1#--servers=}"; args+=("$1") ;;
    *) args+=("$1") ;;
  esac
  shift
done

say() { echo "== $*"; }

if [ "$(id -u)" != 0 ]; then
  echo "run.sh needs root (apt-get, strace -p, tcpdump)" >&2
  exit 1
fi

# ---- Debian packages -------------------------------------------------------
if [ "$skip_setup" = 0 ]; then
  declare -A pkg_for=( [wrk]=wrk [strace]=strace [tcpdump]=tcpdump [nginx]=nginx
                       [taskset]=util-linux [ps]=procps [cc]=build-essential
                       [python3]=python3 [git]=git [openssl]=openssl )
  missing=()
  for tool in "${!pkg_for[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
  done
  py=$(command -v python3 || true)
  if [ -n "$py" ] && ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
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

# ---- venv ------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if [ "$skip_setup" = 0 ]; then
  say "pip install servers and matplotlib"
  "${PIP[@]}" install 'uvicorn[standard]' hypercorn granian starlette matplotlib 'maturin>=1.7,<2'
fi

# ---- ferrule, release build from this repo --------------------------------
if [ "$skip_setup" = 0 ] && [[ ",$servers," == *",ferrule,"* ]]; then
  say "building ferrule from $REPO (release; log: ${INSTALL_LOG#$REPO/})"
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  # a target dir of our own: no lock contention with developers' cargo builds,
  # and the release build stays cached between runs
  export CARGO_TARGET_DIR="$BENCH/work/cargo-target"
  "${PIP[@]}" uninstall -y ferrule >/dev/null 2>&1 || true
  if "${PIP[@]}" install --no-build-isolation "$REPO" >"$INSTALL_LOG" 2>&1; then
    say "ferrule installed"
  else
    say "ferrule failed to build/install: it will be skipped (tail of the log:)"
    tail -n 15 "$INSTALL_LOG" | sed 's/^/   /'
  fi
fi

# ---- limits and run --------------------------------------------------------
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then ulimit -n 1048576; else ulimit -n "$hard"; fi
say "fd limit $(ulimit -n); server on CPU 0, load generator on CPU 1"

cd "$BENCH"
exec taskset -c 1 "$VENV/bin/python" -m harness --install-log "$INSTALL_LOG" "${args[@]}"
