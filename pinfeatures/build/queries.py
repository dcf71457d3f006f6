"""Query stage: the query table (queries.parquet) and each query's language.

In:  query_traffic (sql/queries.sql: one row per privacy-passing query with its traffic, locale
     language and top pins), query_pins (the privacy-passing (query, pin) pairs with `score`),
     the pins' languages and the build's language prior (language.py).
Out: query_languages: query, query_language, query_language_source (`locale`, `pins` or `text`);
     query_table: the rows of queries.parquet (see `query_table`).

A query's language comes, in order, from
  1. the engagements' `locale` (en_US, fr-FR -> en, fr): what the searcher's app was set to;
  2. the languages of the pins engaged through the query (its privacy-passing pairs), weighted by
     action-weighted engagement; `und` pins do not vote; ties by code;
  3. the query text itself, under the build's prior and the same confidence floor as pins.
Every input is a global aggregate (per query or per pin), so a sharded build computes this once
on the concatenated shards' aggregates and joins it in.
"""

from __future__ import annotations

from typing import Sequence

import polars as pl

from pinfeatures.build.language import UND, LanguagePrior, LanguageSettings, detect_texts

QUERY_COLUMNS = ("query", "events", "engaged_events", "users", "band", "query_language", "query_language_source", "top_pins")


def band_names(cutoffs: Sequence[float]) -> list[str]:
    """head/torso/tail for two cut-offs, head/tail for one, band1..bandN otherwise."""
    n = len(cutoffs) + 1
    if n == 3:
        return ["head", "torso", "tail"]
    if n == 2:
        return ["head", "tail"]
    return [f"band{i + 1}" for i in range(n)]


def query_bands(query_pins: pl.DataFrame, cutoffs: Sequence[float]) -> pl.DataFrame:
    """Popularity band of each query.

    In:  query_pins with `query`, `query_traffic`.
    Out: `query`, `query_traffic` (f64), `traffic_share_before` (f64), `band` (str).
    Queries are sorted by traffic (descending, ties by query text); a query belongs to the first
    band whose cut-off is above the cumulative share of traffic before it.
    """
    names = band_names(cutoffs)
    q = (
        query_pins.group_by("query")
        .agg(pl.col("query_traffic").cast(pl.Float64).max().fill_null(0.0))
        .sort(["query_traffic", "query"], descending=[True, False])
    )
    total = float(q.get_column("query_traffic").sum()) or 1.0
    q = q.with_columns(((pl.col("query_traffic").cum_sum() - pl.col("query_traffic")) / total).alias("traffic_share_before"))
    band = pl.lit(names[-1])
    for cut, name in reversed(list(zip(cutoffs, names))):
        band = pl.when(pl.col("traffic_share_before") < cut).then(pl.lit(name)).otherwise(band)
    return q.with_columns(band.alias("band"))


def query_languages(
    query_traffic: pl.DataFrame,
    query_pins: pl.DataFrame,
    pin_languages: pl.DataFrame,
    prior: LanguagePrior,
    settings: LanguageSettings,
) -> pl.DataFrame:
    """query, query_language, query_language_source for every query of query_traffic (see the module docstring).

    In:  query_traffic(query, locale_language); query_pins(query, pin_id, score);
         pin_languages(pin_id, language).
    """
    by_locale = query_traffic.select("query", pl.col("locale_language").alias("_locale"))
    by_pins = (
        query_pins.select("query", pl.col("pin_id").cast(pl.Utf8), pl.col("score").cast(pl.Float64).fill_null(0.0))
        .join(pin_languages.select(pl.col("pin_id").cast(pl.Utf8), "language"), on="pin_id", how="inner")
        .filter(pl.col("language").is_not_null() & (pl.col("language") != UND))
        .group_by("query", "language")
        .agg(pl.col("score").sum())
        .sort(["query", "score", "language"], descending=[False, True, False])
        .group_by("query", maintain_order=True)
        .agg(pl.col("language").first().alias("_pins"))
    )
    frame = by_locale.join(by_pins, on="query", how="left", maintain_order="left")
    need_text = frame.filter(pl.col("_locale").is_null() & pl.col("_pins").is_null()).get_column("query").to_list()
    codes = detect_texts(need_text, prior, settings)
    by_text = pl.DataFrame({"query": list(codes), "_text": list(codes.values())}, schema={"query": pl.Utf8, "_text": pl.Utf8})
    frame = frame.join(by_text, on="query", how="left", maintain_order="left")
    return frame.select(
        "query",
        pl.coalesce("_locale", "_pins", "_text", pl.lit(UND)).alias("query_language"),
        pl.when(pl.col("_locale").is_not_null())
        .then(pl.lit("locale"))
        .when(pl.col("_pins").is_not_null())
        .then(pl.lit("pins"))
        .otherwise(pl.lit("text"))
        .alias("query_language_source"),
    )


def query_table(query_traffic: pl.DataFrame, languages: pl.DataFrame, cutoffs: Sequence[float]) -> pl.DataFrame:
    """The rows of queries.parquet: one per privacy-passing query.

    In:  query_traffic (sql/queries.sql), languages (query_languages), cutoffs: the popularity
         bands' cumulative traffic shares (the build's query_bands; pairs' bands default to the same).
    Out: query, events, engaged_events, users, band, query_language, query_language_source,
         top_pins; ordered by events (descending), then query.
    """
    bands = query_bands(query_traffic.select("query", pl.col("events").alias("query_traffic")), cutoffs)
    return (
        query_traffic.join(bands.select("query", "band"), on="query", how="left", maintain_order="left")
        .join(languages, on="query", how="left", maintain_order="left")
        .select(QUERY_COLUMNS)
        .sort(["events", "query"], descending=[True, False])
    )
