"""`pinfeatures assess`: the stratified estimate of relevance from a labeled sample, its
uncertainty, and the effect an experiment of this design can detect.

In:  one labeled sample (`--labels F`) or two arms of one design (`--control F --treatment F`):
     the `pairs --sample` output with a `label` column added by a labeler, or any table with
     `stratum`, `sampling_weight`, `label` (1..5). Parquet, CSV or JSONL. Optional `--design F`:
     the sample's pairs_manifest.json, which names every stratum and its population.
Out: per arm and metric (mean label; relevant rate = share of labels >= threshold) the
     estimate, SE, interval, design effect and MDE; per-stratum rows; with two arms the
     difference and its interval; with a target MDE the sample size that reaches it.
     Printed as Markdown and written as assess.md, assess.csv, strata.csv, assess.json.
Formulas: pinfeatures/assess/estimate.py and docs/assess.md.

Every problem that would make an estimate meaningless stops the command with one line naming
the file, row and column: a label outside 1..5, a weight below 1, weights that differ inside
a stratum or do not add up to a whole stratum size, a stratum with one label (no variance), a
stratum of the design with no labels, two arms whose strata or stratum sizes differ.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pinfeatures.assess.estimate import Estimate, Stratum, difference, size_for_mde, stratified_estimate, summarise
from pinfeatures.assess.settings import METRICS, AssessSettings
from pinfeatures.errors import ConfigError, InputError

LABEL_MIN, LABEL_MAX = 1, 5
WEIGHT_TOLERANCE = 1e-6
"""Relative tolerance for 'equal weights' and 'a whole stratum size' (weights are written as floats)."""


# -- reading and checking a labeled sample ----------------------------------------------------


@dataclass
class Sample:
    """One arm: its checked rows and each stratum's population."""

    name: str
    file: str
    rows: pl.DataFrame
    """stratum, label (f64)."""
    populations: dict[str, int]
    variant: str | None
    read: int


def _first(bad: pl.DataFrame) -> dict[str, Any]:
    return bad.row(0, named=True)


def _more(bad: pl.DataFrame) -> str:
    return f" (and {bad.height - 1} more row(s))" if bad.height > 1 else ""


def read_sample(path: str | Path, name: str, cfg: AssessSettings, design: dict[str, int] | None = None) -> Sample:
    """Read one labeled sample and check it (see the module docstring); N_h from the weights."""
    from pinfeatures.build.read import read_table

    table = read_table(path, "labels")
    if table.unparsed.height:
        r = _first(table.unparsed)
        raise InputError(f"{r['reason']}: {r['detail']}", file=r["file"], row=r["row"])
    raw = table.frame
    file = str(path)
    variant = None
    if "variant" in raw.columns:
        variants = sorted(v for v in raw.get_column("variant").unique().to_list() if v is not None)
        if cfg.variant is not None:
            if cfg.variant not in variants:
                raise ConfigError(f"{file}: no labels for variant {cfg.variant!r}; it has {', '.join(variants) or 'none'}")
            raw = raw.filter(pl.col("variant") == cfg.variant)
            variant = cfg.variant
        elif len(variants) > 1:
            raise ConfigError(f"{file}: labels for {len(variants)} variants ({', '.join(variants)}): choose one with --variant")
        else:
            variant = variants[0] if variants else None
    elif cfg.variant is not None:
        raise ConfigError(f"{file}: --variant {cfg.variant} given but the table has no variant column")
    frame = raw.with_columns(
        pl.col("stratum").cast(pl.Utf8).str.strip_chars().alias("stratum"),
        pl.col("label").cast(pl.Utf8).str.strip_chars().alias("_label_text"),
        pl.col("label").cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False).alias("label"),
        pl.col("sampling_weight").cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False).alias("sampling_weight"),
    )
    if frame.height == 0:
        raise InputError("no labeled rows" + (f" for variant {variant}" if variant else ""), file=file)
    checks = [
        ("stratum", pl.col("stratum").is_null() | (pl.col("stratum") == ""), lambda r: "stratum is empty"),
        ("label", pl.col("label").is_null() | pl.col("label").is_nan(), lambda r: f"label is not a number (got {r['_label_text']!r})"),
        ("label", (pl.col("label") < LABEL_MIN) | (pl.col("label") > LABEL_MAX), lambda r: f"label must be in {LABEL_MIN}..{LABEL_MAX} (got {r['_label_text']})"),
        (
            "sampling_weight",
            pl.col("sampling_weight").is_null() | ~pl.col("sampling_weight").is_finite() | (pl.col("sampling_weight") < 1),
            lambda r: f"sampling_weight must be a number >= 1 (N_h / n_h), got {r['sampling_weight']}",
        ),
    ]
    for column, bad_expr, message in checks:
        bad = frame.filter(bad_expr)
        if bad.height:
            r = _first(bad)
            raise InputError(message(r) + _more(bad), file=file, column=column, row=r["_row"])
    if "query" in frame.columns and "pin_id" in frame.columns:
        dup = frame.filter(pl.struct("query", "pin_id").is_duplicated())
        if dup.height:
            r = dup.tail(1).row(0, named=True)
            raise InputError(f"pair ({r['query']!r}, {r['pin_id']!r}) is labeled more than once" + (f" for variant {variant}" if variant else ""), file=file, column="pin_id", row=r["_row"])
    populations = stratum_populations(frame, file)
    if design is not None:
        check_design(populations, design, file)
    return Sample(name, file, frame.select("stratum", "label"), populations, variant, raw.height)


