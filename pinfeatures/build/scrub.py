"""Text normalisation shared by every stage.

Two kinds of text get different treatment:

* phrases typed by people, which are grouped and counted (search queries, board titles) and
  rejected records: `normalize_phrases` folds them so that variants count together and scrubs
  personal data (see PII_PATTERNS and the README's scrubbing table). The aggregate stage calls it
  once on the distinct raw queries and board titles that are not already in normal form
  (`normal_phrases`, asked of DuckDB in sql/query_norm.sql), and the pandas baseline calls the
  same function, so both sides count the same strings.
* free text shown to the model (titles, descriptions, captions): `clean_text` keeps case
  and script, removes markup and invisible characters, and caps the length.

Linear time on any input. Every step is linear in its input, and the input is bounded first:

1. Python, one call per string, C-level functions only, on a prefix of the raw text that grows
   until it yields enough (at most RAW_CAP_FACTOR x the phrase cap, see `_fold`): unescape HTML
   entities (before markup is stripped, so `&lt;script&gt;` is stripped
   too); drop format characters (category Cf: zero-width joiners, U+2060 word joiner, bidi
   controls, soft hyphen...) so they cannot split a phone number; controls become spaces;
   decimal digits of every script become ASCII; NFKC; case fold. An entity that only appears
   after NFKC (`＆lt;`) loses its `&`, so a second pass cannot decode it.
2. Rust regex (Polars, a linear-time engine, over the whole column): strip tags, `<` and `>`,
   collapse whitespace, cap at `max_chars` on a word boundary (after NFKC, which can grow one
   character 18-fold).
3. Scrub (Rust regex), repeated until nothing changes, because removing one match can join two
   halves into a new one ("4111 1111 anna@x.io 1111 1111"). Each pass only revisits the strings
   the previous pass changed; a string still changing after MAX_SCRUB_PASSES is dropped whole
   (becomes ''), so the work is bounded and the result is a fixed point: normalize_phrases is
   idempotent and never longer than max_chars.
"""

from __future__ import annotations

import html
import re
import sys
import unicodedata
from functools import lru_cache
from typing import Callable, Iterable

import polars as pl

from pinfeatures.build.unicode_tables import AGREED, TABLES
from pinfeatures.chunks import map_chunks

MAX_PHRASE_CHARS = 500
"""A query or board title longer than this (after NFKC) is cut on a word boundary: no real one is,
and a hostile one must not land whole in a pin's features."""
RAW_CAP_FACTOR = 8
"""Raw text is cut at RAW_CAP_FACTOR x max_chars before anything else: room for markup and
entities that vanish, and a bound on the work NFKC (up to 18x growth) can be asked to do."""
MAX_SCRUB_PASSES = 4

# -- personal data ----------------------------------------------------------------------------
# The patterns run on folded text: lower case, ASCII digits, single spaces, no format characters.
# Rust regex syntax (Polars): no look-around, no backreferences, so no backtracking.
_SEP = r"[ ().\-/]{0,2}"
# An ASCII word boundary: Unicode \b keeps the Rust engine off its DFA on non-ASCII text (60x slower
# on Arabic); leading boundaries before a [\w]+ run are left out (leftmost matching starts at the
# run's first character anyway), so a host like пример.com is still found.
_B = r"(?-u:\b)"
_TLDS = (
    "com|net|org|edu|gov|mil|int|info|biz|name|pro|mobi|io|co|ai|app|dev|xyz|me|tv|cc|ly|to|gg|fm|"
    "online|site|store|shop|tech|blog|club|top|live|cloud|page|link|art|design|space|website|news|"
    "email|world|life|today|win|bid|icu|vip|work|fun|uk|de|fr|es|it|nl|ru|br|in|jp|cn|au|ca|ch|se|"
    "no|dk|fi|pl|be|at|cz|pt|gr|ie|nz|mx|ar|za|kr|tr|ua|il|ir|us|eu|hk|sg|tw|my|id|th|vn|ph|ng|ke|"
    "eg|sa|ae|pk|bd|ro|hu|bg|sk|si|hr|lt|lv|ee|is|lu|cl|pe|ve|su|рф"
)
_WEBMAIL = "gmail|googlemail|yahoo|ymail|hotmail|outlook|msn|icloud|aol|proton|protonmail|gmx|yandex|zoho"



