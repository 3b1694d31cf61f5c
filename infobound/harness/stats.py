"""Statistics over seeds: confidence intervals, verdicts against a bound, log-log rates, grouping.

numpy and scipy only. Every interval is a two-sided Student-t interval unless its ``method`` says
otherwise. A measured gap is a *sample* of runs; the seed bound is a bound on the *expected* gap
(THEORY §1), so a verdict compares the bound with the confidence interval of the mean gap over seeds,
never with a single run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
from scipy import stats as sps

from ..errors import InputError

CONFIG_KEYS: tuple[str, ...] = ("task", "mode", "rank", "n", "bits", "alpha", "init")
"""The keys that name a configuration: everything of a run except its seed."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its two-sided confidence interval ``[low, high]``.

    ``low``/``high`` are NaN when no interval can be formed (fewer than two values); ``method`` then
    says why. ``sd`` is the sample standard deviation (ddof=1) of the values, or of the paired
    differences; for the Welch difference of two samples it is NaN (see ``se``).
    """

    mean: float
    low: float
    high: float
    n: int
    """Number of values (pairs for a paired difference; runs of both samples for Welch)."""
    sd: float
    confidence: float
    method: str
    se: float = math.nan
    """Standard error of ``mean``."""
    df: float = math.nan
    """Degrees of freedom of the t quantile (Welch–Satterthwaite for unpaired differences)."""

    @property
    def has_interval(self) -> bool:
        """True when ``low`` and ``high`` are finite numbers."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def half_width(self) -> float:
        """(high − low) / 2, NaN without an interval."""
        return (self.high - self.low) / 2.0


def _values(name: str, values) -> np.ndarray:
    """``values`` as a 1-d float64 array; InputError for non-numbers, NaN/inf, or an empty input."""
    try:
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a sequence of finite numbers, got {values!r}") from None
    if arr.ndim != 1:
        raise InputError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} must contain at least one number, got none")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must contain finite numbers only (no NaN or inf), got {arr.tolist()}")
    return arr


def _confidence(confidence) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise InputError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise InputError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return float(confidence)


def _t_interval(mean: float, se: float, df: float, confidence: float) -> tuple[float, float]:
    if se == 0.0:  # all values equal: the interval collapses onto the mean
        return mean, mean
    t_quantile = float(sps.t.ppf(0.5 + confidence / 2.0, df))
    return mean - t_quantile * se, mean + t_quantile * se


def mean_ci(values, confidence: float = 0.95) -> Interval:
    """Mean of ``values`` with the Student-t interval mean ± t_{(1+c)/2, n−1} · sd / √n."""
    confidence = _confidence(confidence)
    arr = _values("values", values)
    n = int(arr.size)
    mean = float(arr.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan, confidence,
                        "no interval: fewer than 2 values")
    sd = float(arr.std(ddof=1))
    se = sd / math.sqrt(n)
    low, high = _t_interval(mean, se, n - 1, confidence)
    return Interval(mean, low, high, n, sd, confidence, f"Student t, {n} values", se, float(n - 1))


def paired_difference(x, y, confidence: float = 0.95) -> Interval:
    """Mean of ``x[i] − y[i]`` with a Student-t interval; ``x[i]`` and ``y[i]`` share a seed."""
    confidence = _confidence(confidence)
    xa, ya = _values("x", x), _values("y", y)
    if xa.size != ya.size:
        raise InputError(
            f"x and y must have the same length for a paired difference, got {xa.size} and {ya.size}"
        )
    d = mean_ci(xa - ya, confidence)
    method = d.method if d.n < 2 else f"paired t, {d.n} seed-matched pairs"
    return Interval(d.mean, d.low, d.high, d.n, d.sd, confidence, method, d.se, d.df)


def welch_difference(x, y, confidence: float = 0.95) -> Interval:
    """mean(x) − mean(y) for independent samples, Welch t interval with Welch–Satterthwaite df."""
    confidence = _confidence(confidence)
    xa, ya = _values("x", x), _values("y", y)
    nx, ny = int(xa.size), int(ya.size)
    mean = float(xa.mean() - ya.mean())
    if nx < 2 or ny < 2:
        return Interval(mean, math.nan, math.nan, nx + ny, math.nan, confidence,
                        f"no interval: Welch needs 2 or more values per sample, got {nx} and {ny}")
    vx, vy = xa.var(ddof=1) / nx, ya.var(ddof=1) / ny  # squared standard errors
    se = math.sqrt(vx + vy)
    if se == 0.0:
        df = float(nx + ny - 2)
    else:  # Welch–Satterthwaite
        df = (vx + vy) ** 2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    low, high = _t_interval(mean, se, df, confidence)
    return Interval(mean, low, high, nx + ny, math.nan, confidence,
                    f"Welch t, {nx} vs {ny} runs, df={df:.1f}", se, float(df))


