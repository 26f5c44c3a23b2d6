#!/usr/bin/env bash
# Set up everything moltconsole needs on a Debian/Ubuntu machine, idempotently:
# system packages, a running Docker engine, the Python environment, and the sandbox image.
# Usage: scripts/setup.sh [--no-image]
set -euo pipefail
cd "$(dirname "$0")/.."

build_image=1
[ "${1:-}" = "--no-image" ] && build_image=0

say() { printf '\033[1m== %s\033[0m\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || need_pkgs+=(mmdebstrap)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing system packages: ${need_pkgs[*]}"
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${need_pkgs[@]}"
fi

if ! docker info >/dev/null 2>&1; then
  say "starting the Docker engine"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl start docker
  else
    as_root sh -c 'setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &'
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "the Docker engine did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

if [ ! -x .venv/bin/python ]; then
  say "creating the Python environment (.venv)"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import moltconsole, moltconsole_backend, moltconsole_shared, pytest' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  say "installing moltconsole and its dependencies"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  touch .venv/.installed
fi

if [ "$build_image" = 1 ]; then
  say "making sure the sandbox image exists (the first build takes a few minutes)"
  .venv/bin/python -m moltconsole_backend.sandbox.image
fi
