#!/usr/bin/env bash
# Prepares this machine for agent workspaces; run by `make run` and `make test`.
#
# Idempotent and fast once done:
#   1. a virtualenv (.venv) with the project and its dev tools, reinstalled when
#      pyproject.toml changes;
#   2. a Docker daemon that answers. When none answers and we are root on Debian:
#      install docker.io, runsc and mmdebstrap from Debian's packages, register runsc in
#      /etc/docker/daemon.json (with --network=host, see docs/gvisor.md, and
#      --platform=$RUNSC_PLATFORM when that is set) with
#      live-restore on (workspaces outlive a dockerd restart), and start dockerd in the
#      background (scripts/dockerd.sh), logging to $DOCKERD_LOG. runsc must be 20240729 or
#      newer (older releases break `ls` and `stat` in workspaces); on bookworm it comes
#      from Debian's bookworm-backports;
#   3. the base workspace image (Debian bookworm from mmdebstrap + docker import);
#   4. with SETUP_BROWSER=1 (`make test`): Chromium and its WebDriver for the admin page's
#      browser test, from Debian's packages when root on Debian (the test is skipped,
#      saying why, where they cannot be installed);
#   5. with SETUP_NODE=1 (`make test`): Node.js and npm for the Node client's tests
#      (clients/node), from Debian's packages when root on Debian (skipped, saying why,
#      where they cannot be installed);
#   6. lz4 and e2fsprogs for the firecracker provider (guest kernel, root filesystems).
# A daemon that already runs is never reconfigured or restarted.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
BASE_IMAGE=${BASE_IMAGE:-agent-workspaces/base:bookworm}
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/agent-workspaces-dockerd.log}
DAEMON_JSON=${DAEMON_JSON:-/etc/docker/daemon.json}
PACKAGES_IMAGE="bash,coreutils,git,python3,curl,ca-certificates,procps"
RUNSC_MIN=20240729
# gVisor's platform for the runsc runtime setup registers (only when setup installs Docker
# and registers runsc itself): empty for runsc's default (systrap), or ptrace / kvm. See
# docs/gvisor.md, "What a command costs": on hosts like the build machine ptrace makes
# commands about twice as fast and idle sandboxes nearly free.
RUNSC_PLATFORM=${RUNSC_PLATFORM:-}

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }
case "$RUNSC_PLATFORM" in
  "" | systrap | ptrace | kvm) ;;
  *) die "RUNSC_PLATFORM=$RUNSC_PLATFORM is not a runsc platform (systrap, ptrace or kvm; empty: runsc's default)" ;;
