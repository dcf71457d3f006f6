"""`pinfeatures evaluate` on small build folders written here, and on the bundled fixtures."""

import json
import math
import os
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from conftest import write_build  # noqa: E402

from pinfeatures.evaluate.settings import EvaluateSettings  # noqa: E402
from pinfeatures.errors import ConfigError, InputError, ModelError  # noqa: E402
from pinfeatures.evaluate.run import run_evaluate, step_references, validate_judgments  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LADDER = ["caption", "caption+title", "caption+title+description"]

PINS = {
    # pin: (language, caption, title, description)
    "p1": ("en", "a red sofa", "Boho living room", "rattan chair and plants"),
    "p2": ("en", "a plate of food", "Salmon dinner", "easy fish recipe"),
    "p3": ("en", None, "Living room ideas", "cozy living room decor"),
    "p4": ("de", "ein rotes sofa", "Wohnzimmer", "gemütliches wohnzimmer sofa"),
    "p5": ("de", "ein teller", "Fisch Rezept", "lachs rezept einfach"),
    "p6": ("en", "kitchen tiles", "Blue kitchen", "blue tile backsplash"),
}


def make_build(folder: Path, pins=PINS, variants=LADDER, query_pins: pl.DataFrame | None = None) -> Path:
    """A build folder with the contract's files, texts rendered `Label: value` per source."""
    labels = {"caption": "Image", "title": "Title", "description": "Description"}
    rows = []
    for pin, (_lang, caption, title, desc) in sorted(pins.items()):
        src = {"caption": caption, "title": title, "description": desc}
        for v in variants:
            parts = [f"{labels[s]}: {src[s]}" for s in v.split("+") if src.get(s)]
            rows.append({"pin_id": pin, "variant": v, "text": "\n".join(parts) if parts else None})
    texts = pl.DataFrame(rows, schema={"pin_id": pl.Utf8, "variant": pl.Utf8, "text": pl.Utf8}).with_columns(
        pl.col("text").fill_null("").str.split(" ").list.len().cast(pl.Int32).alias("n_tokens"), pl.lit(False).alias("truncated")
    )
    features = pl.DataFrame(
        {
            "pin_id": list(pins),
            "title": [p[2] for p in pins.values()],
            "caption": [p[1] for p in pins.values()],
            "language": [p[0] for p in pins.values()],
        }
    )
    tables = {"features": features, "texts": texts, **({"query_pins": query_pins} if query_pins is not None else {})}
    return write_build(folder, tables, variants=list(variants))


def write_judgments(path: Path, rows) -> Path:
    pl.DataFrame(rows, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "label": pl.Utf8}, orient="row").write_csv(path)
    return path


JUDGED = [
    ("living room", "p1", "5"),
    ("living room", "p3", "4"),
    ("living room", "p2", "1"),
    ("living room", "p6", "1"),
    ("fish recipe", "p2", "5"),
    ("fish recipe", "p5", "2"),
    ("fish recipe", "p1", "1"),
    ("wohnzimmer sofa", "p4", "5"),
    ("wohnzimmer sofa", "p5", "1"),
    ("wohnzimmer sofa", "p1", "3"),
    ("blue kitchen", "p6", "5"),
]

LEX = EvaluateSettings(scorers=("lexical",), bootstrap_samples=200)


