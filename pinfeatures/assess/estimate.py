"""Stratified estimation from a labeled sample: pure functions over per-stratum summaries.

Notation (Cochran, *Sampling Techniques*, 3rd ed., ch. 5): stratum h has N_h pairs in the
population and n_h labeled ones drawn by simple random sampling without replacement;
N = sum N_h, W_h = N_h / N, ybar_h and s_h^2 (ddof 1) the mean and variance of the labels
(or of the 0/1 relevant indicator) in the stratum's sample.

* estimate:         ybar_st = sum_h W_h ybar_h
* its variance:     v = sum_h W_h^2 (1 - n_h / N_h) s_h^2 / n_h      (5.6: with the fpc)
* interval:         ybar_st -/+ z_{1 - alpha/2} sqrt(v)
* design effect:    v / v_srs, v_srs = (1 - n / N) S^2 / n, the variance of a simple random
                    sample of the same n, with the population variance estimated from the
                    strata: S^2 = [sum_h (N_h - 1) s_h^2 + sum_h N_h (ybar_h - ybar_st)^2] / (N - 1)
* MDE:              (z_{1 - alpha/2} + z_{power}) sqrt(SE_a^2 + SE_b^2): the smallest true
                    difference between two independent arms that a two-sided test at level
                    alpha detects with the given power; one arm: SE_b = SE_a.
* size for an MDE:  the smallest total n whose Neyman allocation (pinfeatures/pairs/allocation.py,
                    the same rounding and bounds as `pairs --allocation neyman`) gives
                    MDE <= target, with S_h from the sample.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.special import ndtri

from pinfeatures.errors import ConfigError
from pinfeatures.pairs.allocation import MIN_PER_STRATUM, neyman


@dataclass(frozen=True)
class Stratum:
    """One stratum's summary of a labeled sample."""

    name: str
    population: int
    """N_h."""
    n: int
    """n_h, the labeled pairs (at least 2, so s_h^2 exists)."""
    mean: float
    variance: float
    """s_h^2, ddof 1."""

    @property
    def sd(self) -> float:
        return math.sqrt(self.variance)