def _grouped_digits_pattern() -> str:  # pragma: no mutate block (runs at import; scripts/mutation.sh mutates it by hand)
    """Every split of 7 or 8 digits into 2-4 groups (the first of 1-4 digits, the others of 2-7),
    joined by a space or a dash; 4-2-2 and 2-2-4 only by spaces (with dashes they are dates)."""
    from itertools import product

    shapes = []
    for parts in range(2, 5):
        for sizes in product(range(1, 8), repeat=parts):
            if sum(sizes) in (7, 8) and sizes[0] <= 4 and min(sizes[1:]) >= 2:
                sep = " " if sizes in ((4, 2, 2), (2, 2, 4)) else r"[ \-]"
                shapes.append(sep.join(f"[0-9]{{{n}}}" for n in sizes))
    return r"{_B}(?:" + "|".join(shapes) + r"){_B}"


PII_PATTERNS: dict[str, str] = {
    # name@host, the host with dots or spelled ' dot ', or none (anna@localhost); spaces around @
    "email": r"[\w.+\-']+ ?@ ?[\w\-]+(?:(?:\.| dot )[\w\-]+)*",
    # name at host dot tld (spelled out: the last label must be a known top-level domain)
    "email_spelled": rf"[\w.+\-]+ at [\w\-]+(?: dot [\w\-]+)* dot (?:{_TLDS}){_B}",
    # name at gmail.com (spelled 'at', a webmail host)
    "email_webmail": rf"[\w.+\-]+ at (?:{_WEBMAIL})(?:\.| dot )[\w\-]+",
    # any scheme, defanged ones too (hxxp://, ftp://, ...)
    "url_scheme": r"{_B}[a-z][a-z0-9+.\-]{1,20}://\S*",
    "url_www": r"{_B}www\d{0,3}\.\S+",
    # host.tld with or without a path (example.com, shop.example.co.uk/x)
    "url_domain": rf"[\w\-]+(?:\.[\w\-]+)*\.(?:{_TLDS}){_B}(?:[/?#:]\S*)?",
    # any host.label followed by a path (example.xyz/path)
    "url_path": r"[\w\-]+(?:\.[\w\-]+)*\.[a-z]{2,}/\S*",
    "ipv4": r"{_B}[0-9]{1,3}(?:\.[0-9]{1,3}){3}{_B}(?::[0-9]{1,5}|/[0-9]{1,2})?",
    # full form, or any form with '::' (fe80::1, 2001:db8::8a2e:370:7334, ::1)
    "ipv6": r"{_B}[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){7}{_B}"
    r"|{_B}[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}{_B})?"
    r"|::[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}{_B}",
    # international numbers: + and at least 7 digits, up to two separators between digits
    "phone_international": rf"\+ ?\(?[0-9](?:{_SEP}[0-9]){{6,}}",
    # any 9 or more digits with up to two separators between them: phone numbers in national
    # form (07946 095811, 612 345 678), card numbers (4111 1111 1111 1111), US SSNs (123-45-6789),
    # bank account and id numbers
    "digit_sequence": rf"\(?[0-9](?:{_SEP}[0-9]){{8,}}",
    # local 7-digit numbers written 555-0123 / 555.0123
    "phone_local": r"{_B}[0-9]{3}[.\-][0-9]{4}{_B}",
    # 7 or 8 digits in groups (8123 4567, 32 12 34 56, 999 99 99): national numbers of many countries
    "phone_grouped": _grouped_digits_pattern(),
    # an area code in parentheses and the number: (020) 79460, (0123) 456 789
    "phone_area_code": r"\([0-9]{2,5}\) ?[0-9]{3,}(?:[ \-][0-9]{2,})*",
    # UK national insurance number (qq 12 34 56 c)
    "uk_nino": r"{_B}[a-z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[a-d]{_B}",
}
PII_PATTERNS = {name: pattern.replace("{_B}", _B) for name, pattern in PII_PATTERNS.items()}
"""What the scrubber removes from phrases (each match becomes a space). One test per entry."""

PII_PATTERN = "|".join(f"(?:{p})" for p in PII_PATTERNS.values())
# Obfuscated separators read as the real ones: evil[.]com, anna(at)example(dot)com.
_DOT_PATTERN = r" ?(?:\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}) ?"
_AT_PATTERN = r" ?(?:\[at\]|\(at\)|\{at\}|\[@\]|\(@\)) ?"
_ANY_SCRUB_PATTERN = f"{_DOT_PATTERN}|{_AT_PATTERN}|{PII_PATTERN}"

