"""`pinfeatures pairs`: judged pairs and the stratified sample, on small build folders written here."""

import json

import polars as pl
import pytest
from click.testing import CliRunner
from evaluate.test_run import JUDGED, LADDER, make_build, write_judgments

from pinfeatures.pairs.settings import PairsSettings
from pinfeatures.errors import ConfigError, InputError
from pinfeatures.pairs.sample import query_bands, run_pairs
from pinfeatures.pairs.allocation import allocate


def query_pins() -> pl.DataFrame:
    """Traffic 1000 (q0), 500 (q1), 300, 100, 50, 30, 20 -> shares before: 0, .5, .75, .9, .95, .975, .99."""
    traffic = {"q0": 1000, "q1": 500, "q2": 300, "q3": 100, "q4": 50, "q5": 30, "q6": 20}
    rows = []
    pins = ["p1", "p2", "p3", "p4", "p5", "p6"]
    for i, (q, t) in enumerate(traffic.items()):
        for j, pin in enumerate(pins):
            if (i + j) % 3 != 2:  # about two thirds of the pairs pass the privacy filter
                rows.append({"query": q, "pin_id": pin, "events": 10, "users": 5, "country": ["US", "DE", None][j % 3], "query_traffic": t})
    return pl.DataFrame(rows)


@pytest.fixture()
def build(tmp_path):
    return make_build(tmp_path / "build", query_pins=query_pins())


def test_bands_by_cumulative_traffic():
    b = query_bands(query_pins(), (0.5, 0.8))
    assert dict(zip(b["query"], b["band"])) == {"q0": "head", "q1": "torso", "q2": "torso", "q3": "tail", "q4": "tail", "q5": "tail", "q6": "tail"}
    b = query_bands(query_pins(), (0.9,))
    assert b.filter(pl.col("band") == "head")["query"].to_list() == ["q0", "q1", "q2"]


def test_allocation_rules():
    pop = {"a": 50, "b": 30, "c": 20, "d": 0}
    assert allocate(pop, 10, "proportional") == {"a": 5, "b": 3, "c": 2, "d": 0}
    assert sum(allocate(pop, 7, "proportional").values()) == 7
    # 30 each; c can take 20, so its 10 go to a (b is full at 30)
    assert allocate(pop, 90, "equal") == {"a": 40, "b": 30, "c": 20, "d": 0}
    eq = allocate({"a": 50, "b": 3, "c": 20}, 30, "equal")
    assert eq == {"a": 14, "b": 3, "c": 13} and sum(eq.values()) == 30
    assert allocate(pop, 1000, "proportional") == pop  # more than the population: everything
    assert allocate(pop, None, "per_stratum", 25) == {"a": 25, "b": 25, "c": 20, "d": 0}
    with pytest.raises(ConfigError):
        allocate(pop, None, "proportional")


POPULATION = {"de/head": 2, "de/torso": 2, "de/tail": 6, "en/head": 2, "en/torso": 6, "en/tail": 10}
SAMPLED = {
    "proportional": {"de/head": 1, "de/torso": 1, "de/tail": 3, "en/head": 1, "en/torso": 2, "en/tail": 4},
    "equal": {"de/head": 2, "de/torso": 2, "de/tail": 2, "en/head": 2, "en/torso": 2, "en/tail": 2},
    "per_stratum": {"de/head": 2, "de/torso": 2, "de/tail": 2, "en/head": 2, "en/torso": 2, "en/tail": 2},
}


@pytest.mark.parametrize("allocation,extra", [("proportional", {"sample": 12}), ("equal", {"sample": 12}), ("per_stratum", {"per_stratum_size": 2})])
def test_sample_weights_sum_to_population(build, tmp_path, allocation, extra):
    cfg = PairsSettings(allocation=allocation, seed=3, **extra)
    res = run_pairs(build, cfg, out=tmp_path / f"{allocation}.parquet")
    m = res.manifest["sample"]
    pop = query_pins().join(pl.read_parquet(build / "features.parquet").select("pin_id", "language"), on="pin_id")
    assert m["population_pairs"] == pop.height
    one_variant = res.pairs.filter(pl.col("variant") == "caption+title")  # every pin has a text here
    for st in m["strata"]:
        got = one_variant.filter(pl.col("stratum") == st["stratum"])
        assert got.height == st["sampled"]
        if st["sampled"]:
            assert got["sampling_weight"].sum() == pytest.approx(st["population"])
    assert sum(st["population"] for st in m["strata"]) == pop.height
    if allocation != "per_stratum":
        assert m["sampled_pairs"] == 12
    # every language x band cell has pairs here (test_by_country_strata has empty ones)
    assert [(st["stratum"], st["population"], st["sampled"], st["status"]) for st in m["strata"]] == [
        (name, POPULATION[name], SAMPLED[allocation][name], "ok") for name in POPULATION]
    assert m["empty_strata"] == []
    manifest = json.loads((tmp_path / "pairs_manifest.json").read_text())
    assert manifest["sample"]["strata"] == m["strata"]


