"""From run records to verdicts, the paper's claims, rates, tables, plots and CSV. No torch.

A record is a flat dict from one run (``RECORD_KEYS`` plus task-specific extras); a configuration is
its ``CONFIG_KEYS`` (all but the seed). ``summarize`` gives per-configuration verdicts (seed bound vs
the interval of the mean gap over seeds), the paper's claims as differences with intervals, and
fitted rates (THEORY §1, §6). Across ranks, ``alpha`` is allowed to follow the rank (the default
α = r) or stay fixed: configurations are matched on init and alpha, then on α/r, then on init alone.
Every file is written atomically (a temporary file in the target folder, then ``os.replace``).
The plots live in ``harness.figures``; ``PlotFiles``, ``plot_gap_vs_rank``, ``plot_gap_vs_n``,
``plot_test_error`` and ``write_plots`` can be imported from here too (loaded on first use, so
summarising alone never imports matplotlib).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path


from ..errors import InputError
from ..files import write_file
from .rows import ConfigRow, alpha_scale, config_rows, normalize_records, series
from .stats import (CONFIG_KEYS, PVALUE_RULES, Slope, Verdict, binomial_se, claim_decisions,
                    claim_pvalues, claim_support, loglog_slope, seed_matched_difference)


RECORD_KEYS: tuple[str, ...] = (
    "key", "task", "mode", "rank", "n", "seed", "bits", "alpha", "init", "train_error",
    "test_error", "train_loss", "test_loss", "gap", "loss_kind", "trainable_params", "bound",
    "bound_applicable", "test_n", "wall_time", "versions",
)
DEFAULT_MARGIN = 0.02  # absolute margin of "≈" and "≤" in the claims, in loss units
THEORY_SLOPE = {"n": -0.5, "rank": 0.5}  # THEORY §6: gap of order √r / √n
CLAIMS: dict[str, tuple[str, str, str]] = {  # id: (statement about x − y, metric, test)
    "i": ("B-only test error ≈ LoRA test error, same rank", "test", "equal"),
    "ii": ("A-only test error > B-only test error, same rank", "test", "greater"),
    "iii": ("B-only gap ≤ LoRA gap, same rank", "gap", "at_most"),
    "iv-test": ("B-only at rank 2r ≈ LoRA at rank r: test error", "test", "equal"),
    "iv-gap": ("B-only at rank 2r ≈ LoRA at rank r: gap", "gap", "equal"),
}

@dataclass(frozen=True)
class ClaimRow:
    """One claim as a difference x − y (first mode named minus second), with its interval, its two
    p-values, their Holm adjustment across all claim rows of the summary, and the decision."""

    claim: str
    statement: str
    task: str
    n: int
    rank: str
    bits: int | None
    effect: float
    low: float
    high: float
    """``low``/``high``: the per-row (1 − α) t-interval over seeds, not adjusted for multiplicity."""
    seeds: int
    """Seed-matched pairs (paired t) or runs of both configurations (Welch t)."""
    supported: str
    """The decision: "yes" when Holm p_yes < α/2, "no" when Holm p_no < α/2, else "unclear"
    (``stats.claim_decisions``; α = 1 − confidence, family: every claim row of the summary)."""
    method: str
    bound_x: float | None
    bound_y: float | None
    metric: str
    test: str = ""
    """"equal", "greater" or "at_most" (``stats.PVALUE_RULES``)."""
    p_yes: float = math.nan
    """One-sided p-value of the evidence for the claim (TOST for "equal"), unadjusted."""
    p_no: float = math.nan
    """One-sided p-value of the evidence against the claim (|effect| > m for "equal"), unadjusted."""
    p_yes_holm: float = math.nan
    p_no_holm: float = math.nan
    supported_unadjusted: str = ""
    """What the row's interval alone says (``stats.claim_support``), before multiplicity control."""
    train_x: float = math.nan
    """Mean train error (0-1) or train loss (mse) of x over its seeds; shown for the gap claims."""
    train_y: float = math.nan
    test_n: int | None = None
    """Smallest ``test_n`` in the records of x and y (None when the records carry none)."""
    test_se_x: float = math.nan
    """Binomial standard error √(p(1 − p)/test_n) of x's mean test error (0-1 loss only)."""
    test_se_y: float = math.nan
    note: str = ""
    """Set for a gap claim when the configuration with the smaller gap has a train error more than
    the margin above the other's (an underfitting adapter has a small gap for the wrong reason)."""

    @property
    def half_width(self) -> float:
        """Half the width of the (unadjusted) seed interval; NaN without one."""
        return (self.high - self.low) / 2.0


