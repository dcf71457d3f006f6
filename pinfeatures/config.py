"""Configuration: frozen dataclasses filled from defaults, an optional TOML file and CLI flags.

Precedence is flag > TOML file > default. The TOML file holds the same names as the
flags (with `_` for `-`), top-level keys for the build, and one table per stage:

    variants = "ladder"
    board_top_k = 5
    [action_weights]
    save = 3.0
    [caption]
    model = "demo"
    [evaluate]
    ndcg_k = 10

Unknown keys are an error that names the key, so a typo never silently does nothing.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pinfeatures.contracts import ACTIONS, SOURCES
from pinfeatures.errors import ConfigError


def default_cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pinfeatures")


@dataclass(frozen=True)
class CaptionConfig:
    """Settings of the caption stage (issue: VLM captioner)."""

    model: str | None = None
    """Local folder, hub id, `open_clip:ARCH`, or `demo`. None: no captions (status `skipped`)."""
    weights: str | None = None
    """Weights file for `open_clip:ARCH`."""
    revision: str | None = None
    prompt: str = "Describe this image in one factual sentence."
    max_new_tokens: int = 30
    num_beams: int = 1
    min_new_tokens: int | None = None
    """Force a fixed generation length (benchmarks); None lets the model stop."""
    batch_size: int = 16
    device: str = "auto"
    """`auto` (CUDA if present else CPU), `cpu`, `cuda`, `cuda:1`, ..."""
    dtype: str = "auto"
    """`auto` (bf16 on CUDA where supported, fp32 on CPU), `float32`, `bfloat16`, `float16`."""
    trust_remote_code: bool = False
    retry_failed: bool = False
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    fetch_timeout_s: float = 10.0
    fetch_retries: int = 2
    fetch_concurrency: int = 8
    fetch_deadline_s: float = 60.0
    """Most seconds one image's fetch may take (connect, headers, body, redirects, retries)."""
    allow_private_addresses: bool = False
    """Fetch image URLs on loopback, private, link-local, ... addresses too (refused by default)."""
    loader_workers: int = 4
    cpu_threads: int = 0
    """torch threads when captioning on the CPU; 0: auto = cores minus loader_workers (at least 1),
    because loader threads and oversubscribed torch threads make every op wait on a barrier."""
    clip_check_model: str | None = None
    """open_clip `ARCH` (with clip_check_weights) for the CLIP-score quality check; None: off."""
    clip_check_weights: str | None = None
    clip_min_score: float = 0.15
    drop_flagged: bool = False


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of `pinfeatures evaluate`."""

    ndcg_k: int = 10
    scorers: tuple[str, ...] = ("lexical", "semantic")
    model: str | None = None
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    batch_size: int = 64
    max_length: int = 256
    gain: str = "exponential"
    """NDCG gain: `exponential` (2^label - 1) or `linear` (label)."""
    device: str = "auto"
    """Semantic scorer device: `auto` (CUDA if present else CPU), `cpu`, `cuda`, ..."""


@dataclass(frozen=True)
class PairsConfig:
    """Settings of `pinfeatures pairs`."""

    sample: int | None = None
    bands: tuple[float, ...] = (0.5, 0.8)
    """Cumulative traffic shares that end the head and the torso bands."""
    by_country: bool = False
    strata_language: str = "pin"
    """The strata's language: `pin` (the pin's language) or `query` (the query's, query_pins.parquet)."""
    allocation: str = "proportional"
    """`proportional`, `equal`, or `per_stratum` (take `per_stratum_size` from each)."""
    per_stratum_size: int | None = None
    seed: int = 0
    format: str = "parquet"
    variants: str | None = None
    """Variants to emit pairs for; None: every variant in the build."""


@dataclass(frozen=True)
class ReportConfig:
    """Settings of `pinfeatures report`."""

    sample_pins: int = 24
    pins: tuple[str, ...] = ()
    seed: int = 0
    thumbnail_px: int = 128
    thumbnail_format: str = "webp"
    """`webp` or `jpeg`: the embedded thumbnails' encoding."""
    thumbnail_quality: int = 70
    reject_examples: int = 3
    """Example rows shown per input table in the Inputs section."""
    max_record_chars: int = 400
    """Longer reject records and source values are cut to this many characters on the page."""
    histogram_bins: int = 40


@dataclass(frozen=True)
class BuildConfig:
    """Everything `pinfeatures build` needs. Paths are strings so the config serialises to JSON."""

    input: str | None = None
    out: str | None = None
    images_root: str | None = None
    pins: str | None = None
    boards: str | None = None
    saves: str | None = None
    engagements: str | None = None
    captions: str | None = None
    cache: str = field(default_factory=default_cache_dir)
    variants: str = "ladder"
    tokenizer: str | None = None
    quiet: bool = False
    report: bool = False
    previous: str | None = None
    """A build folder to write changes.parquet against (default: the build already in `out`)."""

    # aggregation (sql/)
    board_top_k: int = 5
    query_top_k: int = 5
    query_min_users: int = 3
    query_top_pins: int = 10
    """Pins listed per query in queries.parquet."""
    action_weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "impression": 0.0,
            "closeup": 0.5,
            "click": 1.0,
            "long_click": 2.0,
            "save": 3.0,
        }
    )

    # text normalisation and language
    max_source_chars: int = 4000
    language_max_chars: int = 200
    """How much of a pin's text (title, description, board titles) language detection reads."""
    language_min_letters: int = 3
    language_temperature: float = 3.0
    language_min_confidence: float = 0.5
    """Posterior below which a pin's or a query's language is `und`."""
    language_prior_weight: float = 0.9
    language_prior_min_confidence: float = 0.9

    # text assembly
    source_order: tuple[str, ...] = ("title", "description", "caption", "boards", "queries")
    labels: Mapping[str, str] = field(
        default_factory=lambda: {
            "title": "Title",
            "description": "Description",
            "caption": "Image",
            "boards": "Boards",
            "queries": "Searches",
        }
    )
    field_separator: str = "\n"
    list_separator: str = " | "
    max_tokens: int = 512
    max_tokens_per_source: Mapping[str, int] = field(
        default_factory=lambda: {
            "title": 48,
            "description": 192,
            "caption": 64,
            "boards": 64,
            "queries": 64,
        }
    )

    caption: CaptionConfig = field(default_factory=CaptionConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    report_settings: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        check_build_config(self)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)


