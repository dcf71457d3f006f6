"""Settings of `pinfeatures assess`: the `[assess]` table of the config file."""

from __future__ import annotations

from dataclasses import dataclass

from pinfeatures.errors import ConfigError
from pinfeatures.settings import Settings, setting

METRICS = ("mean", "relevant_rate")
"""The mean label, and the share of labels >= threshold."""


@dataclass(frozen=True)
class AssessSettings(Settings):
    """Settings of `pinfeatures assess`."""

    TABLE = "assess"

    labels: str | None = setting(None, path=True)
    """One labeled sample (the pairs --sample output with a label column, or stratum, sampling_weight, label)."""
    control: str | None = setting(None, path=True)
    treatment: str | None = setting(None, path=True)
    """Two arms of one design, compared treatment - control."""
    design: str | None = setting(None, path=True)
    """The sample's pairs_manifest.json: every stratum of the design must be labeled, with its population."""
    out: str | None = setting(None, path=True)
    """Output folder; None: assessment/ beside the (control) labels."""
    variant: str | None = None
    """The variant whose labels to use when the table holds several."""
    threshold: float = setting(4.0, min=1.0, max=5.0)
    """A pair is relevant when its label is at least this."""
    alpha: float = setting(0.05, min=0.0, max=1.0)
    """Two-sided level: the intervals are 1 - alpha, the MDE's test is at alpha."""
    power: float = setting(0.8, min=0.0, max=1.0)
    target_mde: float | None = None
    """An absolute MDE to plan for: the total sample (and its Neyman allocation) that reaches it."""
    target_metric: str = setting("mean", choices=METRICS)
    """The metric target_mde is in."""
    quiet: bool = False

    def check(self) -> None:
        if self.labels is not None and (self.control is not None or self.treatment is not None):
            raise ConfigError("give --labels F (one sample) or --control F --treatment F (two arms), not both")
        if self.labels is None and (self.control is None) != (self.treatment is None):
            raise ConfigError("give --labels F, or both --control F and --treatment F")
        for name in ("alpha", "power"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"assess.{name} must be strictly between 0 and 1, got {getattr(self, name):g}")
        if self.target_mde is not None and not self.target_mde > 0:
            raise ConfigError(f"assess.target_mde must be > 0, got {self.target_mde:g}")
