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
from dataclasses import dataclass, field
from pathlib import Path


from ..errors import InputError
from ..files import write_file
from .rows import ConfigRow, alpha_scale, config_rows, normalize_records, series
from .stats import (SUPPORT_RULES, Slope, Verdict, claim_support, loglog_slope,
                    seed_matched_difference)


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
    """One claim as a difference x − y (first mode named minus second), with its interval."""

    claim: str
    statement: str
    task: str
    n: int
    rank: str
    bits: int | None
    effect: float
    low: float
    high: float
    seeds: int
    """Seed-matched pairs (paired t) or runs of both configurations (Welch t)."""
    supported: str
    method: str
    bound_x: float | None
    bound_y: float | None
    metric: str


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


def _claims(configs: list[ConfigRow], margin: float, confidence: float) -> list[ClaimRow]:
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
            ranks = str(x.rank) if x.rank == y.rank else f"{x.rank} vs {y.rank}"
            rows.append(ClaimRow(cid, statement, x.task, x.n, ranks, x.bits, d.mean, d.low, d.high,
                                 d.n, claim_support(test, d, margin), d.method, x.bound, y.bound,
                                 "gap" if metric == "gap" else x.metric))
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
    configs = config_rows(normalize_records(records), confidence, notes)
    return Summary(configs, _claims(configs, float(margin), confidence),
                   _rates(configs, confidence, n_boot, seed), float(margin), confidence, notes)


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
              "(THEORY §1, σ = 1/2) bounds |E gen|, so it is compared with the interval of the mean.", ""]
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
    m = summary.margin
    lines += ["", "## Claims", "",
              f"Effect = x − y (first mode named minus second) with its {pct} CI: paired t over "
              "seed-matched runs (same seed = same training subset) where both configurations share "
              f"2 or more seeds, otherwise Welch t. Margin m = {m:g} (absolute, a parameter): '≈' "
              f"reads 'consistent with ≈' when the CI lies within ±{m:g}.", ""]
    lines += [f"- {rule}" for rule in SUPPORT_RULES.values()] + [""]
    header = ["claim", "statement", "task", "n", "rank(s)", "bits", "metric", "effect x − y",
              f"{pct} CI", "seeds", "method", "seed bounds x, y", "supported"]
    rows = [[c.claim, c.statement, c.task, c.n, c.rank, _f(c.bits), c.metric, f"{c.effect:+.4f}",
             _ci(c.low, c.high), c.seeds, c.method, f"{_f(c.bound_x)}, {_f(c.bound_y)}", c.supported]
            for c in summary.claims]
    lines += _table(header, rows) if rows else ["No pair of modes to compare in these records."]
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
    lines += ["- supported **yes / no / unclear**: the CI decides the claim one way, the other, or "
              "not at all (including too few seeds for a CI)."]
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
    fmt = "{:<12} {:<6} {:>4} {:>7} {:>4} {:>3} {:>6} {:>24} {:>7} {:<14}"
    pct = f"{100 * summary.confidence:g}%"
    out = [fmt.format("task", "mode", "rank", "n", "bits", "K", "test", f"mean gap [{pct} CI]",
                      "bound", "verdict")]
    for c in summary.configs:
        ci = f"[{c.gap.low:+.3f},{c.gap.high:+.3f}]" if c.gap.has_interval else "[no CI]"
        out.append(fmt.format(c.task[:12], c.mode, c.rank, c.n, _f(c.bits), c.seeds,
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
