"""Honest comparisons of repeated runs: the fold is the unit of replication.

A sweep point runs on F folds x S seeds. The S seeds of one fold share its training and test clips,
so their differences to another point correlate: they are not S independent pairs. Each
comparison therefore averages a point's seeds within a fold, takes the difference to the other
point fold by fold (the same folds, the same seeds), and puts a t interval on the mean of those F
differences (F - 1 degrees of freedom). With one fold no interval is possible, and none is printed.

A table compares many pairs at once; its marks are Holm-adjusted over all of them, so that the
chance that a table marks any difference where there is none stays under 5%. A comparison that
is not marked prints the minimum detectable effect (MDE): the true difference this design would
find with 80% power in a single two-sided test at 5% (paired t over the folds), solved with the
noncentral t (`mde`), with the fold differences' sample sd in place of the true one; a "no
difference" says nothing about effects below it. Why the t over folds and not a bootstrap: docs/statistics.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
from scipy import stats as _st
from scipy.integrate import quad
from scipy.optimize import brentq

ALPHA = 0.05  # two-sided level of every interval, test and mark
POWER = 0.8  # the power the minimum detectable effect is quoted at
NOISE = 1e-9  # relative size below which a difference is float rounding (means of the same scores in another order)


def t_quantile(q: float, dof: int) -> float:
    """The q quantile of Student's t with `dof` degrees of freedom (NaN for dof < 1)."""
    return float(_st.t.ppf(q, dof)) if dof >= 1 else float("nan")


def t975(dof: int) -> float:
    """The 97.5% quantile of Student's t with `dof` degrees of freedom (95% two-sided)."""
    return t_quantile(1 - ALPHA / 2, dof)


def mde(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a two-sided paired t test at `alpha` over n units whose differences
    have sd `sd`: the true mean difference it finds with probability `power`, solved exactly with the
    noncentral t (NaN for n < 2). The textbook `(t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n)`
    is its approximation and falls short at few units: at 2, 3 and 5 folds it gives 9.96, 3.10 and
    1.66 sd, whose power is 0.73, 0.77 and 0.79; the exact MDE is 11.55, 3.26 and 1.68 sd."""
    if n < 2 or not math.isfinite(sd):
        return float("nan")
    return _mde_factor(n, alpha, power) * sd


@functools.lru_cache(maxsize=None)
def _mde_factor(n: int, alpha: float, power: float) -> float:
    """The MDE of n units in units of the differences' sd (a pure function of its arguments, cached:
    one root of an integral, 0.2-0.6 s here)."""
    df, crit = n - 1, t_quantile(1 - alpha / 2, n - 1)

    def shortfall(nc: float) -> float:  # power at noncentrality nc, less the power asked for
        # P(|Z + nc| > crit * sqrt(V / df)), V ~ chi2(df), integrated over V (scipy's nct gives NaN at times)
        def reject(v: float) -> float:
            c = crit * math.sqrt(v / df)
            return (_st.norm.sf(c - nc) + _st.norm.cdf(-c - nc)) * _st.chi2.pdf(v, df)
        return quad(reject, 0, math.inf, limit=200)[0] - power

    guess = crit + t_quantile(power, df)  # the approximation's noncentrality, a little short of the root
    return brentq(shortfall, 0.9 * guess, 1.5 * guess + 1, xtol=1e-9) / math.sqrt(n)


def paired_t(d: np.ndarray) -> tuple[np.ndarray, ...]:
    """Paired t over the last axis of `d` (differences, one per unit; no NaN): mean, low, high, p, sd.

    Vectorised over any leading axes (the tests simulate thousands of sweeps at once). A constant
    difference (sd 0) is no test: p is NaN. The t statistic is undefined there, and scores that move
    in steps of one clip make the same difference on every fold common by chance (two folds each one
    clip apart), so "p = 0" would mark chance.
    """
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    mean = d.mean(-1)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan, nan, nan
    sd = d.std(-1, ddof=1)
    se = sd / math.sqrt(n)
    half = t975(n - 1) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / se, np.nan)
    p = 2 * _st.t.sf(np.abs(t), n - 1)  # NaN where sd is 0
    return mean, mean - half, mean + half, p, sd


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values over the last axis (NaN: not a comparison, left out).

    Sorted p_(1) <= .. <= p_(m): p_adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)). Rejecting where
    p_adj < alpha keeps the family-wise error rate at alpha under any dependence between the tests.
    """
    p = np.asarray(p, dtype=float)
    m = np.isfinite(p).sum(-1, keepdims=True)
    order = np.argsort(p, axis=-1)  # NaN last
    ranked = np.take_along_axis(p, order, -1)
    scaled = np.minimum(1.0, (m - np.arange(p.shape[-1])) * ranked)
    scaled = np.maximum.accumulate(np.nan_to_num(scaled, nan=-1.0), axis=-1)
    out = np.empty_like(p)
    np.put_along_axis(out, order, scaled, -1)
    return np.where(np.isfinite(p), out, np.nan)


