#!/usr/bin/env bash
# README command 2: set the machine up (idempotent) and run the whole test suite.
# With CI set, a skipped BPF test fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider -ra "$@" tests
