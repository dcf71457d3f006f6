"""`pinfeatures pairs`: the training pipeline's input, one row per (query, pin, variant).

Two modes:

* judged (`--judgments F`): every valid judged (query, pin) with its `label`, under each variant.
* sampled (`--sample N`): a stratified sample of the (query, pin) pairs in the build's
  query_pins.parquet (already privacy-filtered), for teacher labeling.

Sampling design:
* A query's popularity band comes from its traffic (`query_traffic`, its events over all pins).
  Queries are sorted by traffic (descending, ties by query text); a query belongs to the first
  band whose cut-off is above the cumulative share of traffic *before* it. With cut-offs
  (0.5, 0.8): head = the queries that make up the first 50% of traffic, torso = up to 80%,
  tail = the rest. The top query is always head.
* Strata: language x band (x country of the pair, `unknown` when null, with --by-country); the
  language is the pin's (`strata_language = "pin"`) or the query's (`"query"`, query_pins'
  `query_language`).
* Allocation of n pairs (pinfeatures/pairs/allocation.py): `proportional`, `equal`,
  `per_stratum`, or `neyman` (n_h ~ N_h S_h, S_h the SD of the label in the stratum, from a
  pilot table of labeled pairs; a stratum with fewer than two pilot labels takes the pooled SD,
  and the manifest lists those strata).
* Inside a stratum: simple random sampling without replacement, with a generator seeded from
  (seed, stratum name), over the stratum's pairs sorted by (query, pin_id): the same inputs
  and seed give the same sample whatever else is in the build.
* sampling_weight = N_h / n_h (inverse inclusion probability); the weights of a stratum's
  sampled pairs sum to its population N_h.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from pinfeatures.build.queries import band_names, query_bands
from pinfeatures.buildfolder import mark_derived, open_build
from pinfeatures.errors import ConfigError, InputError
from pinfeatures.evaluate.metrics import stable_seed
from pinfeatures.evaluate.run import load_judgments, read_judgments, read_texts, select_variants, validate_judgments
from pinfeatures.pairs.allocation import allocate, stratum_sds
from pinfeatures.pairs.settings import PairsSettings


SCHEMA_JUDGED = {
    "query": pl.Utf8,
    "pin_id": pl.Utf8,
    "variant": pl.Utf8,
    "text": pl.Utf8,
    "label": pl.Int8,
}
SCHEMA_SAMPLED = {
    "query": pl.Utf8,
    "pin_id": pl.Utf8,
    "variant": pl.Utf8,
    "text": pl.Utf8,
    "stratum": pl.Utf8,
    "band": pl.Utf8,
    "language": pl.Utf8,
    "query_language": pl.Utf8,
    "country": pl.Utf8,
    "sampling_weight": pl.Float64,
    "query_traffic": pl.Float64,
}


def strata_language_column(cfg: PairsSettings) -> str:
    """The population column that names a stratum's language."""
    return "query_language" if cfg.strata_language == "query" else "language"


def strata_population(query_pins: pl.DataFrame, languages: pl.DataFrame, cfg: PairsSettings) -> pl.DataFrame:
    """Every (query, pin) pair with its stratum.

    Out: query, pin_id, query_traffic, band, language, query_language, country, stratum; sorted by
         stratum, query, pin_id. The stratum's language is `language` or `query_language` (cfg.strata_language).
    """
    bands = query_bands(query_pins, cfg.bands)
    country = (
        pl.col("country").cast(pl.Utf8).fill_null("unknown")
        if "country" in query_pins.columns
        else pl.lit("unknown")
    )
    query_language = pl.col("query_language").fill_null("und") if "query_language" in query_pins.columns else pl.lit("und")
    pop = (
        query_pins.select("query", pl.col("pin_id").cast(pl.Utf8), country.alias("country"), query_language.alias("query_language"))
        .unique(["query", "pin_id"], keep="first", maintain_order=True)
        .join(bands.select("query", "query_traffic", "band"), on="query", how="left")
        .join(languages, on="pin_id", how="left")
        .with_columns(pl.col("language").fill_null("und"))
    )
    parts = [pl.col(strata_language_column(cfg)), pl.col("band")] + ([pl.col("country")] if cfg.by_country else [])
    pop = pop.with_columns(pl.concat_str(parts, separator="/").alias("stratum"))
    return pop.sort(["stratum", "query", "pin_id"])