# -- free text ----------------------------------------------------------------------
# The pattern strings are shared with text.py, which runs them in Rust (Polars) on whole columns:
# they keep to syntax both engines read (hex escapes and literal characters, no \u escapes).
# Tags are bounded, so "a<b ... (far away) ... c>d" in prose is not eaten as one tag.
TAG_PATTERN = r"<[a-zA-Z!/?][^<>]{0,1000}>"
# C0/C1 controls become spaces; bidi overrides/isolates, zero-width space and BOM are removed
# (ZWJ/ZWNJ stay: Persian and Indic scripts need them).
CONTROL_PATTERN = r"[\x00-\x1f\x7f-\x9f]"
INVISIBLE_PATTERN = "[\u200b\u202a-\u202e\u2066-\u2069\ufeff\u2028\u2029]"
# Text that "whitespace runs to one space, then strip" leaves as it is has none of these: no run,
# no whitespace but ' ', none at either end (a cheap test, so only the others are rewritten).
UNTIDY_SPACE_PATTERN = r"\s\s|[^\S ]|^\s|\s$"
_TAG_RE = re.compile(TAG_PATTERN)
_CONTROL_RE = re.compile(CONTROL_PATTERN)
_INVISIBLE_RE = re.compile(INVISIBLE_PATTERN)
_WS_RE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str | None]:
    """str.translate table for phrases: format characters (Cf) removed, controls (Cc) and line /
    paragraph separators to a space, lone surrogates to U+FFFD, decimal digits of every script
    to ASCII (`_unicode_ranges`)."""
    ranges = _unicode_ranges()
    table: dict[int, str | None] = {}
    for kind, replacement in (("format", None), ("space", " "), ("surrogate", "\ufffd"), ("digit", "")):
        for first, last in ranges[kind]:
            for cp in range(first, last + 1):
                table[cp] = str(unicodedata.decimal(chr(cp))) if kind == "digit" else replacement
    return table


@lru_cache(maxsize=1)
def _unicode_ranges() -> dict[str, tuple[tuple[int, int], ...]]:
    """The code point ranges (first, last) `_fold_table` and `_folded_class` are made of: stored
    in pinfeatures.build.unicode_tables for this Python's Unicode version (working them out takes
    ~0.25 s, once per process: every build and every shard worker), else
    `_computed_unicode_ranges`."""
    return TABLES.get(unicodedata.unidata_version) or _computed_unicode_ranges()


def _computed_unicode_ranges() -> dict[str, tuple[tuple[int, int], ...]]:
    """`_unicode_ranges` worked out from unicodedata: format (Cf), space (Cc, Zl, Zp), surrogate
    (Cs: a lone surrogate from a JSON escape cannot be written as UTF-8), digit (Nd above ASCII),
    and folded: the non-ASCII characters c with `_fold(c) == c` (not in the table, NFKC(c) == c,
    c.casefold() == c) that cannot combine with a neighbour, so that NFKC and case folding of a
    text of them are those of its characters one by one: no combining class (nothing to reorder),
    not the second half of a canonical composition (nothing composes), no Hangul jamo (composed
    by rule, not by table); unassigned code points left out."""
    kinds: dict[str, list[int]] = {"format": [], "space": [], "surrogate": [], "digit": []}
    for cp in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(cp))
        if cat == "Cf":
            kinds["format"].append(cp)
        elif cat in ("Cc", "Zl", "Zp"):
            kinds["space"].append(cp)
        elif cat == "Cs":
            kinds["surrogate"].append(cp)
        elif cat == "Nd" and not chr(cp).isascii():
            kinds["digit"].append(cp)
    in_table = {cp for cps in kinds.values() for cp in cps}
    seconds = set()
    for cp in range(FOLDED_CLASS_LIMIT):
        decomposition = unicodedata.decomposition(chr(cp))
        if decomposition and not decomposition.startswith("<"):  # canonical
            parts = decomposition.split()
            if len(parts) == 2:
                seconds.add(int(parts[1], 16))
    # (surrogates are in the table; a conjoining jamo's name says which part of a syllable it is)
    jamo = ("HANGUL CHOSEONG", "HANGUL JUNGSEONG", "HANGUL JONGSEONG")
    kinds["folded"] = [
        cp for cp in range(FOLDED_CLASS_LIMIT)
        if not chr(cp).isascii() and cp not in in_table and cp not in seconds and not unicodedata.name(chr(cp), "").startswith(jamo)
        and unicodedata.category(chr(cp)) != "Cn" and not unicodedata.combining(chr(cp))
        and unicodedata.normalize("NFKC", chr(cp)) == chr(cp) and chr(cp).casefold() == chr(cp)
    ]
    return {kind: _ranges(cps) for kind, cps in kinds.items()}


