"""Text normalisation shared by every stage.

Two kinds of text get different treatment:

* phrases typed by people, which are grouped and counted (search queries, board titles):
  `normalize_phrase` folds them so that variants count together (markup stripped, entities
  unescaped, Unicode NFKC, case fold, whitespace collapsed) and scrubs personal data (e-mail addresses, phone numbers, URLs).
  DuckDB calls it as a UDF on DISTINCT values (see sql/), and the pandas baseline calls
  the same function, so both sides count the same strings.
* free text shown to the model (titles, descriptions, captions): `clean_text` keeps case
  and script, removes markup and invisible characters, and caps the length.
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

# -- personal data ------------------------------------------------------------------
# Patterns run after NFKC + casefold, so full-width forms (＠, ０-９) are already ASCII.
EMAIL_RE = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]{2,}")
URL_RE = re.compile(
    r"(?:(?:https?|ftp)://|www\.)\S+"
    r"|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|edu|gov|io|co|uk|de|fr|es|it|jp|ru|br|in|info|biz|me|ly|app|shop)\b(?:/\S*)?",
    re.ASCII,
)
# International numbers with a +, North-American style groups, and long digit runs.
PHONE_RE = re.compile(
    r"\+[0-9][0-9 ().-]{6,}[0-9]"
    r"|\(?\b[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4}\b"
    r"|\b[0-9]{3,4}[ .-][0-9]{3,4}[ .-][0-9]{3,4}\b"
    r"|\b[0-9]{9,15}\b"
)
_WS_RE = re.compile(r"\s+")
MAX_PHRASE_CHARS = 500
"""A query or board title longer than this is cut: no real one is, and a hostile one must not cost
regex time in scrubbing or land whole in a pin's features."""

# -- free text ----------------------------------------------------------------------
# The pattern strings are shared with text.py, which runs them in Rust (Polars) on whole columns:
# they keep to syntax both engines read (hex escapes and literal characters, no \u escapes).
# Tags are bounded, so "a<b ... (far away) ... c>d" in prose is not eaten as one tag.
TAG_PATTERN = r"<[a-zA-Z!/?][^<>]{0,1000}>"
# C0/C1 controls become spaces; bidi overrides/isolates, zero-width space and BOM are removed
# (ZWJ/ZWNJ stay: Persian and Indic scripts need them).
CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f]"
INVISIBLE_PATTERN = "[\u200b\u202a-\u202e\u2066-\u2069\ufeff\u2028\u2029]"
_TAG_RE = re.compile(TAG_PATTERN)
_CONTROL_RE = re.compile(CONTROL_PATTERN)
_INVISIBLE_RE = re.compile(INVISIBLE_PATTERN)


def scrub_pii(text: str) -> str:
    """Replace e-mail addresses, URLs and phone numbers by a space (input: NFKC-folded text)."""
    text = EMAIL_RE.sub(" ", text)
    text = URL_RE.sub(" ", text)
    return PHONE_RE.sub(" ", text)


@lru_cache(maxsize=1 << 16)
def normalize_phrase(text: str | None) -> str | None:
    """Strip markup, NFKC, case fold, scrub personal data, collapse whitespace. None stays None; may return ''."""
    if text is None:
        return None
    text = text[: 4 * MAX_PHRASE_CHARS]  # bound the work before markup and NFKC (which may grow it)
    text = _TAG_RE.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _CONTROL_RE.sub(" ", _INVISIBLE_RE.sub("", folded))
    return _WS_RE.sub(" ", scrub_pii(folded)).strip()[:MAX_PHRASE_CHARS].rstrip()


def clean_text(text: str | None, max_chars: int) -> str | None:
    """Strip HTML tags, unescape entities, drop control/invisible characters, collapse whitespace, cap length.

    Returns None for None or for text that is empty after cleaning.
    Reference implementation: `text.normalise_pins` does the same on whole columns with Polars.
    """
    if text is None:
        return None
    text = _TAG_RE.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    text = _CONTROL_RE.sub(" ", _INVISIBLE_RE.sub("", text))
    text = _WS_RE.sub(" ", text).strip()
    if len(text) > max_chars:
        text = text[:max_chars].rstrip()
    return text or None