def test_sample_is_seeded_and_has_the_schema(build, tmp_path):
    a = run_pairs(build, PairsSettings(sample=10, seed=1), out=tmp_path / "a.parquet").pairs
    b = run_pairs(build, PairsSettings(sample=10, seed=1), out=tmp_path / "b.parquet").pairs
    c = run_pairs(build, PairsSettings(sample=10, seed=2), out=tmp_path / "c.parquet").pairs
    assert a.equals(b)
    assert not a.equals(c)
    assert a.columns == ["query", "pin_id", "variant", "text", "stratum", "band", "language", "query_language", "country", "sampling_weight", "query_traffic"]
    assert set(a["variant"]) <= set(LADDER)
    # p3 has no caption: its 'caption' row is left out, never an empty text
    assert a["text"].null_count() == 0 and (a["text"].str.len_chars() > 0).all()
    assert set(a["band"]) <= {"head", "torso", "tail"}
    assert (a["query_traffic"] > 0).all()
    on_disk = pl.read_parquet(tmp_path / "a.parquet")
    assert on_disk.equals(a)


def test_by_country_strata(build, tmp_path):
    res = run_pairs(build, PairsSettings(sample=20, by_country=True), out=tmp_path / "p.parquet")
    strata = res.manifest["sample"]["strata"]
    assert {s["country"] for s in strata} == {"US", "DE", "unknown"}
    assert all(s["stratum"].count("/") == 2 for s in strata)
    # a language x band x country cell with no pairs is reported, not an error
    assert res.manifest["sample"]["empty_strata"] == ["de/head/unknown", "de/torso/unknown", "de/tail/unknown", "en/head/unknown"]
    empty = [s for s in strata if s["stratum"] in res.manifest["sample"]["empty_strata"]]
    assert [(s["population"], s["sampled"], s["status"]) for s in empty] == [(0, 0, "empty")] * 4


def test_query_language_strata(tmp_path):
    """strata_language='query': strata are query_language x band; the pin's language is still carried."""
    qlang = {"q0": "en", "q1": "en", "q2": "de", "q3": "de", "q4": "fr", "q5": None, "q6": "en"}
    qp = query_pins().with_columns(pl.col("query").replace_strict(qlang, return_dtype=pl.Utf8).alias("query_language"))
    build = make_build(tmp_path / "build", query_pins=qp)
    res = run_pairs(build, PairsSettings(per_stratum_size=100, allocation="per_stratum", strata_language="query"), out=tmp_path / "q.parquet")
    pairs = res.pairs.filter(pl.col("variant") == "caption+title")
    expected = pairs.select(pl.concat_str([pl.col("query_language"), pl.col("band")], separator="/"))
    assert pairs["stratum"].to_list() == expected.to_series().to_list()
    assert dict(zip(pairs["query"], pairs["query_language"])) == {q: (lang or "und") for q, lang in qlang.items()}
    assert {s["language"] for s in res.manifest["sample"]["strata"]} == {"en", "de", "fr", "und"}
    pin_strata = run_pairs(build, PairsSettings(per_stratum_size=100, allocation="per_stratum"), out=tmp_path / "p.parquet").pairs
    assert pin_strata.select(pl.col("stratum").str.starts_with(pl.col("language")).all()).item()
    with pytest.raises(ConfigError, match="strata_language"):
        run_pairs(build, PairsSettings(sample=5, strata_language="user"))


