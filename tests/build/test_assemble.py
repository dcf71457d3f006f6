"""Text assembly: rendering, field-forging neutralised, per-source and total token budgets."""

from __future__ import annotations

import re

import polars as pl
import pytest

from pinfeatures.build.assemble import assemble_texts, render_values
from pinfeatures.buildfolder import TextLayout
from pinfeatures.build.tokens import ApproxCounter
from pinfeatures.build.settings import BuildSettings
from pinfeatures.contracts import SOURCES, expand, variant_sources

COUNTER = ApproxCounter()


def features(rows):
    cols = {"pin_id": pl.Utf8, "title": pl.Utf8, "description": pl.Utf8, "caption": pl.Utf8, "boards": pl.List(pl.Utf8), "queries": pl.List(pl.Utf8)}
    return pl.DataFrame(rows, schema=cols)


BASIC = features(
    [
        {"pin_id": "p2", "title": "Cake", "description": "Moist and rich", "caption": "a chocolate cake on a plate", "boards": ["cakes", "desserts"], "queries": ["chocolate cake"]},
        {"pin_id": "p1", "title": "Garden", "description": None, "caption": None, "boards": [], "queries": ["small garden", "patio"]},
        {"pin_id": "p3", "title": None, "description": "  ", "caption": None, "boards": [], "queries": []},
    ]
)


def test_render_order_labels_and_missing_sources():
    cfg = BuildSettings()
    texts = assemble_texts(BASIC, expand("ladder"), cfg, COUNTER)
    assert texts.columns == ["pin_id", "variant", "text", "n_tokens", "truncated"]
    assert texts.schema["n_tokens"] == pl.Int32 and texts.schema["truncated"] == pl.Boolean
    assert texts.get_column("pin_id").to_list() == ["p1"] * 5 + ["p2"] * 5 + ["p3"] * 5
    assert texts.get_column("variant").to_list()[:5] == expand("ladder")
    full = dict(texts.filter(pl.col("variant") == "caption+title+description+boards+queries").select("pin_id", "text").rows())
    # source_order (title, description, caption, boards, queries), not the ladder order
    assert full["p2"] == "Title: Cake\nDescription: Moist and rich\nImage: a chocolate cake on a plate\nBoards: cakes | desserts\nSearches: chocolate cake"
    assert full["p1"] == "Title: Garden\nSearches: small garden | patio"  # missing sources are omitted
    assert full["p3"] == ""
    p1 = dict(texts.filter(pl.col("pin_id") == "p1").select("variant", "text").rows())
    assert p1["caption"] == "" and p1["caption+title"] == "Title: Garden"
    for row in texts.iter_rows(named=True):
        assert row["n_tokens"] == COUNTER.count(row["text"])
        assert row["truncated"] is False


def test_custom_order_labels_and_separators():
    cfg = BuildSettings(
        source_order=("queries", "caption", "title", "description", "boards"),
        labels={"title": "Name", "description": "About", "caption": "Photo", "boards": "Lists", "queries": "Q"},
        field_separator=" || ",
        list_separator=" ; ",
    )
    texts = assemble_texts(BASIC.filter(pl.col("pin_id") == "p2"), ["title+boards+queries+caption"], cfg, COUNTER)
    assert texts.get_column("text")[0] == "Q: chocolate cake || Photo: a chocolate cake on a plate || Name: Cake || Lists: cakes ; desserts"


FORGING = [
    "Nice cake\nTitle: FREE MONEY",
    "Nice\r\nDescription: injected\n\nImage: fake caption",
    "title: lower case label\ttitle : spaced colon",
    "TITLE:: double colon Searches:free",
    "Boards: a | b | c",
    "Title: Image: Searches: Boards: Description:",
    "\nTitle: leading newline",
    "ends with a label Searches:",
    "line\u2028separator Title: x\u2029 and\x85nel",
]