def _ranges(codepoints: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Ascending code points as inclusive (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for cp in codepoints:
        if runs and cp == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], cp)
        else:
            runs.append((cp, cp))
    return tuple(runs)


_CUT_TAIL = "0123456789+().-/ \u1680"
# `_fold_many`'s column patterns: ASCII text without `&`; a capital or an ASCII control character
# (what lower-casing and controls-to-spaces change in it); an ASCII control character
_ASCII_BUT_AMPERSAND_PATTERN = r"^[\x00-\x25\x27-\x7f]*$"
_CAPITAL_OR_ASCII_CONTROL_PATTERN = r"[A-Z\x00-\x1f\x7f]"
_ASCII_CONTROL_PATTERN = r"[\x00-\x1f\x7f]"


def _fold(text: str, max_chars: int) -> str:
    """Step 1 of the module docstring, for one string (C-level calls only: linear).

    NFKC can grow a character 18-fold, so the work is bounded by what the output needs, not by
    the input: a prefix of 64, 256, 1024, ... raw characters (at most RAW_CAP_FACTOR x max_chars)
    is folded until it yields more than twice max_chars. When the prefix ends before the text
    does, its last word and the digits and separators before it are dropped: a cut half of a
    number or an address must not hide from the patterns."""
    raw_cap = min(len(text), RAW_CAP_FACTOR * max_chars)
    cut = 64
    while True:
        piece = text[:cut]
        if "&" in piece:
            piece = html.unescape(piece)
        folded = unicodedata.normalize("NFKC", piece.translate(_fold_table())).casefold()
        if cut >= raw_cap or len(folded) > 2 * max_chars + 1:
            break
        cut = min(4 * cut, raw_cap)
    if cut < len(text):
        words = folded.rsplit(None, 1)
        folded = (words[0] if len(words) == 2 else folded).rstrip(_CUT_TAIL)
    if "&" in folded and html.unescape(folded) != folded:  # an entity NFKC or case folding made
        folded = folded.replace("&", " ")
    return folded


FAST_FOLD_MIN_STRINGS = 20_000
"""Below this many short non-ASCII strings, `_fold_many` folds them one by one: the fast path's
character class takes ~0.5 s to build where its Unicode tables are not stored
(`_unicode_ranges`), more than folding that many strings in Python."""
AGREED_FOLD_FACTOR = 4
"""The agreed-characters path (`_fast_fold_class`) is taken for at least this many times
FAST_FOLD_MIN_STRINGS strings left after the already-folded ones when its characters must be
worked out (~0.25 s: Python folds ~60k short strings in that time); from FAST_FOLD_MIN_STRINGS
on when they are stored (`_agreed_ranges_stored`)."""


