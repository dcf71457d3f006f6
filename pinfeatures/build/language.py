"""Language stage: one language code per pin.

In:  pins with cleaned `title`, `description` and an optional input `language` column.
Out: a `language` column: the input value when present (lower-cased), else langdetect's answer
     on the title and description, else `und` (text too short to tell, or no letters).

langdetect is slow (about 250-600 texts/s on one core here: its inner loop is Python over 55
languages, run for 7 random trials per text), so this stage
  * reads at most `max_chars` characters of each pin's text (enough to tell a language),
  * detects each distinct text once (repins share their text),
  * answers from the script alone where a script belongs to one language langdetect knows
    (kana: ja, Hangul: ko, Thai, Greek, Hebrew, Gujarati, ...),
  * scores the rest with langdetect's own model evaluated in numpy (pinfeatures.build.language_model: the same
    profiles, text normalisation and smoothing, all n-grams summed instead of sampled), and
  * hands the texts that model is unsure of (log-score margin < 2) to seeded langdetect itself,
    spread over one process per core. On synthetic data about 1% of texts fall back, and the
    answers agree with plain seeded langdetect on 99.97% of texts (bench/bench_language.py).
Both paths are deterministic: the numpy model has no randomness, and langdetect is seeded and
reseeds for every text, so an answer does not depend on the process or the order.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Iterable

import polars as pl

UND = "und"

# Scripts that langdetect maps to exactly one of its languages (Unicode script property names,
# understood the same way by Rust's regex crate in Polars and by Python's `regex`).
_SCRIPT_LANG = {
    "Hangul": "ko",
    "Thai": "th",
    "Greek": "el",
    "Hebrew": "he",
    "Gujarati": "gu",
    "Gurmukhi": "pa",
    "Tamil": "ta",
    "Telugu": "te",
    "Kannada": "kn",
    "Malayalam": "ml",
    "Bengali": "bn",
}
_KANA = r"[\p{Hiragana}\p{Katakana}]"
_CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"


def quick_languages(texts: pl.Series, min_letters: int) -> pl.Series:
    """Vectorised `quick_language` over a column: `und`, a language, or null (ask the model)."""
    frame = pl.DataFrame({"t": texts}).with_columns(
        pl.col("t").str.count_matches(r"\p{L}").alias("letters"),
        pl.col("t").str.count_matches(_KANA).alias("kana"),
        pl.col("t").str.count_matches(_CJK).alias("cjk"),
        *[pl.col("t").str.count_matches(rf"\p{{{script}}}").alias(script) for script in _SCRIPT_LANG],
    )
    too_short = (pl.col("letters") < min_letters) & ((pl.col("cjk") == 0) | (pl.col("letters") < 2))
    answer = pl.when(too_short).then(pl.lit(UND)).when(pl.col("kana") > 0).then(pl.lit("ja"))
    for script, lang in _SCRIPT_LANG.items():
        answer = answer.when(pl.col(script) * 2 > pl.col("letters")).then(pl.lit(lang))
    return frame.select(answer.otherwise(pl.lit(None, pl.Utf8)).alias("quick")).to_series()


def quick_language(text: str, min_letters: int) -> str | None:
    """`und` for text with too few letters, a language for a one-language script, else None (ask the model).

    CJK scripts carry a word in one or two characters, so a short Japanese title is still Japanese;
    kana only occurs in Japanese, even mixed with kanji.
    """
    return quick_languages(pl.Series([text], dtype=pl.Utf8), min_letters)[0]


def detect_many(texts: Iterable[str], *, seed: int = 0, workers: int = 0, min_letters: int = 8) -> tuple[dict[str, str], int]:
    """Language of each distinct text: ({text: code}, how many went to langdetect). workers=0: one per core."""
    unique = pl.Series(list(dict.fromkeys(texts)), dtype=pl.Utf8)
    quick = quick_languages(unique, min_letters)
    result: dict[str, str] = {t: q for t, q in zip(unique.to_list(), quick.to_list()) if q is not None}
    ask: list[str] = unique.filter(quick.is_null()).to_list()
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(ask) >= _PARALLEL_MIN:
        # one contiguous slice per process; spawn, not fork: the parent holds DuckDB/Polars thread pools
        step = -(-len(ask) // workers)
        slices = [(ask[i : i + step], seed) for i in range(0, len(ask), step)]
        with mp.get_context("spawn").Pool(len(slices)) as pool:
            answers = [code for part in pool.map(_detect_slice, slices, chunksize=1) for code in part]
    else:
        answers = _detect_slice((ask, seed))
    result.update(zip(ask, answers))
    return result, len(ask)


# Below this many texts a second process costs more (spawn, loading the profiles) than it saves.
_PARALLEL_MIN = 50_000


def _detect_slice(args: tuple[list[str], int]) -> list[str]:
    from pinfeatures.build.language_model import detect_hybrid

    texts, seed = args
    return detect_hybrid(texts, seed=seed, workers=1)


def detect_languages(
    pins: pl.DataFrame, *, max_chars: int = 200, min_letters: int = 8, seed: int = 0, workers: int = 0
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Add `language` to pins (see the module docstring). Returns (pins, stats)."""
    given = (
        pl.col("language").cast(pl.Utf8).str.strip_chars().str.to_lowercase()
        if "language" in pins.columns
        else pl.lit(None, pl.Utf8)
    )
    frame = pins.with_columns(
        pl.when(given.str.len_chars() > 0).then(given).otherwise(pl.lit(None, pl.Utf8)).alias("_given"),
        pl.concat_str([pl.col("title").fill_null(""), pl.col("description").fill_null("")], separator=" ")
        .str.strip_chars()
        .str.slice(0, max_chars)
        .alias("_lang_text"),
    )
    todo = frame.filter(pl.col("_given").is_null()).get_column("_lang_text").unique().to_list()
    codes, asked = detect_many(todo, seed=seed, workers=workers, min_letters=min_letters)
    lookup = pl.DataFrame({"_lang_text": list(codes.keys()), "_detected": list(codes.values())}, schema={"_lang_text": pl.Utf8, "_detected": pl.Utf8})
    frame = frame.join(lookup, on="_lang_text", how="left", maintain_order="left")
    frame = frame.with_columns(pl.coalesce("_given", "_detected", pl.lit(UND)).alias("language"))
    stats = {
        "given": int(frame.get_column("_given").is_not_null().sum()),
        "distinct_texts_detected": len(todo),
        "sent_to_langdetect": asked,
    }
    return frame.drop("_given", "_lang_text", "_detected"), stats
