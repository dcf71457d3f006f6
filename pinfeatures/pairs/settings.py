"""Settings of `pinfeatures pairs`: the `[pairs]` table of the config file."""

from __future__ import annotations

from dataclasses import dataclass

from pinfeatures.errors import ConfigError
from pinfeatures.pairs.allocation import ALLOCATIONS
from pinfeatures.settings import Settings, check_increasing_shares, setting

FORMATS = ("parquet", "jsonl")
STRATA_LANGUAGES = ("pin", "query")


@dataclass(frozen=True)
class PairsSettings(Settings):
    """Settings of `pinfeatures pairs`."""

    TABLE = "pairs"

    build: str | None = setting(None, path=True)
    judgments: str | None = setting(None, path=True)
    out: str | None = setting(None, path=True)
    """Output file; None: BUILD/pairs.parquet (or .jsonl)."""
    sample: int | None = setting(None, min=1, max=10**9)
    bands: tuple[float, ...] = setting((0.5, 0.8), min=0.0, max=1.0)
    """Cumulative traffic shares that end the head and the torso bands."""
    by_country: bool = False
    strata_language: str = setting("pin", choices=STRATA_LANGUAGES)
    """The strata's language: `pin` (the pin's language) or `query` (the query's, query_pins.parquet)."""
    allocation: str = setting("proportional", choices=ALLOCATIONS)
    """`proportional`, `equal`, `per_stratum` (take `per_stratum_size` from each), or `neyman`
    (by each stratum's label SD in the `pilot`)."""
    pilot: str | None = setting(None, path=True)
    """Labeled pairs (query, pin_id, label) whose per-stratum label SD drives the neyman allocation."""
    per_stratum_size: int | None = setting(None, min=1, max=10**9)
    seed: int = setting(0, min=0, max=2**63 - 1)
    format: str = setting("parquet", choices=FORMATS)
    variants: str | None = None
    """Variants to emit pairs for; None: every variant in the build."""
    quiet: bool = False

    def check(self) -> None:
        check_increasing_shares("pairs.bands", self.bands)
        if self.allocation == "per_stratum" and self.per_stratum_size is None:
            raise ConfigError("--allocation per_stratum needs --per-stratum-size N (N >= 1)")
        if self.allocation != "per_stratum" and self.per_stratum_size is not None:
            raise ConfigError("--per-stratum-size is only used with --allocation per_stratum")
        if self.allocation == "neyman" and self.pilot is None:
            raise ConfigError("--allocation neyman needs --pilot F (labeled pairs: query, pin_id, label)")
        if self.allocation != "neyman" and self.pilot is not None:
            raise ConfigError("--pilot is only used with --allocation neyman")
