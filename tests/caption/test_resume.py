"""Crash safety and concurrency of the caption cache, with real subprocesses."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[2]

from pinfeatures.caption.backends import load_captioner, resolve_model
from pinfeatures.caption.cache import CaptionCache
from pinfeatures.caption.loop import caption_pins
from pinfeatures.caption.settings import CaptionSettings

N_IMAGES = 16
BATCH = 2


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture()
def inputs(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "images"
    root.mkdir()
    for i in range(N_IMAGES):
        buf = io.BytesIO()
        Image.new("RGB", (40, 40), (i * 8, 255 - i * 8, (i * 37) % 256)).save(buf, "PNG")
        (root / f"{i}.png").write_bytes(buf.getvalue())
    inp = tmp_path / "input"
    inp.mkdir()
    pl.DataFrame(
        {"pin_id": [str(i) for i in range(2 * N_IMAGES)], "title": ["t"] * (2 * N_IMAGES),
         "description": [""] * (2 * N_IMAGES), "image": [f"{i % N_IMAGES}.png" for i in range(2 * N_IMAGES)]}
    ).write_parquet(inp / "pins.parquet")
    return root, inp


SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import polars as pl
    from pinfeatures.caption.loop import caption_pins
    from pinfeatures.caption.backends import load_captioner, resolve_model
    from pinfeatures.caption.settings import CaptionSettings

    class Slow:  # the real demo model, slowed down so the test can kill it mid-run
        def __init__(self, inner):
            self.inner, self.device, self.dtype, self.target_size = inner, inner.device, inner.dtype, inner.target_size
        def caption(self, images):
            time.sleep(0.3)
            return self.inner.caption(images)

    cfg = CaptionSettings(caption_model="demo", max_new_tokens=6, batch_size=int(sys.argv[3]))
    cap = Slow(load_captioner(resolve_model(cfg), cfg))
    pins = pl.read_parquet(Path(sys.argv[1]) / "pins.parquet").select("pin_id", "image")
    print("ready", flush=True)
    caption_pins(pins, cfg, images_root=Path(sys.argv[2]), cache_dir=Path(sys.argv[4]), quiet=True, captioner=cap)
    print("finished", flush=True)
    """
)


def test_kill_and_resume_recomputes_nothing_cached(inputs, tmp_path):
    root, inp = inputs
    cache_dir = tmp_path / "cache"
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN)
    cfg = CaptionSettings(caption_model="demo", max_new_tokens=6, batch_size=BATCH)
    fp = resolve_model(cfg).fingerprint
    proc = subprocess.Popen([sys.executable, str(script), str(inp), str(root), str(BATCH), str(cache_dir)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        cached = 0
        while time.time() < deadline and proc.poll() is None:
            if (cache_dir / "captions").exists():
                with CaptionCache(cache_dir) as cache:
                    cached = cache.count(fp)
                if cached >= 3 * BATCH:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, f"run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)  # no cleanup, no atexit: a crash
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with CaptionCache(cache_dir) as cache:
        before = {sha: (c, t) for sha, c, _, t in cache.all_rows(fp)}
    assert 3 * BATCH <= len(before) < N_IMAGES
    assert len(before) % BATCH == 0  # whole batches only: one part each

    # resume in-process with a counting wrapper around the same model
    cap = load_captioner(resolve_model(cfg), cfg)
    seen = []
    orig = cap.caption
    cap.caption = lambda imgs: (seen.append(len(imgs)), orig(imgs))[1]
    pins = pl.read_parquet(inp / "pins.parquet").select("pin_id", "image")
    out, stats = caption_pins(pins, cfg, images_root=root, cache_dir=cache_dir, quiet=True, captioner=cap)
    assert stats["cache_hits"] == len(before) and stats["captioned"] == N_IMAGES - len(before)
    assert sum(seen) == N_IMAGES - len(before)
    assert out.height == 2 * N_IMAGES and set(out["caption_status"]) <= {"ok", "degenerate"}
    assert out["image_sha256"].null_count() == 0
    with CaptionCache(cache_dir) as cache:
        after = {sha: (c, t) for sha, c, _, t in cache.all_rows(fp)}
    assert len(after) == N_IMAGES
    for sha, row in before.items():
        assert after[sha] == row  # nothing written before the kill was recomputed or rewritten


def test_two_concurrent_runs_share_one_cache(inputs, tmp_path):
    root, inp = inputs
    cache_dir = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "caption", "--input", str(inp), "--images-root", str(root),
             "--caption-model", "demo", "--cache", str(cache_dir), "--out", str(tmp_path / f"out{k}"),
             "--batch-size", "3", "--quiet"],
            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for k in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()[-2000:]
    a = pl.read_parquet(tmp_path / "out0" / "captions.parquet")
    b = pl.read_parquet(tmp_path / "out1" / "captions.parquet")
    assert a.columns == ["pin_id", "caption", "caption_status", "image_sha256", "image"]
    assert a.equals(b) and a.height == 2 * N_IMAGES
    m = [json.loads((tmp_path / f"out{k}" / "caption_manifest.json").read_text())["caption"] for k in range(2)]
    assert m[0]["unique_images"] == m[1]["unique_images"] == N_IMAGES
    assert all(x["cache_hits"] + x["captioned"] == N_IMAGES for x in m)
    with CaptionCache(cache_dir) as cache:
        assert cache.count(m[0]["fingerprint"]) == N_IMAGES
    # a third run is all hits
    pins = pl.read_parquet(inp / "pins.parquet").select("pin_id", "image")
    out, stats = caption_pins(pins, CaptionSettings(caption_model="demo"), images_root=root, cache_dir=cache_dir, quiet=True)
    assert (stats["cache_hits"], stats["captioned"]) == (N_IMAGES, 0)
    assert out["caption"].to_list() == a["caption"].to_list()


def test_cli_errors_are_one_line(inputs, tmp_path):
    _root, inp = inputs
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "caption", "--input", str(inp), "--cache", str(tmp_path / "c")],
                       env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "--caption-model" in r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "caption", "--input", str(tmp_path / "none"),
                        "--caption-model", "demo", "--cache", str(tmp_path / "c")],
                       env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and r.stderr.startswith("pinfeatures: error:") and "not found" in r.stderr