def stratified_sample(
    population: pl.DataFrame,
    cfg: PairsSettings,
    all_strata: Sequence[str] | None = None,
    pilot: dict[str, list[float]] | None = None,
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Draw the sample and describe every stratum.

    In:  the output of strata_population; all_strata: every stratum name the design has
         (language x band (x country)), so empty ones can be reported; pilot: the pilot's
         labels per stratum (neyman allocation).
    Out: (sampled pairs with `sampling_weight`, one dict per stratum: stratum, language, band,
         country, population, sampled, weight, status; with a pilot also pilot_labels, sd and
         sd_source, `pilot` or `pooled`).
    """
    sizes = dict(population.group_by("stratum").agg(pl.len()).iter_rows())
    design = list(dict.fromkeys(all_strata or []))
    names = design + sorted(set(sizes) - set(design))
    pop_sizes = {s: int(sizes.get(s, 0)) for s in names}
    sds: dict[str, float] | None = None
    pooled: list[str] = []
    if pilot is not None:
        sds, pooled, _ = stratum_sds([s for s in names if pop_sizes[s] > 0], pilot)
    alloc = allocate(pop_sizes, cfg.sample, cfg.allocation, cfg.per_stratum_size, sds)
    picked = []
    report = []
    for s in names:
        N, n = pop_sizes[s], alloc[s]
        part = population.filter(pl.col("stratum") == s)
        if n > 0:
            rng = np.random.default_rng(stable_seed(cfg.seed, "pairs", s))
            idx = np.sort(rng.choice(N, size=n, replace=False))
            picked.append(part[idx.tolist()].with_columns(pl.lit(N / n, pl.Float64).alias("sampling_weight")))
        fields = s.split("/")
        report.append(
            {
                "stratum": s,
                "language": fields[0],
                "band": fields[1] if len(fields) > 1 else None,
                "country": fields[2] if len(fields) > 2 else None,
                "population": N,
                "sampled": n,
                "weight": (N / n) if n else None,
                "status": "empty" if N == 0 else ("not_sampled" if n == 0 else "ok"),
            }
        )
        if pilot is not None:
            report[-1].update(
                pilot_labels=len(pilot.get(s, [])),
                sd=sds.get(s) if sds else None,
                sd_source=None if N == 0 else ("pooled" if s in pooled else "pilot"),
            )
    schema = {**population.schema, "sampling_weight": pl.Float64}
    sample = pl.concat(picked, how="vertical") if picked else pl.DataFrame(schema=schema)
    return sample, report


@dataclass
class PairsResult:
    pairs: pl.DataFrame
    manifest: dict[str, Any]
    out: Path | None = None


def _texts_for(texts: pl.DataFrame, variants: Sequence[str]) -> pl.DataFrame:
    return texts.filter(
        pl.col("variant").is_in(list(variants)) & (pl.col("text").fill_null("").str.strip_chars().str.len_chars() > 0)
    ).select("pin_id", "variant", "text")


def pilot_labels(path: str | Path, population: pl.DataFrame, known_pins: pl.Series) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """The pilot's labels grouped by the stratum of their (query, pin) pair.

    In:  a table of labeled pairs (query, pin_id, label 1..5; Parquet, CSV or JSONL; the pairs
         output with a label column will do), the strata population, the build's pin ids.
    Out: ({stratum: [label, ...]}, counts). A (query, pin) labeled more than once (one row per
         variant) counts once, with its first label.
    Raises InputError naming the file, row and column for a row that cannot be used: a
    missing or out-of-range label, a pin the build does not have, a pair that is not in the
    build's query_pins.parquet (so it has no stratum).
    """
    raw, unparsed = read_judgments(path)
    if unparsed.height:
        r = unparsed.row(0, named=True)
        raise InputError(f"pilot: {r['reason']}: {r['detail']}", file=r["file"], row=r["row"])
    valid, rejects = validate_judgments(raw, known_pins)
    bad = rejects.filter(pl.col("reason") != "duplicate")
    if bad.height:
        r = bad.row(0, named=True)
        more = f" (and {bad.height - 1} more row(s))" if bad.height > 1 else ""
        raise InputError(f"pilot: {r['detail']}{more}", file=r["file"] or str(path), column=r["column"], row=r["row"])
    strata = valid.join(population.select("query", "pin_id", "stratum"), on=["query", "pin_id"], how="left")
    outside = strata.filter(pl.col("stratum").is_null())
    if outside.height:
        r = outside.row(0, named=True)
        raise InputError(
            f"pilot: pair ({r['query']!r}, {r['pin_id']!r}) is not in the build's query_pins.parquet, so it has no stratum"
            + (f" (and {outside.height - 1} more)" if outside.height > 1 else ""),
            file=r["_file"] or str(path), column="query", row=r["_row"],
        )
    groups: dict[str, list[float]] = {}
    for stratum, label in strata.select("stratum", pl.col("label").cast(pl.Float64)).iter_rows():
        groups.setdefault(stratum, []).append(label)
    counts = {"file": str(path), "rows": raw.height, "pairs": valid.height, "repeated_pairs_ignored": rejects.height - bad.height}
    return groups, counts


def text_coverage(rows: pl.DataFrame, texts: pl.DataFrame, variants: Sequence[str]) -> dict[str, Any]:
    """Per variant: the (pair, variant) rows left out for want of text, and which variants have no
    text at all in the build (their rows are all left out: the output says so, it does not hide it).

    In:  rows: the pairs joined with texts (`variant`, `text` null where there is none); the build's texts.
    """
    missing = dict(rows.filter(pl.col("text").is_null()).group_by("variant").agg(pl.len()).iter_rows())
    nonempty = set(_texts_for(texts, variants).get_column("variant").unique().to_list())
    return {
        "no_text_rows": int(sum(missing.values())),
        "no_text_by_variant": {v: int(missing.get(v, 0)) for v in variants},
        "empty_variants": [v for v in variants if v not in nonempty],
    }


def judged_pairs_table(
    texts: pl.DataFrame, features: pl.DataFrame, judgments: str | Path, variants: Sequence[str]
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """Judged pairs from a build's texts and features (evaluate.read_texts): (rows in SCHEMA_JUDGED, rejects, counts, text coverage)."""
    valid, rejects, n_read = load_judgments(judgments, features.get_column("pin_id"))
    order = pl.DataFrame({"variant": list(variants), "_v": list(range(len(variants)))}, schema={"variant": pl.Utf8, "_v": pl.Int64})
    rows = (
        valid.with_row_index("_j")
        .join(order, how="cross")
        .join(_texts_for(texts, variants), on=["pin_id", "variant"], how="left")
    )
    coverage = text_coverage(rows, texts, variants)
    rows = rows.filter(pl.col("text").is_not_null()).sort(["_j", "_v"]).select(list(SCHEMA_JUDGED)).cast(SCHEMA_JUDGED)
    counts = {"read": n_read, "valid": valid.height, "rejected": rejects.height, "no_text": coverage["no_text_rows"],
              "rejects": dict(sorted(rejects.group_by("reason").agg(pl.len()).iter_rows())) if rejects.height else {}}
    return rows, rejects, counts, coverage


def run_pairs(
    build_dir: str | Path,
    cfg: PairsSettings | None = None,
    *,
    judgments: str | Path | None = None,
    out: str | Path | None = None,
    write: bool = True,
) -> PairsResult:
    """Make the pairs table (judged, or a stratified sample) and write it with pairs_manifest.json next to it.
    With `allocation = "neyman"`, `cfg.pilot` (labeled pairs) gives each stratum's label SD."""
    cfg = cfg or PairsSettings()
    sampling = cfg.sample is not None or cfg.allocation == "per_stratum"
    if judgments is None and not sampling:
        raise ConfigError("give --judgments F (labeled pairs) or --sample N (a stratified sample)")
    if judgments is not None and sampling:
        raise ConfigError("--judgments and --sample/--per-stratum are two different modes; give one")
    t0 = time.perf_counter()
    build = open_build(build_dir)
    texts, features = read_texts(build)
    variants = select_variants(build, cfg.variants)
    manifest: dict[str, Any] = mark_derived({
        "mode": "judged" if judgments is not None else "sample",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
        "variants": variants,
    }, build)
    rejects = None
    if judgments is not None:
        rows, rejects, counts, coverage = judged_pairs_table(texts, features, judgments, variants)
        manifest["judgments"] = {"file": str(judgments), **counts}
        manifest["text_coverage"] = coverage
        schema = SCHEMA_JUDGED
    else:
        qp = build.read("query_pins").filter(pl.col("query").is_not_null() & pl.col("pin_id").is_not_null())
        population = strata_population(qp, features, cfg)
        langs = sorted(population.get_column(strata_language_column(cfg)).unique().to_list())
        names = band_names(cfg.bands)
        countries = sorted(population.get_column("country").unique().to_list()) if cfg.by_country else [None]
        design = [f"{lang}/{band}" + (f"/{c}" if c is not None else "") for lang in langs for band in names for c in countries]
        groups = None
        if cfg.pilot is not None:
            groups, manifest["pilot"] = pilot_labels(cfg.pilot, population, features.get_column("pin_id"))
        sample, strata = stratified_sample(population, cfg, design, groups)
        order = pl.DataFrame({"variant": list(variants), "_v": list(range(len(variants)))}, schema={"variant": pl.Utf8, "_v": pl.Int64})
        rows = (
            sample.join(order, how="cross")
            .join(_texts_for(texts, variants), on=["pin_id", "variant"], how="left")
        )
        coverage = text_coverage(rows, texts, variants)
        manifest["text_coverage"] = coverage
        no_text = coverage["no_text_rows"]
        rows = rows.filter(pl.col("text").is_not_null()).sort(["stratum", "query", "pin_id", "_v"]).select(list(SCHEMA_SAMPLED)).cast(SCHEMA_SAMPLED)
        manifest["sample"] = {
            "requested": cfg.sample,
            "allocation": cfg.allocation,
            "per_stratum": cfg.per_stratum_size,
            "strata_language": cfg.strata_language,
            "bands": {"cutoffs": list(cfg.bands), "names": names},
            "population_pairs": population.height,
            "population_queries": population.get_column("query").n_unique(),
            "sampled_pairs": sample.height,
            "no_text_rows": no_text,
            "empty_strata": [s["stratum"] for s in strata if s["status"] == "empty"],
            "not_sampled_strata": [s["stratum"] for s in strata if s["status"] == "not_sampled"],
            "strata": strata,
        }
        if groups is not None:
            manifest["sample"]["pooled_sd_strata"] = [s["stratum"] for s in strata if s.get("sd_source") == "pooled"]
        schema = SCHEMA_SAMPLED
    manifest["rows"] = rows.height
    manifest["schema"] = {k: str(v) for k, v in schema.items()}
    manifest["seconds"] = round(time.perf_counter() - t0, 3)
    res = PairsResult(rows, manifest)
    if write:
        path = Path(out) if out is not None else build.path / f"pairs.{cfg.format}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if cfg.format == "parquet":
            rows.write_parquet(path)
        else:
            rows.write_ndjson(path)
        manifest["output"] = {"path": str(path), "format": cfg.format, "rows": rows.height}
        if rejects is not None:
            rpath = path.with_name(path.stem + "_rejects.parquet")
            rejects.write_parquet(rpath)
            manifest["output"]["rejects"] = str(rpath)
        (path.parent / "pairs_manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        res.out = path
    return res
