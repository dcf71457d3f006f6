#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job on the bundled fixtures, with the bundled tiny
# demo captioning model (random weights: its captions are meaningless; see README).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/pinfeatures build --input fixtures/input --images-root fixtures/images \
    --caption-model demo --cache out/cache --out out/demo --report "$@"