def stratum_populations(frame: pl.DataFrame, file: str) -> dict[str, int]:
    """N_h = the sum of a stratum's weights, checked: one weight per stratum, a whole sum, n_h >= 2.

    In:  stratum, sampling_weight, _row.
    """
    per = (
        frame.group_by("stratum")
        .agg(
            pl.len().alias("n"),
            pl.col("sampling_weight").sum().alias("total"),
            pl.col("sampling_weight").min().alias("low"),
            pl.col("sampling_weight").max().alias("high"),
            pl.col("_row").sort_by("sampling_weight").last().alias("row_high"),
            pl.col("_row").sort_by("sampling_weight").first().alias("row_low"),
        )
        .sort("stratum")
    )
    populations: dict[str, int] = {}
    for r in per.iter_rows(named=True):
        s = r["stratum"]
        if r["high"] - r["low"] > WEIGHT_TOLERANCE * r["high"]:
            raise InputError(
                f"stratum {s!r}: sampling weights differ inside the stratum ({r['low']:g} at row {r['row_low']}, {r['high']:g} at row {r['row_high']}); "
                "a stratum is a simple random sample, so its pairs share one weight N_h / n_h",
                file=file, column="sampling_weight", row=r["row_high"],
            )
        whole = round(r["total"])
        if abs(r["total"] - whole) > WEIGHT_TOLERANCE * max(1.0, r["total"]):
            raise InputError(
                f"stratum {s!r}: its {r['n']} weights sum to {r['total']:g}, not a whole stratum size N_h "
                "(labels missing for some sampled pairs, or weights changed)",
                file=file, column="sampling_weight",
            )
        if r["n"] < 2:
            raise InputError(
                f"stratum {s!r} has 1 label: a stratum needs at least 2 to estimate its variance (label more of its pairs)",
                file=file, column="stratum", row=r["row_low"],
            )
        populations[s] = int(whole)
    return populations


def read_design(path: str | Path) -> dict[str, int]:
    """Each stratum's population from a `pairs --sample` manifest (pairs_manifest.json)."""
    p = Path(path)
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("design file not found", file=str(p)) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not valid JSON: {exc}", file=str(p)) from None
    strata = (manifest.get("sample") or {}).get("strata") if isinstance(manifest, dict) else None
    if not isinstance(strata, list) or not all(isinstance(s, dict) and "stratum" in s and "population" in s for s in strata):
        raise InputError("not a `pairs --sample` manifest (no sample.strata with stratum and population)", file=str(p))
    return {str(s["stratum"]): int(s["population"]) for s in strata}