def test_evaluate_lexical_ladder(tmp_path):
    build = make_build(tmp_path / "build")
    j = write_judgments(tmp_path / "j.csv", JUDGED)
    res = run_evaluate(build, j, LEX, quiet=True)
    rows = {r["variant"]: r for r in res.result["rows"]["lexical"]}
    assert list(rows) == LADDER
    # captions: p3 has none -> 5 of 6 judged pins covered
    assert rows["caption"]["coverage"] == pytest.approx(5 / 6)
    assert rows["caption+title"]["coverage"] == 1.0
    assert rows["caption+title"]["row_label"] == "+ title"
    assert rows["caption+title"]["reference"] == "caption"
    assert rows["caption"]["n_queries"] == 4 and rows["caption"]["n_pairs"] == 11
    # the ladder improves ranking on this data: exact values (BM25 and the seeded bootstrap are deterministic)
    exact = {
        "caption": (0.8365600840406551, None, None, None, 0.296929938404265, 0.36277094803222093, 2),
        "caption+title": (0.8794830062920903, 0.04292292225143529, -0.03793184632281125, 0.18496409463995228,
                          0.8888888888888888, 0.7304247190986011, 2),
        "caption+title+description": (0.9623759574200325, 0.08289295112794218, 0.0, 0.24867885338382653,
                                      0.8812677271874055, 0.9, 3),
    }
    keys = ("ndcg_at_10", "delta", "ci_low", "ci_high", "spearman_query", "spearman_pooled", "n_queries_spearman")
    assert list(rows) == list(exact)
    for variant, expected in exact.items():
        got = tuple(rows[variant][k] for k in keys)
        assert [g is None for g in got] == [e is None for e in expected], (variant, got)
        assert [g for g in got if g is not None] == pytest.approx([e for e in expected if e is not None], rel=1e-9), variant
    # the mean NDCG, recomputed here from the stored scores: rank by score (a pin without text last),
    # ties by pin_id; gain 2^label - 1
    for variant, r in rows.items():
        per_query = []
        for (_q,), judged in res.scores.filter(pl.col("variant") == variant).group_by(["query"]):
            ranked = sorted(judged.iter_rows(named=True), key=lambda x: (x["score"] is None, -(x["score"] or 0.0), x["pin_id"]))
            dcg = sum((2 ** x["label"] - 1) / math.log2(i + 2) for i, x in enumerate(ranked))
            ideal = sorted((x["label"] for x in ranked), reverse=True)
            per_query.append(dcg / sum((2**lab - 1) / math.log2(i + 2) for i, lab in enumerate(ideal)))
        assert r["ndcg_at_10"] == pytest.approx(sum(per_query) / len(per_query), rel=1e-12), variant
    # delta is exactly the difference of the mean NDCGs (same queries on both sides)
    assert rows["caption+title"]["delta"] == pytest.approx(rows["caption+title"]["ndcg_at_10"] - rows["caption"]["ndcg_at_10"])
    # the single-pin query scores 1.0 under every variant; check one query by hand:
    # "blue kitchen" has one judged pin -> NDCG 1
    scores = res.scores
    assert scores.filter(pl.col("score").is_null()).select("pin_id", "variant").rows() == [("p3", "caption")]
    # files
    out = build / "evaluation"
    for name in ("ablation.md", "ablation.csv", "ablation.json", "by_language.csv", "rejects.parquet", "scores.parquet"):
        assert (out / name).is_file(), name
    assert pl.read_csv(out / "ablation.csv").height == 3
    by_lang = pl.read_csv(out / "by_language.csv")
    assert set(by_lang["language"]) == {"en", "de"}
    assert "| + title |" in res.markdown and "BM25 NDCG@10" in res.markdown
    assert "semantic" not in res.result["scorers"]


def test_evaluate_is_deterministic(tmp_path):
    build = make_build(tmp_path / "build")
    j = write_judgments(tmp_path / "j.csv", JUDGED)
    a = run_evaluate(build, j, LEX, out=tmp_path / "a")
    b = run_evaluate(build, j, LEX, out=tmp_path / "b")
    assert (tmp_path / "a" / "ablation.md").read_text() == (tmp_path / "b" / "ablation.md").read_text()
    assert a.result["rows"] == b.result["rows"]


def test_judgment_rejects(tmp_path):
    build = make_build(tmp_path / "build")
    bad = JUDGED + [
        ("living room", "p999", "3"),  # unknown pin
        ("living room", "p4", "7"),  # out of range
        ("living room", "p5", "2.5"),  # not an integer
        ("living room", "p5", "high"),  # not a number
        (None, "p1", "3"),  # null query
        ("   ", "p1", "3"),  # empty query
        ("fish recipe", None, "3"),
        ("fish recipe", "p6", None),
        ("living room", "p1", "2"),  # duplicate of the first row
        ("fish recipe", "p6", "3.0"),  # integer written as float: fine
    ]
    j = write_judgments(tmp_path / "j.csv", bad)
    res = run_evaluate(build, j, LEX, out=tmp_path / "ev")
    rej = pl.read_parquet(tmp_path / "ev" / "rejects.parquet")
    assert sorted(rej["reason"].to_list()) == sorted(
        ["unknown_pin", "label_out_of_range", "bad_label", "bad_label", "null_query", "null_query", "null_pin_id", "null_label", "duplicate"]
    )
    # rows are CSV file lines: the header is line 1
    assert rej.filter(pl.col("reason") == "unknown_pin")["row"].to_list() == [13]
    assert rej.filter(pl.col("reason") == "duplicate")["row"].to_list() == [21]
    assert set(rej["table"]) == {"judgments"}
    assert json.loads(rej.filter(pl.col("reason") == "label_out_of_range")["record"][0])["label"] == "7"
    assert res.result["judgments"]["valid"] == len(JUDGED) + 1
    assert res.result["judgments"]["read"] == len(bad)
    assert "rejected" in res.markdown


