#!/usr/bin/env bash
# What the benchmarks need beyond scripts/setup.sh, idempotently: rclone (the yardstick of
# bench/bench_memory.py: the tool Moltworker backs up with) and sqlite3 (to make the
# benchmark's databases the way a user would). Usage: scripts/bench-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

need_pkgs=()
command -v rclone >/dev/null 2>&1 || need_pkgs+=(rclone)
command -v sqlite3 >/dev/null 2>&1 || need_pkgs+=(sqlite3)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  printf '\033[1m== installing benchmark packages: %s\033[0m\n' "${need_pkgs[*]}"
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${need_pkgs[@]}"
fi
rclone version | head -n 1