def check_design(populations: dict[str, int], design: dict[str, int], file: str) -> None:
    """The sample covers every non-empty stratum of the design, with the design's N_h."""
    unknown = sorted(set(populations) - set(design))
    if unknown:
        raise InputError(f"stratum {unknown[0]!r} is not in the design (--design)", file=file, column="stratum")
    for s, size in design.items():
        if size > 0 and s not in populations:
            raise InputError(
                f"stratum {s!r} of the design has {size} pairs but no labels: the estimate would leave them out "
                "(sample at least 2 per stratum: --allocation neyman or per_stratum)",
                file=file, column="stratum",
            )
        if s in populations and populations[s] != size:
            raise InputError(f"stratum {s!r}: weights sum to {populations[s]}, the design says N_h = {size}", file=file, column="sampling_weight")


def check_same_design(a: Sample, b: Sample) -> None:
    """Two arms are compared only when they are samples of one design: the same strata and N_h."""
    for s in sorted(set(a.populations) | set(b.populations)):
        if s not in a.populations or s not in b.populations:
            only, other = (a, b) if s in a.populations else (b, a)
            raise ConfigError(f"{a.name} and {b.name} are not samples of one design: stratum {s!r} is in {only.name} ({only.file}) only, not in {other.file}")
        if a.populations[s] != b.populations[s]:
            raise ConfigError(
                f"{a.name} and {b.name} are not samples of one design: stratum {s!r} has N_h = {a.populations[s]} in {a.file} "
                f"and {b.populations[s]} in {b.file}"
            )


# -- estimates -----------------------------------------------------------------------------


def metric_values(sample: Sample, metric: str, threshold: float) -> pl.DataFrame:
    """stratum, y: the label, or 1.0 / 0.0 for label >= threshold."""
    y = pl.col("label") if metric == "mean" else (pl.col("label") >= threshold).cast(pl.Float64)
    return sample.rows.select("stratum", y.alias("y"))


def sample_strata(sample: Sample, metric: str, threshold: float) -> list[Stratum]:
    """Per-stratum summaries of one metric, in stratum order."""
    values = metric_values(sample, metric, threshold)
    groups = dict(values.group_by("stratum").agg(pl.col("y")).iter_rows())
    return [summarise(s, groups[s], sample.populations[s]) for s in sorted(sample.populations)]


def arm_result(sample: Sample, cfg: AssessSettings) -> tuple[dict[str, Estimate], dict[str, list[Stratum]]]:
    strata = {m: sample_strata(sample, m, cfg.threshold) for m in METRICS}
    return {m: stratified_estimate(strata[m], alpha=cfg.alpha, power=cfg.power) for m in METRICS}, strata


def strata_rows(arm: str, strata: dict[str, list[Stratum]], estimates: dict[str, Estimate]) -> list[dict[str, Any]]:
    """One dict per stratum: its size, share, sample, and each metric's mean, SD and share of the variance."""
    total = sum(s.population for s in strata["mean"])
    rows = []
    for i, s in enumerate(strata["mean"]):
        row: dict[str, Any] = {"arm": arm, "stratum": s.name, "population": s.population, "n": s.n, "weight_share": s.population / total, "sampling_weight": s.population / s.n}
        for m in METRICS:
            st = strata[m][i]
            contribution = (st.population / total) ** 2 * (1 - st.n / st.population) * st.variance / st.n
            var = estimates[m].se ** 2
            row.update({f"{m}": st.mean, f"{m}_sd": st.sd, f"{m}_variance_share": contribution / var if var > 0 else None})
        rows.append(row)
    return rows


@dataclass
class AssessResult:
    result: dict[str, Any]
    markdown: str
    out: Path | None = None
    files: dict[str, str] = field(default_factory=dict)


