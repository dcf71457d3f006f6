"""The shared contracts every stage keeps: the text sources, the action vocabulary, the reject
schema and the variant type. Small on purpose, and imports nothing of ours but errors, so any
module may import it without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

import polars as pl

from pinfeatures.errors import ConfigError

SOURCES: tuple[str, ...] = ("caption", "title", "description", "boards", "queries")
"""The five text sources, in ladder order (the order variant names use)."""

LIST_SOURCES: frozenset[str] = frozenset({"boards", "queries"})
"""Sources stored as lists (in rank order); the others are strings."""

DEFAULT_ACTION_WEIGHTS: dict[str, float] = {"impression": 0.0, "click": 1.0, "closeup": 0.5, "save": 3.0, "long_click": 2.0}
"""The default action vocabulary and its weights; the build's `[action_weights]` may change the
weights and name more actions (any action with a weight is known)."""

ACTIONS: tuple[str, ...] = tuple(DEFAULT_ACTION_WEIGHTS)

# -- rejects ---------------------------------------------------------------------------

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "table": pl.Utf8,
    "file": pl.Utf8,
    "row": pl.Int64,
    "column": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
    "record": pl.Utf8,
}
"""One row per input row that was not used: its table, file, row (CSV/JSONL: the file line where
the record starts, the CSV header being line 1; Parquet: the 1-based row), column, reason, detail,
and the row itself as JSON (scrubbed of personal data)."""


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def make_rejects(table: str, file: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rejects from plain dicts with keys row, column, reason, detail, record."""
    if not rows:
        return empty_rejects()
    return pl.DataFrame(
        [{"table": table, "file": file, **{k: r.get(k) for k in ("row", "column", "reason", "detail", "record")}} for r in rows],
        schema=REJECT_SCHEMA,
    )


# -- variants --------------------------------------------------------------------------
# A variant is a set of sources, named by joining them with `+` in ladder order
# (`caption+title+description`). A spec is one of:
#
#   ladder   caption, caption+title, ... (the published ablation: add one source at a time)
#   loo      all five, then all five minus each one (leave-one-out)
#   all      every non-empty combination (31)
#   a comma list of variants, e.g. `title,title+description,caption+queries` (any order inside
#   a variant; names are returned in ladder order, duplicates removed)

PRESETS = ("ladder", "loo", "all")



def variant_name(sources: frozenset[str] | set[str] | tuple[str, ...]) -> str:
    return "+".join(s for s in SOURCES if s in sources)


@dataclass(frozen=True)
class Variant:
    """A variant as a typed value: its sources in ladder order. `Variant.parse` is the one place a
    name is split back into sources; everything that needs a variant's sources goes through it."""

    sources: tuple[str, ...]

    @classmethod
    def parse(cls, name: str) -> "Variant":
        """The variant a name stands for (sources in any order); ValueError for an unknown or repeated source."""
        parts = [p.strip() for p in str(name).split("+")]
        unknown = [p for p in parts if p not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r} in variant {name!r}; sources are {', '.join(SOURCES)}")
        if len(set(parts)) != len(parts):
            raise ValueError(f"a source is repeated in variant {name!r}")
        return cls(tuple(s for s in SOURCES if s in parts))

    @property
    def name(self) -> str:
        return "+".join(self.sources)

    def __str__(self) -> str:
        return self.name


def variant_sources(name: str) -> tuple[str, ...]:
    """The sources of a variant name, in ladder order."""
    return Variant.parse(name).sources


def ladder(sources: tuple[str, ...] = SOURCES) -> list[str]:
    """The ladder over `sources` (in ladder order): the first alone, then one more at a time."""
    return [variant_name(sources[: i + 1]) for i in range(len(sources))]


def expand(spec: str) -> list[str]:
    """The variant names a spec stands for, in a stable order."""
    if spec is None or not str(spec).strip():
        raise ConfigError("variants: empty spec; use ladder, loo, all, or a comma list like caption+title,title")
    spec = spec.strip()
    if spec == "ladder":
        return ladder()
    if spec == "loo":
        full = variant_name(SOURCES)
        return [full] + [variant_name(tuple(s for s in SOURCES if s != drop)) for drop in SOURCES]
    if spec == "all":
        return [variant_name(c) for n in range(len(SOURCES)) for c in combinations(SOURCES, n + 1)]
    names: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"variants: empty item in {spec!r}")
        try:
            name = Variant.parse(item).name
        except ValueError as exc:
            hint = f"; presets are {', '.join(PRESETS)}" if "+" not in item else ""
            raise ConfigError(f"variants: {exc}{hint}") from None
        if name not in names:
            names.append(name)
    return names
