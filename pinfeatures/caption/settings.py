"""Settings of the caption stage: the `[caption]` table of the config, and `pinfeatures caption`'s flags."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pinfeatures.errors import ConfigError
from pinfeatures.settings import Settings, absolute_path, setting

DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEMO_MODEL = "demo"
OPEN_CLIP_PREFIX = "open_clip:"


def default_cache_dir() -> str:
    return os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pinfeatures")


@dataclass(frozen=True)
class CaptionSettings(Settings):
    """Settings of the caption stage (pinfeatures.caption.loop) and of `pinfeatures caption`."""

    TABLE = "caption"

    caption_model: str | None = None
    """Local folder, hub id, `open_clip:ARCH`, or `demo`. None: no captions (status `skipped`)."""
    caption_weights: str | None = setting(None, path=True)
    """Weights file for `open_clip:ARCH`."""
    cache: str = setting(factory=default_cache_dir)
    """The caption and fetch cache: a folder, or an fsspec URL (`s3://bucket/cache`) many workers share
    (keyed by image sha256 and model fingerprint; URLs by URL). A local path is recorded absolute."""
    cache_lease_s: float = setting(600.0, min=1.0, max=86_400.0)
    """How long a worker's claim on an image it is captioning holds before another worker may take it
    over (a dead worker on the same host is taken over at once)."""
    fetch_cache_max_bytes: int = setting(2 * 1024**3, min=0, max=2**50)
    """Most bytes of fetched URL images the cache keeps (oldest trimmed first); 0 keeps none."""
    out: str = setting("out/captions", path=True)
    """`pinfeatures caption` only: the folder captions.parquet is written to."""
    revision: str | None = None
    prompt: str = "Describe this image in one factual sentence."
    max_new_tokens: int = setting(30, min=1, max=1024)
    num_beams: int = setting(1, min=1, max=64)
    min_new_tokens: int | None = setting(None, min=0, max=1024)
    """Force a fixed generation length (benchmarks); None lets the model stop."""
    batch_size: int = setting(16, min=1, max=4096)
    device: str = "auto"
    """`auto` (CUDA if present else CPU), `cpu`, `cuda`, `cuda:1`, ..."""
    dtype: str = setting("auto", choices=DTYPES)
    """`auto` (bf16 on CUDA where supported, fp32 on CPU), `float32`, `bfloat16`, `float16`."""
    trust_remote_code: bool = False
    retry_failed: bool = False
    max_failure_share: float = setting(0.2, min=0.0, max=1.0)
    """A build warns (and with --strict stops) when more than this share of its images fail."""
    max_image_bytes: int = setting(20 * 1024 * 1024, min=1, max=2**40)
    max_image_pixels: int = setting(40_000_000, min=1, max=2**34)
    fetch_timeout_s: float = setting(10.0, min=0.001, max=3600.0)
    fetch_retries: int = setting(2, min=0, max=100)
    fetch_concurrency: int = setting(8, min=1, max=1024)
    fetch_deadline_s: float = setting(60.0, min=0.001, max=86_400.0)
    """Most seconds one image's fetch may take (connect, headers, body, redirects, retries)."""
    allow_private_addresses: bool = False
    """Fetch image URLs on loopback, private, link-local, ... addresses too (refused by default)."""
    loader_workers: int = setting(4, min=0, max=1024)
    cpu_threads: int = setting(0, min=0, max=1024)
    """torch threads when captioning on the CPU; 0: auto = cores minus loader_workers (at least 1),
    because loader threads and oversubscribed torch threads make every op wait on a barrier."""
    clip_check_model: str | None = None
    """open_clip `ARCH` (with clip_check_weights) for the CLIP-score quality check; None: off."""
    clip_check_weights: str | None = setting(None, path=True)
    clip_min_score: float = setting(0.15, min=-1.0, max=1.0)
    drop_flagged: bool = False

    def required_modules(self) -> tuple[str, ...]:
        """The libraries (of the `caption` extra) these settings need; none without a caption model."""
        if not self.caption_model:
            return ()
        open_clip = self.caption_model.startswith(OPEN_CLIP_PREFIX) or self.clip_check_model is not None
        return ("torch", "transformers", "safetensors") + (("open_clip",) if open_clip else ())

    def check(self) -> None:
        if "://" not in self.cache:  # an fsspec URL is kept as given
            object.__setattr__(self, "cache", absolute_path(self.cache))
        model = self.caption_model
        if model is not None:
            if not model.strip():
                raise ConfigError("caption.caption_model is empty; leave it out for no captions")
            if model != DEMO_MODEL and not model.startswith(OPEN_CLIP_PREFIX) and Path(model).expanduser().is_dir():
                object.__setattr__(self, "caption_model", absolute_path(model))  # a local folder: recorded absolute
        if not DEVICE_RE.fullmatch(self.device):
            raise ConfigError(f"caption.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.min_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise ConfigError(
                f"caption.min_new_tokens must be between 0 and max_new_tokens ({self.max_new_tokens}), got {self.min_new_tokens}"
            )
