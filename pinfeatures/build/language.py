"""Language stage: one language per pin (and per query text), made to hold on short text.

In:  pins with cleaned `title`, `description` and an optional input `language` column;
     pin_boards(pin_id, boards) from the aggregate stage (the normalised board titles).
Out: a `language` column: the input value when present (lower-cased); else the language of the
     pin's whole text (its title and description, first `max_chars` characters, and its board
     titles) under a prior over the languages of this build; `und` when nothing in it tells
     (too short, no n-gram the model knows) or the posterior is below `min_confidence`.

The detector is langdetect's model: its 55 n-gram profiles, scored exactly and deterministically
in numpy (pinfeatures.build.language_model), with no random trials. On a short title those
profiles alone are weak ('Easy pasta recipe' is Italian to them, 'cabelo curto' Spanish), so the
answer is a posterior:

    p(lang | pin)  ~  prior(lang) * exp(loglik(lang, title + description) / temperature)
                      * prod over board titles b of (1 - rho + rho * q_b(lang) / prior(lang))

* temperature (3): langdetect's naive Bayes counts the 1-, 2- and 3-gram at each character as
  three independent pieces of evidence; dividing by 3 counts each position once, which makes
  the posterior a usable confidence instead of 0/1.
* board titles (q_b: a board title's own posterior): other people's words, often in another
  language (a Japanese saver's board for an English pin), so each is bounded evidence: with
  probability rho (`board_agreement`, 0.5) it is in the pin's language, else in any. A board
  cannot outvote the pin's own words; a pin with an emoji title is told by its boards. Joining
  the board titles to the text instead let one kana board make any pin Japanese.
* prior: empirical Bayes over this build. A first pass with a uniform prior finds the pins whose
  language is sure (input column, one-language script, or posterior >= prior_min_confidence);
  their language shares, mixed with a uniform prior (`prior_weight` of the mass from the build),
  are the prior of the second pass. `estimate_prior` is a function of per-language counts only,
  so a sharded build adds its shards' `PinTexts.sure_counts` and computes one global prior.
* floor: below `min_confidence` the answer is `und` rather than a guess.

Scripts that belong to one language (kana: ja, Hangul: ko, Thai, Greek, Hebrew, ...) are
answered from the script alone, with posterior 1. Each distinct text and board title is scored
once. bench/bench_language.py measures it (docs/langid.md).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import polars as pl

from pinfeatures.chunks import map_chunks

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
_NON_LETTER = r"[^\p{L}\p{M}]"
_BATCH = 4096


@dataclass(frozen=True)
class LanguageSettings:
    """Settings of the language stage (BuildSettings `language_*`)."""

    max_chars: int = 200
    """How much of a pin's title + description (and of each board title) is read: enough to tell a language."""
    min_letters: int = 3
    """Texts with fewer letters (marks included) are `und` (CJK: fewer than 2)."""
    temperature: float = 3.0
    min_confidence: float = 0.5
    """Posterior below which the answer is `und`."""
    prior_weight: float = 0.9
    """Share of the prior that comes from this build's sure detections (the rest is uniform)."""
    prior_min_confidence: float = 0.9
    """Posterior (uniform prior) from which a detection counts towards the prior."""
    board_agreement: float = 0.5
    """How likely a board title is in the pin's language (the rest: any language); bounds a board's say."""

    @classmethod
    def from_config(cls, cfg: Any) -> "LanguageSettings":
        return cls(
            max_chars=cfg.language_max_chars,
            min_letters=cfg.language_min_letters,
            temperature=cfg.language_temperature,
            min_confidence=cfg.language_min_confidence,
            prior_weight=cfg.language_prior_weight,
            prior_min_confidence=cfg.language_prior_min_confidence,
            board_agreement=cfg.language_board_agreement,
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
    kana only occurs in Japanese, even mixed with kanji. A long column is done in chunks on
    Polars' threads (pinfeatures.chunks): each text's answer is its own.
    """
    return map_chunks(texts, lambda chunk: _quick_languages(chunk, min_letters))


def _quick_languages(texts: pl.Series, min_letters: int) -> pl.Series:
    script_counts = [
        pl.col("t").str.count_matches(_KANA).alias("kana"),
        pl.col("t").str.count_matches(_CJK).alias("cjk"),
        *[pl.col("t").str.count_matches(rf"\p{{{script}}}").alias(script) for script in _SCRIPT_LANG],
    ]
    frame = pl.DataFrame({"t": texts}).with_row_index("_i").with_columns(
        # letters = characters - non-letters: fewer matches to count, half the time on prose
        (pl.col("t").str.len_chars() - pl.col("t").str.count_matches(_NON_LETTER)).alias("letters")
    )
    # every script counted is above U+024F: a text with nothing past Latin has none of them, and
    # skipping it saves 13 regex scans of most texts
    beyond_latin = frame.filter(pl.col("t").str.contains(r"[^\x00-\x{24f}]")).select("_i", *script_counts)
    frame = frame.join(beyond_latin, on="_i", how="left", maintain_order="left").with_columns(
        pl.col(name).fill_null(0) for name in beyond_latin.columns if name != "_i"
    )
    too_short = (pl.col("letters") < min_letters) & ((pl.col("cjk") == 0) | (pl.col("letters") < 2))
    answer = pl.when(too_short).then(pl.lit(UND)).when(pl.col("kana") > 0).then(pl.lit("ja"))
    for script, lang in _SCRIPT_LANG.items():
        answer = answer.when(pl.col(script) * 2 > pl.col("letters")).then(pl.lit(lang))
    return frame.select(answer.otherwise(pl.lit(None, pl.Utf8)).alias("quick")).to_series()


class ScoredTexts:
    """Distinct texts with their tempered log-likelihood per language, or their script answer.

    The scores do not depend on the prior, so one scoring serves both passes (and the queries).
    Memory: 4 bytes x 55 languages per distinct text.
    """

    def __init__(self, texts: Sequence[str] | pl.Series, settings: LanguageSettings) -> None:
        from pinfeatures.build import language_model

        # a Polars column, not Python strings: a batch becomes Python strings when scored; the
        # texts are not kept (the scores stand for them), only their number
        column = pl.Series("text", texts, dtype=pl.Utf8)
        self.n_texts = column.len()
        self.langs = np.asarray(language_model.languages(), dtype=object)
        quick = quick_languages(column, min_letters=settings.min_letters)
        # a script answer fixes the language (-1: none); `und` or no known n-gram: no evidence
        self.fixed = quick.replace_strict(list(self.langs), list(range(len(self.langs))), default=-1, return_dtype=pl.Int64).to_numpy()
        self.informative = (quick.is_not_null() & (quick != UND)).fill_null(False).to_numpy()
        self.loglik = np.zeros((self.n_texts, len(self.langs)), dtype=np.float32)
        asked = quick.is_null().arg_true().to_numpy().astype(np.int64)
        for lo in range(0, len(asked), _BATCH):
            part = asked[lo : lo + _BATCH]
            scores, counts = language_model.scores(column.gather(part).to_list())
            self.loglik[part] = scores / settings.temperature
            self.informative[part] = counts > 0

    def log_posterior(self, rows: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
        """log p(lang | text) for texts `rows` (len(rows) x 55): the prior itself where a text says
        nothing, -inf but for the script's language where the script decides."""
        logp = np.where(self.informative[rows, None], self.loglik[rows].astype(np.float64), 0.0) + log_prior
        fixed = self.fixed[rows]
        if (fixed >= 0).any():
            k = np.flatnonzero(fixed >= 0)
            logp[k] = -np.inf
            logp[k, fixed[k]] = 0.0
        return logp - _logsumexp(logp)

    def decide(self, prior: LanguagePrior, min_confidence: float) -> tuple[list[str], np.ndarray]:
        """(code per text, its posterior): `und` (posterior 0) for a text without evidence, and below the floor."""
        return _decide(lambda rows: self.log_posterior(rows, prior.log_vector()), self.informative, self.langs, min_confidence)


def _logsumexp(logp: np.ndarray) -> np.ndarray:
    top = logp.max(axis=1, keepdims=True)
    return top + np.log(np.exp(logp - top).sum(axis=1, keepdims=True))


def _decide(log_posterior, informative: np.ndarray, langs: np.ndarray, min_confidence: float) -> tuple[list[str], np.ndarray]:
    """Best language and its posterior for rows 0..n-1, in batches; `und` where there is no evidence or below the floor."""
    codes = np.full(len(informative), UND, dtype=object)
    confidence = np.zeros(len(informative), dtype=np.float64)

    def batch(lo: int) -> None:  # rows lo.. of the answer: batches write apart, so they may run at once
        rows = np.arange(lo, min(lo + _BATCH, len(informative)))
        logp = log_posterior(rows)
        best = logp.argmax(axis=1)  # ties: the first language in langdetect's sorted profile order
        conf = np.exp(logp[np.arange(len(rows)), best])
        has = informative[rows]
        confidence[rows[has]] = conf[has]
        codes[rows[has]] = np.where(conf[has] >= min_confidence, langs[best[has]], UND)

    starts = range(0, len(informative), _BATCH)
    threads = min(pl.thread_pool_size(), len(starts))
    if threads <= 1:
        for lo in starts:
            batch(lo)
    else:  # numpy releases the GIL in the array maths that make up most of a batch
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(batch, starts))
    return codes.tolist(), confidence