@dataclass(frozen=True)
class Paired:
    """Mean paired difference (a - b) over n units (folds), its 95% t interval, p-value and spread.

    `p_adj` is the Holm-adjusted p-value once the comparison is put in its table's family
    (`holm_family`); until then the comparison stands alone and `p` decides.
    """

    mean: float
    low: float
    high: float
    n: int
    p: float = float("nan")
    sd: float = float("nan")
    p_adj: Optional[float] = None

    def __neg__(self) -> Paired:
        """b - a: the same comparison seen from the other side."""
        return replace(self, mean=-self.mean, low=-self.high, high=-self.low)

    @property
    def significant(self) -> bool:
        """The (Holm-adjusted) p-value is below 0.05: a and b differ beyond the noise of these runs."""
        p = self.p if self.p_adj is None else self.p_adj
        return self.n >= 2 and bool(p < ALPHA)

    @property
    def constant(self) -> bool:
        """The difference is the same on every fold (sd 0): no test, no interval, no MDE."""
        return self.n >= 2 and self.sd == 0

    @property
    def mde(self) -> float:
        """The smallest true difference this design finds with 80% power (see the module docstring);
        NaN for a constant difference, whose sample sd of 0 would claim that any effect is found."""
        return float("nan") if self.constant else mde(self.sd, self.n)

    def format(self, digits: int = 2) -> str:
        """"+1.50 [+0.55, +3.55] *" when marked, "+0.50 [-0.55, +1.55] (MDE 2.10)" when not, and
        "+0.50 (1 fold: no interval)" when there is a single fold, "+1.25 (the same on every fold: no
        test)" when the difference does not vary (sd 0)."""
        if self.n == 0:
            return ""
        mean, low, high = self.mean + 0.0, self.low + 0.0, self.high + 0.0  # -0.0 + 0.0: a tie shows +0.00
        if self.n < 2:
            return f"{mean:+.{digits}f} (1 fold: no interval)"
        if self.constant:
            return f"{mean:+.{digits}f} (the same on every fold: no test)"
        shown = f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"
        return shown + " *" if self.significant else f"{shown} (MDE {self.mde:.{digits}f})"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Paired:
    """a[i] - b[i] over independent pairs (e.g. folds): mean, 95% t interval, p, sd. NaN pairs are dropped."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    keep = np.isfinite(d)
    d, scale = d[keep], max(1.0, float(np.abs(a[keep]).max(initial=0)), float(np.abs(b[keep]).max(initial=0)))
    d[np.abs(d) <= NOISE * scale] = 0.0  # float rounding, not a difference: 0.1 + 0.2 vs 0.3 is no effect
    if len(d) == 0:
        return Paired(float("nan"), float("nan"), float("nan"), 0)
    mean, low, high, p, sd = (float(x) for x in paired_t(d))
    return Paired(mean, low, high, len(d), p, sd)


def paired_by_fold(a, b) -> Paired:
    """Two pandas Series indexed by (fold, seed): over the runs both have, each fold's mean over
    its seeds, then `paired_difference` over the folds (n = the number of folds). Two points run
    with other seeds (no run in common, e.g. an A/A control rerun with seeds 3-5) pair each fold's
    mean over its own seeds, over the folds both have."""
    a, b = a[np.isfinite(a.to_numpy(float))], b[np.isfinite(b.to_numpy(float))]
    both = a.index.intersection(b.index)
    if len(both):
        a, b = a.loc[both], b.loc[both]
    fa, fb = a.groupby(level=0, sort=True).mean(), b.groupby(level=0, sort=True).mean()
    folds = fa.index.intersection(fb.index)
    return paired_difference(fa.loc[folds].to_numpy(), fb.loc[folds].to_numpy())


def holm_family(comparisons: Sequence[Paired]) -> list[Paired]:
    """The comparisons of one table with their Holm-adjusted p-values (those with n < 2 stay out)."""
    p = np.array([c.p if c.n >= 2 else np.nan for c in comparisons], dtype=float)
    adj = holm(p) if len(p) else p
    return [replace(c, p_adj=float(q)) if np.isfinite(q) else c for c, q in zip(comparisons, adj)]


def family_note(m: int, folds: int) -> str:
    """What the marks and intervals of a table of `m` comparisons over `folds` folds mean (printed under it)."""
    if folds < 2:
        return ("One fold: the seeds of a fold share its clips, so they are not independent replicates and "
                "no interval is possible; differences are printed without one.")
    return (f"Differences: seeds averaged within each fold, then paired over the {folds} folds; "
            f"[95% t interval]. * Holm-adjusted p < 0.05 over the {m} comparisons of this table; "
            "unmarked: no difference found, with the minimum detectable effect at 80% power (MDE).")


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """"mean ± std" (std over runs, ddof 1; just the mean for one run)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "-"
    return f"{v.mean():.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
