"""`pinfeatures report`: one self-contained HTML page that shows whether a build is healthy."""

from __future__ import annotations

import click

from pinfeatures.config import make_config


@click.command()
@click.option("--build", "build_dir", required=True, type=click.Path(file_okay=False), help="Build folder (manifest.json, features.parquet, texts.parquet, rejects.parquet).")
@click.option("--images-root", default=None, type=click.Path(file_okay=False), help="Folder the pins' image paths are relative to, for thumbnails [default: the build's --images-root].")
@click.option("--pin", "pins", multiple=True, help="A pin id to show in the examples besides the sample (repeatable).")
@click.option("--sample", "sample_pins", type=int, default=None, help="How many pins to sample for the examples [default: 24].")
@click.option("--seed", type=int, default=None, help="Seed of the example sample [default: 0].")
@click.option("--thumbnail-px", type=int, default=None, help="Longest side of the embedded thumbnails [default: 128].")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Where to write the page [default: BUILD/report.html].")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), help="TOML config ([report] table).")
def report(build_dir, images_root, pins, sample_pins, seed, thumbnail_px, out, config_file) -> None:
    """Write BUILD/report.html: coverage, distributions, inputs and rejects, example pins with
    their texts (truncation shown), the ablation when evaluated, and run facts.

    The page is one file that opens offline: charts, styles and thumbnails are inline.
    Image URLs are not fetched (a placeholder is shown).
    """
    from pathlib import Path

    from pinfeatures.report.run import write_report

    cfg = make_config(
        config_file,
        report__pins=tuple(pins),
        report__sample_pins=sample_pins,
        report__seed=seed,
        report__thumbnail_px=thumbnail_px,
    )
    path = write_report(
        Path(build_dir),
        cfg.report_settings,
        images_root=Path(images_root) if images_root else None,
        out=Path(out) if out else None,
    )
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