def run_assess(cfg: AssessSettings, *, write: bool = True) -> AssessResult:
    """Estimate, compare and plan from the labeled samples the settings name (`labels`, or
    `control` and `treatment`); write the files under `cfg.out` (default: an `assessment/`
    folder beside the (control) labels)."""
    if cfg.labels is None and cfg.control is None:
        raise ConfigError("give --labels F, or both --control F and --treatment F")
    design_sizes = read_design(cfg.design) if cfg.design is not None else None
    named = [("labels", cfg.labels)] if cfg.labels is not None else [("control", cfg.control), ("treatment", cfg.treatment)]
    samples = [read_sample(path, name, cfg, design_sizes) for name, path in named]
    if len(samples) == 2:
        check_same_design(samples[0], samples[1])

    arms: dict[str, Any] = {}
    estimates: dict[str, dict[str, Estimate]] = {}
    strata: dict[str, dict[str, list[Stratum]]] = {}
    for sample in samples:
        estimates[sample.name], strata[sample.name] = arm_result(sample, cfg)
        arms[sample.name] = {
            "file": sample.file,
            "rows": sample.read,
            "variant": sample.variant,
            "strata": len(sample.populations),
            "estimates": {m: dataclasses.asdict(e) for m, e in estimates[sample.name].items()},
            "strata_rows": strata_rows(sample.name, strata[sample.name], estimates[sample.name]),
        }
    result: dict[str, Any] = {
        "config": dataclasses.asdict(cfg),
        "design": cfg.design,
        "arms": arms,
    }
    if len(samples) == 2:
        result["difference"] = {
            m: dataclasses.asdict(difference(estimates["control"][m], estimates["treatment"][m], alpha=cfg.alpha, power=cfg.power))
            for m in METRICS
        }
    if cfg.target_mde is not None:
        base = samples[0]
        chosen = strata[base.name][cfg.target_metric]
        n, allocation, reached = size_for_mde(
            {s.name: s.population for s in chosen}, {s.name: s.sd for s in chosen}, cfg.target_mde, alpha=cfg.alpha, power=cfg.power
        )
        result["target"] = {
            "metric": cfg.target_metric,
            "mde": cfg.target_mde,
            "sd_from": base.name,
            "n": n,
            "population": sum(s.population for s in chosen),
            "allocation": [{"stratum": st.name, "population": st.population, "n": allocation[st.name]} for st in chosen],
            "mde_reached": reached,
            "current_n": sum(s.n for s in chosen),
            "current_mde": estimates[base.name][cfg.target_metric].mde,
        }
    res = AssessResult(result, render_markdown(result))
    if write:
        first = Path(cfg.labels or cfg.control)  # type: ignore[arg-type]
        res.out = Path(cfg.out) if cfg.out is not None else first.parent / "assessment"
        res.files = write_outputs(res, res.out)
    return res


# -- output --------------------------------------------------------------------------------


def _f(x: float | None, digits: int = 3, signed: bool = False) -> str:
    if x is None:
        return "\u2013"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "\u2013" if x is None else f"{100 * x:.1f}%"


def metric_title(metric: str, threshold: float) -> str:
    return "mean label" if metric == "mean" else f"relevant rate (label \u2265 {threshold:g})"