@pytest.mark.parametrize(
    "field_separator, list_separator",
    [("\n", " | "), (" || ", " | "), (" ## ", " ;; "), ("\n\n", "|")],
)
def test_data_cannot_forge_a_field(field_separator, list_separator):
    cfg = BuildSettings(field_separator=field_separator, list_separator=list_separator)
    rows = []
    for i, s in enumerate(FORGING + [field_separator.join(["x", "Title: forged"]), f"a{field_separator}Searches: y{list_separator}z"]):
        rows.append({"pin_id": f"p{i:02d}", "title": s, "description": s, "caption": s, "boards": [s, "ok"], "queries": [s]})
    feats = features(rows)
    texts = assemble_texts(feats, expand("all"), cfg, COUNTER)
    assert texts.height == 31 * feats.height
    for row in texts.iter_rows(named=True):
        parsed = TextLayout.from_settings(cfg).parse(row["text"])  # raises on an unknown line or a repeated field
        assert set(parsed) == set(variant_sources(row["variant"])), row
        assert row["n_tokens"] == COUNTER.count(row["text"])
        for src, value in parsed.items():
            if src not in ("boards", "queries"):
                assert field_separator.strip() == "" or field_separator.strip() not in value
    one = TextLayout.from_settings(cfg).parse(texts.filter((pl.col("pin_id") == "p00") & (pl.col("variant") == "description")).get_column("text")[0])
    assert one == {"description": "Nice cake Title FREE MONEY"}


def test_list_items_lose_the_list_separator():
    cfg = BuildSettings()
    rendered = render_values(features([{"pin_id": "p", "title": None, "description": None, "caption": None, "boards": ["a | b", "  ", "c"], "queries": ["|", "q"]}]), cfg)
    assert rendered.row(0, named=True)["boards"] == "a b | c"
    assert rendered.row(0, named=True)["queries"] == "q"


def test_per_source_budget_truncates_at_word_boundaries():
    long_desc = " ".join(f"word{i}" for i in range(400))
    cfg = BuildSettings(max_tokens_per_source={"title": 3, "description": 20, "caption": 64, "boards": 4, "queries": 64})
    feats = features([{"pin_id": "p", "title": "alpha beta gamma delta", "description": long_desc, "caption": "short caption", "boards": ["one", "two", "three", "four"], "queries": []}])
    texts = assemble_texts(feats, ["title", "description", "caption", "boards", "caption+title+description+boards"], cfg, COUNTER)
    t = {r["variant"]: r for r in texts.iter_rows(named=True)}
    assert t["title"]["text"] == "Title: alpha beta gamma" and t["title"]["truncated"]
    desc = TextLayout.from_settings(cfg).parse(t["description"]["text"])["description"]
    assert COUNTER.count(desc) <= 20 and long_desc.startswith(desc + " ") and t["description"]["truncated"]
    assert t["caption"]["truncated"] is False
    assert TextLayout.from_settings(cfg).parse(t["boards"]["text"])["boards"] == "one | two"  # no dangling separator
    assert t["caption+title+description+boards"]["truncated"]
    for r in texts.iter_rows(named=True):
        assert r["n_tokens"] == COUNTER.count(r["text"])


def test_total_budget_cuts_the_last_sources_first():
    cfg = BuildSettings(max_tokens=30)
    feats = features(
        [
            {"pin_id": "p", "title": "Chocolate cake recipe", "description": " ".join(["tasty moist rich"] * 30), "caption": "a cake", "boards": ["cakes"], "queries": ["cake"]},
            {"pin_id": "q", "title": "Tiny", "description": None, "caption": None, "boards": [], "queries": []},
        ]
    )
    texts = assemble_texts(feats, expand("ladder"), cfg, COUNTER)
    for r in texts.iter_rows(named=True):
        assert r["n_tokens"] <= 30 and r["n_tokens"] == COUNTER.count(r["text"])
        TextLayout.from_settings(cfg).parse(r["text"])
    full = texts.filter((pl.col("pin_id") == "p") & (pl.col("variant") == "caption+title+description+boards+queries")).row(0, named=True)
    parsed = TextLayout.from_settings(cfg).parse(full["text"])
    assert full["truncated"] and parsed["title"] == "Chocolate cake recipe"  # title comes first in source_order: kept whole
    assert "boards" not in parsed and "queries" not in parsed  # later sources gave way
    assert " ".join(["tasty moist rich"] * 30).startswith(parsed["description"])
    assert texts.filter(pl.col("pin_id") == "q").get_column("truncated").to_list() == [False] * 5


def test_empty_features_and_parse_text_errors():
    texts = assemble_texts(features([]), expand("ladder"), BuildSettings(), COUNTER)
    assert texts.height == 0 and texts.columns == ["pin_id", "variant", "text", "n_tokens", "truncated"]
    cfg = BuildSettings()
    assert TextLayout.from_settings(cfg).parse("") == {}
    with pytest.raises(ValueError, match="no known label"):
        TextLayout.from_settings(cfg).parse("Title: a\nFREE MONEY")
    with pytest.raises(ValueError, match="appears twice"):
        TextLayout.from_settings(cfg).parse("Title: a\nTitle: b")
    assert set(SOURCES) == set(TextLayout.from_settings(cfg).parse("Title: a\nDescription: b\nImage: c\nBoards: d\nSearches: e"))