@dataclass(frozen=True)
class RateRow:
    """Fitted slope of log mean gap against log n (rank fixed) or log rank (n fixed)."""

    task: str
    mode: str
    bits: int | None
    series: str
    """init and alpha of the configurations on the line."""
    against: str
    fixed: int
    x: tuple
    slope: Slope
    theory: float
    agrees: str


@dataclass
class Summary:
    """Everything ``write_markdown`` and ``format_verdict_table`` show."""

    configs: list[ConfigRow]
    claims: list[ClaimRow]
    rates: list[RateRow]
    margin: float
    confidence: float
    notes: list[str] = field(default_factory=list)
    splits: tuple[str, ...] = ("fixed",)
    """How the records' seeds split the data: ``fixed`` (one test set) and/or ``per_seed``."""

    def find(self, **where) -> list[ConfigRow]:
        """Configurations whose attributes equal ``where`` (e.g. ``mode="lora", rank=4``)."""
        return [c for c in self.configs if all(getattr(c, k) == v for k, v in where.items())]


# ---------------------------------------------------------------- records -> configurations


# ---------------------------------------------------------------- claims and rates


_MATCHES = ((lambda c: (c.init, c.alpha)), (lambda c: (c.init, alpha_scale(c))), (lambda c: c.init))


def _pairs(xs: list[ConfigRow], ys: list[ConfigRow]) -> list[tuple[ConfigRow, ConfigRow]]:
    """One-to-one pairs: same init and alpha, else same init and α/r, else same init, else the only ones."""
    for f in _MATCHES:
        pairs = [(a, b) for a in xs for b in ys if f(a) == f(b)]
        if pairs and len({id(a) for a, _ in pairs}) == len({id(b) for _, b in pairs}) == len(pairs):
            return pairs
    return [(xs[0], ys[0])] if len(xs) == len(ys) == 1 else []


def _test_ns(records) -> dict[tuple, int]:
    """Configuration key -> the smallest ``test_n`` among its records (configurations without one
    are left out)."""
    out: dict[tuple, int] = {}
    for r in records or ():
        t = r.get("test_n")
        if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and t >= 1:
            key = tuple(r.get(k) for k in CONFIG_KEYS)
            out[key] = min(int(t), out.get(key, int(t)))
    return out


def _config_key(c: ConfigRow) -> tuple:
    return tuple(getattr(c, k) for k in CONFIG_KEYS)


def _underfit_note(effect: float, x: ConfigRow, y: ConfigRow, margin: float) -> str:
    """The gap claims' flag: the configuration with the smaller gap trains worse by more than m."""
    if not (math.isfinite(x.train_mean) and math.isfinite(y.train_mean)) or effect == 0:
        return ""
    small, other = (x, y) if effect < 0 else (y, x)
    if small.train_mean - other.train_mean > margin:
        part = "train loss" if small.loss_kind == "mse" else "train error"
        return f"smaller gap with higher {part}: underfitting ({small.mode} at rank {small.rank})"
    return ""


