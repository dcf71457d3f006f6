"""Settings of `pinfeatures report`: the `[report]` table of the config file."""

from __future__ import annotations

from dataclasses import dataclass

from pinfeatures.errors import ConfigError
from pinfeatures.settings import Settings, setting


@dataclass(frozen=True)
class ReportSettings(Settings):
    """Settings of `pinfeatures report` (and of `build --write-report`)."""

    TABLE = "report"

    build: str | None = setting(None, path=True)
    images_root: str | None = setting(None, path=True)
    """Root of the pins' local image paths for thumbnails; None: the build's own."""
    out: str | None = setting(None, path=True)
    """Where the page goes; None: BUILD/report.html."""
    sample_pins: int = setting(24, min=0, max=10_000)
    pins: tuple[str, ...] = ()
    seed: int = setting(0, min=0, max=2**63 - 1)
    thumbnail_px: int = setting(128, min=16, max=1024)
    thumbnail_format: str = setting("webp", choices=("webp", "jpeg"))
    """`webp` or `jpeg`: the embedded thumbnails' encoding."""
    thumbnail_quality: int = setting(70, min=1, max=100)
    reject_examples: int = setting(3, min=0, max=1000)
    """Example rows shown per input table in the Inputs section."""
    max_record_chars: int = setting(400, min=20, max=1_000_000)
    """Longer reject records and source values are cut to this many characters on the page."""
    histogram_bins: int = setting(40, min=1, max=200)
    quiet: bool = False

    def check(self) -> None:
        for p in self.pins:
            if not p.strip():
                raise ConfigError(f"report.pins must be non-empty pin ids, got {p!r}")