def test_validate_judgments_integer_labels_from_parquet():
    raw = pl.DataFrame({"query": ["q", "q", "q"], "pin_id": ["a", "b", "c"], "label": [1, 5, 0]})
    valid, rejects = validate_judgments(raw, pl.Series(["a", "b", "c"]))
    assert valid["label"].to_list() == [1, 5]
    assert rejects["reason"].to_list() == ["label_out_of_range"]
    assert rejects["row"].to_list() == [3]


def test_bad_inputs(tmp_path):
    build = make_build(tmp_path / "build")
    j = write_judgments(tmp_path / "j.csv", JUDGED)
    with pytest.raises(InputError, match="build folder not found"):
        run_evaluate(tmp_path / "nope", j, LEX)
    with pytest.raises(InputError, match="not found"):
        run_evaluate(build, tmp_path / "missing.csv", LEX)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("query,pin\nq,p1\n")
    with pytest.raises(InputError, match="label"):
        run_evaluate(build, nocol, LEX)
    allbad = write_judgments(tmp_path / "allbad.csv", [("q", "zzz", "3")])
    with pytest.raises(InputError, match="no valid judgments"):
        run_evaluate(build, allbad, LEX)
    with pytest.raises(ConfigError, match="not in this build"):
        run_evaluate(build, j, LEX, variants="title+queries")
    with pytest.raises(ConfigError, match="ndcg_k"):
        run_evaluate(build, j, EvaluateSettings(scorers=("lexical",), ndcg_k=0))
    with pytest.raises(ConfigError, match="scorers"):
        run_evaluate(build, j, EvaluateSettings(scorers=("magic",)))
    with pytest.raises(ModelError):
        run_evaluate(build, j, EvaluateSettings(scorers=("semantic",), model=str(tmp_path)), require_scorers=True)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "texts.parquet").write_text("not parquet")
    (broken / "features.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="manifest.json: missing"):
        run_evaluate(broken, j, LEX)
    dup = tmp_path / "dup"
    make_build(dup)
    t = pl.read_parquet(dup / "texts.parquet")
    pl.concat([t, t.head(1)]).write_parquet(dup / "texts.parquet")
    with pytest.raises(InputError, match="texts.parquet: does not match manifest.json"):
        run_evaluate(dup, j, LEX)


def test_variant_selection_and_loo_references():
    ladder = ["caption", "caption+title", "caption+title+description", "caption+title+description+boards"]
    refs = step_references(ladder)
    assert refs["caption"] == (None, "caption")
    assert refs["caption+title+description+boards"] == ("caption+title+description", "+ boards")
    loo = ["caption+title+description", "title+description", "caption+description", "caption+title"]
    refs = step_references(loo)
    assert refs["title+description"] == ("caption+title+description", "\u2212 caption")
    assert refs["caption+title"] == ("caption+title+description", "\u2212 description")


def test_semantic_with_tiny_encoder_and_cli(tmp_path):
    from evaluate.test_embed import make_tiny_bert

    from pinfeatures.cli import cli

    model = make_tiny_bert(tmp_path / "tiny")
    build = make_build(tmp_path / "build")
    j = write_judgments(tmp_path / "j.csv", JUDGED)
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--build", str(build), "--judgments", str(j), "--model", str(model), "--quiet",
         "--bootstrap-samples", "50", "--out", str(tmp_path / "ev"), "--variants", "caption,caption+title", "--cache", str(tmp_path / "cache")],
    )
    assert result.exit_code == 0, result.output
    # again: every embedding from the cache (4 queries + 5 caption texts + 6 caption+title texts), said on stderr
    again = CliRunner().invoke(
        cli,
        ["evaluate", "--build", str(build), "--judgments", str(j), "--model", str(model), "--scorers", "semantic",
         "--bootstrap-samples", "50", "--out", str(tmp_path / "ev2"), "--variants", "caption,caption+title", "--cache", str(tmp_path / "cache")],
    )
    assert again.exit_code == 0, again.output
    assert "embeddings: 15 of 15 texts from the cache (100.0%), 0 embedded; the model was not loaded" in again.stderr
    assert json.loads((tmp_path / "ev2" / "ablation.json").read_text())["rows"]["semantic"] == json.loads((tmp_path / "ev" / "ablation.json").read_text())["rows"]["semantic"]
    uncached = CliRunner().invoke(
        cli,
        ["evaluate", "--build", str(build), "--judgments", str(j), "--model", str(model), "--scorers", "semantic", "--skip-embedding-cache",
         "--bootstrap-samples", "50", "--out", str(tmp_path / "ev3"), "--variants", "caption", "--cache", str(tmp_path / "cache3")],
    )
    assert uncached.exit_code == 0 and "embeddings:" not in uncached.stderr and not (tmp_path / "cache3").exists()
    assert "BM25 NDCG@10" in result.output and "Embedding NDCG@10" in result.output
    data = json.loads((tmp_path / "ev" / "ablation.json").read_text())
    assert data["variants"] == ["caption", "caption+title"]
    assert data["scorers"] == ["lexical", "semantic"]
    sem = data["rows"]["semantic"]
    # the tiny encoder's weights are seeded: its rankings, and so its NDCGs, are fixed
    assert [(r["variant"], r["ndcg_at_10"]) for r in sem] == [
        ("caption", pytest.approx(0.7050166359435908, rel=1e-9)), ("caption+title", pytest.approx(0.8283725826983938, rel=1e-9))]
    # a model folder that is not an encoder: one line, exit 2
    bad = CliRunner().invoke(cli, ["evaluate", "--build", str(build), "--judgments", str(j), "--model", str(tmp_path)])
    assert bad.exit_code == 2
    assert "pinfeatures: error:" in bad.output and "config.json" in bad.output