def _claims(configs: list[ConfigRow], margin: float, confidence: float,
            records=None) -> list[ClaimRow]:
    """Every claim row (see ``CLAIMS``), decided with Holm across all rows (``claim_decisions``).

    ``records`` (the normalised records) supply ``test_n`` for the test-set standard errors.
    """
    test_ns = _test_ns(records)
    by: dict[tuple, dict] = {}  # (task, n, bits) -> (mode, rank) -> configurations
    for c in configs:
        by.setdefault((c.task, c.n, c.bits), {}).setdefault((c.mode, c.rank), []).append(c)
    jobs = []  # (claim id, x configurations, y configurations)
    for cell in by.values():
        for (mode, r), cs in cell.items():
            if mode == "b_only" and ("lora", r) in cell:
                jobs += [("i", cs, cell["lora", r]), ("iii", cs, cell["lora", r])]
            if mode == "a_only" and ("b_only", r) in cell:
                jobs.append(("ii", cs, cell["b_only", r]))
            if mode == "lora" and r > 0 and ("b_only", 2 * r) in cell:
                jobs += [("iv-test", cell["b_only", 2 * r], cs), ("iv-gap", cell["b_only", 2 * r], cs)]
    rows = []
    for cid, xs, ys in jobs:
        statement, metric, test = CLAIMS[cid]
        for x, y in _pairs(xs, ys):
            values = (x.gap_by_seed, y.gap_by_seed) if metric == "gap" else (x.test_by_seed, y.test_by_seed)
            if not (values[0] and values[1]):
                continue
            d = seed_matched_difference(*values, confidence)
            p_yes, p_no = claim_pvalues(test, d, margin)
            ranks = str(x.rank) if x.rank == y.rank else f"{x.rank} vs {y.rank}"
            tn_x, tn_y = test_ns.get(_config_key(x)), test_ns.get(_config_key(y))
            known = [t for t in (tn_x, tn_y) if t is not None]
            se_x = se_y = math.nan
            if metric == "test" and x.loss_kind == "zero_one":
                if tn_x is not None and 0 <= x.test.mean <= 1:
                    se_x = binomial_se(x.test.mean, tn_x)
                if tn_y is not None and 0 <= y.test.mean <= 1:
                    se_y = binomial_se(y.test.mean, tn_y)
            rows.append(ClaimRow(
                cid, statement, x.task, x.n, ranks, x.bits, d.mean, d.low, d.high, d.n, "unclear",
                d.method, x.bound, y.bound, "gap" if metric == "gap" else x.metric, test, p_yes, p_no,
                supported_unadjusted=claim_support(test, d, margin), train_x=x.train_mean,
                train_y=y.train_mean, test_n=min(known) if known else None, test_se_x=se_x,
                test_se_y=se_y, note=_underfit_note(d.mean, x, y, margin) if metric == "gap" else ""))
    if rows:  # the family: every claim row of this summary
        holm_yes, holm_no, decisions = claim_decisions([c.p_yes for c in rows], [c.p_no for c in rows],
                                                       1.0 - confidence)
        rows = [replace(c, p_yes_holm=float(hy), p_no_holm=float(hn), supported=str(dec))
                for c, hy, hn, dec in zip(rows, holm_yes, holm_no, decisions)]
    order = list(CLAIMS)
    rows.sort(key=lambda c: (order.index(c.claim), c.task, c.n, -1 if c.bits is None else c.bits,
                             int(c.rank.split()[0])))
    return rows


MIN_RATE_POINTS = 3  # a line through 2 points fits exactly: no evidence about a rate