def seed_matched_difference(x: Mapping, y: Mapping, confidence: float = 0.95) -> Interval:
    """x − y from ``{seed: value}`` maps: paired over the shared seeds when there are 2 or more
    (same seed = same training subset), otherwise Welch over all runs. ``n`` counts pairs (paired)
    or the runs of both (Welch); ``method`` says which, and how many unmatched runs were left out."""
    for name, m in (("x", x), ("y", y)):
        if not isinstance(m, Mapping) or not m:
            raise InputError(f"{name} must be a non-empty mapping seed -> value, got {m!r}")
    shared = [s for s in x if s in y]
    if len(shared) >= 2:
        d = paired_difference([x[s] for s in shared], [y[s] for s in shared], confidence)
        left = len(x) + len(y) - 2 * len(shared)
        return replace(d, method=d.method + (f" ({left} unmatched run(s) left out)" if left else ""))
    return welch_difference(list(x.values()), list(y.values()), confidence)


SUPPORT_RULES = {
    "equal": "'≈': yes when the whole CI lies in [−m, +m]; no when it lies wholly outside",
    "greater": "'>': yes when the CI's lower end > 0; no when its upper end ≤ 0",
    "at_most": "'≤': yes when the CI's upper end ≤ +m; no when its lower end > +m",
}
"""How a claim about a difference is judged from its interval, with margin m (``claim_support``)."""