esac
is_debian() { [ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; }

# ---------------------------------------------------------------- 1. virtualenv
setup_venv() {
  command -v python3 >/dev/null || die "python3 is missing: install Python 3.11 or newer"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed; python3 is $(python3 -V 2>&1)"
  if [ ! -x "$PY" ]; then
    say "creating the virtualenv $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  fi
  local want have
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  have=$(cat "$VENV/.installed" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    say "installing the project and its packages into $VENV"
    # pip's notes about this machine's package mirrors are noise here; errors still show.
    "$PY" -m pip install -q --upgrade pip 2> >(grep -v 'is ignored: it is neither' >&2) >/dev/null
    "$PY" -m pip install -q -e '.[dev]' 2> >(grep -v 'is ignored: it is neither' >&2)
    echo "$want" > "$VENV/.installed"
  fi
}

docker_answers() { "$PY" scripts/dockerctl.py ping 2>/dev/null; }

try_apt_install() {
  say "installing from Debian's packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}

apt_install() {
  try_apt_install "$@" || die "apt-get install $* failed"
}

# Tools only the tests need: installed from Debian's packages when root on Debian; where
# they cannot be, the tests that need them are skipped, saying why.
#   setup_test_tools PURPOSE "COMMAND..." PACKAGE...
setup_test_tools() {
  local purpose=$1 command missing=""
  for command in $2; do
    command -v "$command" >/dev/null || missing="$missing $command"
  done
  [ -n "$missing" ] || return 0
  shift 2
  if is_root && is_debian; then
    try_apt_install "$@" 2>/dev/null || say "warning: installing $* failed: $purpose will be skipped"
  else
    say "note:$missing missing: install them for $purpose (skipped meanwhile)"
  fi
}

runsc_version() {
  # "runsc version 0.0~20240729.0" -> 20240729 (empty when runsc is missing)
  command -v runsc >/dev/null || return 0
  { runsc --version 2>/dev/null || true; } | sed -n 's/^runsc version [0-9.]*~\{0,1\}\([0-9]\{8\}\).*/\1/p' | head -n 1
}

install_runsc() {
  # bookworm's own runsc (20221219) fails statx with AT_NO_AUTOMOUNT, which coreutils 9
  # uses: `ls` and `stat` answer "Invalid argument" in every workspace. Debian's
  # bookworm-backports carries 20240729, which works.
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ "$codename" = bookworm ]; then
    local list=/etc/apt/sources.list.d/agent-workspaces-bookworm-backports.sources
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      say "enabling Debian's bookworm-backports for runsc ($list)"
      printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' \
        'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$list"
      apt-get update -q >/dev/null || die "apt-get update failed after enabling bookworm-backports"
    fi
    say "installing runsc from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports runsc >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports runsc >/dev/null; } \
      || die "installing runsc from bookworm-backports failed"
  else
    apt_install runsc
  fi
}

setup_runsc() {
  local version
  version=$(runsc_version)
  if [ -n "$version" ] && [ "$version" -ge "$RUNSC_MIN" ]; then
    return 0
  fi
  if is_root && is_debian; then
    install_runsc
  elif [ -n "$version" ]; then
    say "warning: runsc $version is older than $RUNSC_MIN: \`ls\` and \`stat\` fail inside workspaces; install a newer runsc"
  fi
}

register_runsc() {
  # Adds the runsc runtime (with RUNSC_PLATFORM) and live-restore to daemon.json unless set; keeps other keys.
  "$PY" scripts/register_runsc.py "$DAEMON_JSON" "$RUNSC_PLATFORM" || die "registering runsc in $DAEMON_JSON failed"
}

start_dockerd() { PY="$PY" DOCKERD_LOG="$DOCKERD_LOG" scripts/dockerd.sh start; }

# ---------------------------------------------------------------- 2. Docker
setup_docker() {
  if docker_answers; then
    if [ -n "$RUNSC_PLATFORM" ]; then
      say "note: RUNSC_PLATFORM applies when setup registers runsc; Docker already runs, so it is left as it is."
      say "      To change the platform: add --platform=$RUNSC_PLATFORM to runsc's runtimeArgs in $DAEMON_JSON, then kill -HUP \$(pidof dockerd)."
    fi
    if "$PY" scripts/dockerctl.py runtimes | grep -qw runsc; then
      setup_runsc  # a newer binary is picked up by the next container; no restart needed
    else
      say "warning: the running Docker daemon has no runsc runtime, so workspaces run on runc."
      say "         For gVisor: install runsc, register it in $DAEMON_JSON and restart Docker."
    fi
    return 0
  fi
  is_root || die "no Docker daemon answers (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}). Start Docker, or run this as root on Debian to have it installed."
  is_debian || die "no Docker daemon answers and this is not Debian: install Docker Engine and gVisor's runsc yourself, then retry."
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
  setup_runsc
  register_runsc
  start_dockerd
}

# ---------------------------------------------------------------- 3. base image
setup_image() {
  "$PY" scripts/dockerctl.py has-image "$BASE_IMAGE" && return 0
  if ! command -v mmdebstrap >/dev/null; then
    { is_root && is_debian; } || die "the image $BASE_IMAGE is missing and mmdebstrap is not installed: install mmdebstrap (Debian) and retry"
    apt_install mmdebstrap
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  say "building $BASE_IMAGE with mmdebstrap (Debian bookworm; about a minute)"
  mmdebstrap --quiet --variant=minbase --include="$PACKAGES_IMAGE" \
    --customize-hook='mkdir -p "$1/workspace"' \
    bookworm "$work/rootfs.tar" || die "mmdebstrap failed to build the root filesystem"
  "$PY" scripts/dockerctl.py import "$work/rootfs.tar" "$BASE_IMAGE" \
    'CMD ["sleep", "infinity"]' 'WORKDIR /workspace' 'LABEL agent-workspaces.image=base' \
    || die "importing the root filesystem into Docker failed"
  say "built $BASE_IMAGE"
}

setup_venv
setup_docker
setup_image
if [ "${SETUP_BROWSER:-0}" = 1 ]; then
  setup_test_tools "the admin page's browser test" "chromium chromedriver" chromium chromium-driver
fi
if [ "${SETUP_NODE:-0}" = 1 ]; then
  setup_test_tools "the Node client's tests" "node npm" nodejs npm
fi
# The firecracker provider builds root filesystems and data drives (e2fsprogs) and unpacks
# Debian's guest kernel (lz4).
setup_test_tools "the firecracker provider's guest builds" "lz4 mkfs.ext4 debugfs" lz4 e2fsprogs
