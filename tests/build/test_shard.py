"""Sharded builds (pinfeatures.build.shard): `--shards N` gives exactly the rows of the whole-input build."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinfeatures.build.run import run_build
from pinfeatures.build.shard import shard_ids
from pinfeatures.buildfolder import open_build
from pinfeatures.build.settings import BuildSettings
from pinfeatures.caption.settings import CaptionSettings
from pinfeatures.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("features", "texts", "rejects", "query_pins")


def read_output(out: Path, name: str) -> pl.DataFrame:
    """A build's table from its file or its folder of parts, in a canonical row order."""
    path = out / f"{name}.parquet"
    frame = pl.read_parquet(path if path.exists() else out / name / "*.parquet")
    return frame.sort(frame.columns, nulls_last=True)


def build(src: Path, out: Path, cache: Path, **settings) -> dict:
    return run_build(BuildSettings(input=str(src), out=str(out), caption=CaptionSettings(cache=str(cache)), quiet=True, **settings))


def assert_same_rows(whole: Path, sharded: Path, shards: int) -> None:
    for name in (*TABLES, "queries"):
        if name != "queries":  # the one table keyed by query, not pin: one file
            assert (sharded / name).is_dir() and not (sharded / f"{name}.parquet").exists()
            assert len(list((sharded / name).glob("part-*.parquet"))) == shards
        a, b = read_output(whole, name), read_output(sharded, name)
        assert a.schema == b.schema, name
        assert a.equals(b), f"{name}: {a.height} rows whole, {b.height} sharded"


def test_shard_of_is_md5_of_the_id() -> None:
    ids = pl.Series(["P00000001", "1001", "", "ünïcode 🎉", None])
    got = shard_ids(ids, 7).to_list()
    want = [int(hashlib.md5(i.encode()).hexdigest()[:8], 16) % 7 if i is not None else 0 for i in ids.to_list()]
    assert got == want
    assert got[0] == 3888912395 % 7  # pinned: a DuckDB or Polars upgrade must not move pins between shards
    assert shard_ids(pl.Series([], dtype=pl.Utf8), 3).to_list() == []


@pytest.mark.parametrize("fixture", ["input", "hostile"])
def test_same_rows_as_the_whole_build_on_fixtures(tmp_path: Path, fixture: str) -> None:
    src = ROOT / "fixtures" / fixture
    whole = tmp_path / "whole"
    m_whole = build(src, whole, tmp_path / "cache")
    for n in (1, 2, 3, 7):
        out = tmp_path / f"shards{n}"
        m = build(src, out, tmp_path / "cache", shards=n, workers=1)
        assert_same_rows(whole, out, n)
        # the manifest's counts and statistics are those of the whole build
        for key in ("counts", "rejects", "coverage", "languages", "privacy", "tokens", "caption", "variants"):
            assert m[key] == m_whole[key], key
        assert m["sharding"] == {"shards": n, "engine": "local", "shard_of": "int(md5(pin_id)[:8], 16) % shards"}
        assert json.loads((out / "manifest.json").read_text())["outputs"]["texts"] == {"path": "texts/", "rows": m_whole["outputs"]["texts"]["rows"], "parts": n}
        assert open_build(out).read("texts").height == m_whole["outputs"]["texts"]["rows"]  # the folder's reader takes the parts
    assert m_whole["counts"]["engagements"]["rejected"] > 0 or fixture == "input"
    assert not list(tmp_path.glob(".*.shards-*"))  # the work folders are gone


