"""Text assembler: one text per (pin, variant), within token budgets.

In:  features(pin_id, title, description, caption, boards: list[str], queries: list[str]),
     the variant names (variants.expand), the settings (labels, source_order, separators,
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
        if s not in features.columns:
            exprs.append(pl.lit(None, pl.Utf8).alias(s))
        elif s in LIST_SOURCES:
            items = pl.col(s).list.eval(_neutralise(pl.element(), layout, list_item=True)).list.eval(pl.element().filter(pl.element().str.len_chars() > 0))
            exprs.append(items.list.join(layout.list_separator).alias(s))
        else:
            exprs.append(_neutralise(pl.col(s).cast(pl.Utf8), layout, list_item=False).alias(s))
    # empty -> null in a second step: in one expression the rendering would run twice (test and value)
    rendered = features.select(exprs)
    return rendered.with_columns(pl.when(pl.col(s).str.len_chars() > 0).then(pl.col(s)).otherwise(pl.lit(None, pl.Utf8)) for s in SOURCES)


def _cap_column(values: pl.Series, budget: int, counter: TokenCounter, dangling: str = "") -> tuple[pl.Series, pl.Series, pl.Series]:
    """Cut each value to `budget` tokens (and any `dangling` separator left at the cut). Returns (values, counts, truncated)."""
    counts = counter.count_many(values)
    over = (counts > budget).fill_null(False)
    truncated = over.clone()
    if over.any():
        vals = values.to_list()
        cnts = counts.to_list()
        for i in over.arg_true().to_list():
            cut, _ = truncate(vals[i], budget, counter)
            if dangling:
                cut = cut.rstrip().removesuffix(dangling).rstrip()
            vals[i] = cut or None
            cnts[i] = counter.count(cut) if cut else 0
        values = pl.Series(values.name, vals, dtype=pl.Utf8)
        counts = pl.Series(counts.name, cnts, dtype=pl.Int64)
    return values, counts, truncated


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
        cut[s] = truncated & present

    pin_ids = rendered.get_column("pin_id")
    frames = []
    for idx, variant in enumerate(variants):
        srcs = Variant.parse(variant).sources
        ordered = [s for s in layout.order if s in srcs]
        text = pl.DataFrame([lines[s] for s in ordered]).select(
            pl.concat_str(pl.all(), separator=layout.field_separator, ignore_nulls=True).alias("text")
        ).to_series().fill_null("")
        n_tokens = pl.DataFrame([line_tokens[s].alias(s) for s in ordered]).select(pl.sum_horizontal(pl.all())).to_series()
        truncated = pl.DataFrame([cut[s].alias(s) for s in ordered]).select(pl.any_horizontal(pl.all())).to_series()
        frame = pl.DataFrame({"pin_id": pin_ids, "text": text, "n_tokens": n_tokens, "truncated": truncated})
        frame = _fit_total(frame, ordered, lines, label_text, label_tokens, cfg, counter)
        frames.append(frame.with_columns(pl.lit(variant).alias("variant"), pl.lit(idx, pl.Int32).alias("_v")))
    texts = pl.concat(frames) if frames else pl.DataFrame(schema={"pin_id": pl.Utf8, "variant": pl.Utf8, "text": pl.Utf8, "n_tokens": pl.Int64, "truncated": pl.Boolean, "_v": pl.Int32})
    return (
        texts.sort(["pin_id", "_v"])
        .select("pin_id", "variant", "text", pl.col("n_tokens").cast(pl.Int32), pl.col("truncated").fill_null(False))
    )


def _fit_total(
    frame: pl.DataFrame,
    ordered: list[str],
    lines: Mapping[str, pl.Series],
    label_text: Mapping[str, str],
    label_tokens: Mapping[str, int],
    cfg: BuildSettings,
    counter: TokenCounter,
) -> pl.DataFrame:
    """Cut the texts over the total budget, line by line from the end of source_order.

    The approximate counter is additive over whitespace-joined lines, so the summed count is
    exact; a real tokenizer is not quite additive, so its texts are counted again whole.
    """
    # ...and additive only when the field separator is whitespace: " || " holds tokens of its own.
    exact = getattr(counter, "name", "") == "approx" and counter.count(cfg.field_separator) == 0
    if not exact:
        frame = frame.with_columns(counter.count_many(frame.get_column("text")).alias("n_tokens"))
    over = (frame.get_column("n_tokens") > cfg.max_tokens).fill_null(False)
    if not over.any():
        return frame
    texts = frame.get_column("text").to_list()
    counts = frame.get_column("n_tokens").to_list()
    truncated = frame.get_column("truncated").to_list()
    line_values = {s: lines[s].to_list() for s in ordered}
    for i in over.arg_true().to_list():
        remaining = cfg.max_tokens
        kept: list[str] = []
        for s in ordered:
            line = line_values[s][i]
            if line is None:
                continue
            n = counter.count(line)
            if n <= remaining:
                kept.append(line)
                remaining -= n
                continue
            value_budget = remaining - label_tokens[s]
            if value_budget > 0:
                value, _ = truncate(line[len(label_text[s]) + 1 :], value_budget, counter)
                if value:
                    kept.append(f"{label_text[s]} {value}")
            break
        text = cfg.field_separator.join(kept)
        n = counter.count(text)
        if n > cfg.max_tokens:  # a real tokenizer merged across a line break: cut the whole text
            text, _ = truncate(text, cfg.max_tokens, counter)
            n = counter.count(text)
        texts[i], counts[i], truncated[i] = text, n, True
    return frame.with_columns(
        pl.Series("text", texts, dtype=pl.Utf8), pl.Series("n_tokens", counts, dtype=pl.Int64), pl.Series("truncated", truncated, dtype=pl.Boolean)
    )
