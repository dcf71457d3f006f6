"""Lexical scorer: BM25 with DuckDB core SQL (sql/bm25.sql), no downloaded extension.

Tokeniser (the same for queries and texts): Unicode NFKC, lowercase, then tokens are
runs of word characters (`\\w`: letters, digits, `_`, in any script), except that each
CJK character (Han, Hiragana, Katakana, Hangul) is a token on its own, because those
scripts do not separate words with spaces. Everything else (punctuation, spaces,
symbols) separates tokens. The `Label:` prefixes the build writes into texts are ordinary
tokens ("title", "image", ...); they occur in nearly every text of a variant, so their IDF
is close to zero and they barely move scores.

Corpus: every non-empty text of the variant in texts.parquet (all pins of the build, not
only the judged ones), so IDF and the average length describe the collection the texts come
from. Pins with a null or empty text are not documents; their score is null.
"""

from __future__ import annotations

import unicodedata

import polars as pl
import regex

from pinfeatures.errors import ConfigError
from pinfeatures.sqlrun import connect, run_sql

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
TOKEN_PATTERN = rf"[{_CJK}]|[^\W{_CJK}]+"
"""One CJK character, or a run of word characters that are not CJK (Rust regex and `regex` agree)."""
_TOKEN_RE = regex.compile(TOKEN_PATTERN)


def tokenize(text: str | None) -> list[str]:
    """Reference tokeniser for one string (tests, debugging); `tokenize_expr` is the same on columns."""
    if text is None:
        return []
    return _TOKEN_RE.findall(unicodedata.normalize("NFKC", text).lower())


def tokenize_expr(col: pl.Expr) -> pl.Expr:
    """Polars version of `tokenize`: a list[str] column (null text -> null)."""
    return col.str.normalize("NFKC").str.to_lowercase().str.extract_all(TOKEN_PATTERN)


def bm25_scores(
    texts: pl.DataFrame,
    pairs: pl.DataFrame,
    *,
    k1: float = 1.2,
    b: float = 0.75,
    threads: int | None = None,
) -> pl.DataFrame:
    """BM25 score of each (query, pin, variant) pair against that variant's corpus.

    In:  texts: `pin_id`, `variant`, `text` (the corpus: every text of every variant scored);
         pairs: `query`, `pin_id`, `variant` (one row per pair to score; extra columns kept).
    Out: pairs with a `score` column (f64) added, in the input order; null where the pin has
         no (non-empty) text in that variant.
    """
    if k1 < 0:
        raise ConfigError(f"bm25_k1 must be >= 0, got {k1}")
    if not 0.0 <= b <= 1.0:
        raise ConfigError(f"bm25_b must be in [0, 1], got {b}")
    variants = pairs.get_column("variant").unique()
    docs = (
        texts.filter(pl.col("variant").is_in(variants.implode()))
        .select("variant", "pin_id", tokenize_expr(pl.col("text")).alias("tokens"))
        .filter(pl.col("tokens").list.len() > 0)
    )
    queries = (
        pairs.select(pl.col("query").unique())
        .with_columns(tokenize_expr(pl.col("query")).alias("tokens"))
        .filter(pl.col("tokens").is_not_null())
    )
    indexed = pairs.with_row_index("pair_id")
    con = connect(threads=threads)
    try:
        con.register("docs", docs.to_arrow())
        con.register("queries", queries.to_arrow())
        con.register("pairs", indexed.select("pair_id", "variant", "query", "pin_id").to_arrow())
        rel = run_sql(con, "bm25", {"k1": float(k1), "b": float(b)})
        assert rel is not None
        scores = pl.from_arrow(rel.to_arrow_table())
    finally:
        con.close()
    assert isinstance(scores, pl.DataFrame)
    scores = scores.with_columns(pl.col("pair_id").cast(indexed.schema["pair_id"]))
    return indexed.join(scores, on="pair_id", how="left").sort("pair_id").drop("pair_id")
