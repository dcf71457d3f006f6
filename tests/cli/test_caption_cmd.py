"""`pinfeatures caption` through a real subprocess: image URLs on private addresses are refused by
default (`blocked_address`, no connection) and fetched with --allow-private-addresses."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
from conftest import REPO
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from image_server import ImageServer  # noqa: E402


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 128, 255)).save(buf, "PNG")
    return buf.getvalue()


def _caption(tmp_path: Path, pins: Path, out: str, *flags: str) -> tuple[subprocess.CompletedProcess, pl.DataFrame | None]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "caption", "--pins", str(pins), "--caption-model", "demo", "--quiet",
         "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / out), *flags],
        capture_output=True, text=True, env=env, timeout=300,
    )
    path = tmp_path / out / "captions.parquet"
    return proc, pl.read_parquet(path) if path.exists() else None


def test_private_image_urls_blocked_unless_allowed(tmp_path: Path):
    with ImageServer({"/a.png": _png()}) as srv:
        pins = tmp_path / "pins.jsonl"
        rows = [
            {"pin_id": "local", "title": "t", "description": "d", "image": srv.url("/a.png")},
            {"pin_id": "metadata", "title": "t", "description": "d", "image": "http://169.254.169.254/latest/meta-data/"},
        ]
        pins.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        proc, out = _caption(tmp_path, pins, "blocked")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert out is not None and out["caption_status"].to_list() == ["blocked_address", "blocked_address"]
        assert sum(srv.hits.values()) == 0

        pins.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
        proc, out = _caption(tmp_path, pins, "allowed", "--allow-private-addresses")
        assert proc.returncode == 0, proc.stderr
        assert out is not None and out["caption_status"].to_list()[0] in ("ok", "degenerate")  # the image was fetched
        assert out["image_sha256"].to_list()[0] is not None and srv.hits["/a.png"] == 1
