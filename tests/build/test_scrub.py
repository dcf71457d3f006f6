"""textnorm: phrase folding + PII scrubbing (queries, board titles) and free-text cleaning."""

from __future__ import annotations

import pytest

from pinfeatures.build.scrub import clean_text, normalize_phrase, scrub_pii


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Chocolate Cake", "chocolate cake"),
        ("  chocolate \t\n  cake  ", "chocolate cake"),
        ("ｃｈｏｃｏｌａｔｅ　ｃａｋｅ", "chocolate cake"),  # full-width letters and ideographic space: NFKC
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # casefold, not lower()
        ("ﬁsh ﬁllet", "fish fillet"),  # ligature: NFKC
        ("gâteau au chocolat", "gâteau au chocolat"),
        ("猫 ケーキ", "猫 ケーキ"),
        ("re\u200bd\u202e dress\x00", "red dress"),  # zero-width and bidi removed, control -> space
    ],
)
def test_normalize_phrase_folds(raw, expected):
    assert normalize_phrase(raw) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("anna@example.com", ""),
        ("ANNA.B@Example.CO.UK", ""),
        ("ａｎｎａ＠ｅｘａｍｐｌｅ．ｃｏｍ", ""),  # full-width e-mail is folded first, then scrubbed
        ("+1 (415) 555-0123", ""),
        ("415-555-0123", ""),
        ("020 7946 0958", ""),
        ("https://evil.example.com/board?x=1", ""),
        ("www.spam-shop.com/cheap", ""),
        ("spam-shop.com", ""),
        ("cake ideas from anna@example.com", "cake ideas from"),
        ("call +44 20 7946 0958 for cakes", "call for cakes"),
        ("red dress https://shop.example.com/x?y=z sale", "red dress sale"),
        ("2024 cake trends", "2024 cake trends"),  # a year is not a phone number
        ("iphone 15 case", "iphone 15 case"),
        # a bare run of 9 to 15 digits is a phone number: both ends of the range
        ("cake 612345678", "cake"),
        ("cake 612345678901234 ideas", "cake ideas"),
    ],
)
def test_normalize_phrase_scrubs_personal_data(raw, expected):
    assert normalize_phrase(raw) == expected


def test_normalize_phrase_none_and_empty():
    assert normalize_phrase(None) is None
    assert normalize_phrase("") == ""
    assert normalize_phrase("   \t ") == ""


def test_scrub_pii_replaces_with_space():
    assert scrub_pii("a anna@example.com b") == "a   b"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("<b>Bold</b> cake <script>alert('x')</script>", "Bold cake alert('x')"),
        ("<p>Tasty &amp; easy &lt;3 &#128512;</p>", "Tasty & easy <3 \U0001F600"),
        ("Control\x00chars\x07here\x1b[31m red", "Control chars here [31m red"),
        ("tab\tnew\nline\rcr", "tab new line cr"),
        ("invoice\u202egpj.exe", "invoicegpj.exe"),
        ("bidi \u2066isolate\u2069 and \u200bzero\u200bwidth \ufeffbom", "bidi isolate and zerowidth bom"),
        ("Keep Case And Script: Кошка 猫", "Keep Case And Script: Кошка 猫"),
        ("\u0645\u200c\u0646", "\u0645\u200c\u0646"),  # ZWNJ is kept (Persian needs it)
        ("a < b and c > d", "a < b and c > d"),  # not tags
        ("   ", None),
        ("<br><br/>", None),
        ("", None),
    ],
)
def test_clean_text(raw, expected):
    assert clean_text(raw, 4000) == expected


def test_clean_text_none_and_cap():
    assert clean_text(None, 10) is None
    assert clean_text("alpha beta gamma", 11) == "alpha beta"  # cut at 11 chars, trailing space stripped
    huge = "word " * 40_000  # 200 KB
    out = clean_text(huge, 4000)
    assert out is not None and len(out) <= 4000 and out.startswith("word word") and not out.endswith(" ")


def test_huge_phrases_are_capped():
    from pinfeatures.build.scrub import MAX_PHRASE_CHARS

    huge = "chocolate cake " * 200_000  # 3 MB
    out = normalize_phrase(huge)
    assert 0 < len(out) <= MAX_PHRASE_CHARS
    assert out.startswith("chocolate cake chocolate cake")
    assert not out.endswith(" ")