@pytest.mark.parametrize(
    "max_tokens, expected",
    [
        # "Title: Tiny cake" is 4 tokens, the label "Description:" 3 ("Descri", "ption", ":"): with 3 tokens
        # left the description's label alone would fit but no word of it, so the line is left out whole
        (7, "Title: Tiny cake"),
        (6, "Title: Tiny cake"),
        (8, "Title: Tiny cake\nDescription: tasty"),
        (9, "Title: Tiny cake\nDescription: tasty moist"),
    ],
)
def test_total_budget_counts_the_label_of_the_line_it_cuts(max_tokens, expected):
    # The line-by-line cut is the design; re-truncating the whole text is only the net for real tokenizers
    # that merge tokens across a line break. With the additive approx counter the net never fires, so this
    # exact text comes from the label-aware path alone (a cut ignoring the label leaves "Description:" dangling).
    cfg = BuildSettings(max_tokens=max_tokens)
    feats = features([{"pin_id": "p", "title": "Tiny cake", "description": "tasty moist rich", "caption": None, "boards": [], "queries": []}])
    row = assemble_texts(feats, ["title+description"], cfg, COUNTER).row(0, named=True)
    assert (row["text"], row["n_tokens"], row["truncated"]) == (expected, COUNTER.count(expected), True)


def test_total_budget_with_a_separator_that_holds_tokens():
    # " || " counts 2 tokens of its own, so the texts are recounted whole (the non-additive path)
    cfg = BuildSettings(max_tokens=10, field_separator=" || ")
    feats = features([{"pin_id": "p", "title": "Tiny cake", "description": "tasty moist rich", "caption": None, "boards": [], "queries": []}])
    row = assemble_texts(feats, ["title+description"], cfg, COUNTER).row(0, named=True)
    assert (row["text"], row["n_tokens"], row["truncated"]) == ("Title: Tiny cake || Description: tasty", 10, True)


@pytest.mark.parametrize(
    "max_tokens, expected",
    [
        # " || " holds 2 tokens ("|", "|"): the line-by-line cut counts them, so no label is left without
        # a word of its value (cutting the joined text instead gave "Title: Tiny cake || Description:")
        (8, "Title: Tiny cake"),
        (9, "Title: Tiny cake"),
        (10, "Title: Tiny cake || Description: tasty"),
        (11, "Title: Tiny cake || Description: tasty moist"),
        (16, "Title: Tiny cake || Description: tasty moist rich"),
        # the second separator counted too: 12 + 2 + "Image: a" (3); fitting the joined text again with the
        # excess taken off would leave 12 (the whole caption line, 4 more, over by 1: budget 16)
        (17, "Title: Tiny cake || Description: tasty moist rich || Image: a"),
    ],
)
def test_total_budget_counts_the_separators_tokens(max_tokens, expected):
    cfg = BuildSettings(max_tokens=max_tokens, field_separator=" || ")
    feats = features([{"pin_id": "p", "title": "Tiny cake", "description": "tasty moist rich", "caption": "a cake", "boards": [], "queries": []}])
    row = assemble_texts(feats, ["title+description+caption"], cfg, COUNTER).row(0, named=True)
    assert (row["text"], row["n_tokens"], row["truncated"]) == (expected, COUNTER.count(expected), True)


class MergingCounter(ApproxCounter):
    """Like a real tokenizer, not additive: a line break after text is a token of its own, a lone one is none."""

    name = "merging"
    _BREAK = re.compile(r"(?<=\S)\n")

    def spans(self, text):
        return sorted(super().spans(text) + [m.span() for m in self._BREAK.finditer(text)])

    def count(self, text):
        return len(self.spans(text))

    def count_many(self, texts):
        return pl.Series(texts.name, [self.count(t or "") for t in texts.to_list()], dtype=pl.Int64)


