"""Fast, deterministic evaluation of langdetect's own language model.

In:  texts (str; None counts as empty).
Out: one language code per text from langdetect's 55 profiles ('und' when the text has no n-gram
     that langdetect knows), plus a confidence margin.

Why: langdetect (seeded) costs ~250-600 texts/s per core because Detector._detect_block samples
n-grams at random in a pure-Python loop (7 trials, up to 1000 draws each, 55 languages per draw).
The model underneath is naive Bayes: each trial multiplies, for sampled n-grams g,
    p(lang) *= p(g | lang) + alpha / BASE_FREQ        (alpha ~ 0.5, BASE_FREQ = 10000)
until one language holds > 0.99999. The deterministic answer of that model is the argmax over
languages of
    score(lang) = sum over the text's known 1..3-grams g of log(p(g | lang) + 0.5 / 10000)
which is what this module computes, vectorised with numpy. langdetect's random trials agree with
it except on texts where two languages are close; `detect_hybrid` sends exactly those (small
margin) to the real seeded langdetect. The build uses `scores` (pinfeatures.build.language turns
them into a posterior under the build's prior); `detect_hybrid` on a pin's title and description
was the build's detector before that, and bench/bench_language.py keeps it as the baseline.

Exactness of the features: the text goes through the same steps as Detector.append,
Detector.cleaning_text, NGram.normalize and Detector._extract_ngrams:
  * URL and e-mail stripping (the same regexes), Vietnamese diacritic normalisation (NGram.normalize_vi),
    the 10000-character cap;
  * Latin letters dropped when the text is mostly non-Latin (cleaning_text's rule, bug-compatible:
    its block test compares an int with a str, so every char >= U+0300 counts as non-Latin);
  * NGram.normalize per character, as one str.translate table built by calling NGram.normalize on
    every BMP code point (blocks outside the BMP are never changed by it);
  * the n-gram buffer: each space-separated word w yields the 1..3-grams of ' ' + w (+ ' ' unless
    the word ends the text), minus ' ' itself, and no n-grams at a character that is upper case and
    follows an upper-case character (NGram.capitalword).
Words repeat a lot across texts, so each distinct word's 55 scores are computed once and cached.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Sequence

import numpy as np

UND = "und"

# langdetect's Detector constants (detector.py); the smoothing weight is ALPHA_DEFAULT / BASE_FREQ.
_ALPHA = 0.5
_BASE_FREQ = 10000
_MAX_TEXT_LENGTH = 10000
# A distinct-word cache of (max words x 55) float64 = 44 MB at most; cleared (not grown) past this.
_WORD_CACHE_MAX = 100_000

# Default fallback threshold (natural-log margin between the best and second-best language),
# measured with bench/bench_language.py; see docs/langid.md.
DEFAULT_MIN_MARGIN = 2.0

_LOCK = threading.Lock()
_MODEL: "_Model | None" = None


class _Model:
    """langdetect's profiles as arrays, the normalisation table and the per-word score cache."""

    def __init__(self) -> None:
        from langdetect.detector_factory import PROFILES_DIRECTORY
        from langdetect.utils.ngram import NGram

        # Same parsing as DetectorFactory.load_profile/add_profile: p = freq / n_words[len - 1].
        # Files are read in sorted order (langdetect uses os.listdir order) so ties break the same way everywhere.
        names = sorted(f for f in os.listdir(PROFILES_DIRECTORY) if not f.startswith("."))
        langs: list[str] = []
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for j, fname in enumerate(names):
            with open(os.path.join(PROFILES_DIRECTORY, fname), encoding="utf-8") as fh:
                prof = json.load(fh)
            langs.append(prof["name"])
            n_words = prof["n_words"]
            for gram, count in prof["freq"].items():
                n = len(gram)
                if not 1 <= n <= 3:
                    continue
                r = vocab.setdefault(gram, len(vocab))
                rows.append(r)
                cols.append(j)
                vals.append(count / n_words[n - 1])
        prob = np.zeros((len(vocab), len(langs)), dtype=np.float64)
        prob[np.asarray(rows), np.asarray(cols)] = np.asarray(vals)
        self.langs: list[str] = langs
        self.langs_arr = np.asarray(langs + [UND], dtype=object)
        self.vocab = vocab
        # float32 halves the memory (87k x 55); sums are accumulated in float64.
        self.logp = np.log(prob + _ALPHA / _BASE_FREQ).astype(np.float32)

        # NGram.normalize over the BMP, as a translate table holding only the characters it changes.
        table: dict[int, str] = {}
        for cp in range(0x10000):
            if 0xD800 <= cp <= 0xDFFF:
                continue
            ch = chr(cp)
            out = NGram.normalize(ch)
            if out != ch:
                table[cp] = out
        self.table = table
        # the same map as a code point lookup table, for whole batches at once
        lut = np.arange(0x110000, dtype=np.uint32)
        for cp, out in table.items():
            lut[cp] = ord(out)
        lut[0] = 0  # NUL separates texts in a batch (_batch_tokens replaced NULs inside texts by spaces)
        self.lut = lut

        self.n_langs = len(langs)
        self._reset_cache()

    def _reset_cache(self) -> None:
        # Reserved tokens: '' (between two spaces) and '\x01' (an empty last word) score nothing;
        # '\x02' marks the end of a text (see _batch_tokens) and scores nothing either.
        self.word_id: dict[str, int] = {"": 0, "\x01": 0, "\x02": 1}
        self.word_scores = np.zeros((1024, self.n_langs), dtype=np.float64)
        self.word_counts = np.zeros(1024, dtype=np.int64)
        self.n_words = 2

    def word_ids(self, tokens: list[str]) -> np.ndarray:
        """Cache ids of tokens (a word followed by a space, or a text's last word + '\x01'), scoring new ones."""
        ids = list(map(self.word_id.get, tokens))
        if None in ids:
            new = [t for t in dict.fromkeys(tokens) if t not in self.word_id]
            if self.n_words + len(new) > _WORD_CACHE_MAX:
                self._reset_cache()  # bounded memory; scores do not depend on what was cached
                new = [t for t in dict.fromkeys(tokens) if t not in self.word_id]
            self._add_words(new)
            ids = list(map(self.word_id.__getitem__, tokens))
        return np.array(ids, dtype=np.int64)

    def _add_words(self, words: list[str]) -> None:
        vocab_get = self.vocab.get
        rows: list[int] = []
        counts = np.zeros(len(words), dtype=np.int64)
        for k, w in enumerate(words):
            before = len(rows)
            # the n-gram buffer starts each word after a space; a word followed by a space also
            # yields its trailing grams ('e ', 'ke '), the text's last word (marked '\x01') does not
            s = " " + w[:-1] if w.endswith("\x01") else " " + w + " "
            prev_upper = False  # the leading ' ' is not upper case
            for i in range(1, len(s)):
                up = s[i].isupper()
                if up and prev_upper:  # NGram.capitalword: skip this position
                    continue
                prev_upper = up
                # the 1-gram ' ' (a word's trailing space) is never used (_extract_ngrams: w != ' ')
                for g in (s[i] if s[i] != " " else None, s[i - 1 : i + 1], s[i - 2 : i + 1] if i >= 2 else None):
                    if g is not None:
                        r = vocab_get(g)
                        if r is not None:
                            rows.append(r)
            counts[k] = len(rows) - before
        scores = np.zeros((len(words), self.n_langs), dtype=np.float64)
        has = counts > 0
        if rows:
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[has]
            scores[has] = np.add.reduceat(self.logp[np.asarray(rows, dtype=np.int64)], starts, axis=0, dtype=np.float64)
        first = self.n_words
        need = first + len(words)
        if need > len(self.word_counts):
            cap = max(need, 2 * len(self.word_counts))
            grown = np.zeros((cap, self.n_langs), dtype=np.float64)
            grown[:first] = self.word_scores[:first]
            self.word_scores = grown
            gc = np.zeros(cap, dtype=np.int64)
            gc[:first] = self.word_counts[:first]
            self.word_counts = gc
        self.word_scores[first:need] = scores
        self.word_counts[first:need] = counts
        for k, w in enumerate(words):
            self.word_id[w] = first + k
        self.n_words = need


