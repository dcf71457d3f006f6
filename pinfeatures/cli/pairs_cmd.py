"""`pinfeatures pairs`: training pairs (query, pin, variant, text) from judgments or a stratified sample."""

from __future__ import annotations

import json
from typing import Any

import click

from pinfeatures.errors import ConfigError
from pinfeatures.settings import load_settings


def pairs_settings(config: str | None = None, **flags: Any) -> dict[str, Any]:
    """{"pairs": PairsSettings} from --config ([pairs] table) and the flags."""
    from pinfeatures.pairs.settings import PairsSettings

    return load_settings(config, {"pairs": PairsSettings}, {"pairs": flags})


@click.command()
@click.option("--build", type=click.Path(file_okay=False), help="Build folder (texts.parquet, features.parquet, query_pins.parquet).")
@click.option("--judgments", type=click.Path(), help="Judgments table: one row per judged pair and variant, with its label.")
@click.option("--sample", type=int, help="Draw a stratified sample of N (query, pin) pairs from query_pins.parquet.")
@click.option("--out", type=click.Path(dir_okay=False), help="Output file [default: BUILD/pairs.parquet or .jsonl]; pairs_manifest.json goes next to it.")
@click.option("--format", type=click.Choice(["parquet", "jsonl"]), help="Output format [default: parquet].")
@click.option("--variants", help="ladder, loo, all, or a comma list [default: every variant of the build].")
@click.option("--bands", help="Cumulative traffic shares ending the head and torso bands [default: 0.5,0.8].")
@click.option("--by-country", is_flag=True, default=None, help="Stratify by country as well.")
@click.option("--strata-language", type=click.Choice(["pin", "query"]), help="Stratify by the pin's language or the query's [default: pin].")
@click.option("--allocation", type=click.Choice(["proportional", "equal", "per_stratum", "neyman"]), help="How the sample is spread over strata [default: proportional]; neyman needs --pilot.")
@click.option("--pilot", type=click.Path(), help="Labeled pairs (query, pin_id, label) whose per-stratum label SD drives --allocation neyman.")
@click.option("--per-stratum-size", "--per-stratum", "per_stratum_size", type=int, help="Pairs per stratum with --allocation per_stratum.")
@click.option("--seed", type=int, help="Sampling seed [default: 0].")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML config ([pairs] table, same names as the flags).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="Print nothing but errors.")
def pairs(**params: Any) -> None:
    """Write one row per (query, pin, variant) with its text, and its label or stratum and sampling weight."""
    cfg = pairs_settings(**params)["pairs"]
    if cfg.build is None:
        raise ConfigError("give --build DIR (or build under [pairs])")
    from pinfeatures.pairs.sample import run_pairs

    res = run_pairs(cfg.build, cfg, judgments=cfg.judgments, out=cfg.out)
    m = res.manifest
    coverage = m["text_coverage"]
    # a variant with no text anywhere loses all its rows: never silently, even with --quiet
    for v in coverage["empty_variants"]:
        click.echo(f"pinfeatures: warning: variant {v} has no text for any pin: its {coverage['no_text_by_variant'][v]} row(s) are left out", err=True)
    if cfg.quiet:
        return
    click.echo(f"wrote {m['rows']} rows ({len(m['variants'])} variant(s)) to {res.out}")
    if m["mode"] == "judged":
        j = m["judgments"]
        click.echo(f"judgments: {j['valid']} valid, {j['rejected']} rejected {json.dumps(j['rejects'])}, {j['no_text']} (pair, variant) without text")
    else:
        s = m["sample"]
        click.echo(f"sampled {s['sampled_pairs']} of {s['population_pairs']} (query, pin) pairs, allocation {s['allocation']}, strata by {s['strata_language']} language")
        neyman = "pilot" in m
        click.echo(f"{'stratum':<28} {'population':>10} {'sampled':>8} {'weight':>8}" + (f" {'pilot':>6} {'SD':>6}" if neyman else ""))
        for st in s["strata"]:
            w = f"{st['weight']:.2f}" if st["weight"] else "-"
            sd = (f" {st['pilot_labels']:>6} {st['sd']:>6.3f}" + ("*" if st["sd_source"] == "pooled" else "") if st["sd"] is not None else f" {st['pilot_labels']:>6} {'-':>6}") if neyman else ""
            click.echo(f"{st['stratum']:<28} {st['population']:>10} {st['sampled']:>8} {w:>8}" + sd + {"empty": "  (empty)", "not_sampled": "  (not sampled)"}.get(st["status"], ""))
        if neyman:
            p = m["pilot"]
            click.echo(f"pilot: {p['pairs']} labeled pair(s) from {p['file']}")
            if s["pooled_sd_strata"]:
                click.echo(f"* fewer than 2 pilot labels: pooled SD used for {len(s['pooled_sd_strata'])} stratum(s): {', '.join(s['pooled_sd_strata'])}")
    if coverage["no_text_rows"]:
        parts = ", ".join(f"{v} {n}" for v, n in coverage["no_text_by_variant"].items() if n)
        click.echo(f"{coverage['no_text_rows']} (pair, variant) row(s) without text left out: {parts}")
    click.echo(f"manifest: {res.out.parent / 'pairs_manifest.json'}" if res.out else "")
