"""Language stage: one language per pin (and per query text), made to hold on short text.

In:  pins with cleaned `title`, `description` and an optional input `language` column;
     pin_boards(pin_id, boards) from the aggregate stage (the normalised board titles).
Out: a `language` column: the input value when present (lower-cased); else the language of the
     pin's whole text (title, description and board titles, first `max_chars` characters) under
     a prior over the languages of this build; `und` when the text is too short, has no n-gram
     the model knows, or the answer's posterior is below `min_confidence`.

The detector is langdetect's model: its 55 n-gram profiles, scored exactly and deterministically
in numpy (pinfeatures.build.language_model), with no random trials. On a short title those
profiles alone are weak (on bench/language_labeled.csv the old title-only detector got 72%: 'Easy
pasta recipe' is Italian, 'cabelo curto' Spanish), so the answer is a posterior:

    p(lang | text)  ~  prior(lang) * exp(loglik(lang, text) / temperature)

* temperature (3): langdetect's naive Bayes counts the 1-, 2- and 3-gram at each character as
  three independent pieces of evidence; dividing by 3 counts each position once, which makes
  the posterior a usable confidence instead of 0/1.
* prior: empirical Bayes over this build. A first pass with a uniform prior finds the pins whose
  language is sure (input column, one-language script, or posterior >= prior_min_confidence);
  their language shares, mixed with a uniform prior (`prior_weight` of the mass from the build),
  are the prior of the second pass. A build of English, Spanish and Hindi pins then calls a
  close English/Italian title English, and still answers Italian for a clearly Italian one.
  `estimate_prior` is a function of per-language counts only, so a sharded build can add the
  shards' counts and compute the one global prior.
* floor: below `min_confidence` the answer is `und` rather than a guess.

Scripts that belong to one language (kana: ja, Hangul: ko, Thai, Greek, Hebrew, ...) are
answered from the script alone, with confidence 1. Each distinct text is scored once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
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
# Marks count as letters: Devanagari and Arabic words are letters plus vowel signs.
_LETTER = r"[\p{L}\p{M}]"
_BATCH = 4096


@dataclass(frozen=True)
class LanguageSettings:
    """Settings of the language stage (BuildSettings `language_*`)."""

    max_chars: int = 200
    """How much of a pin's text (title, description, boards) is read: enough to tell a language."""
    min_letters: int = 3
    """Texts with fewer letters (marks included) are `und` (CJK: fewer than 2)."""
    temperature: float = 3.0
    min_confidence: float = 0.5
    """Posterior below which the answer is `und`."""
    prior_weight: float = 0.9
    """Share of the prior that comes from this build's sure detections (the rest is uniform)."""
    prior_min_confidence: float = 0.9
    """Posterior (uniform prior) from which a detection counts towards the prior."""

    @classmethod
    def from_config(cls, cfg: Any) -> "LanguageSettings":
        return cls(
            max_chars=cfg.language_max_chars,
            min_letters=cfg.language_min_letters,
            temperature=cfg.language_temperature,
            min_confidence=cfg.language_min_confidence,
            prior_weight=cfg.language_prior_weight,
            prior_min_confidence=cfg.language_prior_min_confidence,
        )


