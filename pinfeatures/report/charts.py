"""Charts for the build report: matplotlib figures rendered to inline SVG strings.

In:  small, already-aggregated tables (bin counts, shares, counts by label); never a
     whole build, so a chart's size is bounded by its bins and labels, not by the data.
Out: an SVG string ready to inline into the page (`svg_markup`), with its ids prefixed so
     that several charts can live in one HTML document without clashing.

Data strings (languages, statuses, variant names) reach the SVG only as matplotlib text,
which matplotlib writes as escaped XML character data; math parsing (`$...$`) is turned off
so that a `$` in a label is drawn as itself and can never make the renderer raise.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from typing import Mapping, Sequence

import matplotlib
from markupsafe import Markup

matplotlib.use("Agg")  # no display, no GUI toolkit: the report is written from a batch job

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

_RC = {
    "svg.fonttype": "none",  # text stays text (searchable, small); no font is embedded or fetched
    "svg.hashsalt": "pinfeatures",  # deterministic clip-path ids: same build, same page
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
}
ACCENT = "#2563eb"
MUTED = "#94a3b8"
WARN = "#dc2626"
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#0ea5e9", "#84cc16", "#ec4899")

_counter = itertools.count(1)
_ID_RE = re.compile(r'\bid="([^"]+)"')


def _label(value: object, limit: int = 28) -> str:
    """A data string shortened for an axis label (the page's tables show it in full)."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def svg_markup(fig) -> Markup:
    """Render a figure to SVG, drop the XML prologue, prefix every id, close the figure."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    prefix = f"c{next(_counter)}-"
    ids = set(_ID_RE.findall(svg))
    svg = _ID_RE.sub(lambda m: f'id="{prefix}{m.group(1)}"', svg)
    # references to ids: url(#x) in clip-path/style, and href="#x" / xlink:href="#x" in <use>
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})" if m.group(1) in ids else m.group(0), svg)
    svg = re.sub(
        r'((?:xlink:)?href)="#([^"]+)"',
        lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"' if m.group(2) in ids else m.group(0),
        svg,
    )
    # width/height in pt from matplotlib; let CSS scale the chart to its box instead
    svg = re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r'<svg\1 class="chart"', svg, count=1)
    # Markup: jinja2 inserts it as is. Safe because every data string in it is matplotlib text,
    # which matplotlib's SVG writer escapes (tests/test_report.py checks a hostile label).
    return Markup(svg)


def token_histograms(
    hists: Sequence[dict],
    max_tokens: int | None,
) -> str:
    """Small multiples, one per variant: token-count histogram, the budget as a red line.

    Each item of `hists`: {variant, edges (n+1 floats), counts (n ints), truncated_share}.
    """
    n = max(len(hists), 1)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.1 * nrows), squeeze=False)
        for ax in axes.flat[len(hists) :]:
            ax.set_visible(False)
        for ax, h in zip(axes.flat, hists):
            ax.stairs(h["counts"], h["edges"], fill=True, color=ACCENT, alpha=0.85)
            if max_tokens is not None:
                ax.axvline(max_tokens, color=WARN, linewidth=1.2, linestyle="--")
            share = h.get("truncated_share")
            sub = f"truncated {share:.1%}" if isinstance(share, (int, float)) else ""
            ax.set_title(f"{_label(h['variant'], 40)}\n{sub}", loc="left")
            ax.set_xlabel("tokens")
            ax.set_ylabel("texts")
        fig.tight_layout()
        return svg_markup(fig)


def count_histograms(panels: Sequence[tuple[str, Mapping[int, int]]]) -> str:
    """Bar charts of 'how many pins have k items' (boards per pin, queries per pin)."""
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(2.9 * max(len(panels), 1), 2.3), squeeze=False)
        for ax, (title, counts) in zip(axes.flat, panels):
            ks = sorted(counts)
            ax.bar(ks, [counts[k] for k in ks], color=ACCENT, width=0.8)
            ax.set_title(title, loc="left")
            ax.set_xlabel("items per pin")
            ax.set_ylabel("pins")
            if ks:
                ax.set_xticks(ks)
        fig.tight_layout()
        return svg_markup(fig)


def hbar(
    items: Sequence[tuple[str, float]],
    title: str,
    xlabel: str,
    *,
    percent: bool = False,
    color: str = ACCENT,
) -> str:
    """One horizontal bar per (label, value), first item on top."""
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(5.6, 1.1 + 0.24 * max(len(items), 1)))
        labels = [_label(k) for k, _ in items]
        values = [v for _, v in items]
        y = list(range(len(items)))
        ax.barh(y, values, color=color, height=0.7)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_title(title, loc="left")
        ax.set_xlabel(xlabel)
        if percent:
            ax.set_xlim(0, 1)
            ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.grid(axis="y", visible=False)
        fig.tight_layout()
        return svg_markup(fig)


def ablation_chart(
    variants: Sequence[str],
    values: Sequence[tuple[str, Sequence[float | None]]],
    metric: str,
    deltas: Sequence[tuple[str, Sequence[float | None], Sequence[float | None], Sequence[float | None]]] = (),
    delta_labels: Sequence[str] | None = None,
) -> str:
    """The ablation: grouped bars of `metric` per variant and scorer; when `deltas` are given, a
    second panel with each row's gain over its reference row and its bootstrap CI as whiskers.

    values: (scorer, metric per variant); deltas: (scorer, delta, ci_low, ci_high) per variant.
    None (no value) is left out of the chart.
    """
    panels = 2 if deltas else 1
    n = max(len(values), 1)
    width = 0.8 / n
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, panels, figsize=(max(4.5, 0.75 * len(variants) + 1.5) * panels, 3.4), squeeze=False)
        ax = axes[0][0]
        for i, (name, vals) in enumerate(values):
            pts = [(j - 0.4 + width * (i + 0.5), v) for j, v in enumerate(vals) if _ok(v)]
            ax.bar([x for x, _ in pts], [v for _, v in pts], width=width * 0.92, color=PALETTE[i % len(PALETTE)], label=_label(name))
        ax.set_xticks(range(len(variants)), [_label(v, 36) for v in variants], rotation=30, ha="right")
        ax.set_ylabel(_label(metric))
        ax.set_title(f"{_label(metric)} per variant", loc="left")
        ax.grid(axis="x", visible=False)
        if len(values) > 1:
            ax.legend(frameon=False, fontsize=8)
        if deltas:
            ax = axes[0][1]
            for i, (name, d, lo, hi) in enumerate(deltas):
                xs, ys, elo, ehi = [], [], [], []
                for j, v in enumerate(d):
                    if not _ok(v):
                        continue
                    xs.append(j - 0.4 + width * (i + 0.5))
                    ys.append(v)
                    elo.append(max(v - lo[j], 0) if _ok(lo[j]) else 0)
                    ehi.append(max(hi[j] - v, 0) if _ok(hi[j]) else 0)
                ax.bar(xs, ys, width=width * 0.92, color=PALETTE[i % len(PALETTE)], label=_label(name),
                       yerr=[elo, ehi], capsize=2, error_kw={"elinewidth": 0.8, "ecolor": "#334155"})
            labels = delta_labels if delta_labels is not None else variants
            ax.set_xticks(range(len(variants)), [_label(v, 36) for v in labels], rotation=30, ha="right")
            ax.axhline(0, color="#334155", linewidth=0.8)
            ax.set_ylabel("gain over reference row")
            ax.set_title("Gain per step (bootstrap CI)", loc="left")
            ax.grid(axis="x", visible=False)
            if len(deltas) > 1:
                ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        return svg_markup(fig)


def _ok(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
