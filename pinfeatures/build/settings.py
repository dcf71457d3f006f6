"""Settings of `pinfeatures build`: the top-level keys of the config file (the caption stage's are `[caption]`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from pinfeatures.caption.settings import CaptionSettings
from pinfeatures.contracts import DEFAULT_ACTION_WEIGHTS, SOURCES
from pinfeatures.errors import ConfigError
from pinfeatures.settings import Settings, check_increasing_shares, memory_bytes, setting

MIN_MEMORY_LIMIT = 32 * 1024**2
"""DuckDB's fixed needs (a few 256 KiB blocks per thread and operator) do not fit below this, even
for the fixtures: a smaller memory_limit is refused before anything is read."""


@dataclass(frozen=True)
class BuildSettings(Settings):
    """Everything `pinfeatures build` needs. Paths are absolute strings so the settings serialise to JSON."""

    TABLE = ""

    input: str | None = setting(None, path=True)
    out: str | None = setting(None, path=True)
    images_root: str | None = setting(None, path=True)
    pins: str | None = setting(None, path=True)
    boards: str | None = setting(None, path=True)
    saves: str | None = setting(None, path=True)
    engagements: str | None = setting(None, path=True)
    captions: str | None = setting(None, path=True)
    variants: str = "ladder"
    tokenizer: str | None = setting(None, path=True)
    quiet: bool = False
    write_report: bool = False
    """Also write report.html (with the `[report]` settings) into `out`."""
    strict: bool = False
    """Build warnings (too many images failed, a variant with no text) are errors: nothing is committed."""
    shards: int = setting(0, min=0, max=1_000_000)
    """0: one whole-input build, one file per table; N >= 1: hash-partition the pins by pin_id into
    N shards and write each table (but queries) as a folder of N Parquet parts (the same rows)."""
    engine: str = setting("local", choices=("local", "ray"))
    """`local` (one process or a process pool) or `ray` (Ray tasks and a Ray Data caption pipeline)."""
    workers: int = setting(0, min=0, max=100_000)
    """Shards the local engine runs at once; 0: min(shards, cores)."""
    ray_address: str | None = None
    """Ray cluster to join (`auto`, `ray://host:10001`); None: start a local Ray."""
    previous: str | None = setting(None, path=True)
    """A build folder to write changes.parquet against (default: the build already in `out`)."""
    memory_limit: str = "10%"
    """Memory DuckDB may hold in the aggregate stage before it spills to a temporary folder inside
    the build's staging (or shard work) folder, removed afterwards: an amount (`2GiB`, `512MB`) or
    a share of this machine's memory (`10%`). A sharded build divides it between the shards that
    run at once. Polars' frames come on top (see README, Performance)."""
    encoding: str = "utf-8"
    """Text encoding of CSV and JSONL inputs (`latin-1`, `cp1252`, ...); bytes that do not decode are counted in a warning."""

    # aggregation (sql/)
    board_top_k: int = setting(5, min=1, max=10_000)
    query_top_k: int = setting(5, min=1, max=10_000)
    min_users: int = setting(3, min=1, max=1_000_000)
    """Privacy threshold k: distinct users per (query, pin)."""
    require_users: bool = False
    """True: engagements without any user id are an error (exit 2), not a warning (k then counts events)."""
    query_top_pins: int = setting(10, min=1, max=10_000)
    """Pins listed per query in queries.parquet."""
    query_bands: tuple[float, ...] = setting((0.5, 0.8), min=0.0, max=1.0)
    """Cumulative traffic shares that end the head and torso bands of queries.parquet (as pairs' `bands`)."""
    action_weights: Mapping[str, float] = setting(factory=lambda: dict(DEFAULT_ACTION_WEIGHTS), min=0.0, max=1e6)
    """Weight of each action; the actions named here are the known actions (others are rejected rows)."""

    # text normalisation and language
    max_source_chars: int = setting(4000, min=1, max=10_000_000)
    language_max_chars: int = setting(200, min=1, max=1_000_000)
    """How much of a pin's title + description (and of each board title) language detection reads."""
    language_min_letters: int = setting(3, min=1, max=1_000_000)
    language_temperature: float = setting(3.0, min=1e-6, max=1e6)
    language_min_confidence: float = setting(0.5, min=0.0, max=1.0)
    """Posterior below which a pin's or a query's language is `und`."""
    language_prior_weight: float = setting(0.9, min=0.0, max=1.0)
    language_prior_min_confidence: float = setting(0.9, min=0.0, max=1.0)
    language_board_agreement: float = setting(0.5, min=0.0, max=1.0)
    """How likely a board title is in its pin's language: bounds each board title's say in the pin's language."""

    # text assembly
    source_order: tuple[str, ...] = ("title", "description", "caption", "boards", "queries")
    labels: Mapping[str, str] = setting(
        factory=lambda: {"title": "Title", "description": "Description", "caption": "Image", "boards": "Boards", "queries": "Searches"}
    )
    field_separator: str = "\n"
    list_separator: str = " | "
    max_tokens: int = setting(512, min=1, max=1_000_000)
    max_tokens_per_source: Mapping[str, int] = setting(
        factory=lambda: {"title": 48, "description": 192, "caption": 64, "boards": 64, "queries": 64}, min=1, max=1_000_000
    )

    caption: CaptionSettings = setting(factory=CaptionSettings)

    def check(self) -> None:
        if self.engine == "ray" and not self.shards:
            raise ConfigError("engine 'ray' runs shards: give shards >= 1 (--shards N)")
        if self.memory_limit_bytes < MIN_MEMORY_LIMIT:
            raise ConfigError(f"memory_limit must be at least 32MiB, got {self.memory_limit!r}")
        if not self.action_weights:
            raise ConfigError("action_weights must name at least one action")
        if any(not a.strip() or a != a.strip().lower() for a in self.action_weights):
            raise ConfigError(f"action_weights: action names are lower case without surrounding spaces, got {sorted(self.action_weights)}")
        check_increasing_shares("query_bands", self.query_bands)
        if sorted(self.source_order) != sorted(SOURCES):
            raise ConfigError(f"source_order must name each of {list(SOURCES)} once, got {list(self.source_order)}")
        for src in SOURCES:
            if src not in self.labels or not str(self.labels[src]).strip():
                raise ConfigError(f"labels.{src} is missing or empty")
        if set(self.max_tokens_per_source) != set(SOURCES):
            raise ConfigError(f"max_tokens_per_source must give each of {list(SOURCES)}, got {sorted(self.max_tokens_per_source)}")
        if not self.field_separator or not self.list_separator:
            raise ConfigError("field_separator and list_separator must not be empty")
        from pinfeatures.build.read import text_codec

        text_codec(self.encoding)  # an unknown encoding fails before any stage starts

    @property
    def memory_limit_bytes(self) -> int:
        """`memory_limit` in bytes (a share taken of this machine's memory)."""
        return memory_bytes("memory_limit", self.memory_limit)

    @property
    def actions(self) -> tuple[str, ...]:
        """The known actions: those `action_weights` names."""
        return tuple(self.action_weights)
