"""Allocation of a sample over strata (pure functions), Neyman with a pilot through `pairs`, and its bad inputs."""

import json
import math
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from conftest import cli_error
from evaluate.test_run import PINS, make_build
from pairs.test_sample import query_pins

from pinfeatures.errors import ConfigError, InputError
from pinfeatures.pairs.allocation import allocate, largest_remainders, neyman, neyman_quotas, pooled_sd, stratum_sds
from pinfeatures.pairs.sample import run_pairs
from pinfeatures.pairs.settings import PairsSettings


def test_largest_remainders_hand_computed():
    # floors 3, 3, 3 (9); one unit left: c has the largest fraction (.5 > .3 > .2)
    assert largest_remainders({"a": 3.3, "b": 3.2, "c": 3.5}, 10, {"a": 9, "b": 9, "c": 9}) == {"a": 3, "b": 3, "c": 4}
    # a tie in the fraction goes to the first name; a full stratum is passed over
    assert largest_remainders({"a": 1.5, "b": 1.5}, 3, {"a": 9, "b": 9}) == {"a": 2, "b": 1}
    assert largest_remainders({"a": 1.5, "b": 1.5}, 3, {"a": 1, "b": 9}) == {"a": 1, "b": 2}


def test_neyman_hand_computed():
    # N_h S_h: a 100, b 100, c 5 (sum 205); n = 41 -> quotas 20, 20, 1; c is under the floor
    # of 2 -> fixed at 2; the other 39 split 19.5 / 19.5 -> 19 + 19, the tie's unit goes to a.
    pop, sd = {"a": 100, "b": 50, "c": 10, "d": 0}, {"a": 1.0, "b": 2.0, "c": 0.5}
    assert neyman_quotas(pop, sd, 41) == {"a": 19.5, "b": 19.5, "c": 2.0, "d": 0.0}
    assert neyman(pop, sd, 41) == {"a": 20, "b": 19, "c": 2, "d": 0}
    # the cap: a's share (50) exceeds N_a = 10 -> a is taken whole, b gets the other 90
    assert neyman({"a": 10, "b": 1000}, {"a": 10.0, "b": 0.1}, 100) == {"a": 10, "b": 90}
    # a stratum of one pair gets its one pair (the floor is min(2, N_h))
    assert neyman({"a": 1, "b": 50}, {"a": 0.0, "b": 1.0}, 10) == {"a": 1, "b": 9}
    # no variance anywhere: spread by size (30:10 of 8 -> 6, 2)
    assert neyman({"a": 30, "b": 10}, {"a": 0.0, "b": 0.0}, 8) == {"a": 6, "b": 2}
    # more than the population: everything
    assert neyman({"a": 3, "b": 4}, {"a": 1.0, "b": 1.0}, 100) == {"a": 3, "b": 4}
    assert allocate({"b": 50, "a": 100, "c": 10}, 41, "neyman", sd=sd) == {"a": 20, "b": 19, "c": 2}


def test_neyman_total_and_bounds_on_random_designs():
    rng = np.random.default_rng(7)
    for _ in range(300):
        h = int(rng.integers(1, 8))
        pop = {f"s{i}": int(rng.integers(0, 60)) for i in range(h)}
        sd = {s: float(rng.choice([0.0, rng.uniform(0, 2)])) for s in pop}
        floor = sum(min(2, v) for v in pop.values())
        total = sum(pop.values())
        n = int(rng.integers(floor, total + 5)) if total else 0
        out = neyman(pop, sd, n)
        assert sum(out.values()) == min(n, total)
        assert all(min(2, pop[s]) <= out[s] <= pop[s] for s in pop)


def test_neyman_bad_settings():
    with pytest.raises(ConfigError, match="too small for neyman.*3 non-empty strata.*at least 6"):
        neyman({"a": 5, "b": 5, "c": 5, "d": 0}, {"a": 1.0, "b": 1.0, "c": 1.0}, 5)
    with pytest.raises(ConfigError, match="no standard deviation for stratum 'b'"):
        neyman({"a": 5, "b": 5}, {"a": 1.0}, 5)
    with pytest.raises(ConfigError, match="'a' has standard deviation nan"):
        neyman({"a": 5}, {"a": math.nan}, 5)
    with pytest.raises(ConfigError, match="needs --pilot"):
        allocate({"a": 5}, 5, "neyman")