def _agrees(against: str, s: Slope) -> str:
    """"yes" only when the interval contains the theory's value and excludes the alternative.

    Against n the theory is −1/2 and the alternative is no decay (slope ≥ 0): "yes" needs the
    interval to hold −1/2 and to lie below 0; "no" when it excludes −1/2. Against the rank the theory
    is a slope of at most +1/2: "yes" when the whole interval is ≤ +1/2, "no" when it lies above.
    Anything else, or fewer than ``MIN_RATE_POINTS`` points, is "unclear".
    """
    if s.points < MIN_RATE_POINTS:
        return "unclear"
    low, high = (s.low, s.high) if math.isfinite(s.low) else (s.ols_low, s.ols_high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "unclear"
    theory = THEORY_SLOPE[against]
    if against == "n":
        if not low <= theory <= high:
            return "no"
        return "yes" if high < 0 else "unclear"
    if high <= theory:
        return "yes"
    return "no" if low > theory else "unclear"


def _rates(configs: list[ConfigRow], confidence: float, n_boot: int, seed: int) -> list[RateRow]:
    rows = []
    for against, fixed in (("n", "rank"), ("rank", "n")):
        cells: dict[tuple, list[ConfigRow]] = {}
        for c in configs:
            cells.setdefault((c.task, c.bits, getattr(c, fixed)), []).append(c)
        for (task, bits, value), cs in cells.items():
            for mode, label, line in series(cs, against):
                if len(line) < 2:
                    continue
                x = [getattr(c, against) for c in line]
                s = loglog_slope(x, [list(c.gap_by_seed.values()) for c in line], confidence,
                                 n_boot, seed)
                rows.append(RateRow(task, mode, bits, label, against, value, tuple(x), s,
                                    THEORY_SLOPE[against], _agrees(against, s)))
    return rows


def summarize(records, *, margin: float = DEFAULT_MARGIN, confidence: float = 0.95,
              n_boot: int = 2000, seed: int = 0) -> Summary:
    """Per-configuration verdicts, the paper's claims (judged with ``margin``) and fitted rates."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        raise InputError(f"margin must be a number >= 0 (absolute, loss units), got {margin!r}")
    notes: list[str] = []
    recs = normalize_records(records)
    configs = config_rows(recs, confidence, notes)
    splits = tuple(sorted({r.get("split") or "fixed" for r in recs})) or ("fixed",)
    return Summary(configs, _claims(configs, float(margin), confidence, recs),
                   _rates(configs, confidence, n_boot, seed), float(margin), confidence, notes, splits)


# ---------------------------------------------------------------- text


def _f(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _ci(low: float, high: float, signed: bool = True) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no CI"
    return ("[{:+.4f}, {:+.4f}]" if signed else "[{:.4f}, {:.4f}]").format(low, high)


def _bound_cell(c: ConfigRow) -> str:
    if not c.applicable:
        return c.note
    vacuous = ", vacuous: ≥ 1" if c.verdict is Verdict.VACUOUS else ""
    return f"{c.bound:.4g} (expectation, q={c.bits} bits){vacuous}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    esc = [[str(v).replace("|", "\\|") for v in row] for row in [header] + rows]
    return ["| " + " | ".join(r) + " |" for r in esc[:1]] + ["|" + "---|" * len(header)] + \
           ["| " + " | ".join(r) + " |" for r in esc[1:]]


def _distinct(values) -> str:
    vals = sorted({v for v in values}, key=lambda v: (isinstance(v, str), v if not isinstance(v, str)
                                                      else 0, str(v)))
    return ", ".join(map(str, vals)) or "—"


def _p(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.2g}"


def coverage(splits, test_ns) -> str:
    """What an interval over seeds covers, given how the seeds split the data (``Summary.splits``)."""
    size = f"test_n = {', '.join(map(str, test_ns))} examples" if test_ns else "its size is unknown: the records carry no test_n"
    fixed = (f"the intervals are over seeds (each seed redraws the training subset from the task's pool "
             f"and the frozen factor) with one test set fixed ({size}): they do not include the test "
             "set's own sampling error, nor the spread over other choices of pool and test set.")
    per_seed = (f"the intervals are over seeds, and each seed redraws its own split of the data the "
                f"network never pretrained on into a training set and a test set ({size}), and the "
                "frozen factor: they cover the expected test error and gap over splits, the test "
                "sets' sampling error included.")
    if tuple(splits) == ("per_seed",):
        return per_seed[0].upper() + per_seed[1:]
    if tuple(splits) == ("fixed",):
        return fixed[0].upper() + fixed[1:]
    return f"Runs of both kinds are stored. Split fixed: {fixed} Split per_seed: {per_seed}"


def _claims_section(summary: Summary) -> list[str]:
    """The "Claims" section: how the rows are decided, then the table."""
    pct, m, claims = f"{100 * summary.confidence:g}%", summary.margin, summary.claims
    alpha = 1.0 - summary.confidence
    family = sum(math.isfinite(c.p_yes) for c in claims)
    untested = len(claims) - family
    test_ns = sorted({c.test_n for c in claims if c.test_n is not None})
    lines = ["", "## Claims", "",
             f"Effect = x − y (first mode named minus second) with its {pct} CI: paired t over "
             "seed-matched runs (same seed = same training subset) where both configurations share "
             f"2 or more seeds, otherwise Welch t. The CI is per row and not adjusted for multiplicity. "
             f"Margin m = {m:g} (absolute, a parameter): '≈' means within ±{m:g}, '≤' means at most "
             f"{m:g} above.", "",
             f"{coverage(summary.splits, test_ns)} Beside the CI half-width of "
             "each test-error claim stands the binomial standard error √(p(1 − p)/test_n) of each "
             "configuration's mean test error p (the test-set error of a difference on the same test "
             "set is at most the sum of the two).", "",
             "Decisions, with multiplicity control: each row has two one-sided p-values from the t "
             "statistic of its CI (same standard error and degrees of freedom): p (yes), the evidence "
             "for the claim, and p (no), the evidence against it. "
             + (f"The family is all {family} claim row(s) of this report" if family else
                "The family is empty: no claim row of this report has an interval")
             + (f" ({untested} row(s) without an interval are unclear and not counted)" if untested else "")
             + ". Method: Holm–Bonferroni step-down across the family, applied to the p (yes) values "
             f"and, separately, to the p (no) values, each at α/2 = {alpha / 2:g}, so that the "
             f"probability that any yes or any no in this table is wrong is at most α = {alpha:g} "
             f"(1 − confidence), whatever the dependence between rows. Decision: yes when Holm p (yes) "
             f"< {alpha / 2:g}, no when Holm p (no) < {alpha / 2:g}, otherwise unclear (for a single "
             f"row this is the {pct} CI's rule).", ""]
    lines += [f"- {rule}" for rule in PVALUE_RULES.values()]
    lines += ["- gap claims: mean train error (or loss) of x and y beside the gap; the note flags a "
              f"smaller gap whose configuration trains more than m = {m:g} worse (underfitting).", ""]
    header = ["claim", "statement", "task", "n", "rank(s)", "bits", "metric", "effect x − y",
              f"{pct} CI (unadjusted)", "CI half-width; test-set SE x, y", "seeds", "method",
              "seed bounds x, y", "mean train x, y", "p (yes)", "p (no)", "Holm p (yes)",
              "Holm p (no)", "decision", "note"]
    rows = []
    for c in claims:
        width = f"±{c.half_width:.4f}" if math.isfinite(c.half_width) else "no CI"
        if math.isfinite(c.test_se_x) or math.isfinite(c.test_se_y):
            width += f"; {_f(c.test_se_x, 2)}, {_f(c.test_se_y, 2)} (test_n={c.test_n})"
        train = f"{_f(c.train_x)}, {_f(c.train_y)}" if c.metric == "gap" else "—"
        rows.append([c.claim, c.statement, c.task, c.n, c.rank, _f(c.bits), c.metric,
                     f"{c.effect:+.4f}", _ci(c.low, c.high), width, c.seeds, c.method,
                     f"{_f(c.bound_x)}, {_f(c.bound_y)}", train, _p(c.p_yes), _p(c.p_no),
                     _p(c.p_yes_holm), _p(c.p_no_holm), c.supported, c.note])
    return lines + (_table(header, rows) if rows else ["No pair of modes to compare in these records."])


def write_markdown(summary: Summary, path, meta: Mapping | None = None) -> Path:
    """A Markdown report: what was run, verdicts, claims, rates, legend. ``meta`` adds lines (δ,
    versions, ...); ``meta["title"]`` sets the title, ``meta["plots"]`` lists images to show and
    ``meta["sections"]`` adds Markdown sections."""
    meta, pct, cs = dict(meta or {}), f"{100 * summary.confidence:g}%", summary.configs
    seeds = [c.seeds for c in cs] or [0]
    lines = [f"# {meta.pop('title', 'infobound report')}", "", "## What was run", ""]
    facts = [("task", _distinct(c.task for c in cs)), ("modes", _distinct(c.mode for c in cs)),
             ("ranks", _distinct(c.rank for c in cs)),
             ("n (training examples)", _distinct(c.n for c in cs)),
             ("seeds per configuration (K)", f"{min(seeds)}–{max(seeds)}"),
             ("bits (q)", _distinct("not quantised" if c.bits is None else c.bits for c in cs)),
             ("alpha", _distinct(c.alpha for c in cs if c.alpha is not None)),
             ("init", _distinct(str(c.init) for c in cs)), ("loss", _distinct(c.loss_kind for c in cs))]
    plots = meta.pop("plots", [])
    sections = meta.pop("sections", [])  # further Markdown sections, placed before the legend
    facts += [({"delta": "δ (failure probability)"}.get(k, k), v) for k, v in meta.items()]
    lines += [f"- {k}: {v}" for k, v in facts]
    lines += ["", "## Verdicts: seed bound against the measured gap", "",
              f"gap = test − train; mean over K seeds with its {pct} Student-t CI. The seed bound "
              "(THEORY §1, σ = 1/2) bounds |E gen|, so it is compared with the interval of the mean. "
              + coverage(summary.splits, sorted({c.test_n for c in summary.claims if c.test_n})), ""]
    extra = [k for k, varies in (("alpha", len({(c.rank, c.alpha) for c in cs}) > len({c.rank for c in cs})),
                                 ("init", len({c.init for c in cs}) > 1)) if varies]
    header = ["task", "mode", "rank", "n", "bits", *extra, "mean train error (loss)",
              f"mean test error (loss) ({pct} CI)", f"mean gap ({pct} CI, K seeds)",
              "seed bound (expectation, q bits)", "verdict"]
    lines += _table(header, [
        [c.task, c.mode, c.rank, c.n, _f(c.bits), *(getattr(c, k) for k in extra), _f(c.train_mean),
         f"{_f(c.test.mean)} {_ci(c.test.low, c.test.high, False)}",
         f"{c.gap.mean:+.4f} {_ci(c.gap.low, c.gap.high)}, K={c.seeds}", _bound_cell(c),
         c.verdict.value] for c in cs])
    lines += _claims_section(summary)
    lines += ["", "## Rates", "",
              "Slope of log(mean gap) against log n (rank fixed; theory −1/2) and against log rank "
              "(n fixed; theory ≤ +1/2), THEORY §6. Interval: seeded percentile bootstrap over the "
              f"seeds at each point ({pct}); the OLS t-interval beside it. 'agrees' is yes only with "
              f"{MIN_RATE_POINTS} or more points and an interval that contains the theory's value and "
              "excludes the alternative (no decay in n; a slope above +1/2 in rank); no when it "
              "excludes the theory's value; otherwise unclear.", ""]
    header = ["task", "mode", "bits", "against", "fixed", "x values", "points", "slope",
              f"bootstrap {pct} CI", f"OLS {pct} CI", "theory", "agrees", "note"]
    rows = [[r.task, r.series, _f(r.bits), r.against,
             f"{'rank' if r.against == 'n' else 'n'}={r.fixed}", ", ".join(map(str, r.x)), r.slope.points,
             _f(r.slope.slope, 3), _ci(r.slope.low, r.slope.high),
             _ci(r.slope.ols_low, r.slope.ols_high),
             f"{r.theory:+g}" if r.against == "n" else f"≤ {r.theory:+g}", r.agrees, r.slope.reason]
            for r in summary.rates]
    lines += _table(header, rows) if rows else ["No rate: no mode has 2 or more n (or ranks)."]
    lines += [part for section in sections for part in ("", section.rstrip("\n"))]
    lines += ["", "## Legend", ""] + [f"- **{v.value}**: {v.__doc__}" for v in Verdict]
    lines += [f"- decision **yes / no / unclear** (claims): yes when the Holm-adjusted p (yes) is "
              f"below α/2 = {(1 - summary.confidence) / 2:g}, no when the Holm-adjusted p (no) is, "
              "unclear otherwise (including rows with too few seeds for an interval). The probability "
              f"that any yes or no of the claims table is wrong is at most α = {1 - summary.confidence:g}. "
              "The CI column is per row and unadjusted: it is not the decision."]
    if summary.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in summary.notes]
    if plots:
        here = Path(path).resolve().parent
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({os.path.relpath(Path(p).resolve(), here)})"
                                         for p in plots]
    write_file(Path(path), ("\n".join(lines) + "\n").encode("utf-8"))
    return Path(path)


def format_verdict_table(summary: Summary) -> str:
    """Plain-text verdict table for a terminal, at most 100 columns wide."""
    fmt = "{:<17} {:<6} {:>4} {:>6} {:>4} {:>3} {:>6} {:>24} {:>7} {:<14}"
    pct = f"{100 * summary.confidence:g}%"
    out = [fmt.format("task", "mode", "rank", "n", "bits", "K", "test", f"mean gap [{pct} CI]",
                      "bound", "verdict")]
    for c in summary.configs:
        ci = f"[{c.gap.low:+.3f},{c.gap.high:+.3f}]" if c.gap.has_interval else "[no CI]"
        out.append(fmt.format(c.task[:17], c.mode, c.rank, c.n, _f(c.bits), c.seeds,
                              _f(c.test.mean, 3), f"{c.gap.mean:+.4f} {ci}",
                              f"{c.bound:.3g}" if c.applicable else "n/a", c.verdict.value))
    return "\n".join(line[:100].rstrip() for line in out)


# ---------------------------------------------------------------- files


def write_csv(records, path) -> Path:
    """Records as CSV: ``RECORD_KEYS`` first, then every extra key sorted; None is an empty cell."""
    recs = list(records)
    if any(not isinstance(r, Mapping) for r in recs):
        raise InputError("records must be a list of dicts")
    columns = RECORD_KEYS + tuple(sorted({k for r in recs for k in r} - set(RECORD_KEYS)))
    cell = lambda v: "" if v is None else json.dumps(v) if isinstance(v, (dict, list, tuple)) else str(v)  # noqa: E731
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows([columns] + [[cell(r.get(k)) for k in columns] for r in recs])
    write_file(Path(path), buf.getvalue().encode("utf-8"))
    return Path(path)
