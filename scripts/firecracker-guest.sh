#!/usr/bin/env bash
# `make firecracker-guest`: the Firecracker guest's kernel and initrd (build/firecracker-guest/:
# vmlinux, initrd.img, manifest.json) from Debian's cloud kernel and busybox-static.
#
# Needs apt and dpkg-deb (a Debian host that reaches Debian's archive) and the lz4 tool (the
# kernel is LZ4-compressed): installed here from Debian's packages when missing and root.
# Skips the build when the outputs are there for the same kernel; arguments go to
# `workspaces firecracker build-guest` (--out DIR, --force).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}

say() { printf 'firecracker-guest: %s\n' "$*" >&2; }
die() { printf 'firecracker-guest: error: %s\n' "$*" >&2; exit 1; }

command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 \
  || die "apt-get and dpkg-deb are needed (a Debian host), or point FIRECRACKER_KERNEL at your own kernel"
if ! command -v lz4 >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "the lz4 tool is missing: apt-get install lz4"
  say "installing lz4 from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends lz4 >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends lz4 >/dev/null; } \
    || die "apt-get install lz4 failed"
fi
exec "$VENV/bin/workspaces" firecracker build-guest "$@"
