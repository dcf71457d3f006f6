"""`pinfeatures build` and `pinfeatures variants`."""

from __future__ import annotations

from typing import Any

import click

from pinfeatures.contracts import expand, variant_sources
from pinfeatures.settings import load_settings


def build_settings(config: str | None = None, **flags: Any) -> dict[str, Any]:
    """The build's settings from --config and the flags: {"": BuildSettings, "report": ReportSettings}."""
    from pinfeatures.build.settings import BuildSettings
    from pinfeatures.report.settings import ReportSettings

    caption_flags = ("caption_model", "caption_weights", "cache", "retry_failed", "allow_private_addresses")
    return load_settings(
        config,
        {"": BuildSettings, "report": ReportSettings},
        {"": {k: v for k, v in flags.items() if k not in caption_flags}, "caption": {k: flags.get(k) for k in caption_flags}},
    )


@click.command()
@click.option("--input", type=click.Path(file_okay=False), help="Folder holding pins, boards, saves, engagements (and captions).")
@click.option("--out", type=click.Path(file_okay=False), help="Folder to write features/texts/rejects/manifest to.")
@click.option("--images-root", type=click.Path(file_okay=False), help="Root of local image paths (default: the input folder). Paths outside it are refused.")
@click.option("--pins", type=click.Path(), help="Pins table (file or folder of Parquet parts); overrides the one in --input.")
@click.option("--boards", type=click.Path(), help="Boards table.")
@click.option("--saves", type=click.Path(), help="Saves table.")
@click.option("--engagements", type=click.Path(), help="Engagements table.")
@click.option("--captions", type=click.Path(), help="Precomputed captions table (pin_id or image_sha256, caption).")
@click.option("--variants", help="ladder (default), loo, all, or a comma list like caption+title,title.")
@click.option("--caption-model", help="Local folder, hub id, open_clip:ARCH, or 'demo' (tiny random model; meaningless captions). Default: no captions.")
@click.option("--caption-weights", type=click.Path(dir_okay=False), help="Weights file for --caption-model open_clip:ARCH.")
@click.option("--cache", type=click.Path(file_okay=False), help="Caption cache folder (default ~/.cache/pinfeatures).")
@click.option("--tokenizer", type=click.Path(file_okay=False), help="Local Hugging Face tokenizer folder for token budgets (default: built-in approximation).")
@click.option("--max-tokens", type=int, help="Total token budget per text (default 512).")
@click.option("--min-users", type=int, help="Privacy threshold k: distinct users per (query, pin) (default 3).")
@click.option("--require-users", is_flag=True, default=None,
              help="Stop (exit 2) when engagements have no user ids, instead of counting k in events with a warning.")
@click.option("--allow-private-addresses", is_flag=True, default=None,
              help="Fetch image URLs on loopback, private, link-local, ... addresses too (refused by default: blocked_address).")
@click.option("--encoding", help="Text encoding of CSV/JSONL inputs (default utf-8; e.g. latin-1, cp1252).")
@click.option("--retry-failed", is_flag=True, default=None, help="Caption images that failed in an earlier run again.")
@click.option("--strict", is_flag=True, default=None, help="Make build warnings errors (exit 2, nothing committed): too many failed images, a variant with no text.")
@click.option("--previous", type=click.Path(file_okay=False), help="Build folder to compare with for changes.parquet (default: the build already in --out).")
@click.option("--write-report", "--report", "write_report", is_flag=True, default=None, help="Also write report.html into --out.")
@click.option("--shards", type=int, help="Hash-partition the pins into N shards (each table becomes a folder of N parts; same rows). Default: no sharding.")
@click.option("--engine", type=click.Choice(["local", "ray"]), help="Run shards in local processes (default) or as Ray tasks (pip install 'pinfeatures[ray]').")
@click.option("--workers", type=int, help="Shards the local engine runs at once (default: min(shards, cores)).")
@click.option("--memory-limit", help="Memory DuckDB may hold before it spills to disk: 2GiB, 512MB, or a share of this machine's memory (default 10%); shards divide it.")
@click.option("--ray-address", help="Ray cluster to join with --engine ray (default: start a local Ray).")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML file with the same settings; a flag wins over the file.")
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress output.")
def build(**params: Any) -> None:
    """Build features.parquet, texts.parquet, rejects.parquet, query_pins.parquet, queries.parquet, changes.parquet and manifest.json."""
    settings = build_settings(**params)
    from pinfeatures.build.health import caption_line
    from pinfeatures.build.run import run_build

    cfg = settings[""]
    manifest = run_build(cfg, settings["report"])
    if not cfg.quiet:
        rejected = ", ".join(f"{t}: {c['rejected']}" for t, c in manifest["counts"].items())
        click.echo(
            f"{manifest['outputs']['features']['rows']} pins, {manifest['outputs']['texts']['rows']} texts "
            f"({len(manifest['variants'])} variants), {manifest['outputs']['rejects']['rows']} rejected rows "
            f"[{rejected}] -> {cfg.out} (build {manifest['build_id']}){_changes_line(manifest)}"
        )
        click.echo(caption_line(manifest["caption"]))


def _changes_line(manifest: dict) -> str:
    ch = manifest["changes"]
    if not ch.get("previous"):
        return ""
    return f"; changes since {ch['previous']['build_id']}: " + ", ".join(f"{ch[k]} {k}" for k in ("added", "changed", "removed"))


@click.command()
@click.argument("spec")
@click.option("--quiet", "-q", is_flag=True, help="Print the variant names only.")
def variants(spec: str, quiet: bool) -> None:
    """Print the variants SPEC expands to (ladder, loo, all, or a comma list)."""
    for name in expand(spec):
        click.echo(name if quiet else f"{name}\t{len(variant_sources(name))} source(s)")
