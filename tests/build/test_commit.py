"""A build's commit, end to end with real `python cli.py build` subprocesses: kill -9 at every step
of the write/commit stage leaves the previous build or the new one (checked against the manifest),
a second build into the same folder stops at once naming the first, a rebuild leaves no stale
evaluation presented as current, and changes.parquet lists exactly the texts that moved.

The build pauses at a named step when PINFEATURES_TEST_PAUSE_AT is set (pinfeatures.buildfolder
._pause): it writes <step>.reached and waits for <step>.go, so the test kills it at a known point.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, build, small_tables, write_inputs

from pinfeatures.buildfolder import open_build
from pinfeatures.errors import ConfigError, InputError

LADDER = ["title", "title+description", "title+description+boards", "title+description+boards+queries"]
"""The default ladder of a build without a caption source (it starts at title)."""


def start_build(inputs: Path, out: Path, pause_dir: Path, step: str | None, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PINFEATURES_TEST_PAUSE_DIR": str(pause_dir)}
    if step:
        env["PINFEATURES_TEST_PAUSE_AT"] = step
    cmd = [sys.executable, str(REPO / "cli.py"), "build", "--input", str(inputs), "--out", str(out), "--quiet", "--cache", str(out.parent / "cache"), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the build announces the step (or dies: then fail with its stderr)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"build exited {proc.returncode} before {path.name}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"no {path.name} within {timeout}s"
        time.sleep(0.02)


def edited_inputs(folder: Path) -> Path:
    """The small tables with one title edited: a build of them differs from the original's."""
    tables = small_tables()
    tables["pins"] = tables["pins"].with_columns(pl.when(pl.col("pin_id") == "p2").then(pl.lit("Tiny garden ideas")).otherwise(pl.col("title")).alias("title"))
    return write_inputs(folder, tables)


