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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..files import atomic_write
from ..spec import Mode
from .stats import (CONFIG_KEYS, SUPPORT_RULES, Interval, Slope, Verdict, claim_support,
                    group_records, loglog_slope, mean_ci, seed_matched_difference, verdict)

if TYPE_CHECKING:  # the same names resolve at run time through ``__getattr__`` below
    from .figures import PlotFiles, plot_gap_vs_n, plot_gap_vs_rank, plot_test_error, write_plots

RECORD_KEYS: tuple[str, ...] = (
    "key", "task", "mode", "rank", "n", "seed", "bits", "alpha", "init", "train_error",
    "test_error", "train_loss", "test_loss", "gap", "loss_kind", "trainable_params", "bound",
    "bound_applicable", "test_n", "wall_time", "versions",
)
REQUIRED_KEYS = ("task", "mode", "rank", "n", "seed")
DEFAULT_MARGIN = 0.02  # absolute margin of "≈" and "≤" in the claims, in loss units
THEORY_SLOPE = {"n": -0.5, "rank": 0.5}  # THEORY §6: gap of order √r / √n
MODE_ORDER = tuple(m.value for m in Mode)
CLAIMS: dict[str, tuple[str, str, str]] = {  # id: (statement about x − y, metric, test)
    "i": ("B-only test error ≈ LoRA test error, same rank", "test", "equal"),
    "ii": ("A-only test error > B-only test error, same rank", "test", "greater"),
    "iii": ("B-only gap ≤ LoRA gap, same rank", "gap", "at_most"),
    "iv-test": ("B-only at rank 2r ≈ LoRA at rank r: test error", "test", "equal"),
    "iv-gap": ("B-only at rank 2r ≈ LoRA at rank r: gap", "gap", "equal"),
}

@dataclass(frozen=True)
class ConfigRow:
    """One configuration over its seeds: the mean gap's interval, errors, bound and verdict."""

    task: str
    mode: str
    rank: int
    n: int
    bits: int | None
    alpha: float | None
    init: str | None
    loss_kind: str
    seeds: int
    gap: Interval
    """Mean per-seed gap (test − train) with its t-interval."""
    test: Interval
    """Mean test error (0-1 loss) or test loss (mse) with its t-interval."""
    train_mean: float
    """Mean train error (0-1 loss) or train loss (mse)."""
    bound: float | None
    """The seed bound as recorded (expectation, σ = 1/2, ``bits`` bits)."""
    applicable: bool
    verdict: Verdict
    note: str
    """Why the bound does not apply; empty when it does."""
    gap_by_seed: dict = field(repr=False)
    test_by_seed: dict = field(repr=False)

    @property
    def metric(self) -> str:
        return "test loss" if self.loss_kind == "mse" else "test error"


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


def _normalize(records) -> list[dict]:
    if isinstance(records, Mapping) or not isinstance(records, Iterable):
        raise InputError(f"records must be a list of record dicts, got {type(records).__name__}")
    out = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InputError(f"records[{i}] must be a dict, got {type(record).__name__}")
        missing = [k for k in REQUIRED_KEYS if record.get(k) is None]
        if missing:
            raise InputError(f"records[{i}] lacks required key(s) {missing}; required: {REQUIRED_KEYS}")
        r = dict(record, mode=Mode.parse(record["mode"]).value)
        kind = r.get("loss_kind") or ("mse" if r.get("test_error") is None else "zero_one")
        if kind not in ("zero_one", "mse"):
            raise InputError(f"records[{i}] loss_kind must be 'zero_one' or 'mse', got {kind!r}")
        r["loss_kind"] = kind
        part = "loss" if kind == "mse" else "error"
        if r.get("gap") is None and None not in (r.get(f"test_{part}"), r.get(f"train_{part}")):
            r["gap"] = r[f"test_{part}"] - r[f"train_{part}"]
        out.append(r)
    if not out:
        raise InputError("records must contain at least one record, got none")
    return out


def _not_applicable(runs: list[dict]) -> str:
    why = (["parameters not quantised"] if any(r.get("bits") is None for r in runs) else []) + \
          (["the loss (MSE) is unbounded"] if runs[0]["loss_kind"] == "mse" else [])
    if not why:
        why = ["no bound recorded" if any(r.get("bound") is None for r in runs)
               else "assumptions unmet (bound_applicable is False)"]
    return "bound not applicable: " + "; ".join(why)


def _finite(by_seed: dict, key: str) -> dict:
    return {s: float(r[key]) for s, r in by_seed.items()
            if r.get(key) is not None and math.isfinite(float(r[key]))}


