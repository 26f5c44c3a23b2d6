#!/usr/bin/env bash
# Set up everything (scripts/setup.sh), then open the console on its built-in defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/moltconsole "$@"
