"""Unit tests for pytest_osi.stats.

Reference values are either closed forms computed by hand (shown in the comments) or come from
scipy 1.17 (``scipy.stats.t.ppf`` / ``t.cdf`` / ``t.interval`` / ``binomtest``), quoted in the
comments; scipy is not needed to run these tests.
"""

from __future__ import annotations

import math

import pytest

from pytest_osi.stats import (
    Interval,
    _percentile,
    bootstrap_interval,
    mcnemar_exact,
    paired_t_interval,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_quantile,
)

PS = (0.0005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.6, 0.9, 0.95, 0.975, 0.99, 0.9995)


# -- incomplete beta and the t distribution ---------------------------------------------------

def test_incomplete_beta_against_the_binomial_closed_form() -> None:
    # For whole a, b: I_x(a, b) = P(Bin(a+b-1, x) >= a).
    # I_0.4(2, 3) = sum_{j=2..4} C(4,j) 0.4^j 0.6^(4-j) = 6*.16*.36 + 4*.064*.6 + .0256 = 0.5248
    assert regularized_incomplete_beta(0.4, 2, 3) == pytest.approx(0.5248, abs=1e-14)
    # I_x(1, 1) = x;  I_x(a, 1) = x^a
    assert regularized_incomplete_beta(0.3, 1, 1) == pytest.approx(0.3, abs=1e-14)
    assert regularized_incomplete_beta(0.9, 5, 1) == pytest.approx(0.9**5, abs=1e-14)
    assert regularized_incomplete_beta(0.0, 2, 3) == 0.0
    assert regularized_incomplete_beta(1.0, 2, 3) == 1.0
    with pytest.raises(ValueError):
        regularized_incomplete_beta(1.5, 2, 3)
    with pytest.raises(ValueError):
        regularized_incomplete_beta(0.5, 0, 3)


@pytest.mark.parametrize("p", PS)
def test_t_quantile_closed_forms_for_1_and_2_degrees_of_freedom(p: float) -> None:
    # df=1 is the Cauchy distribution: t = tan(pi (p - 1/2)).
    assert student_t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9, abs=1e-12)
    # df=2: t = (2p - 1) / sqrt(2 p (1 - p)).
    assert student_t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("p", "df", "expected"), [
    # scipy.stats.t.ppf(p, df)
    (0.975, 1, 12.706204736174694),
    (0.975, 2, 4.302652729749462),
    (0.975, 3, 3.1824463052837078),
    (0.975, 4, 2.7764451051977934),
    (0.975, 10, 2.228138851986274),
    (0.975, 29, 2.045229642132703),
    (0.975, 30, 2.0422724563012378),
    (0.975, 39, 2.022690920036761),
    (0.975, 100, 1.9839715185235518),
    (0.975, 1000, 1.9623390808264083),
    (0.995, 5, 4.032142983555228),
    (0.9, 7, 1.4149239276505086),
    (0.025, 12, -2.1788128296672293),
])
def test_t_quantile_matches_scipy(p: float, df: int, expected: float) -> None:
    assert student_t_quantile(p, df) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("t", "df", "expected"), [
    # scipy.stats.t.cdf(t, df)
    (2.0, 5, 0.9490302605850708),
    (-1.5, 3, 0.11529193262241147),
    (0.3, 1000, 0.617880247916378),
    # df=1: 1/2 + atan(t)/pi;  t=0: 1/2 for every df
    (1.0, 1, 0.75),
    (0.0, 17, 0.5),
])
def test_t_cdf(t: float, df: int, expected: float) -> None:
    assert student_t_cdf(t, df) == pytest.approx(expected, abs=1e-12)


def test_t_quantile_inverts_the_cdf_for_dfs_up_to_1000() -> None:
    # Every df where the quantile changes fast, then a spread up to 1000 (the full range cost
    # seconds of the suite for no more confidence).
    for df in [*range(1, 61), *range(61, 1001, 17), 1000]:
        for p in (0.025, 0.975):
            assert student_t_cdf(student_t_quantile(p, df), df) == pytest.approx(p, abs=1e-12), df


def test_t_quantile_is_symmetric_and_validates() -> None:
    assert student_t_quantile(0.5, 3) == 0.0
    assert student_t_quantile(0.1, 8) == -student_t_quantile(0.9, 8)
    for bad_p in (0.0, 1.0, -0.1, 1.2):
        with pytest.raises(ValueError):
            student_t_quantile(bad_p, 5)
    with pytest.raises(ValueError):
        student_t_quantile(0.975, 0)


# -- the paired-t interval --------------------------------------------------------------------

def test_paired_t_interval_by_hand() -> None:
    # d = 1, 2, 3, 4: mean 2.5, sd = sqrt((2.25 + .25 + .25 + 2.25) / 3) = sqrt(5/3), se = sqrt(5/12),
    # t_{.975,3} = 3.1824463052837078 -> half width 2.05426025676...
    # scipy.stats.t.interval(0.95, 3, loc=2.5, scale=sem) = (0.4457397432394794, 4.554260256760521)
    ci = paired_t_interval([1, 2, 3, 4])
    assert ci is not None
    assert (ci.estimate, ci.n, ci.level, ci.method) == (2.5, 4, 0.95, "t")
    assert ci.low == pytest.approx(0.4457397432394794, abs=1e-12)
    assert ci.high == pytest.approx(4.554260256760521, abs=1e-12)
    assert ci.excludes_zero and 2.5 in ci


