"""`pinfeatures caption`: run the caption stage alone on a pins table.

Reads pins (`--input DIR` holding pins.parquet/csv/jsonl, or `--pins FILE`) through
pinfeatures.build.read, captions the images, and writes OUT/captions.parquet (`pin_id`,
`caption`, `caption_status`, `image_sha256`, `image`) and OUT/caption_manifest.json (the
stage's stats). A later `pinfeatures build --captions OUT/captions.parquet` can use them,
and a build with the same model reuses the cache either way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from pinfeatures.settings import load_settings

_TOP = ("input", "pins", "images_root", "quiet", "encoding")


def caption_settings(config: str | None = None, **flags: Any) -> dict[str, Any]:
    """{"": BuildSettings (input, pins, images_root, quiet, encoding and the [caption] table)}."""
    from pinfeatures.build.settings import BuildSettings

    return load_settings(
        config,
        {"": BuildSettings},
        {"": {k: flags.get(k) for k in _TOP}, "caption": {k: v for k, v in flags.items() if k not in _TOP}},
    )


@click.command()
@click.option("--input", type=click.Path(file_okay=False), help="Folder with pins.parquet/csv/jsonl.")
@click.option("--pins", type=click.Path(dir_okay=True), help="The pins table (instead of --input).")
@click.option("--images-root", type=click.Path(file_okay=False), help="Folder that local image paths are relative to.")
@click.option("--caption-model", help="Model folder, hub id, open_clip:ARCH, or 'demo'.")
@click.option("--caption-weights", type=click.Path(dir_okay=False), help="Weights file for open_clip:ARCH.")
@click.option("--cache", type=click.Path(file_okay=False), help="Cache folder (default ~/.cache/pinfeatures).")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: out/captions].")
@click.option("--retry-failed", is_flag=True, default=None, help="Recaption images whose cached result is a failure.")
@click.option("--allow-private-addresses", is_flag=True, default=None,
              help="Fetch image URLs on loopback, private, link-local, ... addresses too (refused by default: blocked_address).")
@click.option("--encoding", help="Text encoding of a CSV/JSONL pins table (default utf-8; e.g. latin-1, cp1252).")
@click.option("--batch-size", type=int, help="Images per model batch.")
@click.option("--device", help="auto, cpu, cuda, cuda:N.")
@click.option("--dtype", help="auto, float32, bfloat16, float16.")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML config (top-level input, pins, images_root; the [caption] table).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress bar.")
def caption(**params: Any) -> None:
    """Caption each pin's image with a vision-language model (cached by image sha256)."""
    cfg = caption_settings(**params)[""]
    from pinfeatures.build.read import locate, read_located
    from pinfeatures.caption.loop import caption_pins
    from pinfeatures.errors import ConfigError
    from pinfeatures.extras import require

    if cfg.input is None and cfg.pins is None:
        raise ConfigError("give --input DIR (with a pins table) or --pins FILE")
    if not cfg.caption.caption_model:
        raise ConfigError("give --caption-model (a model folder, hub id, open_clip:ARCH, or 'demo')")
    require("caption", "--caption-model", cfg.caption.required_modules())
    table = read_located(locate("pins", cfg.input, cfg.pins, required=True), cfg.encoding)
    pins = table.frame
    frame, stats = caption_pins(
        pins.select("pin_id", "image"), cfg.caption,
        images_root=Path(cfg.images_root) if cfg.images_root else None,
        cache_dir=cfg.caption.cache, quiet=cfg.quiet,
    )
    frame = frame.with_columns(pins["image"].alias("image"))
    out_dir = Path(cfg.caption.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # write-then-rename: a killed run never leaves a half-written output behind
    tmp = out_dir / ".captions.parquet.tmp"
    frame.write_parquet(tmp)
    os.replace(tmp, out_dir / "captions.parquet")
    manifest = {"caption": stats, "input": {"pins": [str(f) for f in table.source.files]},
                "images_root": cfg.images_root, "cache": cfg.caption.cache}
    (out_dir / "caption_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not cfg.quiet:
        counts = ", ".join(f"{k} {v}" for k, v in stats["status_counts"].items())
        click.echo(
            f"captioned {stats['pins']} pins ({stats['unique_images']} unique images: {stats['cache_hits']} from cache, "
            f"{stats['captioned']} now) in {stats['seconds']:.1f} s [{counts}] -> {out_dir / 'captions.parquet'}",
            err=True,
        )