def test_bad_rows_and_captions_keyed_both_ways(tmp_path: Path) -> None:
    """Malformed JSONL lines, rows with no pin id, duplicate pins across files, and precomputed
    captions by pin_id and by image sha256 (a global fact) land the same in every shard count."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("boards.csv", "saves.parquet", "engagements.jsonl"):
        (src / name).write_bytes((ROOT / "fixtures" / "input" / name).read_bytes())
    pins = pl.read_parquet(ROOT / "fixtures" / "input" / "pins.parquet")
    (src / "pins").mkdir()
    pins.head(200).write_parquet(src / "pins" / "part-0.parquet")
    # the second part repeats 5 pins (duplicate_pin_id: the first file's row wins) and has a null id
    pl.concat([pins.slice(195, 105), pins.head(1).with_columns(pl.lit(None, pl.Utf8).alias("pin_id"))]).write_parquet(src / "pins" / "part-1.parquet")
    lines = (ROOT / "fixtures" / "input" / "engagements.jsonl").read_text().splitlines()
    lines[3:3] = ["{not json", '{"query": {"nested": 1}, "pin_id": "x", "action": "click"}', '{"query": "cake", "pin_id": null, "action": "click"}']
    (src / "engagements.jsonl").write_text("\n".join(lines) + "\n")
    ids = pins.get_column("pin_id").to_list()
    captions = [
        {"pin_id": ids[0], "image_sha256": None, "caption": "a cake on a plate"},
        {"pin_id": ids[0], "image_sha256": None, "caption": "twice"},  # duplicate_caption
        {"pin_id": "nope", "image_sha256": None, "caption": "unknown pin"},
        {"pin_id": "", "image_sha256": "ab" * 32, "caption": "keyed by sha only"},
        {"pin_id": None, "image_sha256": None, "caption": "no key"},
        {"pin_id": ids[5], "image_sha256": None, "caption": ""},
    ]
    pl.DataFrame(captions, schema={"pin_id": pl.Utf8, "image_sha256": pl.Utf8, "caption": pl.Utf8}).write_parquet(src / "captions.parquet")
    m_whole = build(src, tmp_path / "whole", tmp_path / "cache")
    reasons = m_whole["rejects"]
    assert reasons["pins"] == {"duplicate_pin_id": 5, "null_id": 1}
    assert reasons["engagements"]["malformed_json"] == 1 and reasons["engagements"]["bad_value"] == 1
    assert reasons["captions"] == {"duplicate_caption": 1, "empty_caption": 1, "null_id": 1, "unknown_pin": 1}
    for n in (2, 5):
        m = build(src, tmp_path / f"s{n}", tmp_path / "cache", shards=n, workers=1)
        assert_same_rows(tmp_path / "whole", tmp_path / f"s{n}", n)
        assert (m["counts"], m["rejects"], m["caption"]) == (m_whole["counts"], m_whole["rejects"], m_whole["caption"])


def test_generated_20k_pins_in_a_process_pool(tmp_path: Path) -> None:
    """A generated set with the long tail, 3 shards run by two spawned worker processes."""
    data = tmp_path / "data"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "make_synthetic.py"), "--out", str(data), "--pins", "20000",
                           "--saves", "40000", "--engagements", "120000", "--chunk", "50000"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    m_whole = build(data, tmp_path / "whole", tmp_path / "cache")
    m = build(data, tmp_path / "sharded", tmp_path / "cache", shards=3, workers=2)
    assert_same_rows(tmp_path / "whole", tmp_path / "sharded", 3)
    assert m["counts"] == m_whole["counts"] and m["privacy"] == m_whole["privacy"]
    # query traffic is the whole input's, not a shard's: some kept query has pins in several shards
    qp = read_output(tmp_path / "sharded", "query_pins")
    spread = qp.with_columns(shard_ids(qp.get_column("pin_id"), 3).alias("s")).group_by("query").agg(pl.col("s").n_unique())
    assert spread.get_column("s").max() > 1


def test_cli_shards_and_bad_settings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "cli.py"), "build", "--input", str(ROOT / "fixtures" / "input"), "--out", str(out),
           "--cache", str(tmp_path / "cache"), "--shards", "2", "--workers", "1", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "texts").iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    bad = subprocess.run(cmd[:-5] + ["--shards", "-1"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "shards must be between 0 and 1000000, got -1" in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(ConfigError, match="engine 'ray' runs shards"):
        BuildSettings(input="x", out="y", engine="ray")
    with pytest.raises(ConfigError, match="engine must be one of local, ray"):
        BuildSettings(input="x", out="y", engine="spark", shards=2)


def test_bad_input_file_is_the_same_one_line_error(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("boards.csv", "saves.parquet", "engagements.jsonl"):
        (src / name).write_bytes((ROOT / "fixtures" / "input" / name).read_bytes())
    pl.read_parquet(ROOT / "fixtures" / "input" / "pins.parquet").drop("title").write_parquet(src / "pins.parquet")
    from pinfeatures.errors import InputError

    with pytest.raises(InputError) as whole:
        build(src, tmp_path / "a", tmp_path / "cache")
    with pytest.raises(InputError) as sharded:
        build(src, tmp_path / "b", tmp_path / "cache", shards=3, workers=1)
    assert str(whole.value) == str(sharded.value) and "'title'" in str(sharded.value)
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.shards-*"))


def test_ray_engine_same_rows(tmp_path: Path) -> None:
    """--engine ray on a local Ray (2 CPUs): the shard functions as Ray tasks give the same rows."""
    pytest.importorskip("ray")
    src = ROOT / "fixtures" / "hostile"
    build(src, tmp_path / "whole", tmp_path / "cache")
    m = build(src, tmp_path / "ray", tmp_path / "cache", shards=3, engine="ray")
    assert_same_rows(tmp_path / "whole", tmp_path / "ray", 3)
    assert m["sharding"]["engine"] == "ray"


def test_change_sets_are_the_same(tmp_path: Path) -> None:
    """A rebuild after edits: changes.parquet of a sharded folder lists exactly the whole build's changes."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("boards.csv", "saves.parquet", "engagements.jsonl"):
        (src / name).write_bytes((ROOT / "fixtures" / "input" / name).read_bytes())
    pins = pl.read_parquet(ROOT / "fixtures" / "input" / "pins.parquet")
    pins.write_parquet(src / "pins.parquet")
    build(src, tmp_path / "whole", tmp_path / "cache")
    build(src, tmp_path / "sharded", tmp_path / "cache", shards=3, workers=1)
    edited = pins.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("An edited title")).otherwise(pl.col("title")).alias("title"))
    edited.slice(0, pins.height - 2).write_parquet(src / "pins.parquet")  # 3 titles edited, 2 pins removed
    m_whole = build(src, tmp_path / "whole", tmp_path / "cache")
    m = build(src, tmp_path / "sharded", tmp_path / "cache", shards=3, workers=1)
    assert m["changes"]["removed"] > 0 and m["changes"]["changed"] > 0
    assert {k: v for k, v in m["changes"].items() if k != "previous"} == {k: v for k, v in m_whole["changes"].items() if k != "previous"}
    assert read_output(tmp_path / "whole", "changes").equals(read_output(tmp_path / "sharded", "changes"))


