"""`pinfeatures pairs`: training pairs (query, pin, variant, text) from judgments or a stratified sample."""

from __future__ import annotations

import json

import click

from pinfeatures.config import make_config


@click.command()
@click.option("--build", "build_dir", required=True, type=click.Path(file_okay=False), help="Build folder (texts.parquet, features.parquet, query_pins.parquet).")
@click.option("--judgments", default=None, type=click.Path(), help="Judgments table: one row per judged pair and variant, with its label.")
@click.option("--sample", type=int, default=None, help="Draw a stratified sample of N (query, pin) pairs from query_pins.parquet.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Output file [default: BUILD/pairs.parquet or .jsonl]; pairs_manifest.json goes next to it.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl"]), default=None, help="Output format [default: parquet].")
@click.option("--variants", default=None, help="ladder, loo, all, or a comma list [default: every variant of the build].")
@click.option("--bands", default=None, help="Cumulative traffic shares ending the head and torso bands [default: 0.5,0.8].")
@click.option("--by-country", is_flag=True, default=None, help="Stratify by country as well.")
@click.option("--strata-language", type=click.Choice(["pin", "query"]), default=None, help="Stratify by the pin's language or the query's [default: pin].")
@click.option("--allocation", type=click.Choice(["proportional", "equal", "per_stratum"]), default=None, help="How the sample is spread over strata [default: proportional].")
@click.option("--per-stratum", "per_stratum_size", type=int, default=None, help="Pairs per stratum with --allocation per_stratum.")
@click.option("--seed", type=int, default=None, help="Sampling seed [default: 0].")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), help="TOML config ([pairs] table).")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def pairs(build_dir, judgments, sample, out, fmt, variants, bands, by_country, strata_language, allocation, per_stratum_size, seed, config_file, quiet) -> None:
    """Write one row per (query, pin, variant) with its text, and its label or stratum and sampling weight."""
    from pinfeatures.pairs.sample import run_pairs

    if bands is not None:
        try:
            bands = tuple(float(b) for b in bands.split(",") if b.strip())
        except ValueError:
            raise click.BadParameter(f"expected comma-separated numbers, got {bands!r}", param_hint="--bands") from None
    cfg = make_config(
        config_file,
        pairs__sample=sample,
        pairs__format=fmt,
        pairs__variants=variants,
        pairs__bands=bands,
        pairs__by_country=by_country,
        pairs__strata_language=strata_language,
        pairs__allocation=allocation,
        pairs__per_stratum_size=per_stratum_size,
        pairs__seed=seed,
    )
    res = run_pairs(build_dir, cfg.pairs, judgments=judgments, out=out)
    if quiet:
        return
    m = res.manifest
    click.echo(f"wrote {m['rows']} rows ({len(m['variants'])} variant(s)) to {res.out}")
    if m["mode"] == "judged":
        j = m["judgments"]
        click.echo(f"judgments: {j['valid']} valid, {j['rejected']} rejected {json.dumps(j['rejects'])}, {j['no_text']} (pair, variant) without text")
    else:
        s = m["sample"]
        click.echo(f"sampled {s['sampled_pairs']} of {s['population_pairs']} (query, pin) pairs, allocation {s['allocation']}")
        click.echo(f"{'stratum':<28} {'population':>10} {'sampled':>8} {'weight':>8}")
        for st in s["strata"]:
            w = f"{st['weight']:.2f}" if st["weight"] else "-"
            click.echo(f"{st['stratum']:<28} {st['population']:>10} {st['sampled']:>8} {w:>8}" + {"empty": "  (empty)", "not_sampled": "  (not sampled)"}.get(st["status"], ""))
    click.echo(f"manifest: {res.out.parent / 'pairs_manifest.json'}" if res.out else "")
