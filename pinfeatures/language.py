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
  * scores the rest with langdetect's own model evaluated in numpy (pinfeatures.langid: the same
    profiles, text normalisation and smoothing, all n-grams summed instead of sampled), and
  * hands the texts that model is unsure of (log-score margin < 2) to seeded langdetect itself,
    spread over one process per core. On synthetic data about 1% of texts fall back, and the
    answers agree with plain seeded langdetect on 99.97% of texts (bench/bench_language.py).
Both paths are deterministic: the numpy model has no randomness, and langdetect is seeded and
reseeds for every text, so an answer does not depend on the process or the order.
"""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

import polars as pl

UND = "und"

# Scripts that langdetect maps to exactly one of its languages.
_SCRIPT_LANG = {
    "HIRAGANA": "ja",
    "KATAKANA": "ja",
    "HANGUL": "ko",
    "THAI": "th",
    "GREEK": "el",
    "HEBREW": "he",
    "GUJARATI": "gu",
    "GURMUKHI": "pa",
    "TAMIL": "ta",
    "TELUGU": "te",
    "KANNADA": "kn",
    "MALAYALAM": "ml",
    "BENGALI": "bn",
}


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else ""


def quick_language(text: str, min_letters: int) -> str | None:
    """`und` for text with too few letters, a language for a one-language script, else None (ask langdetect)."""
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) < min_letters:
        # CJK scripts carry a word in one or two characters: a short Japanese title is still Japanese.
        if not any(_script(ch) in ("CJK", "HIRAGANA", "KATAKANA", "HANGUL") for ch in letters) or len(letters) < 2:
            return UND
    scripts = Counter(_script(ch) for ch in letters)
    if any(s in ("HIRAGANA", "KATAKANA") for s in scripts):
        return "ja"  # kana only occurs in Japanese, even mixed with kanji
    top, n = scripts.most_common(1)[0]
    if top in _SCRIPT_LANG and n * 2 > len(letters):
        return _SCRIPT_LANG[top]
    return None


def detect_many(texts: Iterable[str], *, seed: int = 0, workers: int = 0, min_letters: int = 8) -> tuple[dict[str, str], int]:
    """Language of each distinct text: ({text: code}, how many went to langdetect). workers=0: one per core."""
    unique = list(dict.fromkeys(texts))
    result: dict[str, str] = {}
    ask: list[str] = []
    for t in unique:
        quick = quick_language(t, min_letters)
        if quick is None:
            ask.append(t)
        else:
            result[t] = quick
    workers = workers or os.cpu_count() or 1
    from pinfeatures.langid import detect_hybrid

    result.update(zip(ask, detect_hybrid(ask, seed=seed, workers=workers)))
    return result, len(ask)


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
