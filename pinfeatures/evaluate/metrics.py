"""Ranking metrics for `pinfeatures evaluate`: NDCG@k, rank correlation, paired bootstrap.

All functions are deterministic. Ties in score are broken by `pin_id` (ascending), so the
same scores always give the same ranking and the same NDCG.

In:  a Polars frame of judged, scored pairs: `query`, `pin_id`, `label` (1..5), `score` (float).
Out: per-query values (`per_query_ndcg`, `per_query_spearman`) or summary numbers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from pinfeatures.errors import ConfigError

GAINS = ("exponential", "linear")


def gain_expr(label: pl.Expr, gain: str) -> pl.Expr:
    """`exponential`: 2^label - 1 (the usual NDCG gain, stresses the top labels); `linear`: label."""
    if gain == "exponential":
        return pl.lit(2.0).pow(label.cast(pl.Float64)) - 1.0
    if gain == "linear":
        return label.cast(pl.Float64)
    raise ConfigError(f"evaluate.gain must be one of {list(GAINS)}, got {gain!r}")


def per_query_ndcg(scored: pl.DataFrame, k: int, gain: str = "exponential") -> pl.DataFrame:
    """NDCG@k for each query over its judged pins: the DCG of the ranking (the sum over its top k
    of gain / log2(rank + 1)) over the DCG of the ideal ranking.

    In:  `query`, `pin_id`, `label`, `score` (query and score must not be null: evaluate rejects a
         judgment without a query and ranks a pin without a score last by giving it -inf).
    Out: `query`, `n_judged` (u32), `ndcg` (f64), sorted by query.

    Ranking: score descending, ties by pin_id ascending. The ideal ranking sorts labels
    descending. A query with one judged pin has NDCG 1.0 (nothing to rank).
    """
    if k < 1:
        raise ConfigError(f"ndcg_k must be >= 1, got {k}")
    discount = 1.0 / (pl.int_range(1, pl.len() + 1).over("query").cast(pl.Float64) + 1.0).log(2.0)
    g = gain_expr(pl.col("label"), gain)
    ranked = (
        scored.select("query", "pin_id", "label", "score")
        .sort(["query", "score", "pin_id"], descending=[False, True, False])
        .with_columns(
            pl.int_range(1, pl.len() + 1).over("query").alias("_rank"),
            (g * discount).alias("_dcg_term"),
        )
    )
    ideal = (
        scored.select("query", "label")
        .sort(["query", "label"], descending=[False, True])
        .with_columns(pl.int_range(1, pl.len() + 1).over("query").alias("_rank"), (g * discount).alias("_idcg_term"))
    )
    dcg_q = ranked.filter(pl.col("_rank") <= k).group_by("query").agg(pl.col("_dcg_term").sum().alias("dcg"))
    idcg_q = ideal.filter(pl.col("_rank") <= k).group_by("query").agg(pl.col("_idcg_term").sum().alias("idcg"))
    counts = scored.group_by("query").agg(pl.len().alias("n_judged"))
    out = (
        counts.join(dcg_q, on="query")  # every query has a rank 1, so a DCG and an ideal one
        .join(idcg_q, on="query")
        .with_columns(
            pl.when(pl.col("idcg") > 0).then(pl.col("dcg") / pl.col("idcg")).otherwise(1.0).alias("ndcg")
        )
        .select("query", pl.col("n_judged").cast(pl.UInt32), "ndcg")
        .sort("query")
    )
    return out


def _rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as Spearman's rho needs)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # each run of equal values in sorted order, from `first` to before `end`, shares the mean of
    # its ranks first + 1 .. end (a NaN equals nothing: a run of its own)
    first = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
    end = np.append(first[1:], x.size)
    ranks = np.empty(x.size)  # float64
    ranks[order] = np.repeat((first + end + 1) / 2.0, end - first)
    return ranks


def spearman(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> float | None:
    """Spearman's rho (Pearson on average ranks). None when n < 2 or either side is constant."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.size < 2 or a.size != b.size:
        return None
    ra, rb = _rank_average(a), _rank_average(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(np.dot(ra, ra)) * float(np.dot(rb, rb)))
    if denom == 0.0:
        return None
    return float(np.dot(ra, rb) / denom)


def per_query_spearman(scored: pl.DataFrame) -> pl.DataFrame:
    """Spearman's rho of score with label inside each query.

    Out: `query`, `spearman` (f64, null where undefined: one judged pin, or all labels or all
    scores equal), sorted by query.
    """
    rows = []
    for (query,), part in scored.sort(["query", "pin_id"]).group_by(["query"]):
        rows.append((query, spearman(part["score"].to_numpy(), part["label"].to_numpy())))
    return pl.DataFrame(rows, schema={"query": pl.Utf8, "spearman": pl.Float64}, orient="row").sort("query")


@dataclass(frozen=True)
class BootstrapResult:
    """Mean of (b - a) over queries and its percentile confidence interval."""

    delta: float
    low: float
    high: float
    n_queries: int
    samples: int
    confidence: float


def paired_bootstrap(
    a: np.ndarray | list[float],
    b: np.ndarray | list[float],
    *,
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Paired bootstrap over queries of mean(b) - mean(a).

    `a[i]` and `b[i]` are the same query under two systems. Each resample draws n query
    indices with replacement and uses the *same* indices for both systems, so the interval
    reflects the per-query differences, not the spread of either system alone.
    The interval is the percentile interval of the resampled mean differences.
    Same inputs + seed give the same interval.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("paired_bootstrap needs two 1-d arrays of the same length")
    if samples < 1:
        raise ConfigError(f"bootstrap_samples must be >= 1, got {samples}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    n = x.size
    if n == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, 0, samples, confidence)
    diff = y - x
    rng = np.random.default_rng(seed)
    means = np.empty(samples)  # float64
    # chunks keep memory at ~ chunk * n indices however many queries there are
    chunk = max(1, min(samples, 2_000_000 // max(n, 1)))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(n, size=(stop - start, n))  # from [0, n)
        means[start:stop] = diff[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return BootstrapResult(float(diff.mean()), float(low), float(high), n, samples, confidence)


def stable_seed(seed: int, *parts: str) -> int:
    """A seed derived from `seed` and names (stratum, variant pair), independent of processing order."""
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()
    return int.from_bytes(digest[:8], "little")
