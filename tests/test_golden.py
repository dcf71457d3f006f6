"""Golden values: exact outputs of build, evaluate, pairs and report on the bundled fixtures.

Every value here is deterministic (seeded language detection, stable tie keys, a seeded
bootstrap and sample), so any change in them is a change in behaviour. When the change is
intended, regenerate the files and review their diff:

    scripts/update_golden.sh        # = pytest tests/test_golden.py --update-golden

tests/golden/<name>.json holds what each test compares; floats compare to 1e-6 relative (see `same`).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from conftest import FIXTURES

from pinfeatures.buildfolder import open_build

GOLDEN = Path(__file__).resolve().parent / "golden"


def plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, keys as strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def check_golden(request: pytest.FixtureRequest, name: str, actual: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.json"
    actual = plain(actual)
    if request.config.getoption("--update-golden"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        return
    assert path.is_file(), f"{path} is missing: run scripts/update_golden.sh"
    expected = json.loads(path.read_text(encoding="utf-8"))
    for key in sorted(set(expected) | set(actual)):  # one key at a time: a readable diff
        assert same(actual.get(key), expected.get(key)), (
            f"{name}.json: {key!r} changed (scripts/update_golden.sh if intended):\n"
            f"  now:    {json.dumps(actual.get(key), sort_keys=True)[:2000]}\n  golden: {json.dumps(expected.get(key), sort_keys=True)[:2000]}")


def same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-6 relative: BM25 scores are summed by DuckDB in thread order, and a pooled
    Spearman over near-tied scores moves in the 7th digit from run to run."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def frame_sha256(frame: pl.DataFrame) -> str:
    """sha256 of the frame's rows as JSON lines, in the frame's order."""
    h = hashlib.sha256()
    for row in frame.iter_rows():
        h.update(json.dumps(row, ensure_ascii=False, default=str).encode("utf-8") + b"\n")
    return h.hexdigest()


@pytest.mark.parametrize("which", ["fixture_build", "hostile_build"])
def test_build_golden(request, which):
    """fixtures/input (clean) and fixtures/hostile (every reject reason, hostile text, every variant)."""
    build = open_build(request.getfixturevalue(which))
    texts = build.read("texts").sort(["pin_id", "variant"])
    features = build.read("features").sort("pin_id")
    rejects = build.read("rejects")
    manifest = build.manifest
    check_golden(request, which.replace("fixture_build", "build").replace("hostile_build", "build_hostile"), {
        "rows": {name: build.read(name).height for name in ("features", "texts", "rejects", "query_pins", "queries") if build.has(name)},
        "counts": manifest.get("counts"),
        "variants": build.variant_names,
        # one hash per variant over its (pin_id, text) rows: which variant changed, not just that one did
        "texts_sha256": {v: frame_sha256(texts.filter(pl.col("variant") == v).select("pin_id", "text"))
                         for v in build.variant_names},
        "n_tokens": {v: int(texts.filter(pl.col("variant") == v).get_column("n_tokens").sum()) for v in build.variant_names},
        "truncated": {v: int(texts.filter(pl.col("variant") == v).get_column("truncated").sum()) for v in build.variant_names},
        "features_sha256": frame_sha256(features.select("pin_id", "title", "description", "boards", "queries", "language")),
        "languages": dict(sorted(features.group_by("language").len().iter_rows())),
        "reject_reasons": dict(sorted(rejects.group_by(["table", "reason"]).len().select(
            pl.concat_str("table", "reason", separator="/"), "len").iter_rows())),
        "query_pins_sha256": frame_sha256(build.read("query_pins").sort(["pin_id", "query"]).select("query", "pin_id", "events")),
    })


def test_evaluate_golden(request, fixture_build, tmp_path):
    from pinfeatures.evaluate.run import run_evaluate
    from pinfeatures.evaluate.settings import EvaluateSettings

    res = run_evaluate(fixture_build, FIXTURES / "input" / "judgments.csv",
                       EvaluateSettings(scorers=("lexical",), bootstrap_samples=200), out=tmp_path / "evaluation", quiet=True)
    keys = ("n_queries", "n_pairs", "coverage", "ndcg_at_10", "delta", "ci_low", "ci_high", "spearman_query", "spearman_pooled")
    check_golden(request, "evaluate", {
        "judgments": {k: v for k, v in res.result["judgments"].items() if k != "file"},
        "lexical": {r["variant"]: {k: r[k] for k in keys} for r in res.result["rows"]["lexical"]},
    })


def test_pairs_golden(request, fixture_build, tmp_path):
    from pinfeatures.pairs.sample import run_pairs
    from pinfeatures.pairs.settings import PairsSettings

    res = run_pairs(fixture_build, PairsSettings(sample=40, seed=7), out=tmp_path / "pairs.parquet")
    sample = res.manifest["sample"]
    judged = run_pairs(fixture_build, PairsSettings(), judgments=FIXTURES / "input" / "judgments.csv",
                       out=tmp_path / "judged.parquet")
    check_golden(request, "pairs", {
        "sampled_pairs": sample["sampled_pairs"],
        "population_pairs": sample["population_pairs"],
        "strata": [{k: s[k] for k in ("stratum", "population", "sampled", "status")} for s in sample["strata"]],
        "empty_strata": sample["empty_strata"],
        "sample_rows": res.pairs.height,
        "sample_sha256": frame_sha256(res.pairs.sort(["query", "pin_id", "variant"]).select("query", "pin_id", "variant", "text", "stratum", "sampling_weight")),
        "judged_rows": judged.manifest["rows"],
        "judged_rejects": judged.manifest["judgments"]["rejects"],
        "judged_sha256": frame_sha256(judged.pairs.sort(["query", "pin_id", "variant"])),
    })


def test_report_golden(request, fixture_build, tmp_path):
    import re

    from pinfeatures.report.run import write_report
    from pinfeatures.report.settings import ReportSettings

    page = write_report(fixture_build, ReportSettings(sample_pins=12), out=tmp_path / "report.html").read_text(encoding="utf-8")
    build = open_build(fixture_build)
    check_golden(request, "report", {
        "sections": re.findall(r'<section id="([a-z-]+)"', page),
        "example_pins": re.findall(r'data-pin-id="([^"]+)"', page),
        "scripts": page.count("<script"),
        # the numbers a reader compares: every row count and reject count of the manifest is on the page
        "counts_shown": {f"{t}.{k}": f"{v:,}" in page for t, c in (build.manifest.get("counts") or {}).items()
                         for k, v in (c or {}).items() if isinstance(v, int)},
    })
