"""Settings of `pinfeatures evaluate`: the `[evaluate]` table of the config file."""

from __future__ import annotations

from dataclasses import dataclass

from pinfeatures.caption.settings import default_cache_dir
from pinfeatures.errors import ConfigError
from pinfeatures.settings import Settings, setting

SCORERS = ("lexical", "semantic")
GAINS = ("exponential", "linear")


@dataclass(frozen=True)
class EvaluateSettings(Settings):
    """Settings of `pinfeatures evaluate`."""

    TABLE = "evaluate"

    build: str | None = setting(None, path=True)
    """The build folder to evaluate."""
    judgments: str | None = setting(None, path=True)
    out: str | None = setting(None, path=True)
    """Output folder; None: BUILD/evaluation."""
    variants: str | None = None
    """Variants to score; None: every variant of the build."""
    scorers: tuple[str, ...] = setting(SCORERS, choices=SCORERS)
    model: str | None = setting(None, path=True)
    """Local folder of a transformers encoder; None: the bundled default when installed."""
    ndcg_k: int = setting(10, min=1, max=10_000)
    gain: str = setting("exponential", choices=GAINS)
    """NDCG gain: `exponential` (2^label - 1) or `linear` (label)."""
    bm25_k1: float = setting(1.2, min=0.0, max=100.0)
    bm25_b: float = setting(0.75, min=0.0, max=1.0)
    bootstrap_samples: int = setting(1000, min=1, max=1_000_000)
    confidence: float = setting(0.95, min=0.0, max=1.0)
    seed: int = setting(0, min=0, max=2**63 - 1)
    batch_size: int = setting(64, min=1, max=65_536)
    max_length: int = setting(256, min=1, max=65_536)
    device: str = "auto"
    """Semantic scorer device: `auto` (CUDA if present else CPU), `cpu`, `cuda`, ..."""
    cache: str = setting(factory=default_cache_dir, path=True)
    """Embeddings are cached under `<cache>/embeddings/`, by encoder fingerprint and text sha256."""
    skip_embedding_cache: bool = False
    """True: embed every text again, and read and store nothing in the cache."""
    quiet: bool = False

    def check(self) -> None:
        if not self.scorers:
            raise ConfigError(f"evaluate.scorers must name at least one of {', '.join(SCORERS)}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"evaluate.confidence must be in (0, 1), got {self.confidence}")