def _fixture_build(tmp_path):
    try:
        from pinfeatures.build.run import run_build
        from pinfeatures.build.settings import BuildSettings
        from pinfeatures.caption.settings import CaptionSettings
        from pinfeatures.contracts import expand
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"build not available: {exc}")
    if not (ROOT / "fixtures" / "input" / "judgments.csv").is_file():
        pytest.skip("fixtures not there")
    # the five-rung ladder named rung by rung: without a caption source the `ladder` preset would
    # start at title; asked for, `caption` is written empty (with a warning)
    cfg = BuildSettings(input=str(ROOT / "fixtures/input"), images_root=str(ROOT / "fixtures/images"), variants=",".join(expand("ladder")),
                        caption=CaptionSettings(cache=str(tmp_path / "cache")), out=str(tmp_path / "demo"), quiet=True)
    run_build(cfg)
    return tmp_path / "demo"


def test_end_to_end_on_fixtures(tmp_path):
    from pinfeatures.build.run import run_build
    from pinfeatures.build.settings import BuildSettings
    from pinfeatures.caption.settings import CaptionSettings

    # no caption model, yet the caption rungs asked for by name: `caption` is written empty (and warned about)
    ladder = "caption,caption+title,caption+title+description,caption+title+description+boards,caption+title+description+boards+queries"
    build = tmp_path / "captionless"
    run_build(BuildSettings(input=str(ROOT / "fixtures/input"), variants=ladder, out=str(build), quiet=True,
                            caption=CaptionSettings(cache=str(tmp_path / "cache"))))
    res = run_evaluate(build, ROOT / "fixtures/input/judgments.csv", EvaluateSettings(scorers=("lexical",), bootstrap_samples=200))
    rows = res.result["rows"]["lexical"]
    assert [r["variant"] for r in rows][:2] == ["caption", "caption+title"]
    # built without a caption model: `caption` has no text at all -> marked, not scored
    assert (rows[0]["coverage"], rows[0]["scored"], rows[0]["ndcg_at_10"], rows[1]["delta"]) == (0.0, False, None, None)
    assert "| `caption` |  | 0% | not scored |" in res.markdown and "Not scored: `caption`: coverage 0" in res.markdown
    assert all(0 <= r["ndcg_at_10"] <= 1 for r in rows[1:])
    assert res.result["judgments"]["valid"] > 0


