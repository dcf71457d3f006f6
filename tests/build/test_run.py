"""run_build end to end on the fixtures: outputs, manifest, determinism, shard invariance, hostile rows."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest
from conftest import FIXTURES, build

from pinfeatures.buildfolder import TextLayout
from pinfeatures.build.settings import BuildSettings
from pinfeatures.caption.settings import CaptionSettings
from pinfeatures.contracts import SOURCES, expand, variant_sources
from pinfeatures.errors import ConfigError, InputError


def test_outputs_and_manifest(fixture_build):
    m = json.loads((fixture_build / "manifest.json").read_text())
    features = pl.read_parquet(fixture_build / "features.parquet")
    texts = pl.read_parquet(fixture_build / "texts.parquet")
    rejects = pl.read_parquet(fixture_build / "rejects.parquet")
    qp = pl.read_parquet(fixture_build / "query_pins.parquet")

    assert features.columns[:10] == ["pin_id", "title", "description", "caption", "boards", "queries", "language", "caption_status", "image_sha256", "image"]
    assert "link" in features.columns and "created_at" in features.columns  # extras carried through
    assert features.schema["boards"] == pl.List(pl.Utf8) and features.schema["queries"] == pl.List(pl.Utf8)
    assert features.height == 300 and features.get_column("pin_id").is_unique().all()
    assert features.get_column("pin_id").to_list() == sorted(features.get_column("pin_id").to_list())
    assert set(features.get_column("caption_status")) == {"skipped"}
    assert features.get_column("language").null_count() == 0

    for name, c in m["counts"].items():
        assert c["read"] == c["valid"] + c["rejected"], name
        assert sum(m["rejects"][name].values()) == c["rejected"]
    assert m["counts"]["pins"]["valid"] == 300
    assert m["outputs"]["features"]["rows"] == 300 and m["outputs"]["texts"]["rows"] == texts.height == 300 * 4
    assert m["outputs"]["rejects"]["rows"] == rejects.height
    # no caption model, no captions table: the ladder starts at title (test_health.py)
    ladder = ["title", "title+description", "title+description+boards", "title+description+boards+queries"]
    assert m["variants"] == ladder
    assert m["privacy"]["threshold_unit"] == "users" and m["privacy"]["query_min_users"] == 3
    assert m["privacy"]["query_pin_pairs_kept"] == qp.height
    assert m["tokens"]["counter"] == "approx" and set(m["tokens"]["by_variant"]) == set(ladder)
    assert sum(m["languages"].values()) == 300 and len([k for k in m["languages"] if k != "und"]) >= 6
    assert set(m["coverage"]["overall"]) == set(SOURCES) and m["coverage"]["overall"]["caption"] == 0.0
    assert m["config"] == json.loads(json.dumps(m["config"])) and m["config"]["variants"] == "ladder"
    assert set(m["inputs"]) == {"pins", "boards", "saves", "engagements"}
    pins_sha = hashlib.sha256((FIXTURES / "input" / "pins.parquet").read_bytes()).hexdigest()
    assert m["inputs"]["pins"]["sha256"] == pins_sha and m["inputs"]["pins"]["format"] == "parquet"
    assert m["timings"]["total"] > 0

    # queries in features are exactly the top-k kept pairs of query_pins
    assert qp.filter(pl.col("users") < 3).height == 0 and qp.filter(pl.col("engaged_events") == 0).height == 0
    kept = qp.group_by("pin_id").agg(pl.col("query"))
    feats = dict(features.select("pin_id", "queries").rows())
    for pin, queries in kept.iter_rows():
        assert set(feats[pin]) <= set(queries) and len(feats[pin]) == min(5, len(queries))

    # texts: budgets, counts, parseable, ordered
    assert texts.schema["n_tokens"] == pl.Int32 and (texts.get_column("n_tokens") <= 512).all()
    order = {v: i for i, v in enumerate(ladder)}
    keys = [(r[0], order[r[1]]) for r in texts.select("pin_id", "variant").rows()]
    assert keys == sorted(keys)
    for row in texts.iter_rows(named=True):
        assert set(TextLayout.from_settings(BuildSettings()).parse(row["text"])) <= set(variant_sources(row["variant"]))


def test_two_builds_are_byte_identical(fixture_build, tmp_path):
    build(tmp_path / "again", input=str(FIXTURES / "input"))
    assert (tmp_path / "again" / "texts.parquet").read_bytes() == (fixture_build / "texts.parquet").read_bytes()
    assert pl.read_parquet(tmp_path / "again" / "features.parquet").equals(pl.read_parquet(fixture_build / "features.parquet"))


def _shard(pin_id: str) -> int:
    return hashlib.sha256(pin_id.encode()).digest()[0] % 2


def test_shard_invariance(fixture_build, tmp_path):
    """Hash-partitioned pins (with their saves and engagements, boards whole) build to slices of the whole."""
    src = FIXTURES / "input"
    pins = pl.read_parquet(src / "pins.parquet")
    saves = pl.read_parquet(src / "saves.parquet")
    engagements = pl.read_ndjson(src / "engagements.jsonl", infer_schema_length=None)
    shard_of = pl.col("pin_id").cast(pl.Utf8).map_elements(_shard, return_dtype=pl.Int64)
    for k in (0, 1):
        d = tmp_path / f"shard{k}"
        d.mkdir()
        pins.filter(shard_of == k).write_parquet(d / "pins.parquet")
        saves.filter(shard_of == k).write_parquet(d / "saves.parquet")
        engagements.filter(shard_of == k).write_parquet(d / "engagements.parquet")
        (d / "boards.csv").write_bytes((src / "boards.csv").read_bytes())
        build(tmp_path / f"out{k}", input=str(d))
    # not `language`: its prior is a global aggregate (like query traffic), which separate builds of
    # the shards each estimate on their own; test_language.py checks shards given the global prior
    cols = ["pin_id", "boards", "queries"]
    whole = pl.read_parquet(fixture_build / "features.parquet").select(cols)
    parts = [pl.read_parquet(tmp_path / f"out{k}" / "features.parquet").select(cols) for k in (0, 1)]
    assert min(p.height for p in parts) > 100  # both shards are real
    assert pl.concat(parts).sort("pin_id").equals(whole)
    whole_texts = pl.read_parquet(fixture_build / "texts.parquet")
    shard_texts = pl.concat([pl.read_parquet(tmp_path / f"out{k}" / "texts.parquet") for k in (0, 1)])
    key = ["pin_id", "variant"]
    assert shard_texts.sort(key).equals(whole_texts.sort(key))


def test_hostile_build(hostile_build):
    m = json.loads((hostile_build / "manifest.json").read_text())
    texts = pl.read_parquet(hostile_build / "texts.parquet")
    features = pl.read_parquet(hostile_build / "features.parquet")
    rejects = pl.read_parquet(hostile_build / "rejects.parquet")
    assert m["variants"] == expand("all") and texts.height == 31 * features.height
    for name, c in m["counts"].items():
        assert c["read"] == c["valid"] + c["rejected"], name
    assert rejects.height == sum(c["rejected"] for c in m["counts"].values())
    assert set(rejects.get_column("reason")) >= {"null_id", "empty_id", "duplicate_pin_id", "duplicate_board_id", "unknown_pin", "unknown_board", "unknown_action", "empty_query"}
    assert rejects.filter(pl.col("row").is_null() | pl.col("file").is_null() | pl.col("table").is_null()).height == 0
    assert m["privacy"]["events_query_scrubbed_empty"] > 0
    # no scrubbed personal data survives into the outputs
    blob = " ".join(features.get_column("boards").list.join(" ").to_list() + features.get_column("queries").list.join(" ").to_list())
    for pii in ("@example.com", "555-0123", "http", "www."):
        assert pii not in blob
    assert "anna@example.com" not in " ".join(rejects.get_column("record").drop_nulls().to_list())
    # ' CLICK ' rows were normalised and counted: 'chocolate cake' is a top query of pin 1001
    assert "chocolate cake" in dict(features.select("pin_id", "queries").rows())["1001"]
    # every text parses back: each source at most once, no forged or unknown line
    for row in texts.iter_rows(named=True):
        parsed = TextLayout.from_settings(BuildSettings()).parse(row["text"])
        assert set(parsed) <= set(variant_sources(row["variant"]))
        assert row["n_tokens"] <= 512
    for v in features.get_column("description").drop_nulls().to_list() + features.get_column("title").drop_nulls().to_list():
        assert len(v) <= 4000 and "\n" not in v and "\u202e" not in v and "<script" not in v


def test_build_errors(tmp_path):
    with pytest.raises(ConfigError, match="--out is required"):
        build_cfg = BuildSettings(input=str(FIXTURES / "input"))
        from pinfeatures.build.run import run_build

        run_build(build_cfg)
    with pytest.raises(ConfigError, match="give --input DIR"):
        build(tmp_path / "o")
    with pytest.raises(ConfigError, match="unknown source"):
        build(tmp_path / "o", input=str(FIXTURES / "input"), variants="title,pixels")
    with pytest.raises(InputError, match="table 'engagements' not found"):
        d = tmp_path / "partial"
        d.mkdir()
        for f in ("pins.parquet", "boards.csv", "saves.parquet"):
            (d / f).write_bytes((FIXTURES / "input" / f).read_bytes())
        build(tmp_path / "o", input=str(d))
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_precomputed_captions_by_pin_and_by_image_sha256(tmp_path):
    """A captions table wins over the model: by pin_id, else by the sha256 of the pin's image bytes."""
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(FIXTURES / "input", folder)
    pins = pl.read_parquet(folder / "pins.parquet")
    first = pins.row(0, named=True)
    # an image shared by several pins (repins), for the sha256 route
    shared = pins.filter(pl.col("image").is_not_null() & ~pl.col("image").str.starts_with("http")).group_by("image").len().filter(pl.col("len") > 1).sort("image").row(0, named=True)["image"]
    sha = hashlib.sha256((FIXTURES / "images" / shared).read_bytes()).hexdigest()
    pl.DataFrame(
        {"pin_id": [first["pin_id"], None], "image_sha256": [None, sha.upper()], "caption": ["Given <b>caption</b>", "Caption by image"]}
    ).write_csv(folder / "captions.csv")
    sharing = set(pins.filter(pl.col("image") == shared).get_column("pin_id").to_list()) - {first["pin_id"]}

    for model in (None, "demo"):
        out = tmp_path / f"out-{model}"
        manifest = build(out, input=str(folder), images_root=str(FIXTURES / "images"), caption=CaptionSettings(caption_model=model))
        features = pl.read_parquet(out / "features.parquet")
        by_pin = {r["pin_id"]: r for r in features.iter_rows(named=True)}
        assert by_pin[first["pin_id"]]["caption"] == "Given caption"  # cleaned like every text
        assert by_pin[first["pin_id"]]["caption_status"] == "precomputed"
        for pid in sharing:
            assert by_pin[pid]["caption"] == "Caption by image"
            assert by_pin[pid]["caption_status"] == "precomputed"
            assert by_pin[pid]["image_sha256"] == sha
        others = features.filter(~pl.col("pin_id").is_in([first["pin_id"], *sharing]))
        statuses = set(others.get_column("caption_status").to_list())
        if model is None:
            assert statuses == {"skipped"}
            assert others.get_column("caption").null_count() == others.height
        else:
            assert "ok" in statuses and "precomputed" not in statuses and "skipped" not in statuses
        assert manifest["caption"]["precomputed"] == 1 + len(sharing)
        assert manifest["counts"]["captions"] == {"read": 2, "valid": 2, "rejected": 0}


def test_manifest_platform_starts_no_subprocess(monkeypatch):
    """platform.platform() runs `uname -p` in a subprocess: a fork of a build holding gigabytes
    (a sampled process tree counts the child's shared pages twice). The manifest's field is the
    same string without it."""
    import platform
    import subprocess

    from pinfeatures.build.run import _platform

    expected = platform.platform()

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"subprocess started: {args[0]!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_subprocess)
    assert _platform() == expected