def _fold_many(raw: pl.Series, max_chars: int, fast_min_strings: int = FAST_FOLD_MIN_STRINGS) -> pl.Series:
    """`_fold` of every string, with the common cases done on the whole column in Rust (Polars).

    For text of at most 64 characters (the prefix loop's first piece: all of it, so no word is
    dropped) with no `&`, `_fold` is exactly "controls to spaces, NFKC, lower case" when
    * the text is ASCII: NFKC leaves ASCII alone, case folding an ASCII letter is lowering it,
      and there are no format characters or non-ASCII digits to map; or
    * every character is one for which Python's fold and Polars' agree (`_fast_fold_class`).
    And it is the text itself when every character is one `_fold` leaves alone and none can
    combine with its neighbour (`_folded_class`): most queries, in any script, are typed that way.
    Everything else, long text included, goes through `_fold` one string at a time, so benign
    and crafted long text cost alike (bench/bench_scrub.py). Queries are short: 99.9% of the
    benchmark's 3.9M distinct queries take a Rust path, 98% need no rewriting.
    """
    # a null string is null in these masks: `rest` leaves it out, update_where skips it
    short = raw.str.len_chars() <= 64
    ascii_only = short & raw.str.contains(_ASCII_BUT_AMPERSAND_PATTERN)
    # of those, only text with a capital or a control character changes (most queries have
    # neither: rewriting them all cost more than the test)
    changing = ascii_only & raw.str.contains(_CAPITAL_OR_ASCII_CONTROL_PATTERN)
    folded = update_where(raw, changing, lambda s: s.str.replace_all(_ASCII_CONTROL_PATTERN, " ").str.to_lowercase())
    rest = ~ascii_only & raw.is_not_null()
    if (rest & short).sum() >= fast_min_strings:  # only short text can take the other paths
        candidates = (rest & short).arg_true()
        already = raw.gather(candidates).str.contains(f"^[{_folded_class()}]*$")
        rest = rest.scatter(candidates.filter(already), False)
    if (rest & short).sum() >= (1 if _agreed_ranges_stored() else AGREED_FOLD_FACTOR) * fast_min_strings:
        agreed = rest & short & raw.str.contains(f"^[{_fast_fold_class()}]*$")
        folded = update_where(folded, agreed, lambda s: s.str.replace_all(_ASCII_CONTROL_PATTERN, " ").str.normalize("NFKC").str.to_lowercase())
        rest = rest & ~agreed
    return update_where(folded, rest, lambda s: pl.Series([_fold(v, max_chars) for v in s.to_list()]))  # never empty: strings


FOLDED_CLASS_LIMIT = 0x30000
"""`_computed_unicode_ranges` looks for folded characters below this (every script; above are
rare CJK extensions, which take the other paths): worked out in Python, 0.3 s instead of 0.5 s."""


@lru_cache(maxsize=1)
def _folded_class() -> str:
    """A regex character class of the characters a short text may hold and be its own `_fold`:
    ASCII but capitals, controls and `&`, and the folded characters of `_unicode_ranges`."""
    return _class_body(((0x20, 0x25), (0x27, 0x40), (0x5B, 0x7E)) + _unicode_ranges()["folded"])


NORMAL_EXCLUDED_CHARS = "&<>@.:+[({0123456789"
"""Left out of `normal_phrase_pattern`'s words: every personal-data pattern needs one of them
(`@`: e-mails; `.`: hosts, URLs, IPv4; `:`: schemes, IPv6; `+` and digits: numbers; `[ ( {`: the
obfuscated separators), and so do entities (`&`) and tags (`<`, `>`). The spelled-out e-mail
needs ' dot ' instead: NORMAL_EXCLUDED_WORD."""
NORMAL_EXCLUDED_WORD = " dot "


@lru_cache(maxsize=1)
def normal_phrase_pattern() -> str:
    """A full-match regex of phrases already in normal form, in syntax Rust's regex (Polars) and
    RE2 (DuckDB) read alike: words of `_folded_class` characters but NORMAL_EXCLUDED_CHARS and
    whitespace, joined by single spaces. Such a phrase (see `normal_phrases` for the rest of the
    rule) is its own fold, has no tag, entity or untidy space, and no scrub pattern can match it,
    so `normalize_phrases` gives it back as it is: most queries of a search log are typed so."""
    allowed = [cp for cp in range(0x21, 0x7F) if chr(cp) not in NORMAL_EXCLUDED_CHARS and not ("A" <= chr(cp) <= "Z")]
    folded = (cp for first, last in _unicode_ranges()["folded"] for cp in range(first, last + 1))
    allowed += [cp for cp in folded if not chr(cp).isspace()]  # U+1680 is its own fold
    word = f"[{_class_body(_ranges(allowed))}]+"
    return f"^{word}(?: {word})*$"


def normal_phrases(values: pl.Series, max_chars: int = MAX_PHRASE_CHARS) -> pl.Series:
    """True where `normalize_phrases(values, max_chars)` is sure to give the value back as it is
    (null for null): `normal_phrase_pattern`, at most max_chars characters (nothing to cut; `_fold`
    folds text that long whole, so no word is dropped), no NORMAL_EXCLUDED_WORD.
    sql/query_norm.sql asks DuckDB the same question."""
    return (
        (values.str.len_chars() <= max_chars)
        & values.str.contains(normal_phrase_pattern())
        & ~values.str.contains(NORMAL_EXCLUDED_WORD)
    )


