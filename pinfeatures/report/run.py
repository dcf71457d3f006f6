"""The build report: one self-contained HTML page that shows whether a build's features are healthy.

In:  a build folder read through pinfeatures.buildfolder (manifest, features, texts, rejects;
     coverage, languages and token statistics come from the manifest, computed at build time),
     `evaluation/ablation.{json,csv}` when `pinfeatures evaluate` has run on this very build
     (an evaluation of another build is not shown), the images root for thumbnails (default:
     the build's own `images_root`), a ReportSettings.
Out: `BUILD/report.html` (or `out`): coverage, distributions (with the traffic share of the
     top-N queries, from queries.parquet), inputs and rejects, a seeded
     sample of pins with thumbnails and their texts (the part truncation cut struck through),
     the ablation table, and run facts.

The page opens offline: styles, the one small script, charts (matplotlib SVG) and thumbnails
(WebP/JPEG data URIs) are inline, and a Content-Security-Policy forbids every other load.
Every string from the data goes through jinja2's autoescape (or matplotlib's XML escaping
inside charts); invisible and bidi-control characters are shown as visible `U+XXXX` marks
so a hostile title can neither run, nor restyle, nor reorder the page.

Only aggregates and the sample are read into memory: token histograms are binned in Polars,
examples are filtered by pin id from lazy scans, so the page size is bounded by the sample
size and the number of variants, not by the build size.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import random
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import polars as pl

from pinfeatures import __version__
from pinfeatures.buildfolder import Build, open_build
from pinfeatures.report.settings import ReportSettings
from pinfeatures.contracts import LIST_SOURCES, SOURCES, Variant
from pinfeatures.errors import ConfigError, InputError
from pinfeatures.report import charts as charts

# Characters that would be invisible or reorder text; shown as a visible `U+XXXX` mark instead.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


# -- reading the build ------------------------------------------------------------------


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if isinstance(value, float) and math.isnan(value) else float(value)


# -- sections -----------------------------------------------------------------------------


def coverage_section(build: Build) -> dict:
    """Coverage per source (overall and by language) and caption statuses with counts."""
    cov = _dict(build.manifest.get("coverage"))
    overall = _dict(cov.get("overall"))
    feats = build.scan("features")
    rows_overall = [{"source": s, "share": _num(overall.get(s))} for s in SOURCES if s in overall]
    by_lang = []
    for lang, d in sorted(_dict(cov.get("by_language")).items(), key=lambda kv: -(_num(_dict(kv[1]).get("pins")) or 0)):
        d = _dict(d)
        by_lang.append({"language": lang, "pins": d.get("pins"), "shares": {s: _num(d.get(s)) for s in SOURCES}})
    statuses = (
        feats.group_by("caption_status").agg(pl.len().alias("n")).sort(["n", "caption_status"], descending=[True, False]).collect()
    )
    n_pins = int(statuses["n"].sum()) if statuses.height else 0
    status_rows = [
        {"status": "(null)" if r["caption_status"] is None else r["caption_status"], "n": r["n"], "share": r["n"] / n_pins if n_pins else 0}
        for r in statuses.iter_rows(named=True)
    ]
    chart_cov = charts.hbar([(r["source"], r["share"] or 0.0) for r in rows_overall], "Share of pins with each source", "pins", percent=True)
    chart_status = charts.hbar([(r["status"], r["n"]) for r in status_rows[:20]], "Caption status", "pins", color=charts.MUTED) if status_rows else None
    return {
        "overall": rows_overall,
        "by_language": by_lang[:50],
        "by_language_more": max(0, len(by_lang) - 50),
        "statuses": status_rows,
        "n_pins": n_pins,
        "chart_coverage": chart_cov,
        "chart_status": chart_status,
    }


def distributions_section(build: Build, cfg: ReportSettings, variants: Sequence[str]) -> dict:
    """Token histograms per variant (bounded bins), boards/queries per pin, language mix."""
    tokens = _dict(build.manifest.get("tokens"))
    max_tokens = tokens.get("max_tokens") if isinstance(tokens.get("max_tokens"), int) else None
    texts = build.scan("texts", ["variant", "n_tokens"])
    by_variant = _dict(tokens.get("by_variant"))
    top = max([int(_num(_dict(r).get("max")) or 0) for r in by_variant.values()] + [int(max_tokens or 0), 1])
    bins = max(1, cfg.histogram_bins)
    width = max(1, math.ceil(top / bins))
    edges = [i * width for i in range(bins + 1)]
    binned = (
        texts.with_columns((pl.col("n_tokens").fill_null(0) // width).clip(0, bins - 1).alias("bin"))
        .group_by("variant", "bin")
        .agg(pl.len().alias("n"))
        .collect()
    )
    hists, rows = [], []
    for v in variants:
        counts = [0] * bins
        for r in binned.filter(pl.col("variant") == v).iter_rows(named=True):
            counts[int(r["bin"])] = r["n"]
        m = _dict(by_variant.get(v))
        share = _num(m.get("truncated_share"))
        hists.append({"variant": v, "edges": edges, "counts": counts, "truncated_share": share})
        rows.append({"variant": v, **{k: m.get(k) for k in ("texts", "mean", "p50", "p95", "max")}, "truncated_share": share})
    feats = build.scan("features")
    lens = feats.select(
        pl.col("boards").list.len().fill_null(0).alias("boards"), pl.col("queries").list.len().fill_null(0).alias("queries")
    )
    panels, per_pin = [], {}
    for col in LIST_SOURCES:
        vc = lens.group_by(col).agg(pl.len().alias("n")).sort(col).collect()
        counts = {int(k): int(n) for k, n in vc.iter_rows()}
        per_pin[col] = counts
        panels.append((f"{col.capitalize()} per pin", counts))
    langs = _dict(build.manifest.get("languages"))
    lang_items = sorted(((str(k), v) for k, v in langs.items() if _num(v) is not None), key=lambda kv: (-kv[1], kv[0]))
    shown = lang_items[:12]
    if len(lang_items) > 12:
        shown.append(("other", sum(v for _, v in lang_items[12:])))
    total_lang = sum(v for _, v in lang_items) or 1
    return {
        "max_tokens": max_tokens,
        "counter": tokens.get("counter"),
        "max_tokens_per_source": _dict(tokens.get("max_tokens_per_source")),
        "rows": rows,
        "chart_tokens": charts.token_histograms(hists, max_tokens) if hists else None,
        "per_pin": per_pin,
        "chart_per_pin": charts.count_histograms(panels),
        "languages": [{"language": k, "n": v, "share": v / total_lang} for k, v in lang_items],
        "chart_languages": charts.hbar(shown, "Language mix", "pins") if shown else None,
    }


TRAFFIC_SHARES = (50, 80, 90)
"""Percentages of search traffic the query-cache table answers for."""


def traffic_share_rows(events: Sequence[int], shares: Sequence[int] = TRAFFIC_SHARES) -> list[dict]:
    """How many of the most searched queries make up each share of the traffic.

    In:  events per query (any order); shares in whole percent.
    Out: per share: `share` (fraction), `queries` (the fewest top queries whose events reach it),
         `queries_share` (that count over all queries). Exact: compared in integers.
    """
    cum = pl.Series(events, dtype=pl.Int64).sort(descending=True).cum_sum()
    total = int(cum[-1]) if len(cum) else 0
    rows = []
    for pct in shares:
        # the first rank whose running total reaches pct% of all events
        need = int((cum * 100 < pct * total).sum()) + 1 if total else 0
        rows.append({"share": pct / 100, "queries": need, "queries_share": need / len(cum) if total else None})
    return rows


def queries_section(build: Build) -> dict:
    """The query-cache table from queries.parquet (only counts: no query text is shown)."""
    if not build.has("queries"):
        return {"available": False}
    events = build.read("queries", ["events"]).get_column("events").fill_null(0)
    return {"available": True, "queries": events.len(), "events": int(events.sum()), "rows": traffic_share_rows(events)}


def inputs_section(build: Build, cfg: ReportSettings) -> dict:
    """Rows read/valid/rejected per table, top reject reasons, a few example rejected rows."""
    counts = _dict(build.manifest.get("counts"))
    reasons = _dict(build.manifest.get("rejects"))
    inputs = _dict(build.manifest.get("inputs"))
    rej = build.scan("rejects")
    tables = list(counts) + [t for t in reasons if t not in counts]
    if rej is not None and not tables:
        tables = sorted(t for t in rej.select(pl.col("table").unique()).collect()["table"].to_list() if t is not None)
    out = []
    for t in tables:
        c = _dict(counts.get(t))
        r = _dict(reasons.get(t))
        top = sorted(((str(k), v) for k, v in r.items()), key=lambda kv: (-(_num(kv[1]) or 0), kv[0]))
        examples: list[dict] = []
        if rej is not None and cfg.reject_examples > 0:
            cols = rej.collect_schema().names()
            want = [x for x in ("file", "row", "column", "reason", "detail", "record") if x in cols]
            sample = rej.filter(pl.col("table") == t)
            if "row" in cols:
                sample = sample.sort("row", nulls_last=True)
            # one example per reason first (the top reasons), then more rows of any reason
            firsts = sample.group_by("reason", maintain_order=True).head(1).select(want).collect()
            order = {k: i for i, (k, _) in enumerate(top)}
            picked = sorted(firsts.iter_rows(named=True), key=lambda x: order.get(x.get("reason"), len(order)))[: cfg.reject_examples]
            if len(picked) < cfg.reject_examples:
                more = sample.select(want).head(cfg.reject_examples * 2).collect().iter_rows(named=True)
                for row in more:
                    if len(picked) >= cfg.reject_examples:
                        break
                    if row not in picked:
                        picked.append(row)
            examples = picked
        fp = _dict(inputs.get(t))
        out.append(
            {
                "table": t,
                "read": c.get("read"),
                "valid": c.get("valid"),
                "rejected": c.get("rejected"),
                "rejected_share": (_num(c.get("rejected")) or 0) / _num(c.get("read")) if _num(c.get("read")) else None,
                "reasons": top[:8],
                "reasons_more": max(0, len(top) - 8),
                "examples": examples,
                "files": fp.get("files"),
                "format": fp.get("format"),
            }
        )
    return {"tables": out}


def sample_pin_ids(pin_ids: Sequence[str], n: int, seed: int, requested: Iterable[str] = ()) -> list[str]:
    """Requested pins first (in the order asked), then a seeded sample of the others.

    The sample depends only on the set of ids, the seed and n (ids are sorted first), so the
    same build gives the same examples whatever order the Parquet rows are in.
    """
    requested = list(dict.fromkeys(requested))
    known = set(pin_ids)
    rest = sorted(known - set(requested))
    k = min(max(n, 0), len(rest))
    return requested + sorted(random.Random(seed).sample(rest, k))


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def kept_and_cut(segments: Sequence[str], sep: str, text: str) -> list[tuple[str, str]] | None:
    """Align the final text with the untruncated segments: pieces of ('kept'|'cut'|'extra', str).

    Truncation keeps a prefix of each segment (per-source budgets) and may drop trailing
    segments (the total budget); whatever the assembler added that is not in the sources
    (an ellipsis) comes back as 'extra'. Returns None when the text does not line up with the
    sources (then the page shows the text as it is rather than a wrong diff).
    """
    pieces: list[tuple[str, str]] = []
    pos = 0
    for i, seg in enumerate(segments):
        if i > 0:
            if text.startswith(sep, pos):
                pieces.append(("kept", sep))
                pos += len(sep)
            else:
                pieces.append(("cut", sep))
        n = _common_prefix(seg, text[pos:])
        if n:
            pieces.append(("kept", seg[:n]))
        if n < len(seg):
            pieces.append(("cut", seg[n:]))
        pos += n
        if n < len(seg) and pos < len(text):
            nxt = text.find(sep, pos) if i + 1 < len(segments) else -1
            extra = text[pos : nxt if nxt != -1 else len(text)]
            if extra:
                pieces.append(("extra", extra))
                pos += len(extra)
    if pos < len(text):
        pieces.append(("extra", text[pos:]))
    extra_chars = sum(len(p) for k, p in pieces if k == "extra")
    if extra_chars > max(3, 0.05 * len(text)):
        return None
    merged: list[tuple[str, str]] = []
    for k, p in pieces:
        if merged and merged[-1][0] == k:
            merged[-1] = (k, merged[-1][1] + p)
        else:
            merged.append((k, p))
    return merged


# -- thumbnails ---------------------------------------------------------------------------


def thumbnail_for(ref: str | None, images_root: Path | None, cfg: ReportSettings, max_bytes: int, max_pixels: int) -> tuple[str | None, str]:
    """A pin's image as a small embedded data URI, or why there is none: (data URI | None, status).

    Paths are confined exactly as in the caption stage (pinfeatures.caption.images.resolve_local: under
    the images root, symlinks resolved, absolute paths only inside it), reads are capped at
    max_bytes and decoding at max_pixels (decompression bombs). URLs are never fetched: the
    report is written offline and must not reach out on behalf of the data.
    Status: `ok`, `no image`, `url (not fetched)`, `no images root`, or an images.STATUSES value.
    """
    from PIL import Image

    from pinfeatures.caption import images as images

    if ref is None or not str(ref).strip():
        return None, "no image"
    ref = str(ref)
    if images.is_url(ref):
        return None, "url (not fetched)" if ref.strip().lower().startswith(("http:", "https:")) else "bad_url"
    if images_root is None:
        return None, "no images root"
    try:
        # the caption stage's confinement and reader: O_NOFOLLOW, regular files only, size cap while reading
        data = images.read_local(ref, images_root, max_bytes)
        im = images.decode_image(data, max_pixels=max_pixels, target_size=cfg.thumbnail_px)
    except images.ImageError as exc:
        return None, exc.status
    im.thumbnail((cfg.thumbnail_px, cfg.thumbnail_px), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if cfg.thumbnail_format == "webp":
        im.save(buf, "WEBP", quality=cfg.thumbnail_quality, method=4)
        mime = "image/webp"
    else:
        im.save(buf, "JPEG", quality=cfg.thumbnail_quality, optimize=True)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}", "ok"


def examples_section(build: Build, cfg: ReportSettings, variants: Sequence[str], images_root: Path | None) -> dict:
    """A seeded sample of pins (plus the requested ones): thumbnail, sources, each variant's text."""
    ids = build.scan("features", ["pin_id"]).select(pl.col("pin_id").drop_nulls().unique()).collect()["pin_id"].to_list()
    known = set(ids)
    for p in cfg.pins:
        if p not in known:
            raise InputError(f"pin '{p}' asked for with --pin is not in the build", file=build.describe("features"))
    chosen = sample_pin_ids(ids, cfg.sample_pins, cfg.seed, cfg.pins)
    feats = (
        build.scan("features")
        .filter(pl.col("pin_id").is_in(chosen))
        .unique("pin_id", keep="first", maintain_order=True)
        .collect()
    )
    texts = build.scan("texts").filter(pl.col("pin_id").is_in(chosen)).collect()
    layout = build.layout
    conf = _dict(build.manifest.get("config"))
    cap = _dict(conf.get("caption"))
    max_bytes = cap.get("max_image_bytes") if isinstance(cap.get("max_image_bytes"), int) else 20 * 1024 * 1024
    max_pixels = cap.get("max_image_pixels") if isinstance(cap.get("max_image_pixels"), int) else 40_000_000
    vorder = {v: i for i, v in enumerate(variants)}
    by_id = {r["pin_id"]: r for r in feats.iter_rows(named=True)}
    base_cols = {"pin_id", *SOURCES, "language", "caption_status", "image", "image_sha256", "content_sha256"}
    pins = []
    for pid in chosen:
        r = by_id[pid]
        sources = {s: r.get(s) for s in SOURCES}
        uri, img_status = thumbnail_for(r.get("image"), images_root, cfg, max_bytes, max_pixels)
        vrows = []
        ptexts = sorted(texts.filter(pl.col("pin_id") == pid).iter_rows(named=True), key=lambda t: vorder.get(t["variant"], len(vorder)))
        for t in ptexts:
            text = t["text"] or ""
            pieces = None
            if t["truncated"]:
                pieces = kept_and_cut(layout.lines(Variant.parse(t["variant"]), sources), layout.field_separator, text)
            vrows.append(
                {
                    "variant": t["variant"],
                    "n_tokens": t["n_tokens"],
                    "truncated": bool(t["truncated"]),
                    "pieces": pieces if pieces is not None else [("kept", text)],
                    "aligned": pieces is not None or not t["truncated"],
                }
            )
        extra = {k: v for k, v in r.items() if k not in base_cols}
        pins.append(
            {
                "pin_id": pid,
                "requested": pid in cfg.pins,
                "language": r.get("language"),
                "caption_status": r.get("caption_status"),
                "image": r.get("image"),
                "image_sha256": r.get("image_sha256"),
                "thumb": uri,
                "thumb_status": img_status,
                "sources": [(s, sources[s]) for s in SOURCES],
                "extra": extra,
                "variants": vrows,
            }
        )
    return {"pins": pins, "n_total": len(ids), "seed": cfg.seed, "sample": cfg.sample_pins, "images_root": images_root}


