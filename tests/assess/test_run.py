"""`pinfeatures assess` through its function and the real CLI: outputs, two arms, a target MDE,
the `pairs --sample` output labeled and read back, and every kind of bad input."""

import json
import math
import re
import subprocess
import sys

import polars as pl
import pytest
from conftest import cli_error
from evaluate.test_run import make_build
from pairs.test_allocation import PILOT, write_pilot
from pairs.test_sample import query_pins

from pinfeatures.assess.settings import AssessSettings
from pinfeatures.pairs.settings import PairsSettings
from pinfeatures.errors import ConfigError, InputError
from pinfeatures.assess.run import run_assess
from pinfeatures.pairs.sample import run_pairs

Z975, Z80 = 1.959963984540054, 0.8416212335729143
CONTROL = [("A", 2.5, l) for l in (5, 4, 3, 4)] + [("B", 2.0, l) for l in (1, 2, 2)]
TREATMENT = [("A", 2.5, l) for l in (5, 5, 4, 4)] + [("B", 2.0, l) for l in (3, 2, 1)]


def write_labels(path, rows, **extra):
    frame = pl.DataFrame(rows, schema={"stratum": pl.Utf8, "sampling_weight": pl.Float64, "label": pl.Utf8}, orient="row")
    frame = frame.with_columns(**{k: pl.Series(v) for k, v in extra.items()})
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path)
    return path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pinfeatures.cli", "assess", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_one_arm_outputs(tmp_path):
    labels = write_labels(tmp_path / "labels.csv", CONTROL)
    res = run_assess(AssessSettings(labels=str(labels)))
    assert res.out == tmp_path / "assessment"
    mean = res.result["arms"]["labels"]["estimates"]["mean"]
    # by hand (tests/assess/test_estimate.py): 3.125, v = .046875, deff .311573, MDE .857807
    assert mean["estimate"] == pytest.approx(3.125) and mean["se"] == pytest.approx(math.sqrt(0.046875))
    assert mean["design_effect"] == pytest.approx(0.311573, abs=1e-6) and mean["mde"] == pytest.approx(0.857807, abs=1e-6)
    rate = res.result["arms"]["labels"]["estimates"]["relevant_rate"]
    # relevant (>= 4): A 1 1 0 1 (mean .75, s^2 .25), B 0 0 0: .625 * .75; v = .390625 * .6 * .25 / 4
    assert rate["estimate"] == pytest.approx(0.46875) and rate["se"] ** 2 == pytest.approx(0.390625 * 0.6 * 0.25 / 4)
    rows = {r["stratum"]: r for r in res.result["arms"]["labels"]["strata_rows"]}
    assert (rows["A"]["population"], rows["A"]["n"], rows["A"]["weight_share"]) == (10, 4, 0.625)
    # share of the mean's variance: A .0390625 / .046875, B .0078125 / .046875
    assert rows["A"]["mean_variance_share"] == pytest.approx(5 / 6) and rows["B"]["mean_variance_share"] == pytest.approx(1 / 6)
    assert rows["B"]["relevant_rate_variance_share"] == 0.0
    files = sorted(p.name for p in res.out.iterdir())
    assert files == ["assess.csv", "assess.json", "assess.md", "strata.csv"]
    table = pl.read_csv(res.out / "assess.csv")
    assert table.select("arm", "metric").rows() == [("labels", "mean"), ("labels", "relevant_rate")]
    assert table["estimate"].to_list() == pytest.approx([3.125, 0.46875])
    assert pl.read_csv(res.out / "strata.csv")["stratum"].to_list() == ["A", "B"]
    assert json.loads((res.out / "assess.json").read_text())["arms"]["labels"]["estimates"]["mean"]["estimate"] == 3.125
    assert "| mean label | 3.125 | 0.2165 | [2.701, 3.549] | 0.31 | 0.8578 | 27.4% |" in res.markdown
    assert "| relevant rate (label ≥ 4) | 0.469 |" in res.markdown
    # a threshold of 3: A 1 1 1 1, B 0 0 0 -> .625
    res3 = run_assess(AssessSettings(labels=str(labels), threshold=3), write=False)
    assert res3.result["arms"]["labels"]["estimates"]["relevant_rate"]["estimate"] == pytest.approx(0.625)


