"""Token counting and word-boundary truncation for the text budgets.

Two counters with one interface:

* `ApproxCounter` (default): a fast built-in approximation of a subword tokenizer. A token is
  one CJK / kana / Hangul character, a run of up to 6 other letters/digits/marks, or one
  punctuation or symbol character. Whole columns are counted in Rust by Polars; the same
  pattern runs in Python (`regex` module) for the few values that must be truncated. Counts are
  additive over text joined by whitespace, which the assembler relies on.
* `HFCounter`: a Hugging Face tokenizer from a local folder (`--tokenizer DIR`): exact counts
  for the model that will read the text, special tokens excluded.

Truncation keeps whole words: it cuts at the last whitespace before the first token that does
not fit; only a single word longer than the budget (or unspaced CJK text) is cut inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import polars as pl
import regex

from pinfeatures.chunks import map_chunks
from pinfeatures.errors import ConfigError
from pinfeatures.extras import require

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
# One pattern, valid in both Rust's regex crate (Polars) and Python's `regex` (V1 set syntax).
TOKEN_PATTERN = rf"[{_CJK}]|[[\p{{L}}\p{{M}}\p{{N}}]--[{_CJK}]]{{1,6}}|[^\s\p{{L}}\p{{M}}\p{{N}}]"
_TOKEN_RE = regex.compile(TOKEN_PATTERN, regex.V1)


class TokenCounter(Protocol):
    name: str

    def count_many(self, texts: pl.Series) -> pl.Series:
        """Token count of each string (null counts 0), as Int64."""

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each token of `text`."""


class ApproxCounter:
    name = "approx"

    def count_many(self, texts: pl.Series) -> pl.Series:
        # one regex count per value: chunks of a long column count side by side (pinfeatures.chunks)
        return map_chunks(texts, lambda chunk: chunk.str.count_matches(TOKEN_PATTERN).fill_null(0).cast(pl.Int64))

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _TOKEN_RE.finditer(text)]

    def count(self, text: str) -> int:
        return sum(1 for _ in _TOKEN_RE.finditer(text))


class HFCounter:
    """A fast (Rust) Hugging Face tokenizer loaded from a local folder; never reaches a hub."""

    def __init__(self, path: str | Path):
        p = Path(path)
        if not p.is_dir():
            raise ConfigError(f"--tokenizer {path}: not a folder (give a local folder with tokenizer.json or vocab files)")
        require("caption", "--tokenizer", ("transformers", "tokenizers"))
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)  # use_fast is the default
        except Exception as exc:  # transformers raises many types here; the user needs one message
            raise ConfigError(f"--tokenizer {path}: cannot load a tokenizer from this folder: {exc}") from None
        if not tok.is_fast:
            raise ConfigError(f"--tokenizer {path}: needs a fast tokenizer (tokenizer.json) for offsets")
        self._tok = tok
        self.name = f"hf:{p.name}"

    def count_many(self, texts: pl.Series) -> pl.Series:
        values = [t or "" for t in texts.to_list()]
        counts: list[int] = []
        for i in range(0, len(values), 4096):
            enc = self._tok(values[i : i + 4096], add_special_tokens=False)["input_ids"]
            counts.extend(len(e) for e in enc)
        return pl.Series(texts.name, counts, dtype=pl.Int64)

    def spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]

    def count(self, text: str) -> int:
        return len(self._tok(text, add_special_tokens=False)["input_ids"])


def make_counter(tokenizer: str | None) -> ApproxCounter | HFCounter:
    return HFCounter(tokenizer) if tokenizer else ApproxCounter()


_WORD_CHAR_RE = regex.compile(rf"[[\p{{L}}\p{{M}}\p{{N}}]--[{_CJK}]]", regex.V1)


def _is_word_char(ch: str) -> bool:
    return bool(_WORD_CHAR_RE.match(ch))


def truncate(text: str, budget: int, counter: TokenCounter) -> tuple[str, bool]:
    """Cut `text` to at most `budget` tokens at a word boundary. Returns (text, truncated)."""
    spans = counter.spans(text)
    if len(spans) <= budget:
        return text, False
    if budget <= 0:
        return "", True
    cut = spans[budget - 1][1]
    next_start = spans[budget][0]
    if cut == next_start and cut < len(text) and _is_word_char(text[cut]):
        # the cut may fall inside a word: back off to where that word starts (nowhere when the
        # character before the cut is no word character)
        start = cut
        while start and _is_word_char(text[start - 1]):
            start -= 1
        if start:  # else the text is one word: cut inside it
            cut = start
    return text[:cut].rstrip(), True