def check_build_config(cfg: BuildConfig) -> None:
    """Reject settings that cannot work, with the setting's name in the message."""
    for name in ("board_top_k", "query_top_k", "query_top_pins", "max_tokens", "max_source_chars", "language_max_chars", "language_min_letters"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not cfg.language_temperature > 0:
        raise ConfigError(f"language_temperature must be > 0, got {cfg.language_temperature}")
    for name in ("language_min_confidence", "language_prior_weight", "language_prior_min_confidence"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ConfigError(f"{name} must be between 0 and 1, got {getattr(cfg, name)}")
    if cfg.query_min_users < 1:
        raise ConfigError(f"query_min_users must be >= 1, got {cfg.query_min_users}")
    unknown = set(cfg.action_weights) - set(ACTIONS)
    if unknown:
        raise ConfigError(f"action_weights: unknown action(s) {sorted(unknown)}; known: {list(ACTIONS)}")
    for action, weight in cfg.action_weights.items():
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"action_weights.{action} must be a number >= 0, got {weight!r}")
    if sorted(cfg.source_order) != sorted(SOURCES):
        raise ConfigError(f"source_order must name each of {list(SOURCES)} once, got {list(cfg.source_order)}")
    for src in SOURCES:
        if src not in cfg.labels or not str(cfg.labels[src]).strip():
            raise ConfigError(f"labels.{src} is missing or empty")
        if src not in cfg.max_tokens_per_source or cfg.max_tokens_per_source[src] < 1:
            raise ConfigError(f"max_tokens_per_source.{src} is missing or < 1")
    if not cfg.field_separator or not cfg.list_separator:
        raise ConfigError("field_separator and list_separator must not be empty")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


# -- TOML + flags -------------------------------------------------------------------

_SECTION_ALIASES = {"report": "report_settings"}


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None


def make_config(toml_path: str | Path | None = None, **flags: Any) -> BuildConfig:
    """Build a BuildConfig from an optional TOML file and flags; flags that are None are unset.

    Nested stage settings may be passed as flags named `caption__model=...` (double underscore).
    """
    data: dict[str, Any] = load_toml(toml_path) if toml_path else {}
    data = {(_SECTION_ALIASES.get(k, k)): v for k, v in data.items()}
    for key, value in flags.items():
        if value is None or (isinstance(value, tuple) and not value):
            continue
        if "__" in key:
            section, name = key.split("__", 1)
            section = _SECTION_ALIASES.get(section, section)
            data.setdefault(section, {})
            if not isinstance(data[section], dict):
                raise ConfigError(f"[{section}] must be a table")
            data[section][name] = value
        else:
            data[key] = value
    return _build(BuildConfig, data, where="")


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown setting(s) {sorted(where + k for k in unknown)}; known: {sorted(names)}")
    defaults = {f.name: f.default_factory() for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING}
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, where + key)
        if isinstance(defaults.get(key), Mapping) and isinstance(kwargs[key], Mapping):
            # a table in the file overrides single entries (`[action_weights] save = 5`), not the whole map
            kwargs[key] = {**defaults[key], **kwargs[key]}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # pragma: no cover - defensive
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a table, got {type(value).__name__}")
        return _build(tp, value, where=name + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, name)
    if origin in (tuple,):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, name) for v in value)
    # get_origin(Mapping[str, float]) is collections.abc.Mapping, not typing.Mapping
    if origin in (Mapping, dict, collections.abc.Mapping) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} must be a table, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, f"{name}.{k}") for k, v in value.items()} if args else dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return str(value)
    return value