def test_two_arms_and_target_through_the_cli(tmp_path):
    c = write_labels(tmp_path / "c.parquet", CONTROL)
    t = write_labels(tmp_path / "t.csv", TREATMENT)
    r = cli("--control", c, "--treatment", t, "--target-mde", "0.5", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "out" / "assess.json").read_text())
    d = result["difference"]["mean"]
    se = math.sqrt(0.046875 + 0.04296875)
    assert d["difference"] == pytest.approx(0.4375) and d["se"] == pytest.approx(se)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((0.4375 - Z975 * se, 0.4375 + Z975 * se))
    assert d["mde"] == pytest.approx((Z975 + Z80) * se)
    assert "| mean label | 3.125 | 3.562 | +0.4375 | [-0.1500, +1.0250] | 14.0% | 0.8397 |" in r.stdout
    # n = 11 (8 + 3) reaches MDE .4742 <= .5 (by hand in test_estimate)
    target = result["target"]
    assert (target["n"], target["sd_from"]) == (11, "control")
    assert target["allocation"] == [{"stratum": "A", "population": 10, "n": 8}, {"stratum": "B", "population": 6, "n": 3}]
    assert "11 labeled pairs per arm (Neyman allocation, S_h from control) give MDE 0.4742; the current 7 give 0.8578." in r.stdout
    diff_rows = pl.read_csv(tmp_path / "out" / "assess.csv").filter(pl.col("arm") == "treatment-control")
    # relevant rate: treatment A all >= 4, B none -> .625; control .46875
    assert diff_rows["estimate"].to_list() == pytest.approx([0.4375, 0.625 - 0.46875])


def test_labeled_pairs_sample_round_trip(tmp_path):
    """pairs --sample (neyman) -> a labeler adds `label` -> assess with the sample's manifest as design."""
    build = make_build(tmp_path / "build", query_pins=query_pins())
    pilot = write_pilot(tmp_path / "pilot.csv", PILOT)
    res = run_pairs(build, PairsSettings(sample=20, allocation="neyman", pilot=str(pilot)), out=tmp_path / "sample" / "pairs.parquet")
    labeled = res.pairs.with_columns(((pl.col("pin_id").str.slice(1).cast(pl.Int64) + pl.col("query").str.slice(1).cast(pl.Int64)) % 5 + 1).alias("label"))
    labeled.write_parquet(tmp_path / "labeled.parquet")
    design = tmp_path / "sample" / "pairs_manifest.json"
    with pytest.raises(ConfigError, match="labels for 3 variants .*choose one with --variant"):
        run_assess(AssessSettings(labels=str(tmp_path / "labeled.parquet"), design=str(design)), write=False)
    out = run_assess(AssessSettings(labels=str(tmp_path / "labeled.parquet"), design=str(design), variant="caption+title"), write=False)
    arm = out.result["arms"]["labels"]
    assert arm["variant"] == "caption+title"
    assert arm["estimates"]["mean"]["population"] == 28 and arm["estimates"]["mean"]["n"] == 20
    one = labeled.filter(pl.col("variant") == "caption+title")
    # the stratified mean is the weighted mean of the labels (weights N_h / n_h)
    expected = (one["label"] * one["sampling_weight"]).sum() / one["sampling_weight"].sum()
    assert arm["estimates"]["mean"]["estimate"] == pytest.approx(expected)
    # the design knows a stratum the labels lack: an error, not a silent estimate of part of the population
    short = one.filter(pl.col("stratum") != "en/tail")
    short.write_parquet(tmp_path / "short.parquet")
    with pytest.raises(InputError, match="stratum 'en/tail' of the design has 10 pairs but no labels"):
        run_assess(AssessSettings(labels=str(tmp_path / "short.parquet"), design=str(design)), write=False)


# rows are CSV file lines: the header is line 1, the first record line 2
BAD = [
    ("label_range", CONTROL[:2] + [("A", 2.5, "7")] + CONTROL[3:], [], r"labels.csv, column 'label', row 4: label must be in 1..5 \(got 7\)$"),
    ("label_text", CONTROL[:1] + [("A", 2.5, "high")] + CONTROL[2:], [], r"column 'label', row 3: label is not a number \(got 'high'\)$"),
    ("label_null", CONTROL[:1] + [("A", 2.5, None)] + CONTROL[2:], [], r"column 'label', row 3: label is not a number"),
    ("weight_small", [("A", 0.5, "3"), ("A", 0.5, "4")], [], r"column 'sampling_weight', row 2: sampling_weight must be a number >= 1"),
    ("weights_differ", [("A", 2.5, "3"), ("A", 2.5, "4"), ("A", 3.0, "4")] + CONTROL[4:], [], r"stratum 'A': sampling weights differ inside the stratum \(2.5 at row \d, 3 at row 4\)"),
    ("weights_not_whole", CONTROL[:3] + CONTROL[4:], [], r"stratum 'A': its 3 weights sum to 7.5, not a whole stratum size N_h"),
    ("one_label", CONTROL[:4] + [("B", 2.0, "1")], [], r"column 'stratum', row 6: stratum 'B' has 1 label: a stratum needs at least 2"),
    ("empty_stratum_name", CONTROL + [("", 2.0, "3")], [], r"column 'stratum', row 9: stratum is empty"),
    ("both_modes", CONTROL, ["--control", "X"], r"give --labels F \(one sample\) or --control F --treatment F"),
    ("target", CONTROL, ["--target-mde", "-1"], r"assess.target_mde must be > 0, got -1$"),
    ("threshold", CONTROL, ["--threshold", "9"], r"assess.threshold must be between 1 and 5, got 9$"),
    ("alpha", CONTROL, ["--alpha", "1"], r"assess.alpha must be strictly between 0 and 1, got 1$"),
]