def _model() -> _Model:
    """The process-wide model (built once: ~1 s)."""
    global _MODEL
    if _MODEL is None:
        with _LOCK:
            if _MODEL is None:
                _MODEL = _Model()
    return _MODEL


# Detector.URL_RE / MAIL_RE, verbatim.
_URL_RE = re.compile(r"https?://[-_.?&~;+=/#0-9A-Za-z]{1,2076}")
_MAIL_RE = re.compile(r"[-_.0-9A-Za-z]{1,64}@[-_0-9A-Za-z]{1,255}[-_.0-9A-Za-z]{1,255}")


def _batch_tokens(texts: Sequence[str], m: _Model) -> list[str]:
    """The normalised words of all texts as langdetect's n-gram buffer sees them, each text ending in '\x02'.

    The batch is processed as one string joined by NUL: none of langdetect's regexes (URL, mail,
    Vietnamese) can match across a NUL, so joining changes nothing, and NUL in a text (which
    NGram.normalize turns into a space, like every other Basic Latin non-letter) is made a space first.
    """
    from langdetect.utils.ngram import NGram

    joined = "\x00".join(texts) + "\x00"
    if any("\x00" in t for t in texts):
        joined = "\x00".join(t.replace("\x00", " ") for t in texts) + "\x00"
    if "://" in joined:
        joined = _URL_RE.sub(" ", joined)
    if "@" in joined:
        joined = _MAIL_RE.sub(" ", joined)
    joined = NGram.normalize_vi(joined)
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    sep = cps == 0
    text_of = np.cumsum(sep) - sep  # index of the text each code point belongs to
    n = len(texts)
    if max(map(len, texts), default=0) > _MAX_TEXT_LENGTH:
        # Detector.append reads at most max_text_length characters (after the URL/mail/vi steps)
        starts = np.concatenate(([0], np.flatnonzero(sep)[:-1] + 1))
        pos = np.arange(len(cps)) - starts[text_of]
        keep = sep | (pos < _MAX_TEXT_LENGTH)
        cps, sep, text_of = cps[keep], sep[keep], text_of[keep]
    # Detector.cleaning_text: drop 'A'..'z' when Latin letters are fewer than half the chars >= U+0300
    latin = (cps >= 0x41) & (cps <= 0x7A)
    non_latin = cps >= 0x300
    if non_latin.any():
        n_latin = np.bincount(text_of[latin], minlength=n)
        n_non = np.bincount(text_of[non_latin], minlength=n)
        strip = n_latin * 2 < n_non
        if strip.any():
            cps = cps[~(latin & strip[text_of])]
    normalised = m.lut[cps].tobytes().decode("utf-32-le", "surrogatepass")
    # NGram.normalize never yields \x00-\x02, so they can mark a text's last word and its end
    return normalised.replace("\x00", "\x01 \x02 ").split(" ")