@dataclass(frozen=True)
class Estimate:
    """A stratified estimate with its uncertainty."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    population: int
    variance_srs: float
    """Variance of the mean of a simple random sample of the same n."""
    design_effect: float | None
    """variance / variance_srs; None when the population shows no variance at all."""
    mde: float
    """Two-arm MDE with an identical second arm."""
    mde_relative: float | None
    """mde / estimate; None when the estimate is 0."""


@dataclass(frozen=True)
class Difference:
    """treatment - control, from two independent samples of one design."""

    control: float
    treatment: float
    difference: float
    se: float
    ci_low: float
    ci_high: float
    relative: float | None
    mde: float


@functools.lru_cache(maxsize=64)
def z_quantile(p: float) -> float:
    """The standard normal p-quantile (scipy; cached: the same few levels are asked for again and again)."""
    return float(ndtri(p))


def mde(se_a: float, se_b: float | None = None, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """(z_{1-alpha/2} + z_power) * sqrt(se_a^2 + se_b^2), se_b = se_a when not given."""
    se_b = se_a if se_b is None else se_b
    return (z_quantile(1 - alpha / 2) + z_quantile(power)) * math.sqrt(se_a**2 + se_b**2)


def summarise(name: str, values: Sequence[float] | np.ndarray, population: int) -> Stratum:
    """A stratum from its sample values (at least 2) and N_h."""
    y = np.asarray(values, dtype=np.float64)
    return Stratum(name, int(population), int(y.size), float(y.mean()), float(y.var(ddof=1)))


def stratified_variance(strata: Sequence[Stratum]) -> float:
    """sum_h W_h^2 (1 - n_h / N_h) s_h^2 / n_h."""
    total = sum(s.population for s in strata)
    return sum((s.population / total) ** 2 * (1 - s.n / s.population) * s.variance / s.n for s in strata)


def population_variance(strata: Sequence[Stratum]) -> float:
    """S^2 estimated from the strata: within plus between, over N - 1."""
    total = sum(s.population for s in strata)
    mean = sum(s.population * s.mean for s in strata) / total
    within = sum((s.population - 1) * s.variance for s in strata)
    between = sum(s.population * (s.mean - mean) ** 2 for s in strata)
    return (within + between) / (total - 1) if total > 1 else 0.0


def stratified_estimate(strata: Sequence[Stratum], *, alpha: float = 0.05, power: float = 0.8) -> Estimate:
    """The stratified mean, its SE with the fpc, a (1 - alpha) interval, design effect and MDE."""
    total = sum(s.population for s in strata)
    n = sum(s.n for s in strata)
    mean = sum(s.population / total * s.mean for s in strata)
    variance = stratified_variance(strata)
    se = math.sqrt(variance)
    half = z_quantile(1 - alpha / 2) * se
    v_srs = (1 - n / total) * population_variance(strata) / n
    m = mde(se, alpha=alpha, power=power)
    return Estimate(
        estimate=mean,
        se=se,
        ci_low=mean - half,
        ci_high=mean + half,
        n=n,
        population=total,
        variance_srs=v_srs,
        design_effect=variance / v_srs if v_srs > 0 else None,
        mde=m,
        mde_relative=m / mean if mean else None,
    )


def difference(control: Estimate, treatment: Estimate, *, alpha: float = 0.05, power: float = 0.8) -> Difference:
    """treatment - control with SE sqrt(SE_c^2 + SE_t^2) (independent samples) and its interval."""
    d = treatment.estimate - control.estimate
    se = math.sqrt(control.se**2 + treatment.se**2)
    half = z_quantile(1 - alpha / 2) * se
    return Difference(
        control=control.estimate,
        treatment=treatment.estimate,
        difference=d,
        se=se,
        ci_low=d - half,
        ci_high=d + half,
        relative=d / control.estimate if control.estimate else None,
        mde=mde(control.se, treatment.se, alpha=alpha, power=power),
    )


def allocation_variance(population: Mapping[str, int], sd: Mapping[str, float], allocation: Mapping[str, int]) -> float:
    """sum_h W_h^2 (1 - n_h / N_h) S_h^2 / n_h for a given allocation (strata with n_h = 0 are skipped)."""
    total = sum(population.values())
    return sum(
        (population[h] / total) ** 2 * (1 - allocation[h] / population[h]) * sd[h] ** 2 / allocation[h]
        for h in population
        if allocation.get(h)
    )


def size_for_mde(
    population: Mapping[str, int],
    sd: Mapping[str, float],
    target: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> tuple[int, dict[str, int], float]:
    """The smallest total n (and its Neyman allocation) whose two-arm MDE is at most `target`.

    Both arms are assumed to have this design and these S_h. Binary search over n between the
    Neyman floor (min(2, N_h) per stratum) and N (a census, MDE 0).
    Out: (n, {stratum: n_h}, the MDE that allocation gives).
    """
    if not target > 0 or not math.isfinite(target):
        raise ConfigError(f"--target-mde must be a number > 0, got {target}")

    def mde_at(n: int) -> tuple[dict[str, int], float]:
        alloc = neyman(population, sd, n)
        return alloc, mde(math.sqrt(allocation_variance(population, sd, alloc)), alpha=alpha, power=power)

    lo = sum(min(MIN_PER_STRATUM, v) for v in population.values())
    hi = sum(population.values())
    alloc, reached = mde_at(lo)
    if reached <= target:
        return lo, alloc, reached
    # invariant: mde_at(lo) > target >= mde_at(hi) (a census has no sampling variance)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mde_at(mid)[1] <= target:
            hi = mid
        else:
            lo = mid
    alloc, reached = mde_at(hi)
    return hi, alloc, reached