def _config_rows(recs: list[dict], confidence: float, notes: list[str]) -> list[ConfigRow]:
    rows = []
    for key, runs in group_records(recs, CONFIG_KEYS).items():
        label = ", ".join(f"{k}={v}" for k, v in zip(CONFIG_KEYS, key))
        by_seed = {}
        for r in runs:
            if r["seed"] in by_seed:
                notes.append(f"duplicate seed {r['seed']} in ({label}): the later record is used")
            by_seed[r["seed"]] = r
        runs, kind = list(by_seed.values()), runs[0]["loss_kind"]
        part = "loss" if kind == "mse" else "error"
        gaps, tests = _finite(by_seed, "gap"), _finite(by_seed, f"test_{part}")
        if len(gaps) < len(runs):
            notes.append(f"({label}): {len(runs) - len(gaps)} run(s) without a finite gap left out")
        if not gaps:
            continue
        bounds = sorted({float(r["bound"]) for r in runs if r.get("bound") is not None})
        if len(bounds) > 1 and bounds[-1] - bounds[0] > 1e-9 * bounds[-1]:
            notes.append(f"({label}): bounds differ ({bounds[0]:.4g}..{bounds[-1]:.4g}), largest used")
        bound = bounds[-1] if bounds else None
        applicable = bound is not None and kind == "zero_one" and all(
            r.get("bits") is not None and r.get("bound_applicable", True) is not False for r in runs)
        gap_ci = mean_ci(list(gaps.values()), confidence)
        trains = list(_finite(by_seed, f"train_{part}").values())
        test_ci = mean_ci(list(tests.values()), confidence) if tests else \
            Interval(math.nan, math.nan, math.nan, 0, math.nan, confidence, "no values")
        rows.append(ConfigRow(
            *key, kind, len(gaps), gap_ci, test_ci, float(np.mean(trains)) if trains else math.nan,
            bound, applicable, verdict(gap_ci, bound, 1.0, applicable),
            "" if applicable else _not_applicable(runs), gaps, tests))
    return rows


# ---------------------------------------------------------------- claims and rates


def _scale(c: ConfigRow):
    return None if c.alpha is None or c.rank <= 0 else round(c.alpha / c.rank, 12)


_MATCHES = ((lambda c: (c.init, c.alpha)), (lambda c: (c.init, _scale(c))), (lambda c: c.init))


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


def _rank_series(cs: list[ConfigRow]) -> list[tuple[str, list[ConfigRow]]]:
    """Split one mode's configurations into lines with one configuration per rank (by α/r, then α)."""
    levels = ((lambda c: None, lambda k: ""), (_scale, lambda k: f"α/r={k:g}"),
              (lambda c: c.alpha, lambda k: f"α={k:g}"))
    for f, name in levels:
        groups: dict = {}
        for c in cs:
            groups.setdefault(f(c), []).append(c)
        if all(len({c.rank for c in g}) == len(g) for g in groups.values()) or f is levels[-1][0]:
            return [(name(k) if k is not None else "", sorted(g, key=lambda c: c.rank))
                    for k, g in groups.items()]
    return []  # unreachable: the last level always returns


def _series(configs: list[ConfigRow], along: str) -> list[tuple[str, str, list[ConfigRow]]]:
    """(mode, label, configurations sorted along ``along``) for plots and rates; modes in Mode order."""
    out = []
    for mode in MODE_ORDER:
        cs = [c for c in configs if c.mode == mode and (along != "rank" or c.rank > 0)]
        inits = sorted({str(c.init) for c in cs})
        for init in inits:
            mine = [c for c in cs if str(c.init) == init]
            if along == "rank":
                lines = _rank_series(mine)
            else:
                alphas = sorted({c.alpha for c in mine}, key=lambda a: -1 if a is None else a)
                lines = [("" if len(alphas) == 1 or a is None else f"α={a:g}",
                          sorted((c for c in mine if c.alpha == a), key=lambda c: c.n)) for a in alphas]
            for extra, line in lines:
                tags = ([init] if len(inits) > 1 else []) + ([extra] if extra else [])
                out.append((mode, mode + (f" ({', '.join(tags)})" if tags else ""), line))
    return out


def _agrees(against: str, s: Slope) -> str:
    low, high = (s.low, s.high) if math.isfinite(s.low) else (s.ols_low, s.ols_high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return "unclear"
    if against == "n":  # ≈ −1/2
        return "yes" if low <= THEORY_SLOPE["n"] <= high else "no"
    return "yes" if low <= THEORY_SLOPE["rank"] else "no"  # ≤ +1/2


def _rates(configs: list[ConfigRow], confidence: float, n_boot: int, seed: int) -> list[RateRow]:
    rows = []
    for against, fixed in (("n", "rank"), ("rank", "n")):
        cells: dict[tuple, list[ConfigRow]] = {}
        for c in configs:
            cells.setdefault((c.task, c.bits, getattr(c, fixed)), []).append(c)
        for (task, bits, value), cs in cells.items():
            for mode, label, line in _series(cs, against):
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
    configs = _config_rows(_normalize(records), confidence, notes)
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
              f"seeds at each point ({pct}); the OLS t-interval beside it.", ""]
    header = ["task", "mode", "bits", "against", "fixed", "x values", "slope", f"bootstrap {pct} CI",
              f"OLS {pct} CI", "theory", "agrees", "note"]
    rows = [[r.task, r.series, _f(r.bits), r.against,
             f"{'rank' if r.against == 'n' else 'n'}={r.fixed}", ", ".join(map(str, r.x)),
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
    _atomic_write(Path(path), ("\n".join(lines) + "\n").encode("utf-8"))
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


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


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
    _atomic_write(Path(path), buf.getvalue().encode("utf-8"))
    return Path(path)


# ---------------------------------------------------------------- plots (in ``figures``)

_FIGURES = ("PlotFiles", "plot_gap_vs_rank", "plot_gap_vs_n", "plot_test_error", "write_plots")


def __getattr__(name: str):
    """The plotting names of ``harness.figures``, importable from this module as well."""
    if name in _FIGURES:
        from . import figures

        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
