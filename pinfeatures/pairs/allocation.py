"""How a sample of n pairs is spread over strata: pure functions of the strata's sizes (and SDs).

Every function returns {stratum: n_h} with 0 <= n_h <= N_h, deterministic (ties broken by
stratum name), summing to min(n, N) whenever that is feasible.

* proportional: n_h ~ n * N_h / N.
* equal: n / H each; what a small stratum cannot take goes to the others.
* per_stratum: min(size, N_h) from each stratum (the total follows from the sizes).
* neyman: n_h ~ n * N_h S_h / sum_k N_k S_k (Neyman 1934; Cochran 1977, 5.9), which minimises
  the variance of the stratified mean for a fixed n. With the bounds min(2, N_h) <= n_h <= N_h
  (at least two labels per non-empty stratum, so its variance can be estimated; never more than
  it holds) the optimum is n_h = clip(c N_h S_h, min(2, N_h), N_h) with c set so the n_h sum to
  n: a stratum whose share exceeds N_h is taken whole and the rest spread over the others. When
  the strata with S_h > 0 are all taken whole, what is left goes to the S_h = 0 strata by size.

Real-valued quotas become integers by largest remainders: each stratum gets the floor of its
quota, and the units left go one each to the strata with the largest fractional parts.
"""

from __future__ import annotations

import math
from typing import Mapping

from pinfeatures.errors import ConfigError

ALLOCATIONS = ("proportional", "equal", "per_stratum", "neyman")
MIN_PER_STRATUM = 2
"""Neyman's floor: a stratum needs two labels for its variance (and so the estimate's SE)."""


def largest_remainders(quotas: Mapping[str, float], total: int, caps: Mapping[str, int]) -> dict[str, int]:
    """Round real quotas to integers summing to `total`, never above a stratum's cap.

    The floors first, then one unit each, in order of decreasing fractional part (ties by name),
    to strata below their cap, until `total` is reached (or every stratum is full).
    """
    out = {s: min(int(math.floor(q)), caps[s]) for s, q in quotas.items()}
    left = total - sum(out.values())
    order = sorted(quotas, key=lambda s: (-(quotas[s] - math.floor(quotas[s])), s))
    while left > 0:
        progressed = False
        for s in order:
            if left == 0:
                break
            if out[s] < caps[s]:
                out[s] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return out


def proportional(population: Mapping[str, int], n: int) -> dict[str, int]:
    """n_h ~ n * N_h / N, by largest remainders."""
    total = sum(population.values())
    n = min(n, total)
    if total == 0:
        return {s: 0 for s in population}
    return largest_remainders({s: n * population[s] / total for s in population}, n, population)


def equal(population: Mapping[str, int], n: int) -> dict[str, int]:
    """n / H per non-empty stratum, capped at N_h; the surplus goes to the strata that can take it."""
    out = {s: 0 for s in population}
    left = min(n, sum(population.values()))
    open_ = sorted(s for s in population if population[s] > 0)
    while left > 0 and open_:
        share, extra = divmod(left, len(open_))
        for i, s in enumerate(open_):
            take = min(share + (1 if i < extra else 0), population[s] - out[s])
            out[s] += take
            left -= take
        open_ = [s for s in open_ if out[s] < population[s]]
    return out


def per_stratum(population: Mapping[str, int], size: int) -> dict[str, int]:
    """min(size, N_h) from each stratum."""
    return {s: min(size, population[s]) for s in population}


def water_fill(weight: Mapping[str, float], low: Mapping[str, float], high: Mapping[str, float], n: float) -> dict[str, float]:
    """x_h = clip(c * weight_h, low_h, high_h) with the c that makes sum x_h = n (weights > 0).

    sum x_h is continuous and non-decreasing in c, linear between the breakpoints low_h / w_h
    and high_h / w_h, so c is found exactly on the segment where the sum crosses n. n outside
    [sum low, sum high] gives every stratum its low (or high) bound.
    """
    strata = list(weight)
    if n <= sum(low[s] for s in strata):
        return {s: float(low[s]) for s in strata}
    if n >= sum(high[s] for s in strata):
        return {s: float(high[s]) for s in strata}
    points = sorted({low[s] / weight[s] for s in strata} | {high[s] / weight[s] for s in strata})

    def total(c: float) -> float:
        return sum(min(max(c * weight[s], low[s]), high[s]) for s in strata)

    lo_c = 0.0
    for c in points:
        if total(c) >= n:
            break
        lo_c = c
    # on [lo_c, c] the strata strictly inside their bounds move with slope weight_h
    mid = (lo_c + c) / 2
    inside = [s for s in strata if low[s] < mid * weight[s] < high[s]]
    fixed = sum(min(max(mid * weight[s], low[s]), high[s]) for s in strata if s not in inside)
    c_star = (n - fixed) / sum(weight[s] for s in inside) if inside else c
    return {s: min(max(c_star * weight[s], low[s]), high[s]) for s in strata}


