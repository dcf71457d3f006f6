"""text.normalise_pins (Polars, whole columns) must agree with textnorm.clean_text (reference) on hostile text."""

from __future__ import annotations

import polars as pl
import pytest

from pinfeatures.build.scrub import clean_text
from pinfeatures.build.text import normalise_pins

HOSTILE = [
    None,
    "",
    "   ",
    "Plain good pin",
    "<b>Bold</b> cake <script>alert('x')</script>",
    "<p>Tasty &amp; easy &lt;3 &#128512; &nbsp;</p>",
    "&lt;b&gt;escaped tag&lt;/b&gt;",  # unescaped before tag stripping: the tags go in both
    "&amp;amp; double &bogus; entity &#0; &#x110000;",
    "Control\x00chars\x07here\x1b[31m red\x7f\x85\x9f",
    "tab\tnew\nline\rcr\x0bvt\x0cff",
    "invoice\u202egpj.exe",
    "bidi \u2066isolate\u2069 and \u200bzero\u200bwidth \ufeffbom \u2028ls\u2029ps",
    "Z\u0337\u0322\u031b\u031ba\u0336\u0321\u034e\u035dlgo text",
    "\u00a0nbsp\u00a0and\u3000ideographic\u2003em space\u00a0",
    "مرحبا بكم في \u200fعالم الكعك",
    "हिन्दी व्यंजन विधि",
    "猫のケーキ　レシピ",
    "🎂🍰🎉 emoji only",
    "a < b and c > d",
    "if a<b then " + "x" * 2000 + " c>d",  # a '<' ... '>' span longer than a tag can be
    "<a href='" + "y" * 999 + "'>link</a>",
    "<" * 50 + "b" + ">" * 50,
    "unclosed <div class='x' text",
    "word " * 40_000,  # 200 KB
    "x" * 5000,
]


@pytest.mark.parametrize("max_chars", [4000, 12])
def test_normalise_pins_matches_clean_text(max_chars):
    pins = pl.DataFrame({"pin_id": [str(i) for i in range(len(HOSTILE))], "title": HOSTILE, "description": list(reversed(HOSTILE))})
    out = normalise_pins(pins, max_chars)
    assert out.get_column("pin_id").to_list() == pins.get_column("pin_id").to_list()
    for col in ("title", "description"):
        got = out.get_column(col).to_list()
        want = [clean_text(v, max_chars) for v in pins.get_column(col).to_list()]
        mismatches = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
        assert not mismatches, mismatches[:3]


def test_normalise_pins_values():
    pins = pl.DataFrame(
        {
            "pin_id": ["a", "b", "c"],
            "title": ["<b>Cake</b> &amp; tea", "  \u200b ", "x" * 200_000],
            "description": ["line\none\x00two", None, "ok"],
            "caption": ["<i>a cat</i>", None, "  "],
            "link": ["<keep>", None, None],
        }
    )
    out = normalise_pins(pins, 4000)
    assert out.get_column("title").to_list()[:2] == ["Cake & tea", None]
    assert len(out.get_column("title")[2]) == 4000
    assert out.get_column("description").to_list() == ["line one two", None, "ok"]
    assert out.get_column("caption").to_list() == ["a cat", None, None]
    assert out.get_column("link").to_list() == ["<keep>", None, None]  # other columns untouched
    assert out.columns == pins.columns
    assert normalise_pins(pins).equals(out)  # 4000 characters is the default cap


def test_normalise_pins_without_description_column_and_empty_frame():
    out = normalise_pins(pl.DataFrame({"pin_id": ["a"], "title": ["<p>x</p>"]}), 10)
    assert out.to_dicts() == [{"pin_id": "a", "title": "x"}]
    empty = pl.DataFrame(schema={"pin_id": pl.Utf8, "title": pl.Utf8, "description": pl.Utf8})
    assert normalise_pins(empty).height == 0


def test_entity_encoded_markup_never_comes_out_as_markup():
    """Entities are unescaped before tags are stripped: `&lt;script&gt;` is a tag, not text."""
    raw = "&lt;script&gt;alert(1)&lt;/script&gt; cake &lt;3"
    assert clean_text(raw, 4000) == "alert(1) cake <3"
    got = normalise_pins(pl.DataFrame({"pin_id": ["p"], "title": [raw], "description": ["&lt;b&gt;bold&lt;/b&gt;"]}))
    assert got.row(0) == ("p", "alert(1) cake <3", "bold")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("&amp;lt;b&amp;gt;cake", "cake"),  # double-escaped markup: decoded until stable, then stripped
        ("&amp;lt;3 tea", "<3 tea"),
        ("<<b>b>tea", "< b>tea"),  # a stripped tag becomes a space: no second tag to join
        ("<\u200bb>tea", "tea"),  # removing the invisible joins a tag
        ("&l\u200bt;3 tea", "<3 tea"),  # ... or an entity
        ("tom & jerry < 3", "tom & jerry < 3"),  # a bare & and < stay
        ("&amp;amp;lt;", "<"),  # three decodings, settled by the fourth pass
        ("&amp;amp;amp;lt;", None),  # still changing after MAX_CLEAN_PASSES: dropped
        ("x &amp;amp;amp;amp;lt; y", None),
    ],
)
def test_cleaning_repeats_until_stable(raw, want):
    assert clean_text(raw, 4000) == want
    got = normalise_pins(pl.DataFrame({"pin_id": ["p", "q"], "title": [raw, "&amp;lt;i&amp;gt;ok"]}))
    assert got.get_column("title").to_list() == [want, "ok"]


def test_a_tag_made_by_removing_an_invisible_character_is_stripped_in_a_second_pass():
    # '<' ZWSP 'b>' is no tag until the ZWSP goes; the next pass strips it. With no '&' in the
    # column the column cleaner once compared each pass's output with its own (written-into) input,
    # saw no change, and kept '<b>'.
    for values in (["<\u200bb>x y", "plain"], ["<\u200bb>x y", "a &amp; b"]):
        pins = pl.DataFrame({"pin_id": ["1", "2"], "title": values})
        assert normalise_pins(pins).get_column("title").to_list() == ["x y", values[1].replace("&amp;", "&")]
        assert [clean_text(v, 4000) for v in values] == ["x y", values[1].replace("&amp;", "&")]