def _read_ablation(build: Build) -> tuple[dict | None, pl.DataFrame | None, list[str]]:
    """evaluation/ablation.json (facts) and ablation.csv (one row per scorer x variant), when
    ablation.json says it was made from this build; else (None, None, notes saying why)."""
    folder = build.path / "evaluation"
    notes: list[str] = []
    data = None
    jpath = folder / "ablation.json"
    if jpath.is_file():
        try:
            data = json.loads(jpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            notes.append(f"evaluation/{jpath.name} is not valid JSON ({exc}); ignored")
    made_from = data.get("build_id") if isinstance(data, dict) else None
    if (jpath.is_file() or (folder / "ablation.csv").is_file()) and made_from != build.build_id:
        notes.append(
            f"evaluation/ was made from build {made_from or '(unknown)'}, not this build {build.build_id}: "
            "not shown; run `pinfeatures evaluate` on this build"
        )
        return None, None, notes
    table = None
    cpath = folder / "ablation.csv"
    if cpath.is_file():
        try:
            table = pl.read_csv(cpath, infer_schema_length=10000)
        except Exception as exc:  # noqa: BLE001 - any unreadable CSV is a note, not a failed report
            notes.append(f"evaluation/{cpath.name} could not be read ({type(exc).__name__}); ignored")
    if table is None and isinstance(data, dict) and isinstance(data.get("rows"), dict):
        # ablation.json keeps rows per scorer: {"rows": {scorer: [row, ...]}}
        rows = [r for v in data["rows"].values() if isinstance(v, list) for r in v if isinstance(r, dict)]
        if rows:
            try:
                table = pl.from_dicts(rows, infer_schema_length=None)
            except Exception:  # noqa: BLE001
                table = None
    return (data if isinstance(data, dict) else None), table, notes


def evaluation_section(build: Build, variants: Sequence[str]) -> dict:
    """The ablation table as `pinfeatures evaluate` wrote it, and its chart (NDCG and gains)."""
    data, table, notes = _read_ablation(build)
    if table is None or table.height == 0:
        return {"present": False, "notes": notes}
    cols = table.columns
    numeric = [c for c, dt in table.schema.items() if dt.is_numeric()]
    metric = next((c for c in numeric if re.fullmatch(r"ndcg(_at_|@)\d+", c.lower())), None)
    metric = metric or next((c for c in numeric if "ndcg" in c.lower()), None)
    names = _dict((data or {}).get("scorer_names"))
    chart = None
    if metric and "variant" in cols:
        scol = "scorer" if "scorer" in cols else None
        present = [v for v in table["variant"].cast(pl.String).unique(maintain_order=True).to_list() if v is not None]
        vlist = [v for v in variants if v in present] + [v for v in present if v not in variants]
        groups = [g for g in table[scol].cast(pl.String).unique(maintain_order=True).to_list()] if scol else [None]
        values, deltas, labels = [], [], None
        for g in groups:
            sub = table.filter(pl.col(scol).cast(pl.String) == g) if scol else table
            by_v = {str(r["variant"]): r for r in sub.iter_rows(named=True)}
            name = str(names.get(g, g)) if g is not None else metric
            values.append((name, [_num(by_v.get(v, {}).get(metric)) for v in vlist]))
            if all(c in cols for c in ("delta", "ci_low", "ci_high")):
                deltas.append((name, *[[_num(by_v.get(v, {}).get(c)) for v in vlist] for c in ("delta", "ci_low", "ci_high")]))
                if labels is None and "row_label" in cols:
                    labels = [str(by_v.get(v, {}).get("row_label") or v) for v in vlist]
        if not any(any(d is not None for d in x[1]) for x in deltas):
            deltas = []
        if vlist and any(any(x is not None for x in s[1]) for s in values):
            chart = charts.ablation_chart(vlist, values, metric, deltas, labels)
    rows = [[_fmt_cell(v) for v in r] for r in table.head(500).iter_rows()]
    facts = []
    if data:
        for key in ("judgments", "model_name", "device", "skipped", "scorer_desc", "config", "timings"):
            if key in data and data[key] not in (None, {}, []):
                facts.extend(_flatten(data[key], key))
    return {"present": True, "columns": cols, "rows": rows, "more": max(0, table.height - 500), "chart": chart, "metric": metric, "facts": facts, "notes": notes}


def _fmt_cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if not math.isnan(v) else "NaN"
    return "" if v is None else str(v)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested dict as (dotted.key, JSON value) rows, for the run-facts tables."""
    if isinstance(obj, dict) and obj:
        out = []
        for k, v in obj.items():
            out.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    # plain strings as they are; anything else (and strings whose whitespace matters: a "\n"
    # separator) as JSON, so an empty or invisible value still shows
    plain = isinstance(obj, str) and obj and obj.strip() == obj and obj.isprintable()
    return [(prefix, obj if plain else json.dumps(obj, ensure_ascii=False))]


def notices(manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    """The build's warnings and notes (the demo captioner's noise included, for builds that predate notes)."""
    from pinfeatures.build.health import caption_notes

    notes = manifest.get("notes")
    notes = notes if isinstance(notes, list) else caption_notes(_dict(manifest.get("caption")))
    warnings = manifest.get("warnings") if isinstance(manifest.get("warnings"), list) else []
    return [{"kind": "warning", "text": str(w)} for w in warnings] + [{"kind": "note", "text": str(n)} for n in notes]


def facts_section(build: Build) -> dict:
    """Config, versions, caption model and settings, cache hits, timings, inputs, outputs."""
    m = build.manifest
    timings = _dict(m.get("timings"))
    stage_times = [(k, _num(v)) for k, v in timings.items() if k != "total" and _num(v) is not None]
    caption = _dict(m.get("caption"))
    cache = [(k, v) for k, v in _flatten(caption) if "cache" in k.lower() or "hit" in k.lower()]
    return {
        "pinfeatures_version": m.get("pinfeatures_version"),
        "config": _flatten(_dict(m.get("config"))),
        "versions": _flatten(_dict(m.get("versions"))),
        "caption": _flatten(caption),
        "caption_config": _flatten(_dict(_dict(m.get("config")).get("caption"))),
        "cache": cache,
        "privacy": _flatten(_dict(m.get("privacy"))),
        "timings": stage_times,
        "total": _num(timings.get("total")),
        "chart_timings": charts.hbar(stage_times, "Time per stage", "seconds", color=charts.MUTED) if stage_times else None,
        "inputs": [(t, _dict(v)) for t, v in _dict(m.get("inputs")).items()],
        "outputs": [(k, _dict(v)) for k, v in _dict(m.get("outputs")).items()],
    }


# -- rendering ----------------------------------------------------------------------------

_SCRIPT = """
document.querySelectorAll('[data-toggle]').forEach(function (b) {
  b.addEventListener('click', function () {
    var open = b.getAttribute('data-toggle') === 'open';
    document.querySelectorAll('#examples details').forEach(function (d) { d.open = open; });
  });
});
""".strip()
"""The page's one script: expand/collapse all example cards. Allowed by its hash in the CSP."""


