# Set-up shared by the benchmark entry scripts (run.sh, ws.sh, h2.sh), which
# source this file: paths, argument parsing, Debian packages, the venv and
# the release build of ferrule from this repo. Not meant to run on its own.

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO="$(dirname "$BENCH")"
VENV="$BENCH/.venv"
mkdir -p "$BENCH/work"
INSTALL_LOG="$BENCH/work/ferrule-install.log"

say() { echo "== $*"; }

cargo_env() {
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
}

# parse_args [--venv-flag] DEFAULT_SERVERS "$@": sets skip_setup, servers
# (for the set-up) and args (what goes on to the harness; --servers too).
# With --venv-flag, --venv DIR picks the venv; without, it goes to the harness.
parse_args() {
  local venv_flag=0
  if [ "$1" = --venv-flag ]; then venv_flag=1; shift; fi
  servers="$1"; shift
  skip_setup=0
  args=()
  while [ $# -gt 0 ]; do
    case "$venv_flag:$1" in
      *:--skip-setup) skip_setup=1 ;;
      1:--venv) VENV="$2"; shift ;;
      1:--venv=*) VENV="${1#--venv=}" ;;
      *:--servers) servers="$2"; args+=("$1" "$2"); shift ;;
      *:--servers=*) servers="${1#--servers=}"; args+=("$1") ;;
      *) args+=("$1") ;;
    esac
    shift
  done
}

# runs_server NAME: whether NAME is among the servers
runs_server() {
  [[ ",$servers," == *",$1,"* ]]
}

# apt_install PKG...: apt-get install them (none: nothing), keeping the
# nginx package from starting a system nginx on port 80
apt_install() {
  [ $# -gt 0 ] || return 0
  say "apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

# setup_venv WHAT PKG...: creates $VENV if need be and, unless --skip-setup,
# pip installs the packages ("pip install WHAT"); sets PIP
setup_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
  fi
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  local what="$1"; shift
  if [ "$skip_setup" = 0 ]; then
    say "pip install $what"
    "${PIP[@]}" install "$@"
  fi
}

# build_ferrule: unless --skip-setup or ferrule is not among the servers,
# a release build of this repo into $VENV; a failed build is reported (the
# harness then skips ferrule), not fatal
build_ferrule() {
  if [ "$skip_setup" != 0 ] || ! runs_server ferrule; then return 0; fi
  say "building ferrule from $REPO (release; log: ${INSTALL_LOG#$REPO/})"
  cargo_env
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
  unset CARGO_TARGET_DIR
}

# raise_fd_limit: the soft limit on open files up to the hard one
raise_fd_limit() {
  local hard
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ]; then ulimit -n 1048576; else ulimit -n "$hard"; fi
}
