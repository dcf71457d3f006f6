"""`pinfeatures report`: one self-contained HTML page that shows whether a build is healthy."""

from __future__ import annotations

from typing import Any

import click

from pinfeatures.errors import ConfigError
from pinfeatures.settings import load_settings


def report_settings(config: str | None = None, **flags: Any) -> dict[str, Any]:
    """{"report": ReportSettings} from --config ([report] table) and the flags."""
    from pinfeatures.report.settings import ReportSettings

    return load_settings(config, {"report": ReportSettings}, {"report": flags})


@click.command()
@click.option("--build", type=click.Path(file_okay=False), help="Build folder (manifest.json, features.parquet, texts.parquet, rejects.parquet).")
@click.option("--images-root", type=click.Path(file_okay=False), help="Folder the pins' image paths are relative to, for thumbnails [default: the build's --images-root].")
@click.option("--pins", "--pin", "pins", multiple=True, help="A pin id to show in the examples besides the sample (repeatable).")
@click.option("--sample-pins", "--sample", "sample_pins", type=int, help="How many pins to sample for the examples [default: 24].")
@click.option("--seed", type=int, help="Seed of the example sample [default: 0].")
@click.option("--thumbnail-px", type=int, help="Longest side of the embedded thumbnails [default: 128].")
@click.option("--out", type=click.Path(dir_okay=False), help="Where to write the page [default: BUILD/report.html].")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML config ([report] table, same names as the flags).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="Print nothing but errors.")
def report(**params: Any) -> None:
    """Write BUILD/report.html: coverage, distributions, inputs and rejects, example pins with
    their texts (truncation shown), the ablation when evaluated, and run facts.

    The page is one file that opens offline: charts, styles and thumbnails are inline.
    Image URLs are not fetched (a placeholder is shown).
    """
    cfg = report_settings(**params)["report"]
    if cfg.build is None:
        raise ConfigError("give --build DIR (or build under [report])")
    from pathlib import Path

    from pinfeatures.report.run import write_report

    path = write_report(
        Path(cfg.build),
        cfg,
        images_root=Path(cfg.images_root) if cfg.images_root else None,
        out=Path(cfg.out) if cfg.out else None,
    )
    if not cfg.quiet:
        click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
