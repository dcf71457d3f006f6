"""BM25 in DuckDB SQL against hand-computed values; the tokeniser."""

import math

import polars as pl
import pytest

from pinfeatures.errors import ConfigError
from pinfeatures.evaluate.lexical import bm25_scores, tokenize, tokenize_expr

TEXTS = pl.DataFrame(
    {
        "pin_id": ["d1", "d2", "d3", "d4"],
        "variant": ["v"] * 4,
        # d4 has no text: not a document (N = 3)
        "text": ["The cat sat", "the dog sat down", "cat, CAT & dog", None],
    }
)


def pairs(rows):
    return pl.DataFrame(rows, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "variant": pl.Utf8}, orient="row")


def test_bm25_hand_computed_three_documents():
    # N = 3, |d1| = 3, |d2| = 4, |d3| = 3, avgdl = 10/3; k1 = 1.2, b = 0.75
    # idf(cat) (n = 2) = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln(1.6) = 0.470004
    # norm(d) = k1 * (1 - b + b * |d| / avgdl): d1, d3 -> 1.2 * (0.25 + 0.675) = 1.11; d2 -> 1.2 * 1.15 = 1.38
    # d1: tf 1 -> 0.470004 * 1 * 2.2 / (1 + 1.11) = 0.490051
    # d3: tf 2 -> 0.470004 * 2 * 2.2 / (2 + 1.11) = 0.664957
    # query "dog sat" on d2: idf(dog) = idf(sat) = ln(1.6); each tf 1 -> 2 * 0.470004 * 2.2 / 2.38 = 0.868914
    out = bm25_scores(
        TEXTS,
        pairs([("cat", "d1", "v"), ("cat", "d2", "v"), ("cat", "d3", "v"), ("cat", "d4", "v"), ("Dog  sat!", "d2", "v"), ("zebra", "d1", "v")]),
    )
    s = out["score"].to_list()
    assert s[0] == pytest.approx(0.490051, abs=1e-6)
    assert s[1] == 0.0  # no shared term
    assert s[2] == pytest.approx(0.664957, abs=1e-6)
    assert s[3] is None  # no text in this variant
    assert s[4] == pytest.approx(0.868914, abs=1e-6)
    assert s[5] == 0.0  # term in no document
    assert out.columns == ["query", "pin_id", "variant", "score"]
    assert s[0] == pytest.approx(math.log(1.6) * 2.2 / 2.11)


def test_bm25_parameters_and_repeated_query_terms():
    # b = 0: no length normalisation; k1 = 0: tf saturates at once -> score = sum of idf
    out = bm25_scores(TEXTS, pairs([("cat", "d3", "v"), ("cat cat", "d3", "v")]), k1=0.0, b=0.0)
    assert out["score"].to_list() == pytest.approx([math.log(1.6), 2 * math.log(1.6)])


def test_bm25_corpus_is_per_variant():
    texts = pl.concat([TEXTS, TEXTS.with_columns(pl.lit("w").alias("variant"), pl.lit("cat").alias("text"))])
    out = bm25_scores(texts, pairs([("cat", "d1", "v"), ("cat", "d1", "w")]))
    # in w every one of 4 docs has "cat": idf = ln(1 + 0.5 / 4.5); tf 1, |d| = avgdl -> idf * 2.2 / 2.2
    assert out["score"].to_list() == pytest.approx([0.490051, math.log(1 + 0.5 / 4.5)], abs=1e-6)


def test_bm25_bad_parameters():
    with pytest.raises(ConfigError):
        bm25_scores(TEXTS, pairs([("cat", "d1", "v")]), k1=-1)
    with pytest.raises(ConfigError):
        bm25_scores(TEXTS, pairs([("cat", "d1", "v")]), b=2)


def test_bm25_hostile_text():
    huge = "spam " * 200_000 + "cat"
    texts = pl.DataFrame({"pin_id": ["a", "b"], "variant": ["v", "v"], "text": [huge, "\x00\u202e<script>cat</script>"]})
    out = bm25_scores(texts, pairs([("cat", "a", "v"), ("cat", "b", "v"), ("", "a", "v"), ("!!!", "b", "v")]))
    s = out["score"].to_list()
    assert s[1] > s[0] > 0  # the long text is penalised for its length
    assert s[2] == 0.0 and s[3] == 0.0  # queries with no tokens


def test_tokenizer_nfkc_lowercase_cjk():
    assert tokenize("Ｈｅｌｌｏ, World!! café-au-lait x_y 42") == ["hello", "world", "café", "au", "lait", "x_y", "42"]
    assert tokenize("東京タワー 夜景") == ["東", "京", "タ", "ワ", "ー", "夜", "景"]
    assert tokenize("ＣＡＴ猫") == ["cat", "猫"]
    assert tokenize(None) == []
    # the Polars expression and the reference function agree
    samples = ["Ｈｅｌｌｏ, World!! café-au-lait", "東京タワー 夜景", "ÉCOLE d'été", "한국어 단어", "", "Title: Boho living room"]
    col = pl.DataFrame({"t": samples}).select(tokenize_expr(pl.col("t")))["t"].to_list()
    assert col == [tokenize(s) for s in samples]