def test_pooled_sd_hand_computed():
    # a: [1, 3] -> s^2 = 2; b: [2, 2, 5] -> s^2 = 3; pooled = sqrt((1 * 2 + 2 * 3) / (1 + 2)) = sqrt(8/3)
    groups = {"a": [1.0, 3.0], "b": [2.0, 2.0, 5.0], "c": [4.0]}
    assert pooled_sd(groups) == pytest.approx(math.sqrt(8 / 3), abs=1e-12)
    sds, pooled, value = stratum_sds(["a", "b", "c", "d"], groups)
    assert sds == pytest.approx({"a": math.sqrt(2), "b": math.sqrt(3), "c": math.sqrt(8 / 3), "d": math.sqrt(8 / 3)}, abs=1e-12)
    assert pooled == ["c", "d"] and value == pytest.approx(math.sqrt(8 / 3))
    # no stratum with two labels: the SD of all labels together (1, 3 -> sqrt 2)
    assert pooled_sd({"a": [1.0], "b": [3.0]}) == pytest.approx(math.sqrt(2))
    with pytest.raises(ConfigError, match="1 usable label"):
        stratum_sds(["a"], {"a": [2.0]})


# -- through `pairs` -------------------------------------------------------------------------

# the pairs of query_pins() (strata in comments; en: p1 p2 p3 p6, de: p4 p5); a CSV's rows are
# named by file line (the header is line 1), so the 8th record is row 9
PILOT = [
    ("q3", "p1", "1"),  # en/tail
    ("q3", "p2", "3"),  # en/tail
    ("q4", "p1", "5"),  # en/tail: mean 3, SD 2
    ("q3", "p1", "2"),  # the same pair again (one row per variant): its first label counts
    ("q1", "p1", "2"),  # en/torso
    ("q1", "p3", "4"),  # en/torso: SD sqrt(2)
    ("q3", "p4", "4"),  # de/tail: one label -> pooled SD
]
POOLED = math.sqrt((8 + 2) / (2 + 1))  # within-stratum sums of squares 8 and 2, 2 + 1 degrees of freedom


def write_pilot(path, rows):
    pl.DataFrame(rows, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "label": pl.Utf8}, orient="row").write_csv(path)
    return path


@pytest.fixture()
def build(tmp_path):
    return make_build(tmp_path / "build", query_pins=query_pins())


def test_neyman_sample_through_pairs(build, tmp_path):
    pilot = write_pilot(tmp_path / "pilot.csv", PILOT)
    res = run_pairs(build, PairsSettings(sample=20, allocation="neyman", pilot=str(pilot)), out=tmp_path / "s.parquet")
    m = res.manifest["sample"]
    strata = {s["stratum"]: s for s in m["strata"]}
    # populations de/head 2, de/tail 6, de/torso 2, en/head 2, en/tail 10, en/torso 6 (28 pairs).
    # N_h S_h: the three strata of 2 get 20 * 3.65 / 50.39 = 1.45 < 2 -> fixed at 2 each; the other
    # 14 go 10.95 : 20 : 8.49 -> 3.888, 7.099, 3.012 -> 3 + 7 + 3, the spare unit to de/tail (.888).
    assert {s: v["sampled"] for s, v in strata.items() if v["population"]} == {
        "de/head": 2, "de/tail": 4, "de/torso": 2, "en/head": 2, "en/tail": 7, "en/torso": 3,
    }
    assert strata["en/tail"]["sd"] == pytest.approx(2.0) and strata["en/tail"]["sd_source"] == "pilot"
    assert strata["en/torso"]["sd"] == pytest.approx(math.sqrt(2))
    assert strata["de/tail"]["pilot_labels"] == 1 and strata["de/tail"]["sd"] == pytest.approx(POOLED)
    assert m["pooled_sd_strata"] == ["de/head", "de/torso", "de/tail", "en/head"]
    assert res.manifest["pilot"]["pairs"] == 6 and res.manifest["pilot"]["repeated_pairs_ignored"] == 1
    one = res.pairs.filter(pl.col("variant") == "caption+title")
    for s, v in strata.items():
        if v["sampled"]:
            assert one.filter(pl.col("stratum") == s)["sampling_weight"].sum() == pytest.approx(v["population"])


