"""Variant specs: which combinations of sources get a text.

A variant is a set of sources, named by joining them with `+` in ladder order
(`caption+title+description`). A spec is one of:

  ladder   caption, caption+title, ... (the published ablation: add one source at a time)
  loo      all five, then all five minus each one (leave-one-out)
  all      every non-empty combination (31)
  a comma list of variants, e.g. `title,title+description,caption+queries` (any order inside
  a variant; names are returned in ladder order, duplicates removed)
"""

from __future__ import annotations

from itertools import combinations

from pinfeatures.config import SOURCES
from pinfeatures.errors import ConfigError

PRESETS = ("ladder", "loo", "all")


def variant_name(sources: frozenset[str] | set[str] | tuple[str, ...]) -> str:
    return "+".join(s for s in SOURCES if s in sources)


def variant_sources(name: str) -> tuple[str, ...]:
    """The sources of a variant name, in ladder order."""
    return tuple(s for s in SOURCES if s in set(name.split("+")))


def expand(spec: str) -> list[str]:
    """The variant names a spec stands for, in a stable order."""
    if spec is None or not str(spec).strip():
        raise ConfigError("variants: empty spec; use ladder, loo, all, or a comma list like caption+title,title")
    spec = spec.strip()
    if spec == "ladder":
        return [variant_name(SOURCES[: i + 1]) for i in range(len(SOURCES))]
    if spec == "loo":
        full = variant_name(SOURCES)
        return [full] + [variant_name(tuple(s for s in SOURCES if s != drop)) for drop in SOURCES]
    if spec == "all":
        return [variant_name(c) for n in range(1, len(SOURCES) + 1) for c in combinations(SOURCES, n)]
    names: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise ConfigError(f"variants: empty item in {spec!r}")
        parts = [p.strip() for p in item.split("+")]
        unknown = [p for p in parts if p not in SOURCES]
        if unknown:
            hint = f"; presets are {', '.join(PRESETS)}" if len(parts) == 1 else ""
            raise ConfigError(f"variants: unknown source {unknown[0]!r} in {item!r}; sources are {', '.join(SOURCES)}{hint}")
        if len(set(parts)) != len(parts):
            raise ConfigError(f"variants: a source is repeated in {item!r}")
        name = variant_name(set(parts))
        if name not in names:
            names.append(name)
    return names
