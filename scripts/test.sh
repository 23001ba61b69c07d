#!/usr/bin/env bash
# Install everything the tests need, then run them all: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
echo "== ruff" && .venv/bin/ruff check src tests bench
echo "== ruff format" && .venv/bin/ruff format --check src tests bench
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/pytest -q --durations=20 "$@"
