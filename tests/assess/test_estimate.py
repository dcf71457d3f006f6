"""The stratified estimator, its SE, design effect, MDE and the sample size for a target MDE:
hand-computed values, and a simulation from a known population (interval coverage)."""

import math

import numpy as np
import pytest

from pinfeatures.assess.estimate import (
    Stratum,
    difference,
    mde,
    population_variance,
    size_for_mde,
    stratified_estimate,
    summarise,
    z_quantile,
)
from pinfeatures.errors import ConfigError

Z975, Z80 = 1.959963984540054, 0.8416212335729143

# stratum A: N 10, labels 5 4 3 4 (mean 4, s^2 = (1 + 0 + 1 + 0) / 3 = 2/3)
# stratum B: N 6, labels 1 2 2 (mean 5/3, s^2 = (4/9 + 1/9 + 1/9) / 2 = 1/3)
A = summarise("A", [5, 4, 3, 4], 10)
B = summarise("B", [1, 2, 2], 6)


def test_z_quantiles():
    assert z_quantile(0.975) == pytest.approx(Z975, abs=1e-12)
    assert z_quantile(0.8) == pytest.approx(Z80, abs=1e-12)


def test_summary():
    assert (A.n, A.population, A.mean) == (4, 10, 4.0)
    assert A.variance == pytest.approx(2 / 3, abs=1e-12)
    assert B.mean == pytest.approx(5 / 3) and B.variance == pytest.approx(1 / 3, abs=1e-12)


def test_stratified_estimate_by_hand():
    e = stratified_estimate([A, B])
    # W = 10/16, 6/16: mean = .625 * 4 + .375 * 5/3 = 3.125
    assert e.estimate == pytest.approx(3.125, abs=1e-12)
    # v = .390625 * (1 - 4/10) * (2/3) / 4 + .140625 * (1 - 3/6) * (1/3) / 3 = .0390625 + .0078125
    assert e.se**2 == pytest.approx(0.046875, abs=1e-12)
    assert (e.ci_low, e.ci_high) == pytest.approx((3.125 - Z975 * math.sqrt(0.046875), 3.125 + Z975 * math.sqrt(0.046875)), abs=1e-12)
    # S^2 = [9 * 2/3 + 5 * 1/3 + 10 * (4 - 3.125)^2 + 6 * (5/3 - 3.125)^2] / 15 = 28.0833.../15
    s2 = (6 + 5 / 3 + 10 * 0.875**2 + 6 * (5 / 3 - 3.125) ** 2) / 15
    assert population_variance([A, B]) == pytest.approx(s2, abs=1e-12)
    # SRS of 7 from 16: (1 - 7/16) S^2 / 7
    assert e.variance_srs == pytest.approx((1 - 7 / 16) * s2 / 7, abs=1e-12)
    assert e.design_effect == pytest.approx(0.046875 / ((1 - 7 / 16) * s2 / 7), abs=1e-12)
    assert e.design_effect == pytest.approx(0.311573, abs=1e-6)
    # MDE = (z.975 + z.8) * sqrt(2) * SE = 2.801585 * 0.306186 = 0.857807
    assert e.mde == pytest.approx((Z975 + Z80) * math.sqrt(2 * 0.046875), abs=1e-12)
    assert e.mde == pytest.approx(0.857807, abs=1e-6)
    assert e.mde_relative == pytest.approx(e.mde / 3.125)
    assert (e.n, e.population) == (7, 16)


def test_difference_by_hand():
    control = stratified_estimate([A, B])
    # treatment A: 5 5 4 4 (mean 4.5, s^2 1/3); B: 3 2 1 (mean 2, s^2 1)
    treatment = stratified_estimate([summarise("A", [5, 5, 4, 4], 10), summarise("B", [3, 2, 1], 6)])
    assert treatment.estimate == pytest.approx(3.5625)
    assert treatment.se**2 == pytest.approx(0.390625 * 0.6 / 3 / 4 + 0.140625 * 0.5 / 3, abs=1e-12)  # .04296875
    d = difference(control, treatment)
    se = math.sqrt(0.046875 + 0.04296875)
    assert d.difference == pytest.approx(0.4375) and d.se == pytest.approx(se, abs=1e-12)
    assert (d.ci_low, d.ci_high) == pytest.approx((0.4375 - Z975 * se, 0.4375 + Z975 * se), abs=1e-12)
    assert d.relative == pytest.approx(0.4375 / 3.125)
    assert d.mde == pytest.approx((Z975 + Z80) * se, abs=1e-12)
    assert mde(0.1) == pytest.approx((Z975 + Z80) * math.sqrt(0.02), abs=1e-12)
    assert mde(0.1, 0.2, alpha=0.1, power=0.9) == pytest.approx((z_quantile(0.95) + z_quantile(0.9)) * math.sqrt(0.05))