def scores(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(n_texts x 55) float64 log-scores and the number of known n-grams per text (0: undetectable).

    Column j is language `languages()[j]`. None counts as an empty text.
    """
    m = _model()
    n = len(texts)
    out = np.zeros((n, m.n_langs), dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    if n == 0:
        return out, counts
    ids = m.word_ids(_batch_tokens([t or "" for t in texts], m))
    ends = np.flatnonzero(ids == 1)  # one '\x02' after each text
    starts = np.concatenate(([0], ends[:-1] + 1))
    counts[:] = np.add.reduceat(m.word_counts[ids], starts)
    try:
        from scipy.sparse import csr_matrix
    except ImportError:  # scipy is optional: gather the word rows and sum them per text (~8x slower)
        out[:] = np.add.reduceat(m.word_scores[ids], starts, axis=0)
    else:
        # texts x words occurrence matrix times the word scores: each text's row is summed on its own,
        # in token order, so a text's scores do not depend on the batch it is in
        occ = csr_matrix(
            (np.ones(len(ids)), ids, np.concatenate(([0], ends + 1))), shape=(n, m.n_words)
        )
        out[:] = occ @ m.word_scores[: m.n_words]
    return out, counts


def languages() -> list[str]:
    """langdetect's language codes, in the column order of `scores`."""
    return list(_model().langs)


def detect_fast(texts: Sequence[str | None], *, batch_size: int = 4096) -> tuple[list[str], np.ndarray]:
    """Language code per text and its margin.

    In:  texts (str or None).
    Out: (codes, margins). codes: langdetect codes ('en', 'zh-cn', ...), 'und' where the text has
         no n-gram langdetect knows (empty, digits, symbols, emoji). margins: float64, the natural-log
         score of the best language minus the second best (0.0 for 'und'); larger is surer.
    Deterministic and batch-independent: a text's answer does not depend on the other texts.
    """
    if isinstance(texts, str):
        raise TypeError("detect_fast expects a sequence of texts, not one str")
    m = _model()
    codes: list[str] = []
    margins = np.zeros(len(texts), dtype=np.float64)
    for lo in range(0, len(texts), batch_size):
        chunk = texts[lo : lo + batch_size]
        for t in chunk:
            if t is not None and not isinstance(t, str):
                raise TypeError(f"detect_fast: texts must be str or None, got {type(t).__name__}")
        sc, cnt = scores(chunk)
        top2 = np.partition(sc, -2, axis=1)[:, -2:] if len(chunk) else np.zeros((0, 2))
        best = np.argmax(sc, axis=1)
        marg = top2[:, 1] - top2[:, 0]
        und = cnt == 0
        best[und] = m.n_langs  # -> UND
        marg[und] = 0.0
        codes.extend(m.langs_arr[best].tolist())
        margins[lo : lo + len(chunk)] = marg
    return codes, margins


def detect_langdetect(texts: Sequence[str | None], *, seed: int = 0) -> list[str]:
    """Plain seeded langdetect per text ('und' where it cannot tell): the reference the bench compares with."""
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = seed
    out = []
    for t in texts:
        try:
            code = detect(t or "")
        except LangDetectException:
            code = UND
        out.append(UND if code == "unknown" else code)
    return out


def detect_hybrid(
    texts: Sequence[str | None], *, seed: int = 0, min_margin: float = DEFAULT_MIN_MARGIN
) -> list[str]:
    """Language per text: `detect_fast`'s answer, or seeded langdetect's where the margin < min_margin.

    In:  texts; seed for langdetect (DetectorFactory.seed); min_margin in natural-log units
         (0 never falls back, inf always does).
    Out: one code per text ('und' where neither can tell). Deterministic for a given seed.
    """
    codes, margins = detect_fast(texts)
    ask = [i for i, (c, mg) in enumerate(zip(codes, margins)) if c != UND and mg < min_margin]
    if ask:
        answers = detect_langdetect([texts[i] for i in ask], seed=seed)
        for i, code in zip(ask, answers):
            codes[i] = code
    return codes