def _show(value: Any, limit: int | None = None):
    """Escape a data value for the page and make invisible/bidi controls visible as U+XXXX."""
    from markupsafe import Markup

    if value is None:
        return Markup('<span class="null">null</span>')
    text = value if isinstance(value, str) else (json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else str(value))
    more = ""
    if limit is not None and len(text) > limit:
        more = f"\u2026 (+{len(text) - limit} chars)"
        text = text[:limit]
    escaped = html.escape(text, quote=True)
    escaped = _CONTROL_RE.sub(lambda m: f'<span class="ctl" title="control character">U+{ord(m.group(0)):04X}</span>', escaped)
    if more:
        escaped += f'<span class="more">{html.escape(more)}</span>'
    return Markup(escaped)


def _pct(value: Any) -> str:
    v = _num(value)
    return "–" if v is None else f"{v:.1%}"


def _int(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "–" if value is None else str(value)
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.2f}"


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,  # every {{ }} is escaped unless it is Markup we built (charts, _show)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["show"] = _show
    env.filters["pct"] = _pct
    env.filters["int"] = _int
    env.filters["num"] = lambda v: "" if _num(v) is None else repr(_num(v))
    return env


def render_report(build_dir: Path, cfg: ReportSettings, *, images_root: Path | None = None) -> str:
    """The report page for a build folder, as an HTML string (see write_report)."""
    build = open_build(build_dir)
    if images_root is None:
        root = build.manifest.get("images_root")
        images_root = Path(root) if isinstance(root, str) and root else None
    variants = build.variant_names
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    )
    m = build.manifest
    counts = _dict(m.get("counts"))
    ctx = {
        "title": f"pinfeatures report: {build.path.name}",
        "build_dir": str(build.path),
        "build_id": build.build_id,
        "csp": csp,
        "script": _SCRIPT,
        "manifest": m,
        "pins_valid": _dict(counts.get("pins")).get("valid"),
        "report_version": __version__,
        "variants": variants,
        "coverage": coverage_section(build),
        "dist": distributions_section(build, cfg, variants),
        "queries": queries_section(build),
        "inputs": inputs_section(build, cfg),
        "examples": examples_section(build, cfg, variants, images_root),
        "evaluation": evaluation_section(build, variants),
        "facts": facts_section(build),
        "notices": notices(build.manifest),
        "cfg": cfg,
        "sources": SOURCES,
    }
    return _env().get_template("report.html.j2").render(**ctx)


def write_report(build_dir: Path, cfg: ReportSettings, *, images_root: Path | None = None, out: Path | None = None) -> Path:
    """Write the report for a build folder to `out` (default BUILD/report.html); return its path.

    Raises InputError when the build folder lacks a file or a column the report needs, and
    ConfigError for report settings that cannot work. Images that cannot be shown (URLs,
    missing, outside the images root, unreadable, too large) get a placeholder, never an error.
    """
    page = render_report(build_dir, cfg, images_root=images_root)
    out = Path(out) if out is not None else Path(build_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)  # a reader never sees a half-written page
    return out
