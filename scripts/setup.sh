#!/usr/bin/env bash
# Set up a fresh machine for pinfeatures: a virtual environment in .venv with the package
# (editable) and its test tools. Safe to run again: an existing .venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch comes in with open_clip_torch/transformers (the CUDA wheel; it runs on the CPU too).
.venv/bin/python -m pip install --quiet -e ".[dev,eval]"
