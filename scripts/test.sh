#!/usr/bin/env bash
# Set up everything (scripts/setup.sh), then run the whole test suite against the real parts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