def render_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    level = f"{100 * (1 - cfg['alpha']):g}%"
    lines: list[str] = []
    for arm, a in result["arms"].items():
        e0 = a["estimates"]["mean"]
        variant = f", variant `{a['variant']}`" if a["variant"] else ""
        lines += [
            f"### {arm}: {e0['n']} labeled pairs in {a['strata']} strata, population {e0['population']} pairs{variant}",
            "",
            f"| metric | estimate | SE | {level} interval | design effect | MDE | MDE relative |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for m in METRICS:
            e = a["estimates"][m]
            lines.append(
                f"| {metric_title(m, cfg['threshold'])} | {_f(e['estimate'])} | {_f(e['se'], 4)} | [{_f(e['ci_low'])}, {_f(e['ci_high'])}] "
                f"| {_f(e['design_effect'], 2)} | {_f(e['mde'], 4)} | {_pct(e['mde_relative'])} |"
            )
        lines += [
            "",
            "| stratum | N_h | n_h | W_h | mean label | SD | share of variance | relevant rate | SD | share of variance |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in a["strata_rows"]:
            lines.append(
                f"| {r['stratum']} | {r['population']} | {r['n']} | {_f(r['weight_share'])} | {_f(r['mean'])} | {_f(r['mean_sd'])} | {_pct(r['mean_variance_share'])} "
                f"| {_f(r['relevant_rate'])} | {_f(r['relevant_rate_sd'])} | {_pct(r['relevant_rate_variance_share'])} |"
            )
        lines.append("")
    if "difference" in result:
        lines += [
            "### treatment \u2212 control",
            "",
            f"| metric | control | treatment | difference | {level} interval | relative | MDE |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for m in METRICS:
            d = result["difference"][m]
            sig = "*" if d["ci_low"] > 0 or d["ci_high"] < 0 else ""
            lines.append(
                f"| {metric_title(m, cfg['threshold'])} | {_f(d['control'])} | {_f(d['treatment'])} | {_f(d['difference'], 4, True)}{sig} "
                f"| [{_f(d['ci_low'], 4, True)}, {_f(d['ci_high'], 4, True)}] | {_pct(d['relative'])} | {_f(d['mde'], 4)} |"
            )
        lines.append("")
    if "target" in result:
        t = result["target"]
        lines += [
            f"### Sample size for an MDE of {t['mde']:g} on the {metric_title(t['metric'], cfg['threshold'])}",
            "",
            f"{t['n']} labeled pairs per arm (Neyman allocation, S_h from {t['sd_from']}) give MDE {_f(t['mde_reached'], 4)}; "
            f"the current {t['current_n']} give {_f(t['current_mde'], 4)}.",
            "",
            "| stratum | N_h | n_h |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| {r['stratum']} | {r['population']} | {r['n']} |" for r in t["allocation"]]
        lines.append("")
    lines.append(
        f"_Stratified estimates (sum W_h ybar_h), SE with the finite-population correction; {level} normal intervals; "
        f"design effect: variance against a simple random sample of the same size; "
        f"MDE: two-arm difference detectable at alpha {cfg['alpha']:g} (two-sided) with power {cfg['power']:g}, "
        f"(z_{{1-alpha/2}} + z_power) sqrt(SE_a^2 + SE_b^2), SE_b = SE_a for one arm. Formulas: docs/assess.md._"
    )
    return "\n".join(lines) + "\n"


def write_outputs(res: AssessResult, out: Path) -> dict[str, str]:
    """assess.md, assess.csv (one row per arm x metric, and per difference), strata.csv, assess.json."""
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / name for name in ("assess.md", "assess.csv", "strata.csv", "assess.json")}
    files["assess.md"].write_text(res.markdown, encoding="utf-8")
    rows = [
        {"arm": arm, "metric": m, **{k: v for k, v in e.items()}}
        for arm, a in res.result["arms"].items()
        for m, e in a["estimates"].items()
    ]
    for m, d in res.result.get("difference", {}).items():
        rows.append({"arm": "treatment-control", "metric": m, "estimate": d["difference"], "se": d["se"], "ci_low": d["ci_low"],
                     "ci_high": d["ci_high"], "mde": d["mde"], "mde_relative": None})
    pl.DataFrame(rows, infer_schema_length=None).write_csv(files["assess.csv"])
    strata = [r for a in res.result["arms"].values() for r in a["strata_rows"]]
    pl.DataFrame(strata, infer_schema_length=None).write_csv(files["strata.csv"])
    files["assess.json"].write_text(json.dumps(res.result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {k: str(v) for k, v in files.items()}
