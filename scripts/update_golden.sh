#!/usr/bin/env bash
# Regenerate the golden values (tests/golden/*.json) of the end-to-end tests of build, evaluate,
# pairs and report on the fixtures, after a change that is meant to change them. Review the diff
# (git diff tests/golden) before committing: every changed value is a changed behaviour.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$PY" -m pytest -q -p no:cacheprovider tests/test_golden.py --update-golden "$@"
"$PY" -m pytest -q -p no:cacheprovider tests/test_golden.py "$@"
git --no-pager diff --stat -- tests/golden