def test_neyman_cli_output_names_pooled_strata(build, tmp_path):
    pilot = write_pilot(tmp_path / "pilot.csv", PILOT)
    r = _cli("pairs", "--build", build, "--sample", "20", "--allocation", "neyman", "--pilot", pilot, "--out", tmp_path / "s.parquet")
    assert r.returncode == 0, r.stderr
    assert "pooled SD used for 4 stratum(s): de/head, de/torso, de/tail, en/head" in r.stdout
    assert "en/tail" in r.stdout and "2.000" in r.stdout


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pinfeatures.cli", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "rows,extra,message",
    [
        (PILOT + [("q3", "p404", "3")], [], r"pilot.csv, column 'pin_id', row 9: pilot: pin_id is not in the build's features.parquet"),
        (PILOT + [("q3", "p1", "7")], [], r"pilot.csv, column 'label', row 9: pilot: label must be in 1..5 \(got '7'\)"),
        (PILOT + [("q3", "p3", "2")], [], r"pilot.csv, column 'query', row 9: pilot: pair \('q3', 'p3'\) is not in the build's query_pins.parquet"),
        ([("q3", "p1", "3")], [], r"the pilot has 1 usable label"),
        (PILOT, ["--sample", "5"], r"--sample 5 is too small for neyman allocation: each of the 6 non-empty strata needs at least 2"),
        (None, [], r"--allocation neyman needs --pilot F"),
    ],
)
def test_neyman_bad_input_through_the_cli(build, tmp_path, rows, extra, message):
    args = ["pairs", "--build", build, "--allocation", "neyman", "--out", tmp_path / "s.parquet"]
    if rows is not None:
        args += ["--pilot", write_pilot(tmp_path / "pilot.csv", rows)]
    args += extra or ["--sample", "20"]
    line = cli_error(*args)
    assert re.search(message, line), line


def test_pilot_only_with_neyman(build, tmp_path):
    pilot = write_pilot(tmp_path / "pilot.csv", PILOT)
    with pytest.raises(ConfigError, match="--pilot is only used with --allocation neyman"):
        PairsSettings(sample=5, pilot=str(pilot))
    with pytest.raises(ConfigError, match="--allocation neyman needs --pilot F"):
        PairsSettings(sample=5, allocation="neyman")


def test_strata_by_query_language(tmp_path):
    qp = query_pins().with_columns(
        pl.when(pl.col("query").is_in(["q0", "q1"])).then(pl.lit("fr")).when(pl.col("query") == "q6").then(None).otherwise(pl.lit("en")).alias("query_language")
    )
    build = make_build(tmp_path / "b", query_pins=qp)
    res = run_pairs(build, PairsSettings(sample=28, strata_language="query"), out=tmp_path / "s.parquet")
    pop = {s["stratum"]: s["population"] for s in res.manifest["sample"]["strata"] if s["population"]}
    # q0 is head, q1 torso (both fr); q2 torso, q3..q5 tail (en); q6 (no language) tail -> und
    per_query = qp.group_by("query").agg(pl.len()).sort("query")
    counts = dict(per_query.iter_rows())
    assert pop == {"fr/head": counts["q0"], "fr/torso": counts["q1"], "en/torso": counts["q2"],
                   "en/tail": counts["q3"] + counts["q4"] + counts["q5"], "und/tail": counts["q6"]}
    assert res.manifest["sample"]["strata_language"] == "query"
    assert "query_language" in res.pairs.columns and "language" in res.pairs.columns
    # a build without query languages: every query is `und`
    res = run_pairs(make_build(tmp_path / "c", query_pins=query_pins()), PairsSettings(sample=5, strata_language="query"), write=False)
    assert {s["stratum"].split("/")[0] for s in res.manifest["sample"]["strata"]} == {"und"}


def test_empty_variant_is_reported_not_silently_dropped(tmp_path):
    no_captions = {pin: (lang, None, title, desc) for pin, (lang, _c, title, desc) in PINS.items()}
    build = make_build(tmp_path / "b", pins=no_captions, query_pins=query_pins())
    res = run_pairs(build, PairsSettings(sample=10), out=tmp_path / "s.parquet")
    cov = res.manifest["text_coverage"]
    assert cov["empty_variants"] == ["caption"]
    assert cov["no_text_by_variant"] == {"caption": 10, "caption+title": 0, "caption+title+description": 0}
    assert json.loads((tmp_path / "pairs_manifest.json").read_text())["text_coverage"] == cov
    r = _cli("pairs", "--build", build, "--sample", "10", "--out", tmp_path / "t.parquet", "--quiet")
    assert r.returncode == 0
    assert r.stderr.strip() == "pinfeatures: warning: variant caption has no text for any pin: its 10 row(s) are left out"
