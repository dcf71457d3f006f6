"""What a build says about itself so nothing fails silently: the caption line of the summary, the
warnings (too many images failed, a variant with no text at all) and notes (the demo captioner).

In:  the caption stage's stats (`status_counts`, `model`), the build's settings, the images root
     used, the assembled texts.
Out: strings: `caption_line` for the summary, `caption_warnings` / `empty_variant_warnings` for
     stderr and the manifest's `warnings`, `caption_notes` for the manifest's `notes` (the
     report shows both). `--strict` turns the warnings into an error (StrictError, exit 2) before
     the build is committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import polars as pl

from pinfeatures.caption.images import STATUSES
from pinfeatures.caption.settings import DEMO_MODEL
from pinfeatures.contracts import variant_sources
from pinfeatures.errors import PinfeaturesError

IMAGE_FAILURES: tuple[str, ...] = tuple(s for s in STATUSES if s != "ok")
"""caption_status values that mean the image could not be used."""

NOT_CAPTIONED: tuple[str, ...] = ("skipped", "precomputed")
"""caption_status values of pins the caption model did not handle."""

DEMO_NOTE = "captions come from the demo model (tiny random weights): they are noise, not descriptions of the images"


class StrictError(PinfeaturesError):
    """A build warning that --strict makes an error."""


def caption_line(stats: Mapping[str, Any]) -> str:
    """One summary line: the caption model (or why there is none) and the pins per caption_status."""
    counts = ", ".join(f"{status} {n}" for status, n in sorted(_counts(stats).items(), key=lambda kv: (-kv[1], kv[0])))
    model = stats.get("model")
    if not model:
        source = "precomputed captions only" if stats.get("precomputed") else "no caption model (--caption-model), no captions table"
        return f"captions: {source}: {counts or 'no pins'}"
    noise = " (demo: captions are noise)" if model == DEMO_MODEL else ""
    return f"captions: model {model}{noise}: {counts or 'no pins'}"


def caption_notes(stats: Mapping[str, Any]) -> list[str]:
    return [DEMO_NOTE] if stats.get("model") == DEMO_MODEL else []


def caption_warnings(stats: Mapping[str, Any], *, max_failure_share: float, images_root_given: bool, images_root: Path | None) -> list[str]:
    """A warning when more than `max_failure_share` of the images the model was given failed,
    naming the most common failure and its likely cause."""
    counts = _counts(stats)
    tried = sum(n for status, n in counts.items() if status not in NOT_CAPTIONED)
    failed = {status: n for status, n in counts.items() if status in IMAGE_FAILURES}
    if not tried or sum(failed.values()) <= max_failure_share * tried:
        return []
    top, n = max(failed.items(), key=lambda kv: (kv[1], kv[0]))
    others = ", ".join(f"{s} {c}" for s, c in sorted(failed.items()) if s != top)
    cause = _likely_cause(top, images_root_given, images_root)
    return [
        f"{n} of {tried} images {top}{f' (also {others})' if others else ''}; {cause} "
        f"(more than caption.max_failure_share = {max_failure_share:g} of the images failed)"
    ]


def empty_variant_warnings(texts: pl.DataFrame, variants: Sequence[str]) -> list[str]:
    """A warning per variant whose text is empty for every pin (its sources are absent everywhere)."""
    if texts.height == 0:
        return []
    has_text = texts.group_by("variant").agg((pl.col("text").str.len_chars() > 0).any().alias("any"))
    empty = set(has_text.filter(~pl.col("any")).get_column("variant").to_list())
    out = []
    for v in variants:
        if v in empty:
            sources = variant_sources(v)
            what = f"{sources[0]} is" if len(sources) == 1 else f"{', '.join(sources)} are"
            out.append(f"variant {v!r} has no text for any pin: {what} empty for every pin")
    return out


def _counts(stats: Mapping[str, Any]) -> dict[str, int]:
    counts = stats.get("status_counts")
    return {str(k): int(v) for k, v in counts.items()} if isinstance(counts, Mapping) else {}


def _likely_cause(status: str, images_root_given: bool, images_root: Path | None) -> str:
    root = str(images_root) if images_root is not None else "(none)"
    if status == "missing":
        if not images_root_given:
            return f"local image paths are read under --images-root, which was not given (they were looked up under {root})"
        return f"no such files under --images-root {root} (or pins without an image)"
    return {
        "outside_root": f"the image paths lead outside the images root {root} (absolute paths or `..`); point --images-root at their folder",
        "fetch_failed": "the image URLs could not be fetched (no network, or the servers refused or timed out)",
        "blocked_address": "the image URLs point at private, loopback or link-local addresses; --allow-private-addresses fetches them",
        "bad_url": "the image values are neither local paths nor http(s) URLs",
        "unreadable": "the files are not images in a format the decoder accepts (JPEG, PNG, GIF, WEBP, AVIF, BMP, TIFF)",
        "too_large": "the images exceed [caption] max_image_bytes or max_image_pixels",
    }.get(status, "see the caption_status column of features.parquet")
