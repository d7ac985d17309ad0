"""Honest summaries of repeated runs: mean ± std, and paired differences with a t confidence interval.

Runs of two settings over the same folds and seeds are paired: the difference of each pair removes
what the fold and the seed contribute to both, so a paired interval is far tighter than comparing
two means. `paired_difference` is what `report` and the studies in docs/ use to say whether a
setting differs from another beyond the noise of training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Two-sided 95% quantiles of Student's t by degrees of freedom (1..30); beyond 30 the normal 1.96
# is within 2%. A table keeps scipy out of the dependencies for one number.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with `dof` degrees of freedom (95% two-sided)."""
    if dof < 1:
        return float("nan")
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


@dataclass(frozen=True)
class Paired:
    """Mean of paired differences (a - b) over n pairs and its 95% t interval."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0: a and b differ beyond the noise of these runs."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def format(self, digits: int = 2) -> str:
        """"+1.50 [-0.55, +3.55]", with " *" when significant; "+0.50 (n=1)" without an interval."""
        if self.n < 2:
            return f"{self.mean:+.{digits}f} (n={self.n})"
        mark = " *" if self.significant else ""
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]{mark}"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Paired:
    """a[i] - b[i] over the pairs (same fold and seed): mean and 95% t interval."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n == 0:
        return Paired(float("nan"), float("nan"), float("nan"), 0)
    mean = float(d.mean())
    if n < 2:
        return Paired(mean, float("nan"), float("nan"), n)
    half = t975(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return Paired(mean, mean - half, mean + half, n)


def paired_on(a, b) -> Paired:
    """`paired_difference` of two pandas Series over the index labels both have (e.g. (fold, seed))."""
    both = a.index.intersection(b.index)
    return paired_difference(a.loc[both], b.loc[both])


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """"mean ± std" (std over runs, ddof 1; just the mean for one run)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "-"
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