@dataclass(frozen=True)
class LanguagePrior:
    """p(lang) over langdetect's languages, and the sure detections it was estimated from."""

    probs: Mapping[str, float]
    counts: Mapping[str, int] = field(default_factory=dict)

    def log_vector(self) -> np.ndarray:
        from pinfeatures.build.language_model import languages

        return np.log(np.array([self.probs[lang] for lang in languages()], dtype=np.float64))

    def summary(self, top: int = 10) -> dict[str, Any]:
        ranked = sorted(self.probs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return {"sure_pins": int(sum(self.counts.values())), "counts": dict(sorted(self.counts.items())),
                "top": {lang: round(p, 4) for lang, p in ranked}}


def uniform_prior() -> LanguagePrior:
    from pinfeatures.build.language_model import languages

    langs = languages()
    return LanguagePrior({lang: 1.0 / len(langs) for lang in langs})


def estimate_prior(counts: Mapping[str, int], weight: float) -> LanguagePrior:
    """Empirical-Bayes prior: weight * (the build's language shares) + (1 - weight) * uniform.

    In:  counts of sure detections per language (codes langdetect does not have are ignored:
         the prior is over its languages); weight in [0, 1].
    Out: a LanguagePrior; uniform when there is nothing to count.
    """
    from pinfeatures.build.language_model import languages

    langs = languages()
    known = {lang: int(n) for lang, n in counts.items() if lang in set(langs) and n > 0}
    total = sum(known.values())
    if total == 0:
        return uniform_prior()
    probs = {lang: weight * known.get(lang, 0) / total + (1.0 - weight) / len(langs) for lang in langs}
    return LanguagePrior(probs, known)


def quick_languages(texts: pl.Series, min_letters: int) -> pl.Series:
    """Per text: `und` (too few letters), a language (a one-language script), or null (ask the model).

    CJK scripts carry a word in one or two characters, so a short Japanese title is still Japanese;
    kana only occurs in Japanese, even mixed with kanji.
    """
    frame = pl.DataFrame({"t": texts}).with_columns(
        pl.col("t").str.count_matches(_LETTER).alias("letters"),
        pl.col("t").str.count_matches(_KANA).alias("kana"),
        pl.col("t").str.count_matches(_CJK).alias("cjk"),
        *[pl.col("t").str.count_matches(rf"\p{{{script}}}").alias(script) for script in _SCRIPT_LANG],
    )
    too_short = (pl.col("letters") < min_letters) & ((pl.col("cjk") == 0) | (pl.col("letters") < 2))
    answer = pl.when(too_short).then(pl.lit(UND)).when(pl.col("kana") > 0).then(pl.lit("ja"))
    for script, lang in _SCRIPT_LANG.items():
        answer = answer.when(pl.col(script) * 2 > pl.col("letters")).then(pl.lit(lang))
    return frame.select(answer.otherwise(pl.lit(None, pl.Utf8)).alias("quick")).to_series()


class ScoredTexts:
    """Distinct texts with their script answer or their tempered log-likelihood per language.

    The scores do not depend on the prior, so one scoring serves both passes (and the queries).
    Memory: 4 bytes x 55 languages per distinct text the model scores.
    """

    def __init__(self, texts: Sequence[str], settings: LanguageSettings) -> None:
        from pinfeatures.build import language_model

        self.texts = list(texts)
        self.quick: list[str | None] = quick_languages(pl.Series(self.texts, dtype=pl.Utf8), settings.min_letters).to_list()
        self.asked = np.array([i for i, q in enumerate(self.quick) if q is None], dtype=np.int64)
        self.langs = np.asarray(language_model.languages(), dtype=object)
        self.loglik = np.zeros((len(self.asked), len(self.langs)), dtype=np.float32)
        self.known = np.zeros(len(self.asked), dtype=bool)
        for lo in range(0, len(self.asked), _BATCH):
            part = self.asked[lo : lo + _BATCH]
            scores, counts = language_model.scores([self.texts[i] for i in part])
            self.loglik[lo : lo + len(part)] = scores / settings.temperature
            self.known[lo : lo + len(part)] = counts > 0

    def decide(self, prior: LanguagePrior, min_confidence: float) -> tuple[list[str], np.ndarray]:
        """(code per text, its posterior): script answers have posterior 1, `und` 0 (and below the floor)."""
        codes = np.array([q if q is not None else UND for q in self.quick], dtype=object)
        confidence = np.array([0.0 if q in (None, UND) else 1.0 for q in self.quick], dtype=np.float64)
        log_prior = prior.log_vector()
        for lo in range(0, len(self.asked), _BATCH):
            logp = self.loglik[lo : lo + _BATCH].astype(np.float64) + log_prior
            logp -= logp.max(axis=1, keepdims=True)
            post = np.exp(logp)
            post /= post.sum(axis=1, keepdims=True)
            best = post.argmax(axis=1)  # ties: the first language in langdetect's sorted profile order
            conf = post[np.arange(len(best)), best]
            known = self.known[lo : lo + _BATCH]  # a text with no n-gram the model knows stays `und`, 0
            where = self.asked[lo : lo + _BATCH][known]
            confidence[where] = conf[known]
            codes[where] = np.where(conf[known] >= min_confidence, self.langs[best[known]], UND)
        return codes.tolist(), confidence


def detect_texts(texts: Sequence[str], prior: LanguagePrior, settings: LanguageSettings) -> dict[str, str]:
    """Language of each distinct text under a given prior and the floor ({text: code})."""
    unique = list(dict.fromkeys(texts))
    codes, _ = ScoredTexts(unique, settings).decide(prior, settings.min_confidence)
    return dict(zip(unique, codes))


def _whole_text(boards: pl.DataFrame | None, max_chars: int) -> pl.Expr:
    parts = [pl.col("title").fill_null(""), pl.col("description").fill_null("")]
    if boards is not None:
        parts.append(pl.col("_boards").list.join(" ").fill_null(""))
    return pl.concat_str(parts, separator=" ").str.strip_chars().str.slice(0, max_chars).alias("_lang_text")


class _PinTexts:
    """Pins with their given language and detection text, and the distinct texts scored once."""

    def __init__(self, pins: pl.DataFrame, pin_boards: pl.DataFrame | None, settings: LanguageSettings) -> None:
        given = (
            pl.col("language").cast(pl.Utf8).str.strip_chars().str.to_lowercase()
            if "language" in pins.columns
            else pl.lit(None, pl.Utf8)
        )
        frame = pins
        if pin_boards is not None:
            frame = frame.join(pin_boards.select("pin_id", pl.col("boards").alias("_boards")), on="pin_id", how="left", maintain_order="left")
        self.frame = frame.with_columns(
            pl.when(given.str.len_chars() > 0).then(given).otherwise(pl.lit(None, pl.Utf8)).alias("_given"),
            _whole_text(pin_boards, settings.max_chars),
        )
        self.todo = self.frame.filter(pl.col("_given").is_null()).get_column("_lang_text").unique().sort().to_list()
        self.scored = ScoredTexts(self.todo, settings)
        self.helper_columns = ["_given", "_lang_text", "_detected", "_confidence"] + (["_boards"] if pin_boards is not None else [])

    def decide(self, prior: LanguagePrior, min_confidence: float) -> pl.DataFrame:
        """The pins with `_detected` and `_confidence` (null where the language was given)."""
        codes, confidence = self.scored.decide(prior, min_confidence)
        lookup = pl.DataFrame(
            {"_lang_text": self.todo, "_detected": codes, "_confidence": confidence},
            schema={"_lang_text": pl.Utf8, "_detected": pl.Utf8, "_confidence": pl.Float64},
        )
        return self.frame.join(lookup, on="_lang_text", how="left", maintain_order="left")

    def sure_counts(self, settings: LanguageSettings) -> dict[str, int]:
        """Pass 1, uniform prior: pins per language whose language is given, or detected with
        posterior >= prior_min_confidence (script answers count, with posterior 1)."""
        first = self.decide(uniform_prior(), 0.0)
        sure = first.select(
            pl.when(pl.col("_given").is_not_null())
            .then(pl.col("_given"))
            .when((pl.col("_confidence") >= settings.prior_min_confidence) & (pl.col("_detected") != UND))
            .then(pl.col("_detected"))
            .alias("lang")
        ).drop_nulls()
        return dict(sure.group_by("lang").len().sort("lang").iter_rows())


def sure_language_counts(pins: pl.DataFrame, pin_boards: pl.DataFrame | None = None, settings: LanguageSettings | None = None) -> dict[str, int]:
    """The counts the build's prior is estimated from (pass 1); a sharded build adds its shards' counts."""
    settings = settings or LanguageSettings()
    return _PinTexts(pins, pin_boards, settings).sure_counts(settings)


def detect_languages(
    pins: pl.DataFrame,
    pin_boards: pl.DataFrame | None = None,
    settings: LanguageSettings | None = None,
    prior: LanguagePrior | None = None,
) -> tuple[pl.DataFrame, LanguagePrior, dict[str, Any]]:
    """Add `language` to pins (see the module docstring). Returns (pins, the prior used, stats).

    pin_boards: pin_id, boards (list of titles); None or a pin without boards reads title and
    description only. prior: None estimates it from these pins (pass 1); a shard of a build
    passes the build's (estimate_prior over the sum of every shard's sure_language_counts), so
    its answers are the whole build's.
    """
    settings = settings or LanguageSettings()
    texts = _PinTexts(pins, pin_boards, settings)
    if prior is None:
        prior = estimate_prior(texts.sure_counts(settings), settings.prior_weight)
    decided = texts.decide(prior, settings.min_confidence).with_columns(pl.coalesce("_given", "_detected", pl.lit(UND)).alias("language"))
    detected = decided.filter(pl.col("_given").is_null())
    confidence = detected.get_column("_confidence")
    stats = {
        "detector": "langdetect profiles (numpy, deterministic)",
        "given": int(decided.height - detected.height),
        "distinct_texts_detected": len(texts.todo),
        "und": int((detected.get_column("language") == UND).sum()),
        "below_min_confidence": int(((confidence < settings.min_confidence) & (confidence > 0)).sum()),
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "prior": prior.summary(),
    }
    return decided.drop(texts.helper_columns), prior, stats