@lru_cache(maxsize=1)
def _fast_fold_class() -> str:
    """A regex character class (ranges, no brackets) of ASCII but `&`, and `_agreed_ranges`."""
    return _class_body(((0x00, 0x25), (0x27, 0x7F)) + _agreed_ranges())


@lru_cache(maxsize=1)
def _agreed_ranges() -> tuple[tuple[int, int], ...]:
    """The non-ASCII characters Python folds (`_fold`) exactly as Polars does: stored in
    pinfeatures.build.unicode_tables for this Python's Unicode version and this Polars version,
    else `_computed_agreed_ranges` (~0.25 s)."""
    return AGREED.get(_agreed_key()) or _computed_agreed_ranges()


def _agreed_ranges_stored() -> bool:
    """Whether `_agreed_ranges` costs nothing to get (see AGREED_FOLD_FACTOR)."""
    return _agreed_key() in AGREED


def _agreed_key() -> tuple[str, str]:
    """What the agreed characters depend on: this Python's Unicode version and this Polars."""
    return unicodedata.unidata_version, pl.__version__


def _computed_agreed_ranges() -> tuple[tuple[int, int], ...]:
    """The non-ASCII characters Python folds (`_fold`: not in the translate table, NFKC, case
    fold) exactly as Polars does (NFKC, lower case), checked character by character against this
    Polars build.

    Left out besides: unassigned code points (Python's Unicode version may be older than
    Polars'), and anything whose NFKC holds a capital or final sigma (lower case maps it by
    its context, case folding does not)."""
    table = _fold_table()
    chars = [chr(cp) for cp in range(sys.maxunicode + 1) if not chr(cp).isascii() and cp not in table and unicodedata.category(chr(cp)) != "Cn"]
    nfkc = [unicodedata.normalize("NFKC", c) for c in chars]
    polars_folded = pl.Series(chars).str.normalize("NFKC").str.to_lowercase().to_list()
    # a final sigma fails the comparison on its own; a capital sigma only in a word's context
    return _ranges(ord(c) for c, n, folded in zip(chars, nfkc, polars_folded) if n.casefold() == folded and "&" not in folded and "\u03a3" not in n)


def _class_body(runs: Iterable[tuple[int, int]]) -> str:
    """The body of a regex character class (Rust and RE2 syntax) of inclusive (first, last) runs."""
    return "".join(f"\\x{{{lo:x}}}" if lo == hi else f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in runs)


