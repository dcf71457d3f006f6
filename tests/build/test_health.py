"""Nothing fails silently: the caption line of the summary, the caption-failure warning and --strict,
the ladder without a caption source, variants with no text, and the demo captioner's notice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pinfeatures.build.health import DEMO_NOTE, caption_line, caption_warnings, empty_variant_warnings
from tests.conftest import FIXTURES, REPO, build, small_tables, write_inputs

LADDER_FROM_TITLE = ["title", "title+description", "title+description+boards", "title+description+boards+queries"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True, env=env, timeout=300)


def test_caption_line_names_the_model_and_counts_every_status():
    assert caption_line({"model": None, "status_counts": {"skipped": 300}}) == (
        "captions: no caption model (--caption-model), no captions table: skipped 300")
    assert caption_line({"model": None, "precomputed": 3, "status_counts": {"precomputed": 3, "skipped": 1}}) == (
        "captions: precomputed captions only: precomputed 3, skipped 1")
    assert caption_line({"model": "demo", "status_counts": {"ok": 2, "missing": 298}}) == (
        "captions: model demo (demo: captions are noise): missing 298, ok 2")
    assert caption_line({"model": "/m/blip", "status_counts": {"ok": 5, "fetch_failed": 5}}) == (
        "captions: model /m/blip: fetch_failed 5, ok 5")


@pytest.mark.parametrize(
    "counts, given, expected",
    [
        # exactly the share (1 of 5 = 0.2) is not more than it
        ({"ok": 4, "missing": 1}, True, []),
        ({"ok": 3, "missing": 2}, True, ["2 of 5 images missing; no such files under --images-root /imgs (or pins without an image) "
                                         "(more than caption.max_failure_share = 0.2 of the images failed)"]),
        ({"missing": 298, "blocked_address": 2}, False,
         ["298 of 300 images missing (also blocked_address 2); local image paths are read under --images-root, which was not given "
          "(they were looked up under /imgs) (more than caption.max_failure_share = 0.2 of the images failed)"]),
        # precomputed and skipped pins were not the model's: 3 of 4 captioned images failed
        ({"precomputed": 100, "ok": 1, "fetch_failed": 3}, True,
         ["3 of 4 images fetch_failed; the image URLs could not be fetched (no network, or the servers refused or timed out) "
          "(more than caption.max_failure_share = 0.2 of the images failed)"]),
        ({"ok": 1, "blocked_address": 3}, True,
         ["3 of 4 images blocked_address; the image URLs point at private, loopback or link-local addresses; --allow-private-addresses "
          "fetches them (more than caption.max_failure_share = 0.2 of the images failed)"]),
        # a degenerate caption is the model's fault, not a failed image
        ({"ok": 1, "degenerate": 9}, True, []),
        ({"skipped": 10}, False, []),
    ],
)
def test_caption_warnings(counts, given, expected):
    assert caption_warnings({"status_counts": counts}, max_failure_share=0.2, images_root_given=given, images_root=Path("/imgs")) == expected


def test_empty_variant_warnings():
    texts = pl.DataFrame({"pin_id": ["a", "b", "a", "b"], "variant": ["caption", "caption", "title", "title"], "text": ["", "", "x", ""]})
    assert empty_variant_warnings(texts, ["caption", "title"]) == ["variant 'caption' has no text for any pin: caption is empty for every pin"]
    assert empty_variant_warnings(texts.head(0), ["caption"]) == []


def test_missing_images_root_warns_and_strict_stops_before_committing(tmp_path):
    out = tmp_path / "out"
    base = ["build", "--input", str(FIXTURES / "input"), "--out", str(out), "--cache", str(tmp_path / "cache")]
    first = run_cli(*base, "-q")  # a good build to keep
    assert first.returncode == 0, first.stderr
    kept = json.loads((out / "manifest.json").read_text())["build_id"]

    warning = ("298 of 300 images missing (also blocked_address 2); local image paths are read under --images-root, which was not given "
               f"(they were looked up under {FIXTURES / 'input'}) (more than caption.max_failure_share = 0.2 of the images failed)")
    strict = run_cli(*base, "--caption-model", "demo", "--strict")
    assert strict.returncode == 2
    assert strict.stderr.splitlines()[-1] == f"pinfeatures: error: --strict: {warning} (and 1 more warning(s)); nothing was committed"
    assert json.loads((out / "manifest.json").read_text())["build_id"] == kept  # the previous build is untouched

    res = run_cli(*base, "--caption-model", "demo")
    assert res.returncode == 0, res.stderr
    assert f"pinfeatures: warning: {warning}\n" in res.stderr
    assert "pinfeatures: warning: variant 'caption' has no text for any pin: caption is empty for every pin\n" in res.stderr
    assert "captions: model demo (demo: captions are noise): missing 298, blocked_address 2\n" in res.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["warnings"][0] == warning and manifest["notes"] == [DEMO_NOTE]

    # a higher share is allowed by the setting; -q keeps warnings
    cfg = tmp_path / "c.toml"
    cfg.write_text("[caption]\nmax_failure_share = 1.0\n")
    quiet = run_cli(*base, "--caption-model", "demo", "--variants", "title", "--config", str(cfg), "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


def test_without_a_caption_source_the_ladder_starts_at_title(tmp_path):
    folder = write_inputs(tmp_path / "in", small_tables())
    manifest = build(tmp_path / "a" / "out", input=str(folder))
    assert manifest["variants"] == LADDER_FROM_TITLE
    assert manifest["notes"] == ["no caption model and no captions table: the ladder starts at title"]
    assert manifest["warnings"] == []
    texts = pl.read_parquet(tmp_path / "a" / "out" / "texts.parquet")
    assert texts.get_column("variant").unique(maintain_order=True).to_list() == LADDER_FROM_TITLE

    # a captions table is a caption source: the ladder keeps its caption rung
    pl.DataFrame({"pin_id": ["p1"], "caption": ["a chocolate cake"]}).write_parquet(folder / "captions.parquet")
    manifest = build(tmp_path / "b" / "out", input=str(folder))
    assert manifest["variants"][0] == "caption" and len(manifest["variants"]) == 5 and manifest["notes"] == []

    # asked for explicitly, an empty caption variant is written with a warning, never silently
    (folder / "captions.parquet").unlink()
    manifest = build(tmp_path / "c" / "out", input=str(folder), variants="caption,title")
    assert manifest["variants"] == ["caption", "title"]
    assert manifest["warnings"] == ["variant 'caption' has no text for any pin: caption is empty for every pin"]


def test_summary_always_has_a_caption_line(tmp_path):
    folder = write_inputs(tmp_path / "in", small_tables())
    res = run_cli("build", "--input", str(folder), "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "c"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "captions: no caption model (--caption-model), no captions table: skipped 4"


def test_report_shows_the_demo_notice_and_warnings(tmp_path):
    out = tmp_path / "out"
    res = run_cli("build", "--input", str(FIXTURES / "input"), "--out", str(out), "--cache", str(tmp_path / "c"),
                  "--caption-model", "demo", "--variants", "title", "-q", "--write-report")
    assert res.returncode == 0, res.stderr
    page = (out / "report.html").read_text()
    assert page.count('data-notice="warning"') == 1 and page.count('data-notice="note"') == 1
    assert "they are noise, not descriptions of the images" in page
