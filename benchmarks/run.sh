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

. "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
parse_args "ferrule,granian,uvicorn,hypercorn,nginx" "$@"

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
  apt_install "${missing[@]}"
fi

# ---- venv, ferrule built from this repo ------------------------------------
setup_venv "servers and matplotlib" \
  'uvicorn[standard]' hypercorn granian starlette matplotlib 'maturin>=1.7,<2'
build_ferrule

# ---- limits and run --------------------------------------------------------
raise_fd_limit
say "fd limit $(ulimit -n); server on CPU 0, load generator on CPU 1"

cd "$BENCH"
exec taskset -c 1 "$VENV/bin/python" -m harness --install-log "$INSTALL_LOG" "${args[@]}"
