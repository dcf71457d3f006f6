"""`pinfeatures build` and `pinfeatures variants` through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import FIXTURES, REPO

from pinfeatures.cli import cli


def run_cli(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_build_fixtures_via_cli_py(tmp_path):
    """The real entry point in a subprocess: `python cli.py build ...`."""
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "build", "--input", str(FIXTURES / "input"), "--out", str(out), "--cache", str(tmp_path / "c")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("features.parquet", "texts.parquet", "rejects.parquet", "manifest.json", "query_pins.parquet"):
        assert (out / name).is_file(), name
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["pins"] == {"read": 300, "valid": 300, "rejected": 0}
    assert "300 pins, 1200 texts (4 variants)" in proc.stdout  # no caption source: the ladder starts at title
    assert "[pinfeatures] language: done" in proc.stdout + proc.stderr  # progress on the stages


def test_build_hostile_with_flags_and_config(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('variants = "loo"\nmin_users = 5\nmax_tokens = 64\n[action_weights]\nclick = 2\n', encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("build", "--input", str(FIXTURES / "hostile"), "--out", str(out), "--config", str(cfg), "--min-users", "2", "--quiet", "--cache", str(tmp_path / "c"))
    assert code == 0, stderr
    assert stdout == ""  # --quiet
    m = json.loads((out / "manifest.json").read_text())
    assert m["variants"][0] == "caption+title+description+boards+queries" and len(m["variants"]) == 6  # from the file
    assert m["privacy"]["query_min_users"] == 2  # the flag beats the file
    assert m["config"]["action_weights"] == {"impression": 0.0, "click": 2.0, "closeup": 0.5, "save": 3.0, "long_click": 2.0}
    assert m["counts"]["pins"] == {"read": 27, "valid": 20, "rejected": 7}
    assert m["rejects"]["pins"]["bad_value"] == 2  # a lone surrogate, a fractional id
    assert m["rejects"]["engagements"]["unknown_action"] == 4
    texts = pl.read_parquet(out / "texts.parquet")
    assert texts.height == 20 * 6 and (texts.get_column("n_tokens") <= 64).all()


def _one_line_error(code, stderr, *needles):
    assert code == 2
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pinfeatures: error: "), stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_input_exits_2_with_one_line(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    pl.read_parquet(FIXTURES / "input" / "pins.parquet").drop("title").write_parquet(d / "pins.parquet")
    for f in ("boards.csv", "saves.parquet", "engagements.jsonl"):
        (d / f).write_bytes((FIXTURES / "input" / f).read_bytes())
    code, _, stderr = run_cli("build", "--input", str(d), "--out", str(tmp_path / "o"), "--quiet")
    _one_line_error(code, stderr, str(d / "pins.parquet"), "'title'", "missing required column")
    assert not (tmp_path / "o" / "manifest.json").exists()
    # a fractional id is a reject of its row, not an error: tests/cli/test_bad_rows.py


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--variants", "title,pixels"], ["unknown source 'pixels'"]),
        (["--min-users", "-1"], ["min_users must be between 1 and 1000000, got -1"]),
        (["--max-tokens", "0"], ["max_tokens must be between 1 and 1000000, got 0"]),
        (["--tokenizer", "/nonexistent/tok"], ["--tokenizer", "not a folder"]),
    ],
)
def test_bad_settings_exit_2(tmp_path, args, needles):
    code, _, stderr = run_cli("build", "--input", str(FIXTURES / "input"), "--out", str(tmp_path / "o"), "--quiet", *args)
    _one_line_error(code, stderr, *needles)


def test_bad_config_file_exits_2(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("board_topk = 3\n")
    code, _, stderr = run_cli("build", "--input", str(FIXTURES / "input"), "--out", str(tmp_path / "o"), "--config", str(cfg))
    _one_line_error(code, stderr, "unknown setting 'board_topk' at the top level; did you mean 'board_top_k'?")
    code, _, stderr = run_cli("build", "--out", str(tmp_path / "o"))
    _one_line_error(code, stderr, "--input")


def test_variants_command():
    code, stdout, _ = run_cli("variants", "ladder")
    assert code == 0
    assert stdout.splitlines() == [
        "caption\t1 source(s)",
        "caption+title\t2 source(s)",
        "caption+title+description\t3 source(s)",
        "caption+title+description+boards\t4 source(s)",
        "caption+title+description+boards+queries\t5 source(s)",
    ]
    code, stdout, _ = run_cli("variants", "all")
    assert code == 0 and len(stdout.splitlines()) == 31
    code, stdout, _ = run_cli("variants", "queries+title, title")
    assert stdout.splitlines() == ["title+queries\t2 source(s)", "title\t1 source(s)"]
    code, _, stderr = run_cli("variants", "title+title")
    _one_line_error(code, stderr, "repeated")


def test_images_root_that_is_not_a_folder_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(
        cli, ["build", "--input", str(FIXTURES / "input"), "--images-root", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "-q"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"pinfeatures: error: --images-root {tmp_path / 'nope'}: not a folder"
    assert not (tmp_path / "out").exists()