def detect_texts(texts: Sequence[str], prior: LanguagePrior, settings: LanguageSettings) -> dict[str, str]:
    """Language of each distinct text under a given prior and the floor ({text: code})."""
    unique = list(dict.fromkeys(texts))
    codes, _ = ScoredTexts(unique, settings).decide(prior, settings.min_confidence)
    return dict(zip(unique, codes))


class PinTexts:
    """The pins to detect: their own text (title + description) and their board titles, each distinct text scored once.

    A pin's posterior is its own text's times each board title's bounded evidence: a board title
    is in the pin's language with probability rho (`board_agreement`), else in any language
    (drawn from the prior), so for a board whose posterior is q,
        evidence(lang) = log(1 - rho + rho * q(lang) / prior(lang))
    which is 0 for a board that says nothing, at most log(1 - rho + rho / prior(lang)) for one
    clearly in `lang`, and never below log(1 - rho): a board in another language (savers name
    boards in their own language) cannot outvote the pin's own words, and a pin with an emoji
    title is told by its boards alone.
    """

    def __init__(self, pins: pl.DataFrame, pin_boards: pl.DataFrame | None, settings: LanguageSettings) -> None:
        from scipy.sparse import csr_matrix

        given = (
            pl.col("language").cast(pl.Utf8).str.strip_chars().str.to_lowercase()
            if "language" in pins.columns
            else pl.lit(None, pl.Utf8)
        )
        self.frame = pins.with_columns(
            pl.when(given.str.len_chars() > 0).then(given).otherwise(pl.lit(None, pl.Utf8)).alias("_given"),
            pl.concat_str([pl.col("title").fill_null(""), pl.col("description").fill_null("")], separator=" ")
            .str.strip_chars()
            .str.slice(0, settings.max_chars)
            .alias("_lang_text"),
        ).with_row_index("_row")
        todo = self.frame.filter(pl.col("_given").is_null()).select("_row", "pin_id", "_lang_text")
        self.frame = self.frame.drop("_lang_text")  # held until decided: the scores stand for it from here on
        self.rows = todo.get_column("_row")
        own_texts = todo.get_column("_lang_text").unique().sort()
        self.own = ScoredTexts(own_texts, settings)
        self.own_idx = todo.join(
            pl.DataFrame({"_lang_text": own_texts, "_i": np.arange(len(own_texts))}), on="_lang_text", how="left", maintain_order="left"
        ).get_column("_i").to_numpy()
        titles = pl.DataFrame(schema={"_k": pl.UInt32, "title": pl.Utf8})
        if pin_boards is not None:
            titles = (
                todo.with_row_index("_k")
                .join(pin_boards.select("pin_id", "boards"), on="pin_id", how="inner")
                .select("_k", pl.col("boards").list.unique().alias("title"))
                .explode("title")
                .with_columns(pl.col("title").str.slice(0, settings.max_chars))
                .filter(pl.col("title").str.strip_chars().str.len_chars() > 0)
            )
        distinct = titles.get_column("title").unique().sort()
        self.boards = ScoredTexts(distinct, settings)
        pairs = titles.join(pl.DataFrame({"title": distinct, "_b": np.arange(len(distinct))}), on="title").sort("_k", "_b")
        self.pin_boards = csr_matrix(
            (np.ones(pairs.height), (pairs.get_column("_k").to_numpy(), pairs.get_column("_b").to_numpy())),
            shape=(todo.height, len(distinct)),
        )
        board_says = self.pin_boards @ self.boards.informative.astype(np.float64) > 0
        self.informative = self.own.informative[self.own_idx] | board_says
        self.by_boards_only = int((~self.own.informative[self.own_idx] & board_says).sum())
        self.board_agreement = settings.board_agreement
        self.helper_columns = ["_row", "_given", "_detected", "_confidence"]

    def decide(self, prior: LanguagePrior, min_confidence: float) -> pl.DataFrame:
        """The pins with `_detected` and `_confidence` (null where the language was given)."""
        log_prior = prior.log_vector()
        rho = self.board_agreement
        evidence = np.zeros((self.boards.n_texts, len(log_prior)), dtype=np.float64)
        if self.boards.n_texts:
            q_over_prior = np.exp(self.boards.log_posterior(np.arange(self.boards.n_texts), log_prior) - log_prior)
            evidence = np.where(self.boards.informative[:, None], np.log(1.0 - rho + rho * q_over_prior), 0.0)

        def log_posterior(rows: np.ndarray) -> np.ndarray:
            logp = self.own.log_posterior(self.own_idx[rows], log_prior) + self.pin_boards[rows] @ evidence
            return logp - _logsumexp(logp)

        codes, confidence = _decide(log_posterior, self.informative, self.own.langs, min_confidence)
        decided = pl.DataFrame(
            {"_row": self.rows, "_detected": codes, "_confidence": confidence},
            schema={"_row": pl.UInt32, "_detected": pl.Utf8, "_confidence": pl.Float64},
        )
        return self.frame.join(decided, on="_row", how="left", maintain_order="left")

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