def test_judged_pairs_with_labels_and_jsonl(build, tmp_path):
    j = write_judgments(tmp_path / "j.csv", JUDGED + [("q", "p404", "3")])
    res = run_pairs(build, PairsSettings(format="jsonl", variants="caption,caption+title"), judgments=j, out=tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"query", "pin_id", "variant", "text", "label"}
    # 11 judged pairs x 2 variants, minus p3 with no caption
    assert len(rows) == 11 * 2 - 1 == res.manifest["rows"]
    assert rows[0] == {"query": "living room", "pin_id": "p1", "variant": "caption", "text": "Image: a red sofa", "label": 5}
    assert res.manifest["judgments"]["rejects"] == {"unknown_pin": 1}
    rejects = pl.read_parquet(tmp_path / "pairs_rejects.parquet")
    assert rejects.select("table", "file", "row", "column", "reason").rows() == [("judgments", str(j), len(JUDGED) + 2, "pin_id", "unknown_pin")]  # a file line: header = 1
    assert json.loads(rejects["record"][0]) == {"query": "q", "pin_id": "p404", "label": "3"}


def test_parquet_loads_with_datasets(build, tmp_path):
    datasets = pytest.importorskip("datasets")
    j = write_judgments(tmp_path / "j.csv", JUDGED)
    run_pairs(build, PairsSettings(), judgments=j, out=tmp_path / "pairs.parquet")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "pairs.parquet"), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.column_names == ["query", "pin_id", "variant", "text", "label"]
    assert len(ds) == pl.read_parquet(tmp_path / "pairs.parquet").height
    assert ds[0]["label"] == 5


def test_bad_inputs(build, tmp_path):
    j = write_judgments(tmp_path / "j.csv", JUDGED)
    with pytest.raises(ConfigError, match="--judgments F"):
        run_pairs(build, PairsSettings())
    with pytest.raises(ConfigError, match="two different modes"):
        run_pairs(build, PairsSettings(sample=5), judgments=j)
    with pytest.raises(ConfigError, match="bands"):
        run_pairs(build, PairsSettings(sample=5, bands=(0.8, 0.5)))
    with pytest.raises(ConfigError, match="bands"):
        run_pairs(build, PairsSettings(sample=5, bands=(1.5,)))
    with pytest.raises(ConfigError, match="per-stratum"):
        run_pairs(build, PairsSettings(allocation="per_stratum"))
    with pytest.raises(ConfigError, match="allocation"):
        run_pairs(build, PairsSettings(sample=5, allocation="random"))
    with pytest.raises(ConfigError, match="sample"):
        run_pairs(build, PairsSettings(sample=0))
    with pytest.raises(ConfigError, match="not in this build"):
        run_pairs(build, PairsSettings(sample=5, variants="queries"))
    no_qp = make_build(tmp_path / "noqp")
    with pytest.raises(InputError, match="manifest.json: this build has no query_pins table"):
        run_pairs(no_qp, PairsSettings(sample=5))
    with pytest.raises(InputError, match="query_pins.parquet, column 'query_traffic': required column is missing"):  # the writer refuses it
        make_build(tmp_path / "badqp", query_pins=pl.DataFrame({"query": ["q"], "pin_id": ["p1"]}))


def test_cli(build, tmp_path):
    from pinfeatures.cli import cli

    out = tmp_path / "s.parquet"
    r = CliRunner().invoke(cli, ["pairs", "--build", str(build), "--sample", "8", "--out", str(out), "--bands", "0.6,0.9", "--seed", "4"])
    assert r.exit_code == 0, r.output
    assert "sampled 8 of" in r.output and "stratum" in r.output
    assert json.loads((tmp_path / "pairs_manifest.json").read_text())["sample"]["bands"]["cutoffs"] == [0.6, 0.9]
    r = CliRunner().invoke(cli, ["pairs", "--build", str(build), "--sample", "8", "--out", str(out), "--strata-language", "query"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "pairs_manifest.json").read_text())["config"]["strata_language"] == "query"
    assert set(pl.read_parquet(out)["stratum"].str.split("/").list.first()) == {"und"}  # this build's query_pins has no query_language
    r = CliRunner().invoke(cli, ["pairs", "--build", str(build), "--sample", "3", "--strata-language", "user"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["pairs", "--build", str(build), "--bands", "x,y", "--sample", "3"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["pairs", "--build", str(build)])
    assert r.exit_code == 2 and "--judgments F" in r.output


def test_sample_on_fixture_build(tmp_path):
    from evaluate.test_run import _fixture_build

    build = _fixture_build(tmp_path)
    res = run_pairs(build, PairsSettings(sample=40, variants="ladder"), out=tmp_path / "pairs.parquet")
    m = res.manifest["sample"]
    assert m["sampled_pairs"] == 40
    for st in m["strata"]:
        w = res.pairs.filter((pl.col("stratum") == st["stratum"])).unique(["query", "pin_id"])["sampling_weight"].sum()
        if st["sampled"]:
            assert w == pytest.approx(st["population"])