def claim_support(test: str, interval: Interval, margin: float = 0.0) -> str:
    """"yes", "no" or "unclear" for a claim about a difference, by the rule ``SUPPORT_RULES[test]``."""
    if test not in SUPPORT_RULES:
        raise InputError(f"test must be one of {', '.join(SUPPORT_RULES)}, got {test!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise InputError(f"margin must be a number >= 0, got {margin!r}")
    low, high = interval.low, interval.high
    if not interval.has_interval:
        return "unclear"
    yes = {"equal": -margin <= low and high <= margin, "greater": low > 0, "at_most": high <= margin}
    no = {"equal": low > margin or high < -margin, "greater": high <= 0, "at_most": low > margin}
    return "yes" if yes[test] else "no" if no[test] else "unclear"


PVALUE_RULES = {
    "equal": "'≈': p (yes) = TOST, the larger of the one-sided p-values for effect > −m and for "
             "effect < +m; p (no) = 2 × the smaller of the one-sided p-values for effect > +m and "
             "for effect < −m (|effect| > m; doubled because either side counts)",
    "greater": "'>': p (yes) = one-sided p for effect > 0; p (no) = one-sided p for effect < 0",
    "at_most": "'≤': p (yes) = one-sided p for effect < +m; p (no) = one-sided p for effect > +m",
}
"""The two p-values of a claim about a difference with margin m (``claim_pvalues``): p (yes) is the
evidence for the claim, p (no) the evidence against it. The claim and its negation partition the
possible effects, so at most one of the two can be small."""


def _one_sided(mean, se, df, bound, upper: bool):
    """P(T_df ≥ (mean − bound)/se) when ``upper`` (evidence that effect > bound), else
    P(T_df ≤ (mean − bound)/se) (evidence that effect < bound). se = 0: 0 or 1 by the sign of
    mean − bound, 1/2 when it is 0; NaN where mean, se or df is not usable."""
    x = mean - bound
    ok = np.isfinite(mean) & np.isfinite(se) & (se >= 0) & np.isfinite(df) & (df > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, x / np.where(se > 0, se, 1.0), np.sign(x) * np.inf)
        p = sps.t.sf(t, np.where(ok, df, 1.0)) if upper else sps.t.cdf(t, np.where(ok, df, 1.0))
    p = np.where((se == 0) & (x == 0), 0.5, p)
    return np.where(ok, p, np.nan)


def t_claim_pvalues(test: str, mean, se, df, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(p_yes, p_no) by ``PVALUE_RULES[test]`` from arrays of means, standard errors and t degrees of
    freedom (broadcast together): the t statistics of the interval (paired t or Welch), one-sided.

    Vectorised form of ``claim_pvalues``; NaN where mean, se or df is NaN (no interval).
    """
    if test not in PVALUE_RULES:
        raise InputError(f"test must be one of {', '.join(PVALUE_RULES)}, got {test!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise InputError(f"margin must be a number >= 0, got {margin!r}")
    m = float(margin)
    mean, se, df = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (mean, se, df)))
    if test == "greater":
        return _one_sided(mean, se, df, 0.0, True), _one_sided(mean, se, df, 0.0, False)
    if test == "at_most":
        return _one_sided(mean, se, df, m, False), _one_sided(mean, se, df, m, True)
    p_yes = np.maximum(_one_sided(mean, se, df, -m, True), _one_sided(mean, se, df, m, False))
    p_no = np.minimum(1.0, 2.0 * np.minimum(_one_sided(mean, se, df, m, True),
                                            _one_sided(mean, se, df, -m, False)))
    return p_yes, p_no


def claim_pvalues(test: str, interval: Interval, margin: float = 0.0) -> tuple[float, float]:
    """(p_yes, p_no) for a claim about the difference in ``interval``, by ``PVALUE_RULES[test]``.

    One-sided Student-t p-values with the interval's own standard error and degrees of freedom
    (paired t, or Welch–Satterthwaite), so they agree with ``scipy.stats.ttest_rel`` /
    ``ttest_ind(equal_var=False)`` with ``alternative`` set. (NaN, NaN) without an interval or
    without a standard error.
    """
    if not isinstance(interval, Interval):
        raise InputError(f"interval must be an Interval, got {type(interval).__name__}")
    if not interval.has_interval:
        mean = se = df = math.nan
    else:
        mean, se, df = interval.mean, interval.se, interval.df
    p_yes, p_no = t_claim_pvalues(test, mean, se, df, margin)
    return float(p_yes), float(p_no)


def holm_adjust(pvalues) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values along the last axis (one family per row of a
    2-d array). With the k finite p-values of a family sorted, p_(1) ≤ … ≤ p_(k), the adjusted
    value of p_(i) is min(1, max_{j ≤ i} (k − j + 1) · p_(j)); rejecting where it is < α controls
    the family-wise error rate at α under any dependence. NaN p-values (no test) stay NaN and are
    not counted in k."""
    p = np.asarray(pvalues, dtype=float)
    if p.ndim == 0 or p.size == 0:
        raise InputError(f"pvalues must be a non-empty sequence of p-values, got {pvalues!r}")
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise InputError(f"pvalues must lie in [0, 1] (or be NaN), got {p[finite & ((p < 0) | (p > 1))]}")
    k = finite.sum(axis=-1, keepdims=True)
    order = np.argsort(np.where(finite, p, np.inf), axis=-1, kind="stable")  # NaN last
    ranked = np.take_along_axis(p, order, axis=-1)
    step = np.arange(p.shape[-1])
    used = step < k
    scaled = np.where(used, (k - step) * np.where(used, ranked, 0.0), 0.0)
    adjusted = np.where(used, np.minimum(1.0, np.maximum.accumulate(scaled, axis=-1)), np.nan)
    out = np.empty_like(p)
    np.put_along_axis(out, order, adjusted, axis=-1)
    return out


def claim_decisions(p_yes, p_no, alpha: float = 0.05):
    """Decisions for a family of claims: (Holm p_yes, Holm p_no, decisions), along the last axis.

    p_yes and p_no are Holm-adjusted separately across the family, and each family is tested at
    α/2: "yes" where Holm p_yes < α/2, "no" where Holm p_no < α/2, "unclear" otherwise (and where
    a p-value is NaN). The two halves add up: the probability that any "yes" or any "no" of the
    family is wrong is at most α, under any dependence between the claims. (Each claim and its
    negation partition the effects, so a wrong decision is a true null rejected in one of the two
    families.) For a single claim this is the rule of a two-sided (1 − α) interval.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be a number in (0, 1), got {alpha!r}")
    p_yes, p_no = np.asarray(p_yes, dtype=float), np.asarray(p_no, dtype=float)
    if p_yes.shape != p_no.shape:
        raise InputError(f"p_yes and p_no must have the same shape, got {p_yes.shape} and {p_no.shape}")
    holm_yes, holm_no = holm_adjust(p_yes), holm_adjust(p_no)
    yes, no = holm_yes < alpha / 2.0, holm_no < alpha / 2.0  # NaN compares False
    decisions = np.where(yes & ~no, "yes", np.where(no & ~yes, "no", "unclear"))
    return holm_yes, holm_no, decisions


def binomial_se(p, n):
    """Binomial standard error √(p(1 − p)/n) of an error rate p measured on n test examples."""
    p, n = np.asarray(p, dtype=float), np.asarray(n, dtype=float)
    if np.any(~np.isnan(p) & ((p < 0) | (p > 1))) or np.any(~(n >= 1)):
        raise InputError(f"binomial_se needs p in [0, 1] and n >= 1, got p={p!r}, n={n!r}")
    se = np.sqrt(p * (1.0 - p) / n)
    return float(se) if se.ndim == 0 else se


class Verdict(str, Enum):
    """What the measured gaps say about a bound on |E gen|."""

    def __new__(cls, value: str, doc: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member

    NOT_APPLICABLE = (
        "not applicable",
        "The bound's assumptions are unmet: parameters not quantised, or the loss is unbounded.",
    )
    VACUOUS = (
        "vacuous",
        "The bound is at least the loss range, so it cannot be violated and says nothing.",
    )
    HOLDS = (
        "holds",
        "The whole confidence interval of the mean gap lies inside (−bound, bound).",
    )
    VIOLATED = (
        "violated",
        "The whole confidence interval of the mean gap lies outside [−bound, bound].",
    )
    INCONCLUSIVE = (
        "inconclusive",
        "The interval straddles ±bound, or too few seeds (fewer than 2) to form an interval.",
    )

    def __str__(self) -> str:
        return self.value


def verdict(interval: Interval, bound, loss_range: float = 1.0, applicable: bool = True) -> Verdict:
    """Compare the interval of the mean gap with a bound on |E gen| (checked in the order below).

    NOT_APPLICABLE when ``applicable`` is False or ``bound`` is None; VACUOUS when
    ``bound >= loss_range``; INCONCLUSIVE without an interval; HOLDS when
    ``-bound < low`` and ``high < bound``; VIOLATED when ``low > bound`` or ``high < -bound``;
    INCONCLUSIVE otherwise.
    """
    if not isinstance(interval, Interval):
        raise InputError(f"interval must be an Interval (from mean_ci), got {type(interval).__name__}")
    if not applicable or bound is None:
        return Verdict.NOT_APPLICABLE
    if isinstance(bound, bool) or not isinstance(bound, (int, float, np.floating, np.integer)):
        raise InputError(f"bound must be a number >= 0 or None, got {bound!r}")
    bound = float(bound)
    if math.isnan(bound) or bound < 0.0:
        raise InputError(f"bound must be a number >= 0 or None, got {bound!r}")
    if not isinstance(loss_range, (int, float)) or not float(loss_range) > 0.0:
        raise InputError(f"loss_range must be a number > 0, got {loss_range!r}")
    if bound >= float(loss_range):
        return Verdict.VACUOUS
    if not interval.has_interval:
        return Verdict.INCONCLUSIVE
    if -bound < interval.low and interval.high < bound:
        return Verdict.HOLDS
    if interval.low > bound or interval.high < -bound:
        return Verdict.VIOLATED
    return Verdict.INCONCLUSIVE


@dataclass(frozen=True)
class Slope:
    """Fitted slope of log(mean y) against log x, with a bootstrap and an OLS interval."""

    slope: float
    low: float
    """Lower end of the seeded percentile bootstrap interval (seeds resampled within each x)."""
    high: float
    ols_low: float
    """Lower end of the OLS t-interval on the group means (needs 3 or more points)."""
    ols_high: float
    points: int
    """Groups used in the fit (mean > 0)."""
    dropped: int
    """Groups dropped because their mean is <= 0 (log undefined)."""
    reason: str
    """Empty when everything could be computed; otherwise what is missing and why."""
    intercept: float = math.nan
    """log(mean y) at log x = 0 for the OLS fit: the line is exp(intercept) · x**slope."""
    confidence: float = 0.95


def _slopes(log_x: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """OLS slopes of each row of ``log_y`` (B, G) against ``log_x`` (G,)."""
    cx = log_x - log_x.mean()
    return (log_y - log_y.mean(axis=-1, keepdims=True)) @ cx / float(cx @ cx)


def loglog_slope(x, y_groups, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Slope:
    """Slope of log(mean y) against log x; ``y_groups[i]`` are the per-seed values at ``x[i]``.

    Point estimate: OLS on the group means. Interval: percentile bootstrap with ``n_boot``
    replicates drawn by ``numpy.random.default_rng(seed)``, resampling the seeds within each group
    (replicates in which a resampled group mean is <= 0 are discarded and counted in ``reason``);
    the bootstrap interval is NaN when a used group has a single value. Also the OLS t-interval.
    """
    confidence = _confidence(confidence)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise InputError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    xs = _values("x", x)
    if np.any(xs <= 0):
        raise InputError(f"x must be positive (its log is taken), got {xs.tolist()}")
    if isinstance(y_groups, (str, bytes)) or not isinstance(y_groups, Iterable):
        raise InputError(f"y_groups must be a sequence of sequences of numbers, got {y_groups!r}")
    groups = [_values(f"y_groups[{i}]", g) for i, g in enumerate(y_groups)]
    if len(groups) != xs.size:
        raise InputError(f"y_groups must have one group per x value: {xs.size} x, {len(groups)} groups")

    means = np.array([g.mean() for g in groups])
    keep = means > 0
    dropped = int((~keep).sum())
    used_x, used = xs[keep], [g for g, k in zip(groups, keep) if k]
    nan = math.nan
    if np.unique(used_x).size < 2:
        why = f"fewer than 2 distinct x with a positive mean ({dropped} group(s) with mean <= 0 dropped)"
        return Slope(nan, nan, nan, nan, nan, int(keep.sum()), dropped, why, nan, confidence)

    log_x, log_m = np.log(used_x), np.log(means[keep])
    fit = sps.linregress(log_x, log_m)
    slope, points = float(fit.slope), int(used_x.size)
    reasons = []
    if dropped:
        reasons.append(f"{dropped} group(s) with mean <= 0 dropped")
    if points >= 3:
        t_quantile = float(sps.t.ppf(0.5 + confidence / 2.0, points - 2))
        ols_low, ols_high = slope - t_quantile * fit.stderr, slope + t_quantile * fit.stderr
    else:
        ols_low = ols_high = nan
        reasons.append("no OLS interval: 2 points")

    low = high = nan
    if min(g.size for g in used) < 2:
        reasons.append("no bootstrap interval: a group has a single seed")
    else:
        rng = np.random.default_rng(seed)
        boot = np.empty((n_boot, points))  # (B, G) resampled group means
        for j, g in enumerate(used):
            boot[:, j] = g[rng.integers(0, g.size, size=(n_boot, g.size))].mean(axis=1)
        ok = np.all(boot > 0, axis=1)
        if ok.sum() < n_boot // 2:
            reasons.append(f"no bootstrap interval: {n_boot - ok.sum()} of {n_boot} replicates "
                           "had a group mean <= 0")
        else:
            if not ok.all():
                reasons.append(f"{n_boot - ok.sum()} of {n_boot} bootstrap replicates discarded "
                               "(a group mean <= 0)")
            slopes = _slopes(log_x, np.log(boot[ok]))
            alpha = 1.0 - confidence
            low, high = (float(v) for v in np.quantile(slopes, [alpha / 2.0, 1.0 - alpha / 2.0]))
    return Slope(slope, low, high, float(ols_low), float(ols_high), points, dropped,
                 "; ".join(reasons), float(fit.intercept), confidence)


def _sort_key(value) -> tuple:
    """Orders None first, then numbers, then strings: a total order over mixed record values."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0, str(value))


def group_records(
    records: Iterable[Mapping], by: Sequence[str] = CONFIG_KEYS
) -> dict[tuple, list[dict]]:
    """Records grouped by the values of ``by`` (a missing key counts as None), keys sorted.

    The default ``by`` is a configuration: every key of a run but its seed.
    """
    if isinstance(by, str) or not all(isinstance(k, str) for k in by) or len(by) == 0:
        raise InputError(f"by must be a non-empty sequence of record keys, got {by!r}")
    groups: dict[tuple, list[dict]] = {}
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InputError(f"records[{i}] must be a mapping (dict), got {type(record).__name__}")
        key = tuple(record.get(k) for k in by)
        groups.setdefault(key, []).append(dict(record))
    return {k: groups[k] for k in sorted(groups, key=lambda t: tuple(_sort_key(v) for v in t))}
