"""Optional extras: `pip install pinfeatures` builds features without torch, transformers or
open_clip; `pinfeatures[caption]` adds captioning (and `--tokenizer`), `pinfeatures[eval]` the
semantic scorer. A command that needs a missing extra stops before reading any data with one
line naming the extra to install (exit 2).
"""

from __future__ import annotations

import importlib.util

from pinfeatures.errors import PinfeaturesError


class MissingExtraError(PinfeaturesError):
    """A feature needs libraries of an extra that is not installed."""


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The top-level modules of `modules` that cannot be imported here (without importing them)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require(extra: str, feature: str, modules: tuple[str, ...]) -> None:
    """Raise MissingExtraError when any of `modules` is missing: `feature` needs `pinfeatures[extra]`."""
    missing = missing_modules(modules)
    if missing:
        raise MissingExtraError(f"{feature} needs {', '.join(missing)}, not installed: pip install 'pinfeatures[{extra}]'")