PIN_IDS = [f"p{i}" for i in range(12)]
pin_rows = st.lists(
    st.fixed_dictionaries({
        "pin_id": st.one_of(st.sampled_from(PIN_IDS), st.sampled_from(["", " p1", "P1"])),
        "title": st.one_of(st.none(), st.sampled_from(["Chocolate cake", "Jardín pequeño", "ねこ", "<b>Tarte</b> &amp; café", "call 415 555 0123"])),
        "description": st.one_of(st.none(), st.text(max_size=12)),
        "image": st.none(),
    }),
    min_size=1, max_size=14,
)
event_rows = st.lists(
    st.fixed_dictionaries({
        "query": st.one_of(st.none(), st.sampled_from(["cake", "Cake ", "CAKE", "garden", "anna@example.com", "tarte", "ｃａｋｅ", ""])),
        "pin_id": st.one_of(st.sampled_from(PIN_IDS), st.just("nope")),
        "action": st.sampled_from(["click", "save", "closeup", "impression", "teleport"]),
        "user_id": st.one_of(st.none(), st.sampled_from(["u1", "u2", "u3", "u4", " u1", "7", "7.0"])),
    }),
    max_size=40,
)
save_rows = st.lists(
    st.fixed_dictionaries({"pin_id": st.sampled_from([*PIN_IDS, "nope"]), "board_id": st.sampled_from(["b1", "b2", "b3", "b9"]), "user_id": st.sampled_from(["u1", "u2"])}),
    max_size=20,
)


@pytest.mark.slow  # real builds: left out of the mutation runs (scripts/mutation.sh), not of the suite
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pins=pin_rows, events=event_rows, saves=save_rows, n=st.integers(min_value=2, max_value=5), k=st.integers(min_value=1, max_value=2))
def test_any_input_sharded_equals_whole(tmp_path_factory, pins, events, saves, n, k):
    """Generated tables with duplicate, blank and unknown ids, unknown actions, blank and variant
    user ids and queries that fold together or scrub away: --shards n gives the whole build's rows."""
    folder = tmp_path_factory.mktemp("sharded")
    src = folder / "in"
    src.mkdir()
    pl.DataFrame(pins, schema={"pin_id": pl.Utf8, "title": pl.Utf8, "description": pl.Utf8, "image": pl.Utf8}).write_parquet(src / "pins.parquet")
    pl.DataFrame({"board_id": ["b1", "b2", "b3"], "title": ["Cakes", " cakes", "Garden"]}).write_parquet(src / "boards.parquet")
    pl.DataFrame(saves, schema={"pin_id": pl.Utf8, "board_id": pl.Utf8, "user_id": pl.Utf8}).write_parquet(src / "saves.parquet")
    pl.DataFrame(events, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8}).write_parquet(src / "engagements.parquet")
    whole, sharded = folder / "whole", folder / "sharded"
    m_whole = build(src, whole, folder / "cache", min_users=k)
    m = build(src, sharded, folder / "cache", min_users=k, shards=n, workers=1)
    for name in (*TABLES, "queries"):
        path = whole / f"{name}.parquet"
        if name == "queries" and not path.exists():
            assert not (sharded / "queries.parquet").exists()
            continue
        a, b = read_output(whole, name), read_output(sharded, name)
        assert a.equals(b), f"{name}: {a.height} rows whole, {b.height} sharded"
    for key in ("counts", "rejects", "privacy", "languages"):
        assert m[key] == m_whole[key], key