def detect_languages(
    pins: pl.DataFrame,
    pin_boards: pl.DataFrame | None = None,
    settings: LanguageSettings | None = None,
    prior: LanguagePrior | None = None,
) -> tuple[pl.DataFrame, LanguagePrior, dict[str, Any]]:
    """Add `language` to pins (see the module docstring). Returns (pins, the prior used, stats).

    pin_boards: pin_id, boards (list of titles); None or a pin without boards reads title and
    description only. prior: None estimates it from these pins (pass 1); a shard of a build
    passes the build's (estimate_prior over the sum of every shard's PinTexts.sure_counts), so
    its answers are the whole build's.
    """
    settings = settings or LanguageSettings()
    return decide_languages(PinTexts(pins, pin_boards, settings), settings, prior)


def decide_languages(texts: PinTexts, settings: LanguageSettings, prior: LanguagePrior | None = None) -> tuple[pl.DataFrame, LanguagePrior, dict[str, Any]]:
    """`detect_languages` of pins already scored: a sharded build scores a shard's texts once, for
    its sure-language counts (pass 1), and decides them under the whole build's prior later."""
    if prior is None:
        prior = estimate_prior(texts.sure_counts(settings), settings.prior_weight)
    decided = texts.decide(prior, settings.min_confidence).with_columns(pl.coalesce("_given", "_detected", pl.lit(UND)).alias("language"))
    detected = decided.filter(pl.col("_given").is_null())
    confidence = detected.get_column("_confidence")
    stats = {
        "detector": "langdetect profiles (numpy, deterministic)",
        "given": int(decided.height - detected.height),
        "distinct_texts_detected": texts.own.n_texts,
        "distinct_board_titles": texts.boards.n_texts,
        "told_by_boards_alone": texts.by_boards_only,
        "und": int((detected.get_column("language") == UND).sum()),
        "below_min_confidence": int(((confidence < settings.min_confidence) & (confidence > 0)).sum()),
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "prior": prior.summary(),
    }
    return decided.drop(texts.helper_columns), prior, stats