def update_where(values: pl.Series, where: pl.Series, step: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """`values` with `step` applied to the non-null elements where `where` is true, and only to
    them: the costly steps run on the few strings that need them, not on the whole column.
    A new Series: `values` stays as it was (Series.scatter writes into the Series it is called on,
    so it gets a clone, which shares the data until written)."""
    index = (where.fill_null(False) & values.is_not_null()).arg_true()
    if index.len() == 0:
        return values
    return values.clone().scatter(index, step(values.gather(index)))


def _as_series(values: Iterable[str | None] | pl.Series) -> pl.Series:
    if isinstance(values, pl.Series):
        return values.cast(pl.Utf8)
    return pl.Series("text", list(values), dtype=pl.Utf8)


def _cap_words(col: pl.Expr, max_chars: int) -> pl.Expr:
    """Cut text longer than max_chars (the caller picks it) to max_chars, dropping the word the
    cut would split and the digits and separators before it (a cut half of a phone number or
    address could hide it from the patterns); a text with no space in its first max_chars is cut
    hard."""
    head = col.str.slice(0, max_chars + 1).str.replace(r"[\s0-9+().\-/]*\S*$", "").str.strip_chars()
    return pl.when(head.str.len_chars() > 0).then(head).otherwise(col.str.slice(0, max_chars).str.strip_chars())


def _scrub_pass(col: pl.Expr) -> pl.Expr:
    return (
        col.str.replace_all(_DOT_PATTERN, ".")
        .str.replace_all(_AT_PATTERN, "@")
        .str.replace_all(PII_PATTERN, " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def normalize_phrases(values: Iterable[str | None] | pl.Series, max_chars: int = MAX_PHRASE_CHARS) -> pl.Series:
    """Fold, cap and scrub many phrases at once (see the module docstring). None stays None; the
    result may be '' (nothing left after scrubbing). Same length and order as `values`.

    A long column is done in chunks on Polars' threads (pinfeatures.chunks; 2.1x on 2 cores for
    3.9M distinct queries): a string's answer depends on that string alone."""
    raw = _as_series(values)
    return map_chunks(raw, lambda chunk: _normalize_chunk(chunk, max_chars)).rename(raw.name)


def _normalize_chunk(raw: pl.Series, max_chars: int) -> pl.Series:
    """`normalize_phrases` of one chunk, in this thread."""
    # most phrases are normal already (`normal_phrases`): one regex test each, not every step
    todo = ~normal_phrases(raw, max_chars)
    return update_where(raw, todo, lambda rest: _normalize_steps(rest, max_chars))


def _normalize_steps(raw: pl.Series, max_chars: int) -> pl.Series:
    """Every step of `normalize_phrases`, on each string of `raw`."""
    current = _fold_many(raw, max_chars)
    current = update_where(current, current.str.contains("<"), lambda s: s.str.replace_all(TAG_PATTERN, " "))
    # "[<>\s]+ to one space, strip" changes only strings with one of these
    current = update_where(
        current, current.str.contains(f"[<>]|{UNTIDY_SPACE_PATTERN}"), lambda s: s.str.replace_all(r"[<>\s]+", " ").str.strip_chars()
    )
    current = update_where(
        current, current.str.len_chars() > max_chars, lambda s: pl.DataFrame({"text": s}).select(_cap_words(pl.col("text"), max_chars)).get_column("text")
    )
    text = pl.col("text")
    # a pass changes only a string some pattern matches (the rest is already single-spaced and
    # stripped), and one test for any match is a fraction of the cost of the pass's replacements
    todo = current.str.contains(_ANY_SCRUB_PATTERN).arg_true()  # a null is not true
    for _ in range(MAX_SCRUB_PASSES):
        if todo.len() == 0:
            break
        before = current.gather(todo)
        after = pl.DataFrame({"text": before}).select(_scrub_pass(text)).get_column("text")
        changed = before != after
        current = current.scatter(todo.filter(changed), after.filter(changed))
        todo = todo.filter(changed)
    if todo.len():  # still changing after the last pass: no fixed point in reach, keep nothing
        current = current.scatter(todo, "")
    return current.rename(raw.name)


@lru_cache(maxsize=1 << 16)
def normalize_phrase(text: str | None, max_chars: int = MAX_PHRASE_CHARS) -> str | None:
    """`normalize_phrases` of one string (for a few values; use the vectorised form for columns)."""
    if text is None:
        return None
    return normalize_phrases([text], max_chars)[0]


MAX_CLEAN_PASSES = 4
"""clean_text repeats its pass until nothing changes (`&amp;lt;` -> `&lt;` -> `<`); a text still
changing after this many passes (entities nested deeper, built to wear the cleaner down) is dropped
(None), so the work is bounded and the result is a fixed point: cleaning is idempotent."""


def _clean_pass(text: str) -> str:
    if "&" in text:
        text = html.unescape(text)
    text = _TAG_RE.sub(" ", text)
    text = _CONTROL_RE.sub(" ", _INVISIBLE_RE.sub("", text))
    return _WS_RE.sub(" ", text).strip()


def clean_text(text: str | None, max_chars: int) -> str | None:
    """Unescape entities, then strip HTML tags (so `&lt;b&gt;` goes too), drop control/invisible
    characters, collapse whitespace; repeat until nothing changes (at most MAX_CLEAN_PASSES passes,
    else None); cap length.

    A pass whose result has no `&` and no `<` left is the last: nothing a further pass could
    decode or strip. Returns None for None or for text that is empty after cleaning.
    Reference implementation: `text.normalise_pins` does the same on whole columns with Polars.
    """
    if text is None:
        return None
    for _ in range(MAX_CLEAN_PASSES):
        cleaned = _clean_pass(text)
        settled = cleaned == text or ("&" not in cleaned and "<" not in cleaned)
        text = cleaned
        if settled:
            break
    else:
        return None  # still changing: no fixed point in reach, keep nothing
    text = text[:max_chars].rstrip()  # the whole text when it is short enough (stripped already)
    return text or None
