"""Text assembler: one text per (pin, variant), within token budgets.

In:  features(pin_id, title, description, caption, boards: list[str], queries: list[str]),
     the variant names (variants.expand: at least one), the settings (labels, source_order, separators,
     budgets) and a token counter (tokens.make_counter).
Out: texts(pin_id, variant, text, n_tokens: Int32, truncated: Boolean), sorted by pin_id and
     then by the variants' order.

A text is one line per source present in the variant, in `source_order`, each `Label: value`,
joined by `field_separator`; list sources join their items with `list_separator`. A source the
pin lacks is left out (no empty `Label:` line). Each source is first cut to its own budget,
then the text to the total budget (the sources that come last in `source_order` give way
first), always at word boundaries.

Text from the data cannot forge a field: values never hold a newline (the text stage collapses
whitespace), the field and list separators are removed from values, and a `Label:` pattern of
any configured label inside a value loses its colon.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import polars as pl

from pinfeatures.build.tokens import TokenCounter, truncate
from pinfeatures.buildfolder import TextLayout
from pinfeatures.build.settings import BuildSettings
from pinfeatures.contracts import LIST_SOURCES, SOURCES, Variant


def _neutralise(expr: pl.Expr, layout: TextLayout, *, list_item: bool) -> pl.Expr:
    for sep in (layout.field_separator, layout.list_separator if list_item else None):
        if sep and sep.strip():
            expr = expr.str.replace_all(sep.strip(), " ", literal=True)
    labels = "|".join(re.escape(layout.labels[s]) for s in SOURCES)
    expr = expr.str.replace_all(rf"(?i)\b({labels})\s*:", "${1}")
    return expr.str.replace_all(r"\s+", " ").str.strip_chars()


def render_values(features: pl.DataFrame, cfg: BuildSettings) -> pl.DataFrame:
    """pin_id plus one rendered string per source (null when the pin lacks it)."""
    layout = TextLayout.from_settings(cfg)
    exprs = [pl.col("pin_id")]
    for s in SOURCES:
        if s in LIST_SOURCES:
            items = pl.col(s).list.eval(_neutralise(pl.element(), layout, list_item=True)).list.eval(pl.element().filter(pl.element().str.len_chars() > 0))
            exprs.append(items.list.join(layout.list_separator).alias(s))
        else:
            exprs.append(_neutralise(pl.col(s).cast(pl.Utf8), layout, list_item=False).alias(s))
    # empty -> null in a second step: in one expression the rendering would run twice (test and value)
    rendered = features.select(exprs)
    return rendered.with_columns(pl.when(pl.col(s).str.len_chars() > 0).then(pl.col(s)).otherwise(pl.lit(None, pl.Utf8)) for s in SOURCES)


def _cap_column(values: pl.Series, budget: int, counter: TokenCounter, dangling: str = "") -> tuple[pl.Series, pl.Series, pl.Series]:
    """Cut each value to `budget` tokens (and any `dangling` separator left at the cut). Returns (values, counts, truncated)."""
    counts = counter.count_many(values)  # a null value counts 0: never over
    over = counts > budget
    if over.any():
        vals = values.to_list()
        cnts = counts.to_list()
        for i in over.arg_true().to_list():
            cut, _ = truncate(vals[i], budget, counter)  # never empty: a budget is at least 1 token
            vals[i] = cut.removesuffix(dangling).rstrip()  # truncate's cut ends without whitespace
            cnts[i] = counter.count(vals[i])
        values = pl.Series(values.name, vals, dtype=pl.Utf8)
        counts = pl.Series(counts.name, cnts, dtype=pl.Int64)
    return values, counts, over


def assemble_texts(features: pl.DataFrame, variants: Sequence[str], cfg: BuildSettings, counter: TokenCounter) -> pl.DataFrame:
    """One row per (pin, variant): pin_id, variant, text, n_tokens, truncated (see the module docstring)."""
    layout = TextLayout.from_settings(cfg)
    rendered = render_values(features, cfg)
    label_text = {s: layout.label(s) for s in SOURCES}
    label_tokens = {s: int(counter.count_many(pl.Series([label_text[s]]))[0]) for s in SOURCES}
    lines: dict[str, pl.Series] = {}
    line_tokens: dict[str, pl.Series] = {}
    cut: dict[str, pl.Series] = {}
    for s in SOURCES:
        dangling = layout.list_separator.strip() if s in LIST_SOURCES else ""
        values, counts, truncated = _cap_column(rendered.get_column(s), cfg.max_tokens_per_source[s], counter, dangling)
        present = values.is_not_null()
        lines[s] = pl.select(pl.when(present).then(pl.lit(label_text[s] + " ") + values).otherwise(None)).to_series().alias(s)
        line_tokens[s] = pl.select(pl.when(present).then(counts + label_tokens[s]).otherwise(0)).to_series()
        cut[s] = truncated

    separator_tokens = counter.count(layout.field_separator)
    pin_ids = rendered.get_column("pin_id")
    frames = []
    for idx, variant in enumerate(variants):
        srcs = Variant.parse(variant).sources
        ordered = [s for s in layout.order if s in srcs]
        text = pl.DataFrame([lines[s] for s in ordered]).select(
            pl.concat_str(pl.all(), separator=layout.field_separator, ignore_nulls=True).alias("text")
        ).to_series()  # "" where the pin has none of the variant's sources
        n_lines = pl.DataFrame([lines[s] for s in ordered]).select(pl.sum_horizontal(pl.all().is_not_null()).cast(pl.Int64)).to_series()
        n_tokens = pl.DataFrame([line_tokens[s].alias(s) for s in ordered]).select(pl.sum_horizontal(pl.all())).to_series()
        n_tokens += separator_tokens * (n_lines - 1).clip(lower_bound=0)
        truncated = pl.DataFrame([cut[s].alias(s) for s in ordered]).select(pl.any_horizontal(pl.all())).to_series()
        frame = pl.DataFrame({"pin_id": pin_ids, "text": text, "n_tokens": n_tokens, "truncated": truncated})
        frame = _fit_total(frame, ordered, lines, label_text, label_tokens, separator_tokens, cfg, counter)
        frames.append(frame.with_columns(pl.lit(variant).alias("variant"), pl.lit(idx, pl.Int32).alias("_v")))
    return (
        pl.concat(frames)
        .sort(["pin_id", "_v"])
        .select("pin_id", "variant", "text", pl.col("n_tokens").cast(pl.Int32), "truncated")
    )


def _fit_total(
    frame: pl.DataFrame,
    ordered: list[str],
    lines: Mapping[str, pl.Series],
    label_text: Mapping[str, str],
    label_tokens: Mapping[str, int],
    separator_tokens: int,
    cfg: BuildSettings,
    counter: TokenCounter,
) -> pl.DataFrame:
    """Cut the texts over the total budget, line by line from the end of source_order.

    The approximate counter is additive over text joined by a separator that starts and ends
    with whitespace ("\n", " || "), so the summed count (lines and separators) is exact; any
    other counter or separator has its texts counted again whole, and a text counted over the
    budget once joined is fitted again with the excess taken off the budget (never cut as a
    whole, which could leave a label without its value).
    """
    sep = cfg.field_separator
    exact = getattr(counter, "name", "") == "approx" and sep[:1].isspace() and sep[-1:].isspace()
    if not exact:
        frame = frame.with_columns(counter.count_many(frame.get_column("text")).alias("n_tokens"))
    over = frame.get_column("n_tokens") > cfg.max_tokens
    if not over.any():
        return frame
    texts = frame.get_column("text").to_list()
    counts = frame.get_column("n_tokens").to_list()
    truncated = frame.get_column("truncated").to_list()
    line_values = {s: lines[s].to_list() for s in ordered}
    for i in over.arg_true().to_list():
        present = [(s, line_values[s][i]) for s in ordered if line_values[s][i] is not None]
        budget = cfg.max_tokens
        while True:
            kept, used = _fit_lines(present, budget, separator_tokens, label_text, label_tokens, counter)
            text = sep.join(kept)
            n = used if exact else counter.count(text)
            if n <= cfg.max_tokens:
                break
            budget -= n - cfg.max_tokens  # merged across a line break: fewer tokens for the lines
        texts[i], counts[i], truncated[i] = text, n, True
    return frame.with_columns(
        pl.Series("text", texts, dtype=pl.Utf8), pl.Series("n_tokens", counts, dtype=pl.Int64), pl.Series("truncated", truncated, dtype=pl.Boolean)
    )


def _fit_lines(
    present: list[tuple[str, str]],
    budget: int,
    separator_tokens: int,
    label_text: Mapping[str, str],
    label_tokens: Mapping[str, int],
    counter: TokenCounter,
) -> tuple[list[str], int]:
    """The lines of `present` (source, line) that fit whole in `budget` tokens, then the next one's
    label with as many of its words as fit; and the tokens they take, separators counted."""
    kept: list[str] = []
    used = 0
    for s, line in present:
        overhead = (separator_tokens if kept else 0) + label_tokens[s]
        value, cut = truncate(line[len(label_text[s]) + 1 :], budget - used - overhead, counter)  # "" when no word fits
        if value:
            kept.append(f"{label_text[s]} {value}")
            used += overhead + counter.count(value)
        if cut:
            break
    return kept, used