@pytest.fixture(scope="module")
def old_build(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("commit")
    out = root / "old"
    manifest = build(out, input=str(write_inputs(root / "in", small_tables())))
    return out, manifest["build_id"]


STEPS_OLD = ["locked", "table:features", "table:texts", "table:query_pins", "table:changes", "manifest", "swap"]
STEPS_NEW = ["swapped", "committed"]


@pytest.mark.slow  # real builds killed in a subprocess: left out of the mutation runs (scripts/mutation.sh), not of the suite
@pytest.mark.parametrize("step", STEPS_OLD + STEPS_NEW)
def test_kill_9_leaves_the_old_build_or_the_new_one(step, old_build, tmp_path):
    src, old_id = old_build
    out = tmp_path / "out"
    shutil.copytree(src, out)
    old_features = pl.read_parquet(out / "features.parquet")
    inputs = edited_inputs(tmp_path / "in")
    proc = start_build(inputs, out, tmp_path, step)
    wait_for(tmp_path / f"{step}.reached", proc)
    new_id = json.loads((tmp_path / ".out.lock.json").read_text())["build_id"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    committed = open_build(out)  # every file matches the manifest (sizes, rows, sha256): no mix
    if step in STEPS_OLD:
        assert committed.build_id == old_id
        assert committed.read("features").equals(old_features)
    else:
        assert committed.build_id == new_id
        assert committed.read("features").filter(pl.col("pin_id") == "p2")["title"].to_list() == ["Tiny garden ideas"]
    # the next build cleans up what the killed one left beside the folder and commits
    manifest = build(out, input=str(inputs))
    assert open_build(out).build_id == manifest["build_id"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == [".out.lock", ".out.lock.json"]


@pytest.mark.slow  # real builds killed in a subprocess: left out of the mutation runs (scripts/mutation.sh), not of the suite
def test_kill_9_before_the_first_commit_leaves_no_folder(tmp_path):
    inputs = write_inputs(tmp_path / "in", small_tables())
    proc = start_build(inputs, tmp_path / "out", tmp_path, "swap")
    wait_for(tmp_path / "swap.reached", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # real builds killed in a subprocess: left out of the mutation runs (scripts/mutation.sh), not of the suite
def test_a_second_build_stops_at_once_naming_the_first(tmp_path):
    inputs = write_inputs(tmp_path / "in", small_tables())
    out = tmp_path / "out"
    first = start_build(inputs, out, tmp_path, "table:texts")
    try:
        wait_for(tmp_path / "table:texts.reached", first)
        holder = json.loads((tmp_path / ".out.lock.json").read_text())
        second = start_build(inputs, out, tmp_path / "elsewhere", None)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert f"{out}: another build is writing here (pid {first.pid} on {holder['host']}, started {holder['started']})" in lines[0]
        (tmp_path / "table:texts.go").write_text("")
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    assert open_build(out).build_id == holder["build_id"]


def test_a_rebuild_leaves_no_stale_evaluation(tmp_path):
    from pinfeatures.evaluate.settings import EvaluateSettings
    from pinfeatures.pairs.settings import PairsSettings
    from pinfeatures.report.settings import ReportSettings
    from pinfeatures.evaluate.run import run_evaluate
    from pinfeatures.pairs.sample import run_pairs
    from pinfeatures.report.run import render_report, write_report

    inputs = write_inputs(tmp_path / "in", small_tables())
    out = tmp_path / "out"
    first = build(out, input=str(inputs))
    judgments = tmp_path / "j.csv"
    pl.DataFrame({"query": ["cake", "cake", "garden", "garden"], "pin_id": ["p1", "p3", "p2", "p4"], "label": [5, 1, 4, 2]}).write_csv(judgments)
    res = run_evaluate(out, judgments, EvaluateSettings(scorers=("lexical",), bootstrap_samples=50))
    assert json.loads((out / "evaluation" / "ablation.json").read_text())["build_id"] == first["build_id"]
    assert f"Build `{first['build_id']}`" in res.markdown
    run_pairs(out, PairsSettings(), judgments=judgments)
    assert json.loads((out / "pairs_manifest.json").read_text())["build_id"] == first["build_id"]
    write_report(out, ReportSettings(sample_pins=0))
    assert first["build_id"] in (out / "report.html").read_text()

    second = build(out, input=str(inputs))
    # the swap gives a fresh folder: the previous build's evaluation, pairs and report went with it
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *(f"{t}.parquet" for t in second["outputs"])])
    page = render_report(out, ReportSettings(sample_pins=0))
    assert 'id="no-evaluation"' in page and second["build_id"] in page and first["build_id"] not in page


# -- change sets ----------------------------------------------------------------------------


def many_pins(n: int) -> dict[str, pl.DataFrame]:
    """n pins, each with a title, a description and one board; no engagements (so no queries)."""
    ids = [f"p{i:04d}" for i in range(n)]
    return {
        "pins": pl.DataFrame({"pin_id": ids, "title": [f"Pin {i} title" for i in range(n)], "description": [f"About thing {i}" for i in range(n)], "image": [None] * n}, schema_overrides={"image": pl.Utf8}),
        "boards": pl.DataFrame({"board_id": ["b1"], "title": ["Ideas"]}),
        "saves": pl.DataFrame({"pin_id": ids, "board_id": ["b1"] * n}),
        "engagements": pl.DataFrame(schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8}),
    }


def test_change_set_is_exactly_the_edited_added_and_removed_pins(tmp_path):
    tables = many_pins(300)
    out = tmp_path / "out"
    first = build(out, input=str(write_inputs(tmp_path / "in1", tables)))
    assert first["changes"] == {"previous": None} and not (out / "changes.parquet").exists()
    old_texts = open_build(out).read("texts")

    edited = ["p0007", "p0150", "p0299"]  # 1% of the pins: a new title
    removed = ["p0010", "p0011"]
    added = ["p0300", "p0301", "p0302", "p0303"]
    pins = tables["pins"].filter(~pl.col("pin_id").is_in(removed)).with_columns(
        pl.when(pl.col("pin_id").is_in(edited)).then(pl.col("title") + " (new)").otherwise(pl.col("title")).alias("title")
    )
    more = pl.DataFrame({"pin_id": added, "title": ["Added"] * 4, "description": [None] * 4, "image": [None] * 4}, schema=pins.schema)
    tables2 = {**tables, "pins": pl.concat([pins, more]), "saves": tables["saves"].filter(~pl.col("pin_id").is_in(removed))}
    inputs2 = write_inputs(tmp_path / "in2", tables2)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(out, elsewhere)
    second = build(out, input=str(inputs2))

    with_title = [v for v in LADDER if "title" in v]
    expected = sorted(
        [(p, v, "changed") for p in edited for v in with_title]
        + [(p, v, "added") for p in added for v in LADDER]
        + [(p, v, "removed") for p in removed for v in LADDER]
    )
    changes = open_build(out).read("changes")
    assert sorted(changes.select("pin_id", "variant", "change").iter_rows()) == expected
    assert second["changes"] == {"previous": {"path": str(out), "build_id": first["build_id"]}, "added": 16, "changed": 12, "removed": 8}
    new_texts = open_build(out).read("texts")
    old_sha = dict(zip(zip(old_texts["pin_id"], old_texts["variant"]), old_texts["text_sha256"]))
    new_sha = dict(zip(zip(new_texts["pin_id"], new_texts["variant"]), new_texts["text_sha256"]))
    for r in changes.iter_rows(named=True):
        assert r["old_text_sha256"] == old_sha.get((r["pin_id"], r["variant"]))
        assert r["new_text_sha256"] == new_sha.get((r["pin_id"], r["variant"]))
    # content_sha256 moved for exactly the edited pins
    old_c = dict(open_build(elsewhere).read("features").select("pin_id", "content_sha256").iter_rows())
    new_c = dict(open_build(out).read("features").select("pin_id", "content_sha256").iter_rows())
    assert sorted(p for p in old_c.keys() & new_c.keys() if old_c[p] != new_c[p]) == edited

    # --previous DIR: the same change set against a build elsewhere, through the CLI
    third = tmp_path / "third"
    res = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "build", "--input", str(inputs2), "--out", str(third), "--cache", str(tmp_path / "cache"), "--previous", str(elsewhere)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert f"changes since {first['build_id']}: 16 added, 12 changed, 8 removed" in res.stdout
    assert open_build(third).read("changes").select("pin_id", "variant", "change").sort("pin_id", "variant").equals(changes.select("pin_id", "variant", "change"))
    # a rebuild of the same inputs changes nothing
    fourth = build(out, input=str(inputs2))
    assert {k: fourth["changes"][k] for k in ("added", "changed", "removed")} == {"added": 0, "changed": 0, "removed": 0}
    assert open_build(out).read("changes").height == 0


def test_previous_that_is_not_a_build_is_an_error_before_reading(tmp_path):
    with pytest.raises(InputError, match="manifest.json: missing"):
        build(tmp_path / "out", input=str(tmp_path / "nowhere"), previous=str(tmp_path))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match="is not a build folder"):
        build(tmp_path / "junk", input=str(tmp_path / "nowhere"))
    assert (tmp_path / "junk" / "a.txt").read_text() == "x"
