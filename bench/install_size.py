"""Installed size of the lean install (`pip install pinfeatures`) against the full one (`[caption,eval]`).

Reads pyproject.toml's dependencies, walks their requirement closure through the installed
distributions' metadata (this environment must hold the full install: scripts/setup.sh), and sums
the sizes of each distribution's installed files. Nothing is downloaded.

    python bench/install_size.py
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def closure(requirements: list[str]) -> dict[str, md.Distribution | None]:
    """Every distribution the requirements pull in (None: not installed here)."""
    seen: dict[str, md.Distribution | None] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            seen[name] = None
            continue
        seen[name] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return seen


def installed_bytes(dist: md.Distribution | None) -> int:
    if dist is None:
        return 0
    total = 0
    for f in dist.files or []:
        try:
            total += os.path.getsize(dist.locate_file(f))
        except OSError:
            pass
    return total


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    lean = closure(project["dependencies"])
    full = closure(project["dependencies"] + extras["caption"] + extras["eval"])
    for label, dists in (("lean (pip install pinfeatures)", lean), ("with [caption,eval]", full)):
        missing = sorted(k for k, v in dists.items() if v is None)
        print(f"{label}: {len(dists)} distributions, {sum(map(installed_bytes, dists.values())) / 1e6:,.0f} MB installed"
              + (f" (not installed here: {', '.join(missing)})" if missing else ""))
    top = sorted(((installed_bytes(v), k) for k, v in lean.items()), reverse=True)[:6]
    print("largest in the lean install:", ", ".join(f"{k} {b / 1e6:.0f} MB" for b, k in top))
    added = sorted(((installed_bytes(v), k) for k, v in full.items() if k not in lean), reverse=True)[:6]
    print("largest the extras add:", ", ".join(f"{k} {b / 1e6:.0f} MB" for b, k in added))


if __name__ == "__main__":
    main()