def test_no_variance_has_no_design_effect():
    e = stratified_estimate([summarise("A", [4, 4], 10), summarise("B", [4, 4, 4], 5)])
    assert (e.estimate, e.se, e.design_effect) == (4.0, 0.0, None)


def test_size_for_mde_by_hand():
    # S_A = sqrt(2/3), S_B = sqrt(1/3), N 10 and 6. n = 11 -> Neyman 8 + 3:
    # v = .390625 * .2 * (2/3) / 8 + .140625 * .5 * (1/3) / 3 = .0065104 + .0078125 -> MDE .4742;
    # n = 10 -> 7 + 3: v = .0111607 + .0078125 -> MDE .5457 > .5
    n, alloc, reached = size_for_mde({"A": 10, "B": 6}, {"A": A.sd, "B": B.sd}, 0.5)
    assert (n, alloc) == (11, {"A": 8, "B": 3})
    assert reached == pytest.approx((Z975 + Z80) * math.sqrt(2 * (0.390625 * 0.2 * (2 / 3) / 8 + 0.140625 * 0.5 / 9)), abs=1e-12)
    # a large population: the closed form without rounding, n = (sum W S)^2 / (V* + sum W S^2 / N),
    # V* = (MDE / (z.975 + z.8))^2 / 2; here W .5/.5, S 1 and 3, N 10000, MDE .1:
    # V* = (.1 / 2.801585)^2 / 2 = .000637, n = 4 / (.000637 + .0005) = 3517.9 -> 3518, split 1:3
    # -> 879.5 / 2638.5, the tied half unit to a
    v_star = (0.1 / (Z975 + Z80)) ** 2 / 2
    closed = 2.0**2 / (v_star + 5.0 / 10000)
    n, alloc, reached = size_for_mde({"a": 5000, "b": 5000}, {"a": 1.0, "b": 3.0}, 0.1)
    assert n == math.ceil(closed) == 3518
    assert alloc == {"a": 880, "b": 2638} and reached <= 0.1
    with pytest.raises(ConfigError, match="--target-mde must be a number > 0"):
        size_for_mde({"a": 5}, {"a": 1.0}, 0.0)


def test_interval_covers_the_truth_95_percent_of_the_time():
    """Draw 2,000 stratified samples from one known population: the 95% intervals of the mean label
    and of the relevant rate cover the population's values 93-97% of the time, and the mean of
    the estimated variances matches the spread of the estimates."""
    rng = np.random.default_rng(20260101)
    sizes = [3000, 1500, 600]
    probs = [[0.05, 0.1, 0.2, 0.35, 0.3], [0.3, 0.3, 0.2, 0.1, 0.1], [0.1, 0.2, 0.4, 0.2, 0.1]]
    population = [rng.choice(np.arange(1, 6), size=size, p=p).astype(float) for size, p in zip(sizes, probs)]
    truth = {"mean": np.concatenate(population).mean(), "rate": (np.concatenate(population) >= 4).mean()}
    n_h = [60, 40, 30]
    covered = {"mean": 0, "rate": 0}
    estimates, variances = [], []
    reps = 2000
    for _ in range(reps):
        draws = [pop[rng.choice(len(pop), size=n, replace=False)] for pop, n in zip(population, n_h)]
        for metric in ("mean", "rate"):
            values = draws if metric == "mean" else [(d >= 4).astype(float) for d in draws]
            e = stratified_estimate([summarise(str(i), v, size) for i, (v, size) in enumerate(zip(values, sizes))])
            covered[metric] += e.ci_low <= truth[metric] <= e.ci_high
            if metric == "mean":
                estimates.append(e.estimate)
                variances.append(e.se**2)
    for metric in covered:
        assert 0.93 <= covered[metric] / reps <= 0.97, (metric, covered[metric] / reps)
    assert np.mean(variances) == pytest.approx(np.var(estimates, ddof=1), rel=0.1)
    assert abs(np.mean(estimates) - truth["mean"]) < 3 * math.sqrt(np.mean(variances) / reps)