def test_paired_t_interval_of_binary_differences() -> None:
    # 10 of 40 cases went from 1 to 0: d = -1 (x10), 0 (x30); mean -0.25,
    # sd = sqrt((10 * .75^2 + 30 * .25^2) / 39) = sqrt(7.5 / 39); se = sd / sqrt(40); t_{.975,39} = 2.02269092...
    # scipy: (-0.39024838128092254, -0.10975161871907746)
    ci = paired_t_interval([-1.0] * 10 + [0.0] * 30)
    assert ci is not None
    assert ci.low == pytest.approx(-0.39024838128092254, abs=1e-12)
    assert ci.high == pytest.approx(-0.10975161871907746, abs=1e-12)


def test_paired_t_interval_other_level() -> None:
    # level 0.99 uses t_{.995,df}: d = 1, 2, 3, 4, 5, 6: mean 3.5, sd = sqrt(3.5), se = sqrt(3.5/6),
    # t_{.995,5} = 4.032142983555228 (scipy) -> half = 4.032142983555228 * sqrt(3.5 / 6)
    half = 4.032142983555228 * math.sqrt(3.5 / 6)
    ci = paired_t_interval([1, 2, 3, 4, 5, 6], level=0.99)
    assert ci is not None
    assert (ci.low, ci.high) == (pytest.approx(3.5 - half, abs=1e-12), pytest.approx(3.5 + half, abs=1e-12))
    with pytest.raises(ValueError):
        paired_t_interval([1, 2], level=1.0)


def test_degenerate_intervals() -> None:
    assert paired_t_interval([]) is None  # no data
    assert paired_t_interval([0.5]) is None  # one pair: the spread is undefined
    # zero variance: the single point, even where fmean would wobble in the last bit
    ci = paired_t_interval([0.1] * 7)
    assert ci is not None and (ci.low, ci.high, ci.estimate, ci.n) == (0.1, 0.1, 0.1, 7)
    zero = paired_t_interval([0.0, 0.0, 0.0])
    assert zero is not None and (zero.low, zero.high) == (0.0, 0.0) and not zero.excludes_zero
    assert bootstrap_interval([]) is None
    assert bootstrap_interval([1.0]) is None
    flat = bootstrap_interval([-0.5] * 4)
    assert flat is not None and (flat.low, flat.high, flat.method) == (-0.5, -0.5, "bootstrap")


def test_interval_to_dict() -> None:
    assert Interval(0.0, -1.0, 1.0, 5).to_dict() == {"low": -1.0, "high": 1.0, "level": 0.95, "method": "t"}


# -- the bootstrap ----------------------------------------------------------------------------

def test_percentile_interpolates_linearly() -> None:
    # numpy.percentile([0, 1, 2, 3, 4], [2.5, 97.5]) = [0.1, 3.9]: position q * (n - 1)
    assert _percentile([0, 1, 2, 3, 4], 0.025) == pytest.approx(0.1)
    assert _percentile([0, 1, 2, 3, 4], 0.975) == pytest.approx(3.9)
    assert _percentile([0, 1, 2, 3, 4], 1.0) == 4


def test_bootstrap_is_seeded_and_agrees_with_t_on_a_large_sample() -> None:
    values = [((i * 37) % 11 - 5) / 5 for i in range(200)]  # a fixed spread-out sample, mean near 0
    a = bootstrap_interval(values, n_resamples=2000, seed=7)
    b = bootstrap_interval(values, n_resamples=2000, seed=7)
    c = bootstrap_interval(values, n_resamples=2000, seed=8)
    t = paired_t_interval(values)
    assert a is not None and b is not None and c is not None and t is not None
    assert a == b  # same seed, same interval
    assert (a.low, a.high) != (c.low, c.high)
    assert a.estimate == t.estimate and a.low < a.estimate < a.high
    # With n = 200 the bootstrap distribution of the mean is close to normal: the bounds agree
    # with the t interval to within a tenth of its half width.
    half = (t.high - t.low) / 2
    assert abs(a.low - t.low) < 0.1 * half and abs(a.high - t.high) < 0.1 * half
    with pytest.raises(ValueError):
        bootstrap_interval(values, n_resamples=0)


# -- McNemar ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("b", "c", "expected"), [
    (1, 6, 0.125),  # n=7: 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8/128
    (6, 1, 0.125),  # symmetric in b and c
    (0, 5, 0.0625),  # 2 * 1/32
    (2, 8, 0.109375),  # n=10: 2 * (1 + 10 + 45) / 1024 = 112/1024
    (3, 3, 1.0),  # 2 * 42/64 > 1 -> capped at 1
    (0, 1, 1.0),  # 2 * 1/2
    (0, 0, 1.0),  # no discordant case: no evidence of change
    (40, 60, 0.05688793364098079),  # scipy.stats.binomtest(40, 100).pvalue = 0.05688793364098089
])
def test_mcnemar_exact(b: int, c: int, expected: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_rejects_bad_counts() -> None:
    for b, c in ((-1, 2), (1.5, 2), (True, 2)):
        with pytest.raises(ValueError):
            mcnemar_exact(b, c)  # type: ignore[arg-type]