@pytest.mark.parametrize("name,rows,extra,message", BAD, ids=[b[0] for b in BAD])
def test_bad_labels_through_the_cli(tmp_path, name, rows, extra, message):
    labels = write_labels(tmp_path / "labels.csv", rows)
    line = cli_error("assess", "--labels", labels, *extra)
    assert re.search(message, line), line
    assert not (tmp_path / "assessment").exists()


def test_bad_input_in_a_real_process(tmp_path):
    labels = write_labels(tmp_path / "labels.csv", CONTROL[:4] + [("B", 2.0, "1")])
    r = cli("--labels", labels)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"pinfeatures: error: {labels}, column 'stratum', row 6: stratum 'B' has 1 label: a stratum needs at least 2 to estimate its variance (label more of its pairs)"]


def test_bad_structure_through_the_cli(tmp_path):
    def one_error(*args):
        return cli_error("assess", *args)

    c = write_labels(tmp_path / "c.csv", CONTROL)
    # arms of two designs: B has N_h 6 in control, 8 in treatment
    t = write_labels(tmp_path / "t.csv", TREATMENT[:4] + [("B", 8 / 3, l) for l in (3, 2, 1)])
    assert "not samples of one design: stratum 'B' has N_h = 6 in" in one_error("--control", c, "--treatment", t)
    t2 = write_labels(tmp_path / "t2.csv", TREATMENT + [("C", 1.0, "3"), ("C", 1.0, "4")])
    assert "stratum 'C' is in treatment" in one_error("--control", c, "--treatment", t2)
    assert "give --labels F, or both --control F and --treatment F" in one_error("--control", c)
    # a labeled pair twice
    dup = write_labels(tmp_path / "dup.csv", CONTROL, query=["q"] * 7, pin_id=["p1", "p2", "p3", "p3", "p5", "p6", "p7"])
    assert "column 'pin_id', row 5: pair ('q', 'p3') is labeled more than once" in one_error("--labels", dup)
    # a missing column, a missing file, a design that is not a pairs manifest
    pl.DataFrame({"stratum": ["A"], "label": [3]}).write_csv(tmp_path / "nocol.csv")
    assert "missing required column(s) 'sampling_weight'" in one_error("--labels", tmp_path / "nocol.csv")
    assert "file for table 'labels' not found" in one_error("--labels", tmp_path / "none.csv")
    (tmp_path / "design.json").write_text("{}")
    assert "not a `pairs --sample` manifest" in one_error("--labels", c, "--design", tmp_path / "design.json")
    (tmp_path / "design2.json").write_text(json.dumps({"sample": {"strata": [{"stratum": "A", "population": 10}, {"stratum": "B", "population": 7}]}}))
    assert "stratum 'B': weights sum to 6, the design says N_h = 7" in one_error("--labels", c, "--design", tmp_path / "design2.json")
    # a variant the table does not have
    v = write_labels(tmp_path / "v.csv", CONTROL, variant=["title"] * 7)
    assert "no labels for variant 'caption'; it has title" in one_error("--labels", v, "--variant", "caption")


def test_settings_from_toml(tmp_path):
    from click.testing import CliRunner

    from pinfeatures.cli import cli

    labels = write_labels(tmp_path / "labels.csv", CONTROL)
    (tmp_path / "cfg.toml").write_text("[assess]\nthreshold = 3\nalpha = 0.1\n")
    r = CliRunner().invoke(cli, ["assess", "--labels", str(labels), "--config", str(tmp_path / "cfg.toml"), "--out", str(tmp_path / "o"), "-q"])
    assert r.exit_code == 0 and r.output == ""
    result = json.loads((tmp_path / "o" / "assess.json").read_text())
    assert result["config"]["threshold"] == 3.0
    rate = result["arms"]["labels"]["estimates"]["relevant_rate"]
    # threshold 3: A all relevant, B none -> .625; alpha .1 -> z .95 = 1.644854
    assert rate["estimate"] == pytest.approx(0.625)
    mean = result["arms"]["labels"]["estimates"]["mean"]
    assert mean["ci_high"] - mean["estimate"] == pytest.approx(1.6448536269514722 * math.sqrt(0.046875))
    assert "unknown setting" in cli_error("assess", "--labels", labels, "--config", _toml(tmp_path, "[assess]\nthreshhold = 3\n"))


def _toml(tmp_path, text):
    (tmp_path / "bad.toml").write_text(text)
    return tmp_path / "bad.toml"