def neyman_quotas(population: Mapping[str, int], sd: Mapping[str, float], n: int, minimum: int = MIN_PER_STRATUM) -> dict[str, float]:
    """Real-valued Neyman quotas x_h = clip(c N_h S_h, min(minimum, N_h), N_h) summing to n.

    This is the variance-minimising allocation under the floor and the cap (its KKT conditions).
    Strata with S_h = 0 stay at their floor unless the others, taken whole, leave units over:
    those are then spread over them by size.
    """
    strata = sorted(s for s in population if population[s] > 0)
    quotas: dict[str, float] = {s: 0.0 for s in population}
    low = {s: float(min(minimum, population[s])) for s in strata}
    high = {s: float(population[s]) for s in strata}
    varying = [s for s in strata if population[s] * sd[s] > 0]
    flat = [s for s in strata if s not in varying]
    room = sum(high[s] for s in varying) + sum(low[s] for s in flat)
    if n <= room:
        quotas.update({s: low[s] for s in flat})
        quotas.update(water_fill({s: population[s] * sd[s] for s in varying}, low, high, n - sum(low[s] for s in flat)))
    else:
        quotas.update({s: high[s] for s in varying})
        quotas.update(water_fill({s: float(population[s]) for s in flat}, low, high, n - sum(high[s] for s in varying)))
    return quotas


def neyman(population: Mapping[str, int], sd: Mapping[str, float], n: int, minimum: int = MIN_PER_STRATUM) -> dict[str, int]:
    """Neyman allocation of n (see the module docstring), rounded by largest remainders.

    Raises ConfigError when n cannot give every non-empty stratum its floor, or an SD is missing
    or negative.
    """
    missing = sorted(s for s in population if population[s] > 0 and s not in sd)
    if missing:
        raise ConfigError(f"neyman allocation: no standard deviation for stratum {missing[0]!r}")
    bad = sorted(s for s in sd if not (sd[s] >= 0 and math.isfinite(sd[s])))
    if bad:
        raise ConfigError(f"neyman allocation: stratum {bad[0]!r} has standard deviation {sd[bad[0]]!r}")
    total = sum(population.values())
    n = min(n, total)
    floor = sum(min(minimum, population[s]) for s in population)
    if n < floor:
        nonempty = sum(1 for s in population if population[s] > 0)
        raise ConfigError(
            f"--sample {n} is too small for neyman allocation: each of the {nonempty} non-empty strata needs "
            f"at least {minimum} pairs to estimate its variance (at least {floor} in all)"
        )
    # a quota is never below its (integer) floor, so rounding it down keeps the floor
    return largest_remainders(neyman_quotas(population, sd, n, minimum), n, population)


def allocate(
    population: Mapping[str, int],
    n: int | None,
    allocation: str,
    per_stratum_size: int | None = None,
    sd: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Sample size per stratum by the named allocation (keys in sorted order)."""
    population = {s: int(population[s]) for s in sorted(population)}
    if allocation == "per_stratum":
        if per_stratum_size is None:
            raise ConfigError("--allocation per_stratum needs --per-stratum N")
        return per_stratum(population, per_stratum_size)
    if n is None:
        raise ConfigError(f"--allocation {allocation} needs --sample N")
    if allocation == "proportional":
        return proportional(population, n)
    if allocation == "equal":
        return equal(population, n)
    if allocation == "neyman":
        if sd is None:
            raise ConfigError("--allocation neyman needs --pilot F (labeled pairs: query, pin_id, label)")
        return neyman(population, sd, n)
    raise ConfigError(f"unknown allocation {allocation!r}; known: {', '.join(ALLOCATIONS)}")


def pooled_sd(groups: Mapping[str, list[float]]) -> float | None:
    """The pooled within-stratum SD: sqrt(sum (n_h - 1) s_h^2 / sum (n_h - 1)) over the strata with
    two or more values; when none has two, the SD of all values together; None below two values."""
    num = den = 0.0
    for values in groups.values():
        if len(values) >= 2:
            m = sum(values) / len(values)
            num += sum((v - m) ** 2 for v in values)
            den += len(values) - 1
    if den > 0:
        return math.sqrt(num / den)
    every = [v for values in groups.values() for v in values]
    if len(every) < 2:
        return None
    m = sum(every) / len(every)
    return math.sqrt(sum((v - m) ** 2 for v in every) / (len(every) - 1))


def stratum_sds(strata: list[str], groups: Mapping[str, list[float]]) -> tuple[dict[str, float], list[str], float]:
    """Each stratum's SD (ddof 1) from its pilot values, or the pooled SD when it has fewer than two.

    Out: (sd per stratum, the strata that took the pooled SD, the pooled SD).
    Raises ConfigError when the pilot has fewer than two values in all.
    """
    pooled = pooled_sd(groups)
    if pooled is None:
        n = sum(len(v) for v in groups.values())
        raise ConfigError(f"the pilot has {n} usable label(s) in this build's strata; neyman allocation needs at least 2 to estimate a standard deviation")
    sds: dict[str, float] = {}
    used_pooled: list[str] = []
    for s in strata:
        values = groups.get(s, [])
        if len(values) >= 2:
            m = sum(values) / len(values)
            sds[s] = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
        else:
            sds[s] = pooled
            used_pooled.append(s)
    return sds, used_pooled, pooled