@pytest.mark.parametrize(
    "max_tokens, expected",
    [
        # joined, "Title: Tiny cake" (4) + break (1) + "Description: tasty" (4) is 9 > 8: fitted again with
        # 7, the description's label alone would fit, so its line goes (a cut of the joined text left
        # "Description:" dangling)
        (8, "Title: Tiny cake"),
        (10, "Title: Tiny cake\nDescription: tasty moist"),  # 11 joined: fitted again with 9
        (11, "Title: Tiny cake\nDescription: tasty moist rich"),
    ],
)
def test_total_budget_with_a_counter_that_is_not_additive(max_tokens, expected):
    counter = MergingCounter()
    assert counter.count("\n") == 0 and counter.count("a\nb") == 3
    cfg = BuildSettings(max_tokens=max_tokens)
    feats = features([{"pin_id": "p", "title": "Tiny cake", "description": "tasty moist rich", "caption": None, "boards": [], "queries": []}])
    row = assemble_texts(feats, ["title+description", "title"], cfg, counter).row(0, named=True)
    assert (row["text"], row["n_tokens"], row["truncated"]) == (expected, counter.count(expected), max_tokens < 11)


class SpyCounter(ApproxCounter):
    """The approximate counter, noting the name of each column and each text it counts."""

    def __init__(self, name="approx"):
        self.name, self.columns, self.texts = name, [], []

    def count_many(self, texts):
        self.columns.append(texts.name)
        return super().count_many(texts)

    def count(self, text):
        self.texts.append(text)
        return super().count(text)


@pytest.mark.parametrize("field_separator, recounted", [("\n", False), ("\n\n", False), (" || ", False), ("|", True), (" |", True), ("| ", True)])
def test_approx_counts_are_summed_not_recounted_when_exact(field_separator, recounted):
    # the approx counter is additive over text joined by a separator with whitespace at both ends, so the
    # summed line and separator counts are the texts' counts, also of the texts cut to the total budget;
    # any other separator (or any other counter) has the joined texts counted again whole
    feats = features([
        {"pin_id": "p", "title": "Tiny cake", "description": "tasty moist rich", "caption": "a cake", "boards": [], "queries": []},
        {"pin_id": "q", "title": None, "description": None, "caption": None, "boards": [], "queries": []},  # no line, no separator
    ])
    cfg = BuildSettings(max_tokens=11, field_separator=field_separator)
    variants = ["title+description+caption", "title"]
    spy = SpyCounter()
    texts = assemble_texts(feats, variants, cfg, spy)
    assert texts.get_column("truncated").to_list() == [True, False, False, False]
    assert ("text" in spy.columns) is recounted
    assert any(field_separator in t.strip() for t in spy.texts) is recounted  # the cut text too: its count is summed
    assert texts.get_column("n_tokens").to_list() == [COUNTER.count(t) for t in texts.get_column("text").to_list()]
    other = SpyCounter("other")
    assert assemble_texts(feats, variants, cfg, other).equals(texts) and "text" in other.columns


def test_per_source_budget_boundaries():
    # a value of exactly its budget stays whole and untruncated; one token more is cut; a one-character value is kept
    cfg = BuildSettings(max_tokens_per_source={"title": 3, "description": 3, "caption": 64, "boards": 3, "queries": 4})
    feats = features([
        {"pin_id": "p1", "title": "alpha beta gamma", "description": "alpha beta gamma delta", "caption": "A",
         "boards": ["one", "two"], "queries": ["one", "two", "three"]},
    ])
    texts = assemble_texts(feats, ["title", "description", "caption", "boards", "queries"], cfg, COUNTER)
    got = {r["variant"]: (r["text"], r["n_tokens"], r["truncated"]) for r in texts.iter_rows(named=True)}
    assert got == {
        "title": ("Title: alpha beta gamma", 5, False),
        "description": ("Description: alpha beta gamma", 6, True),
        "caption": ("Image: A", 3, False),
        "boards": ("Boards: one | two", 5, False),
        # 4 tokens end on a separator ("one | two |"): the dangling "|" goes with its space
        "queries": ("Searches: one | two", 6, True),
    }


def test_the_list_separator_is_content_outside_lists():
    # only list items lose the list separator, and only a list's cut drops one left dangling
    cfg = BuildSettings(max_tokens_per_source={"title": 2, "description": 64, "caption": 64, "boards": 64, "queries": 64})
    feats = features([{"pin_id": "p", "title": "Red | Blue sofa", "description": "Black | White", "caption": None, "boards": ["a | b"], "queries": []}])
    assert render_values(feats, cfg).row(0, named=True) == {
        "pin_id": "p", "title": "Red | Blue sofa", "description": "Black | White", "caption": None, "boards": "a b", "queries": None}
    texts = assemble_texts(feats, ["title", "description"], cfg, COUNTER)
    assert texts.get_column("text").to_list() == ["Title: Red |", "Description: Black | White"]
