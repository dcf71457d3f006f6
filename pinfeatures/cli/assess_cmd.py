"""`pinfeatures assess`: relevance estimated from a labeled stratified sample, its interval and MDE."""

from __future__ import annotations

from typing import Any

import click

from pinfeatures.settings import load_settings


def assess_settings(config: str | None = None, **flags: Any) -> dict[str, Any]:
    """{"assess": AssessSettings} from --config ([assess] table) and the flags."""
    from pinfeatures.assess.settings import AssessSettings

    return load_settings(config, {"assess": AssessSettings}, {"assess": flags})


@click.command()
@click.option("--labels", type=click.Path(), help="A labeled sample: the pairs --sample output with a label column (or any table with stratum, sampling_weight, label).")
@click.option("--control", type=click.Path(), help="The control arm's labeled sample (with --treatment).")
@click.option("--treatment", type=click.Path(), help="The treatment arm's labeled sample (with --control), of the same design.")
@click.option("--design", type=click.Path(dir_okay=False), help="The sample's pairs_manifest.json: checks that every stratum is labeled, with its population.")
@click.option("--variant", help="The variant whose labels to use when the table holds several.")
@click.option("--threshold", type=float, help="A label at or above this is relevant [default: 4].")
@click.option("--alpha", type=float, help="Two-sided level of the intervals and the MDE's test [default: 0.05].")
@click.option("--power", type=float, help="Power of the MDE [default: 0.8].")
@click.option("--target-mde", type=float, help="Plan for this absolute MDE: the sample size (Neyman, per stratum) that reaches it.")
@click.option("--target-metric", type=click.Choice(["mean", "relevant_rate"]), help="The metric --target-mde is in [default: mean].")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: assessment/ beside the (control) labels].")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML config ([assess] table, same names as the flags).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="Print nothing but errors.")
def assess(**params: Any) -> None:
    """Estimate the mean label and the relevant rate with their SE, interval, design effect and MDE.

    Writes assess.md, assess.csv, strata.csv and assess.json under --out.
    """
    cfg = assess_settings(**params)["assess"]
    from pinfeatures.assess.run import run_assess

    res = run_assess(cfg)
    if cfg.quiet:
        return
    click.echo(res.markdown, nl=False)
    click.echo(f"\nwrote {', '.join(sorted(res.files))} to {res.out}", err=True)
