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
# Everything: the caption extra (torch, transformers, open_clip: the demo captioner runs through
# them; pip brings the CUDA wheel of torch, which runs on the CPU too), eval and the test tools.
# `pip install pinfeatures` alone is the lean install: features without torch (README).
.venv/bin/python -m pip install --quiet -e ".[caption,eval,dev]"
