"""Text stage: clean the free-text sources of each pin with Polars.

In:  pins(pin_id, title, description, ...) valid rows.
Out: the same frame with `title` and `description` cleaned: entities unescaped, then HTML tags
     stripped (so an entity-encoded `&lt;script&gt;` goes too), control and invisible characters (bidi overrides, zero-width space, BOM)
     removed, whitespace collapsed, repeated until nothing changes (`&amp;lt;` -> `<`; a value still
     changing after MAX_CLEAN_PASSES becomes null), length capped at `max_chars`; empty becomes null.

`pinfeatures.build.scrub.clean_text` is the one-string reference of the same rules (tests hold
the two equal); this module runs them on whole columns, in Rust, except entity unescaping,
which runs in Python on the few values that contain '&'.
"""

from __future__ import annotations

import html

import polars as pl

from pinfeatures.build.scrub import CONTROL_PATTERN, INVISIBLE_PATTERN, MAX_CLEAN_PASSES, TAG_PATTERN, UNTIDY_SPACE_PATTERN, update_where


def _unescape(series: pl.Series) -> pl.Series:
    return update_where(series, series.str.contains("&"), lambda s: pl.Series([html.unescape(v) for v in s.to_list()]))


# a value with none of these is left as it is by the invisible and control steps
_INVISIBLE_OR_CONTROL = "[" + INVISIBLE_PATTERN[1:-1] + CONTROL_PATTERN[1:-1] + "]"


def _clean_pass(series: pl.Series) -> pl.Series:
    """One pass of the rules; each step runs only on the values it can change (a cheap test over
    the column first), as most titles and descriptions are clean already."""
    current = _unescape(series)  # before tags: `&lt;script&gt;` is a tag too
    current = update_where(current, current.str.contains("<"), lambda s: s.str.replace_all(TAG_PATTERN, " "))
    current = update_where(
        current, current.str.contains(_INVISIBLE_OR_CONTROL),
        lambda s: s.str.replace_all(INVISIBLE_PATTERN, "").str.replace_all(CONTROL_PATTERN, " "),
    )
    return update_where(current, current.str.contains(UNTIDY_SPACE_PATTERN), lambda s: s.str.replace_all(r"\s+", " ").str.strip_chars())


def _clean_until_stable(series: pl.Series) -> pl.Series:
    """`scrub.clean_text`'s passes on a whole column: each pass after the first revisits only the
    values the previous one left unsettled (changed, with a `&` or `<` left); a value unsettled
    after MAX_CLEAN_PASSES becomes null."""
    current = series
    todo = series.is_not_null().arg_true()
    for _ in range(MAX_CLEAN_PASSES):
        if todo.len() == 0:
            break
        before = current.gather(todo)
        after = _clean_pass(before)
        unsettled = (after != before) & after.str.contains("[&<]")
        current = current.scatter(todo, after)
        todo = todo.filter(unsettled)
    if todo.len():  # still changing: no fixed point in reach, keep nothing
        current = current.scatter(todo, None)
    return current


def clean_column(column: str, max_chars: int) -> pl.Expr:
    """An expression that cleans one text column (see the module docstring)."""
    return pl.col(column).cast(pl.Utf8).map_batches(lambda values: _clean_values(values, max_chars)).alias(column)  # String, as its input


def _clean_values(values: pl.Series, max_chars: int) -> pl.Series:
    # one function of the column, not an expression that tests and returns the cleaned value: the
    # expression would clean every value twice
    cleaned = _clean_until_stable(values).str.slice(0, max_chars).str.strip_chars()
    return pl.select(pl.when(cleaned.str.len_chars() > 0).then(cleaned)).to_series()  # else null


def normalise_pins(pins: pl.DataFrame, max_chars: int = 4000) -> pl.DataFrame:
    """Clean `title` and `description` (and `caption` when present) of every pin."""
    cols = [c for c in ("title", "description", "caption") if c in pins.columns]
    return pins.with_columns([clean_column(c, max_chars) for c in cols])
