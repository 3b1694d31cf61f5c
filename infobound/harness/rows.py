"""Run records grouped into configurations: the row model that the report and the figures share.

A record is a flat dict from one run; a configuration is its ``CONFIG_KEYS`` (all but the seed).
``config_rows`` gives one ``ConfigRow`` per configuration (the mean gap's interval over seeds, test
error, bound and verdict); ``series`` orders them into lines along n or rank for rates and plots.
Data flows one way: records -> rows (here) -> report tables and figures. No torch, no matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..spec import Mode
from .stats import CONFIG_KEYS, Interval, Verdict, group_records, mean_ci, verdict

REQUIRED_KEYS = ("task", "mode", "rank", "n", "seed")
MODE_ORDER = tuple(m.value for m in Mode)


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



def normalize_records(records) -> list[dict]:
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


def config_rows(recs: list[dict], confidence: float, notes: list[str]) -> list[ConfigRow]:
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


def alpha_scale(c: ConfigRow):
    return None if c.alpha is None or c.rank <= 0 else round(c.alpha / c.rank, 12)


def _rankseries(cs: list[ConfigRow]) -> list[tuple[str, list[ConfigRow]]]:
    """Split one mode's configurations into lines with one configuration per rank (by α/r, then α)."""
    levels = ((lambda c: None, lambda k: ""), (alpha_scale, lambda k: f"α/r={k:g}"),
              (lambda c: c.alpha, lambda k: f"α={k:g}"))
    for f, name in levels:
        groups: dict = {}
        for c in cs:
            groups.setdefault(f(c), []).append(c)
        if all(len({c.rank for c in g}) == len(g) for g in groups.values()) or f is levels[-1][0]:
            return [(name(k) if k is not None else "", sorted(g, key=lambda c: c.rank))
                    for k, g in groups.items()]
    return []  # unreachable: the last level always returns


def series(configs: list[ConfigRow], along: str) -> list[tuple[str, str, list[ConfigRow]]]:
    """(mode, label, configurations sorted along ``along``) for plots and rates; modes in Mode order."""
    out = []
    for mode in MODE_ORDER:
        cs = [c for c in configs if c.mode == mode and (along != "rank" or c.rank > 0)]
        inits = sorted({str(c.init) for c in cs})
        for init in inits:
            mine = [c for c in cs if str(c.init) == init]
            if along == "rank":
                lines = _rankseries(mine)
            else:
                alphas = sorted({c.alpha for c in mine}, key=lambda a: -1 if a is None else a)
                lines = [("" if len(alphas) == 1 or a is None else f"α={a:g}",
                          sorted((c for c in mine if c.alpha == a), key=lambda c: c.n)) for a in alphas]
            for extra, line in lines:
                tags = ([init] if len(inits) > 1 else []) + ([extra] if extra else [])
                out.append((mode, mode + (f" ({', '.join(tags)})" if tags else ""), line))
    return out
