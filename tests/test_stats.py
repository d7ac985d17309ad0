"""Paired differences and their t interval, checked against numbers worked out by hand."""

import math

import numpy as np
import pytest

from tgdfer.stats import mean_std, paired_difference, t975


def test_t_quantiles_match_the_table_and_approach_the_normal():
    assert t975(1) == pytest.approx(12.706) and t975(8) == pytest.approx(2.306) and t975(30) == pytest.approx(2.042)
    assert t975(500) == pytest.approx(1.96) and math.isnan(t975(0))


def test_paired_difference_by_hand():
    a, b = [71.0, 68.0, 75.0, 70.0], [70.0, 66.0, 72.0, 70.0]  # differences 1, 2, 3, 0: mean 1.5, sd 1.291
    d = paired_difference(a, b)
    half = 3.182 * 1.2909944 / 2  # t(3) * sd / sqrt(4)
    assert d.n == 4 and d.mean == pytest.approx(1.5)
    assert (d.low, d.high) == pytest.approx((1.5 - half, 1.5 + half), abs=1e-3)
    assert not d.significant  # [-0.55, 3.55] contains 0
    assert paired_difference([5, 6, 7, 8], [1, 2, 3, 4.5]).significant  # always about +4: beyond noise
    assert d.format(1) == "+1.5 [-0.6, +3.6]" and paired_difference([5, 6, 7, 8], [1, 2, 3, 4.5]).format(1).endswith(" *")


def test_pairs_with_missing_runs_and_mean_std():
    d = paired_difference([1.0, np.nan, 3.0], [0.0, 1.0, 1.0])
    assert d.n == 2 and d.mean == pytest.approx(1.5)
    assert paired_difference([1.0], [0.5]).format() == "+0.50 (n=1)"
    assert mean_std([1.0, 2.0, 3.0]) == "2.00 ± 1.00" and mean_std([4.0]) == "4.00" and mean_std([]) == "-"
