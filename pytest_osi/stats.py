"""Small, dependency-free statistics for version diffs.

- :func:`paired_t_interval`: the Student-t confidence interval of the mean of paired
  per-case differences (the t quantile is computed here, from the regularized incomplete beta
  function; accurate to well below 1e-6 for 1..1000 degrees of freedom);
- :func:`bootstrap_interval`: an optional, seeded percentile bootstrap of the same mean;
- :func:`mcnemar_exact`: the exact two-sided McNemar p-value of a pass/fail check measured
  twice on the same cases.

Pure Python (``math``, ``random``, ``statistics``): no numpy or scipy at run time.

Degenerate inputs give no interval rather than a made-up one: no differences or a single one
(the spread is unknown) -> None; differences that are all equal (zero variance) -> the
single-point interval ``[d, d]``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from math import fsum
from statistics import fmean, stdev
from typing import Any, Literal

IntervalMethod = Literal["t", "bootstrap"]

_FPMIN = 1e-300
_EPS = 1e-16
_MAXIT = 10_000


@dataclass(frozen=True)
class Interval:
    """A confidence interval of the mean of ``n`` paired differences."""

    estimate: float  # the mean difference
    low: float
    high: float
    n: int
    level: float = 0.95
    method: IntervalMethod = "t"

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "level": self.level, "method": self.method}


# -- the Student t distribution ---------------------------------------------------------------

def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
    h = d
    for m in range(1, _MAXIT + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),  # even step
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):  # odd step
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _FPMIN else _FPMIN)
            c = 1.0 + aa / c
            c = c if abs(c) > _FPMIN else _FPMIN
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _ibeta(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) with ``y = 1 - x`` passed in separately (computed without cancellation)."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, y) / b


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for 0 <= x <= 1 and a, b > 0."""
    if not (a > 0 and b > 0):
        raise ValueError(f"a and b must be positive, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    return _ibeta(a, b, x, 1.0 - x)


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: half of I_{df/(df+t^2)}(df/2, 1/2)."""
    t2 = t * t
    return 0.5 * _ibeta(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t distribution with ``df`` (> 0, not necessarily whole) degrees of freedom."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = _t_upper_tail(abs(t), df)
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (the inverse of :func:`student_t_cdf`), 0 < p < 1.

    Solved by bracketing and bisection on the tail probability, so that quantiles far out in
    the tail keep their precision: the bracket shrinks until it is a few ulps wide, well
    below 1e-9 relative."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be strictly between 0 and 1, got {p}")
    if p == 0.5:
        return 0.0
    tail = 1.0 - p if p > 0.5 else p  # the target P(T > t), t > 0
    lo, hi = 0.0, 1.0
    while _t_upper_tail(hi, df) > tail:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:  # pragma: no cover - p within 1e-300 of 0 or 1
            break
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_upper_tail(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    t = 0.5 * (lo + hi)
    return t if p > 0.5 else -t


# -- intervals of a mean difference -----------------------------------------------------------

def _checked_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be strictly between 0 and 1, got {level}")
    return level


def paired_t_interval(differences: Sequence[float], level: float = 0.95) -> Interval | None:
    """The paired-t interval of the mean of per-case differences (current - baseline).

    ``mean +- t_{(1+level)/2, n-1} * sd / sqrt(n)``. None for fewer than two differences
    (the spread is undefined); ``[d, d]`` when every difference is the same ``d``."""
    _checked_level(level)
    values = [float(v) for v in differences]
    n = len(values)
    if n < 2:
        return None
    mean = fmean(values)
    if max(values) == min(values):  # zero variance, exactly (fmean may wobble in the last bit)
        return Interval(values[0], values[0], values[0], n, level, "t")
    half = student_t_quantile(0.5 + level / 2.0, n - 1) * stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level, "t")


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default, "type 7")."""
    position = q * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def bootstrap_interval(differences: Sequence[float], *, n_resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> Interval | None:
    """A percentile bootstrap interval of the mean of per-case differences.

    ``n_resamples`` resamples of size n drawn with replacement by ``random.Random(seed)``
    (so a seed gives the same interval every time); the bounds are the (1-level)/2 and
    (1+level)/2 percentiles of the resampled means, interpolated linearly. None for fewer
    than two differences, like :func:`paired_t_interval`."""
    _checked_level(level)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    values = [float(v) for v in differences]
    n = len(values)
    if n < 2:
        return None
    mean = fmean(values)
    if max(values) == min(values):
        return Interval(values[0], values[0], values[0], n, level, "bootstrap")
    rng = random.Random(seed)
    means = sorted(fsum(rng.choices(values, k=n)) / n for _ in range(n_resamples))
    alpha = 1.0 - level
    return Interval(mean, _percentile(means, alpha / 2.0), _percentile(means, 1.0 - alpha / 2.0), n, level,
                    "bootstrap")


# -- McNemar ----------------------------------------------------------------------------------

def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts.

    ``b``: cases that passed before and fail now; ``c``: cases that failed before and pass
    now. Under "no change" each discordant case is a fair coin, so with X ~ Bin(b + c, 1/2):
    ``p = min(1, 2 * P(X <= min(b, c)))``; 1.0 when there is no discordant case."""
    for name, value in (("b", b), ("c", c)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1))  # exact integers: no rounding until the end
    return min(1.0, 2 * tail / 2**n)