def test_hostile_judgments_jsonl(tmp_path):
    build = make_build(tmp_path / "build")
    lines = [json.dumps({"query": q, "pin_id": p, "label": int(lab)}) for q, p, lab in JUDGED]
    lines += [
        "{not json",
        json.dumps({"query": ["a", "list"], "pin_id": "p1", "label": 3}),
        json.dumps({"query": "x" * 100_000 + " living room", "pin_id": "p1", "label": 4}),  # huge query
        json.dumps({"query": "\u202e\x00<script>alert(1)</script> 東京", "pin_id": "p2", "label": 1}),
        json.dumps({"query": "q", "pin_id": 12, "label": 3}),  # integer id is cast to "12": unknown pin
        json.dumps({"query": "q", "pin_id": "p1", "label": "yes"}),
    ]
    j = tmp_path / "j.jsonl"
    j.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = run_evaluate(build, j, LEX, out=tmp_path / "ev")
    n = len(JUDGED)
    assert res.rejects.sort("row").select("row", "column", "reason").rows() == [
        (n + 1, None, "malformed_json"), (n + 2, "query", "bad_value"), (n + 5, "pin_id", "unknown_pin"), (n + 6, "label", "bad_label")]
    assert res.result["judgments"]["valid"] == n + 2
    # the huge and the hostile query are two more queries of one judged pin each (NDCG 1.0)
    assert [(r["variant"], r["n_queries"], r["n_pairs"], r["ndcg_at_10"]) for r in res.result["rows"]["lexical"]] == [
        ("caption", 6, 13, pytest.approx(0.8910400560271033, rel=1e-9)),
        ("caption+title", 6, 13, pytest.approx(0.9196553375280603, rel=1e-9)),
        ("caption+title+description", 6, 13, pytest.approx(0.9749173049466883, rel=1e-9)),
    ]


def test_variant_without_coverage_is_marked_not_scored(tmp_path):
    no_captions = {pin: (lang, None, title, desc) for pin, (lang, _c, title, desc) in PINS.items()}
    build = make_build(tmp_path / "build", pins=no_captions)
    j = write_judgments(tmp_path / "j.csv", JUDGED)
    res = run_evaluate(build, j, LEX, write=False)
    rows = {r["variant"]: r for r in res.result["rows"]["lexical"]}
    assert {k: rows["caption"][k] for k in ("coverage", "scored", "ndcg_at_10", "delta", "spearman_query", "step")} == {
        "coverage": 0.0, "scored": False, "ndcg_at_10": None, "delta": None, "spearman_query": None, "step": ""}
    # the step over the unscored row has no delta; the next step has one
    assert (rows["caption+title"]["scored"], rows["caption+title"]["step"], rows["caption+title"]["delta"]) == (True, "+ title", None)
    assert rows["caption+title+description"]["delta"] is not None
    lines = res.markdown.splitlines()
    assert "| Text variant | Step | Coverage | BM25 NDCG@10 | Δ [95% CI] | ρ |" in lines
    assert "| `caption` |  | 0% | not scored |  | – |" in lines
    assert any(line.startswith("| `caption+title` | + title | 100% | 0.") for line in lines)
    assert "_Not scored: `caption`: coverage 0 (no judged pin has a text in this variant), so every pin would tie; a step over it has no Δ._" in lines
    # by language too: no language scores the empty variant
    assert all(not r["scored"] and r["ndcg_at_10"] is None for r in res.result["by_language"]["lexical"] if r["variant"] == "caption")


def test_embedding_cache_keys_from_the_builds_text_sha256(tmp_path):
    from evaluate.test_embed import make_tiny_bert

    model = make_tiny_bert(tmp_path / "tiny")
    from conftest import write_build

    # the build's own text_sha256 keys the cache (here made-up keys, to see that they are the ones used)
    made = make_build(tmp_path / "made")
    texts = pl.read_parquet(made / "texts.parquet").drop("text_sha256")
    texts = texts.with_columns(pl.concat_str(pl.lit("key-"), pl.col("pin_id"), pl.lit("-"), pl.col("variant")).alias("text_sha256"))
    build = write_build(tmp_path / "build", {"features": pl.read_parquet(made / "features.parquet"), "texts": texts})
    j = write_judgments(tmp_path / "j.csv", JUDGED)
    cfg = EvaluateSettings(scorers=("semantic",), model=str(model), bootstrap_samples=20, cache=str(tmp_path / "cache"))
    res = run_evaluate(build, j, cfg, variants="caption", write=False)
    assert res.result["embedding_cache"]["embedded"] == 4 + 5  # 4 queries, 5 captions (p3 has none)
    stored = pl.concat([pl.read_parquet(p) for p in (tmp_path / "cache" / "embeddings").rglob("part-*.parquet")])
    assert {k for k in stored["text_sha256"] if k.startswith("key-")} == {f"key-{p}-caption" for p in ("p1", "p2", "p4", "p5", "p6")}
    again = run_evaluate(build, j, cfg, variants="caption", write=False)
    assert (again.result["embedding_cache"]["hits"], again.result["embedding_cache"]["embedded"], again.result["model_loaded"]) == (9, 0, False)
