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
* Allocation of n pairs: `proportional` (n_h ~ n * N_h / N, largest remainders), `equal`
  (n / H each, capped at N_h, what a small stratum cannot take goes to the others), or
  `per_stratum` (min(size, N_h) from each stratum).
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
from pinfeatures.buildfolder import open_build
from pinfeatures.pairs.settings import ALLOCATIONS, PairsSettings
from pinfeatures.errors import ConfigError
from pinfeatures.evaluate.metrics import stable_seed
from pinfeatures.evaluate.run import load_judgments, read_texts, select_variants


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


def allocate(population: dict[str, int], n: int | None, allocation: str, per_stratum: int | None = None) -> dict[str, int]:
    """Sample size per stratum, never above its population; deterministic (ties by stratum name).

    proportional: largest-remainder rounding of n * N_h / N; equal: n / H with the rest of
    what small strata cannot take spread over the others; per_stratum: min(size, N_h).
    """
    strata = sorted(population)
    if allocation == "per_stratum":
        if per_stratum is None:
            raise ConfigError("--allocation per_stratum needs --per-stratum N")
        return {s: min(per_stratum, population[s]) for s in strata}
    if n is None:
        raise ConfigError(f"--allocation {allocation} needs --sample N")
    total = sum(population.values())
    n = min(n, total)
    out = {s: 0 for s in strata}
    if n == 0 or total == 0:
        return out
    if allocation == "proportional":
        quotas = {s: n * population[s] / total for s in strata}
        out = {s: int(quotas[s]) for s in strata}
        left = n - sum(out.values())
        order = sorted(strata, key=lambda s: (-(quotas[s] - out[s]), s))
        for s in order:
            if left == 0:
                break
            if out[s] < population[s]:
                out[s] += 1
                left -= 1
        return out
    if allocation == "equal":
        left = n
        open_ = [s for s in strata if population[s] > 0]
        while left > 0 and open_:
            share, extra = divmod(left, len(open_))
            for i, s in enumerate(open_):
                take = min(share + (1 if i < extra else 0), population[s] - out[s])
                out[s] += take
                left -= take
            open_ = [s for s in open_ if out[s] < population[s]]
        return out
    raise ConfigError(f"unknown allocation {allocation!r}; known: {', '.join(ALLOCATIONS)}")


def stratified_sample(population: pl.DataFrame, cfg: PairsSettings, all_strata: Sequence[str] | None = None) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Draw the sample and describe every stratum.

    In:  the output of strata_population; all_strata: every stratum name the design has
         (language x band (x country)), so empty ones can be reported.
    Out: (sampled pairs with `sampling_weight`, one dict per stratum: stratum, language, band,
         country, population, sampled, weight).
    """
    sizes = dict(population.group_by("stratum").agg(pl.len()).iter_rows())
    design = list(dict.fromkeys(all_strata or []))
    names = design + sorted(set(sizes) - set(design))
    pop_sizes = {s: int(sizes.get(s, 0)) for s in names}
    alloc = allocate(pop_sizes, cfg.sample, cfg.allocation, cfg.per_stratum_size)
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


def judged_pairs_table(
    texts: pl.DataFrame, features: pl.DataFrame, judgments: str | Path, variants: Sequence[str]
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Judged pairs from a build's texts and features (evaluate.read_texts): (rows in SCHEMA_JUDGED, rejects, counts)."""
    valid, rejects, n_read = load_judgments(judgments, features.get_column("pin_id"))
    order = pl.DataFrame({"variant": list(variants), "_v": list(range(len(variants)))}, schema={"variant": pl.Utf8, "_v": pl.Int64})
    rows = (
        valid.with_row_index("_j")
        .join(order, how="cross")
        .join(_texts_for(texts, variants), on=["pin_id", "variant"], how="left")
    )
    missing = rows.filter(pl.col("text").is_null()).height
    rows = rows.filter(pl.col("text").is_not_null()).sort(["_j", "_v"]).select(list(SCHEMA_JUDGED)).cast(SCHEMA_JUDGED)
    counts = {"read": n_read, "valid": valid.height, "rejected": rejects.height, "no_text": missing,
              "rejects": dict(sorted(rejects.group_by("reason").agg(pl.len()).iter_rows())) if rejects.height else {}}
    return rows, rejects, counts


def run_pairs(
    build_dir: str | Path,
    cfg: PairsSettings | None = None,
    *,
    judgments: str | Path | None = None,
    out: str | Path | None = None,
    write: bool = True,
) -> PairsResult:
    """Make the pairs table (judged, or a stratified sample) and write it with pairs_manifest.json next to it."""
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
    manifest: dict[str, Any] = {
        "build_id": build.build_id,
        "build": str(build.path),
        "mode": "judged" if judgments is not None else "sample",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
        "variants": variants,
    }
    rejects = None
    if judgments is not None:
        rows, rejects, counts = judged_pairs_table(texts, features, judgments, variants)
        manifest["judgments"] = {"file": str(judgments), **counts}
        schema = SCHEMA_JUDGED
    else:
        qp = build.read("query_pins").filter(pl.col("query").is_not_null() & pl.col("pin_id").is_not_null())
        population = strata_population(qp, features, cfg)
        langs = sorted(population.get_column(strata_language_column(cfg)).unique().to_list())
        names = band_names(cfg.bands)
        countries = sorted(population.get_column("country").unique().to_list()) if cfg.by_country else [None]
        design = [f"{lang}/{band}" + (f"/{c}" if c is not None else "") for lang in langs for band in names for c in countries]
        sample, strata = stratified_sample(population, cfg, design)
        order = pl.DataFrame({"variant": list(variants), "_v": list(range(len(variants)))}, schema={"variant": pl.Utf8, "_v": pl.Int64})
        rows = (
            sample.join(order, how="cross")
            .join(_texts_for(texts, variants), on=["pin_id", "variant"], how="left")
        )
        no_text = rows.filter(pl.col("text").is_null()).height
        rows = rows.filter(pl.col("text").is_not_null()).sort(["stratum", "query", "pin_id", "_v"]).select(list(SCHEMA_SAMPLED)).cast(SCHEMA_SAMPLED)
        manifest["sample"] = {
            "requested": cfg.sample,
            "allocation": cfg.allocation,
            "per_stratum": cfg.per_stratum_size,
            "bands": {"cutoffs": list(cfg.bands), "names": names},
            "population_pairs": population.height,
            "population_queries": population.get_column("query").n_unique(),
            "sampled_pairs": sample.height,
            "no_text_rows": no_text,
            "empty_strata": [s["stratum"] for s in strata if s["status"] == "empty"],
            "not_sampled_strata": [s["stratum"] for s in strata if s["status"] == "not_sampled"],
            "strata": strata,
        }
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
