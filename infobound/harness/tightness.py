"""The tightness report: every bound the records allow beside the quantity it bounds. Numbers only.

One ``TightRow`` per (configuration × bound kind); ``tightness_rows`` builds them from run records
(and, for the supersample bounds, the per-example losses of the CMI sweep), ``format_tightness``
prints them for a terminal and ``tightness_markdown`` gives a Markdown section for
``report.write_markdown(..., meta={"sections": [...]})``; ``figures.plot_tightness`` draws them.

Bound kinds (``BOUND_KINDS``), each compared with what it bounds:

- ``seed``: the recorded seed bound on |E gen| (THEORY §1, σ = 1/2), against the mean gap over seeds.
- ``fast``: the fast-rate information bound (THEORY §3), kl(E L_S ‖ E L_μ) ≤ I / n with
  I = min(q · d_train, mean code length) · ln 2, inverted to a bound on E L_μ and shown as a bound on
  E gen (minus the mean training error), against the mean gap. With I from the mean code length the
  bound is an estimate (the mean over runs estimates E|c|).
- ``cert``: each run's high-probability certificate ``cert_best`` (THEORY §4, δ as recorded, the
  union bound over methods paid), mean (min, max) over runs, against the mean test error; beside it
  the held-out test-set bound and the unquantised test error.
- ``cmi``: the smallest of the supersample estimates ld-CMI, binary-kl e-CMI and fast-rate CMI
  (THEORY §5, ``cmi.cmi_summary``) of the configuration's CMI runs, against their mean gap. These
  are estimates of expectation bounds from k1 supersamples × k2 masks, not certificates.

Records of the seed sweep have ``kind`` "seeds" (or none, in stores written before CMI sweeps);
those of the supersample sweep have ``kind`` "cmi", a ``supersample`` index j, and the mask index
within it as ``mask`` (or, when there is no ``mask`` field, as ``seed``). numpy, scipy and the standard library only: no torch, no matplotlib.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..certificates import LN2, fast_rate_mi_bound
from ..cmi import cmi_summary
from ..errors import InputError
from ..validation import check_names, check_real, describe
from .rows import ConfigRow, config_rows, normalize_records
from .stats import CONFIG_KEYS, Interval, group_records, mean_ci

BOUND_KINDS: tuple[str, ...] = ("seed", "fast", "cert", "cmi")
"""The bound kinds, in the order rows are listed."""
RECORD_KINDS: tuple[str, ...] = ("seeds", "cmi")
"""Values of a record's ``kind`` field (absent = "seeds")."""
LOSS_RANGE = 1.0  # 0-1 loss
WHAT = {
    "seed": "expectation bound on |E gen|",
    "fast": "expectation bound on E gen (fast rate)",
    "cert": "high-probability certificate on a run's test error (δ={delta})",
    "cmi": "estimate of an expectation bound on E gen (supersample CMI, {k1}×{k2})",
}
MEASURED = {"seed": "mean gap", "fast": "mean gap", "cert": "mean test error", "cmi": "mean gap"}
NEEDS = {
    "seed": "needs seed-sweep records with an applicable seed bound (quantised parameters, 0-1 loss)",
    "fast": "needs code lengths (records written by an older infobound have none; rerun validate "
            "into a new folder)",
    "cert": "needs code lengths and certificates (records written by an older infobound have none; "
            "rerun validate into a new folder)",
    "cmi": "needs per-example losses of a supersample sweep (--kind cmi)",
}
CMI_ESTIMATORS = ("ld_cmi", "ekl_cmi", "fast_rate_cmi")
"""The CMISummary fields whose smallest value is the cmi row's bound."""
GAP_TOLERANCE = 1e-6  # records' mean gap vs the gap recomputed from the per-example losses


@dataclass(frozen=True)
class TightRow:
    """One bound of one configuration beside the measured quantity it bounds."""

    task: str
    mode: str
    rank: int
    n: int
    bits: int | None
    alpha: float | None
    init: str | None
    kind: str
    """One of ``BOUND_KINDS``."""
    what: str
    """What the bound is, in words (expectation bound, certificate, estimate)."""
    bound: float
    measured: float
    measured_what: str
    """"mean gap" or "mean test error"."""
    measured_low: float
    """Student-t interval of ``measured`` over the runs (NaN without one)."""
    measured_high: float
    ratio: float | None
    """bound / measured (seed: bound / |mean gap|); None when the measured value is ≤ 0 (see ``note``)."""
    vacuous: bool
    """The bound reaches the loss range (see ``tightness_markdown``'s legend)."""
    runs: int
    note: str = ""
    information: str | None = None
    """fast: which information was used (q·d_train or the mean code length)."""
    train_error: float | None = None
    """Mean training error of the runs."""
    bound_min: float | None = None
    """cert: the smallest and largest certificate over the runs."""
    bound_max: float | None = None
    test_set_bound: float | None = None
    """cert: mean held-out test-set bound (Clopper–Pearson at δ)."""
    unquantised_test_error: float | None = None
    """cert: mean test error of the same runs before quantisation."""
    code_length_bits: float | None = None
    """fast, cert: mean code length |c(h)| over the runs, bits."""
    delta: float | None = None
    """cert: the certificates' δ."""
    estimator: str | None = None
    """cmi: the estimator that gave the smallest bound (one of ``CMI_ESTIMATORS``)."""
    k1: int | None = None
    k2: int | None = None
    bias_delta_loss: float | None = None
    """cmi: plug-in bias estimate per pair, nats, of Î(ΔL; U) and of Î(L; U)."""
    bias_loss_pair: float | None = None
    grid: str | None = None
    """cert: ``sweep`` (the sweep's grid, fixed in advance) or ``chosen`` (a grid chosen per run
    among candidates after training, the choice paid in the code; shown as kind ``cert*``)."""
    estimates: dict | None = field(default=None, compare=False)
    """cmi: every estimate of ``cmi.cmi_summary`` (its ``to_dict()``)."""

    @property
    def config(self) -> tuple:
        return (self.task, self.mode, self.rank, self.n, self.bits, self.alpha, self.init)


@dataclass
class Tightness:
    """The rows, notes, bound kinds shown and the comparison lines of ``tightness_rows``."""

    rows: list[TightRow]
    notes: list[str]
    bounds: tuple[str, ...]
    """The bound kinds that have rows (in ``BOUND_KINDS`` order)."""
    confidence: float
    comparisons: list[str] = field(default_factory=list)
    """B-only's certificate against LoRA's at the same rank, one line per (task, n, bits, rank)."""

    def find(self, **where) -> list[TightRow]:
        """Rows whose attributes equal ``where`` (e.g. ``kind="cert", mode="lora", rank=4``)."""
        return [r for r in self.rows if all(getattr(r, k) == v for k, v in where.items())]


# ---------------------------------------------------------------- input checks


def _check_bounds(bounds) -> tuple[str, ...] | None:
    if bounds is None:
        return None
    names = check_names("bounds", bounds)
    unknown = [b for b in names if b not in BOUND_KINDS]
    if unknown:
        raise InputError(f"bounds must name bound kinds from {', '.join(BOUND_KINDS)}, got "
                         f"{describe(unknown[0])} in {describe(bounds)}")
    return tuple(b for b in BOUND_KINDS if b in names)


def _record_kind(i: int, record: Mapping) -> str:
    kind = record.get("kind")
    if kind is None:
        return "seeds"
    if kind not in RECORD_KINDS:
        raise InputError(f"records[{i}] kind must be one of {', '.join(RECORD_KINDS)} (or absent), "
                         f"got {describe(kind)}")
    return kind


def _pair_array(key, value, n: int) -> tuple[np.ndarray, np.ndarray]:
    where = f"pair_losses[{key!r}]"
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__") or len(value) != 2:
        raise InputError(f"{where} must be a pair (losses, mask), got {describe(value)}")
    losses, mask = (np.asarray(v) for v in value)
    if losses.shape != (n, 2) or mask.shape != (n,):
        raise InputError(f"{where} must be losses of shape (n, 2) = ({n}, 2) and a mask of shape "
                         f"({n},) for a record with n = {n} pairs, got shapes {losses.shape} and "
                         f"{mask.shape}")
    return losses, mask


def _mask_index(record: Mapping):
    """A cmi run's mask index within its supersample: ``mask`` if recorded, else ``seed``."""
    return record["mask"] if record.get("mask") is not None else record["seed"]


def _label(key: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(CONFIG_KEYS, key))


def _values(runs: list[dict], name: str) -> list[float]:
    out = []
    for r in runs:
        v = r.get(name)
        if v is not None and not isinstance(v, bool) and math.isfinite(float(v)):
            out.append(float(v))
    return out


def _dedupe(runs: list[dict]) -> list[dict]:
    """One run per seed, the later record winning (as ``rows.config_rows`` does)."""
    by_seed: dict = {}
    for r in runs:
        by_seed[r["seed"]] = r
    return list(by_seed.values())


def _ratio(bound: float, measured: float, what: str) -> tuple[float | None, str]:
    if measured <= 0:
        return None, f"{what} ≤ 0: no ratio"
    return bound / measured, ""


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _quantised_zero_one(runs: list[dict]) -> bool:
    return runs[0]["loss_kind"] == "zero_one" and all(r.get("bits") is not None for r in runs)


# ---------------------------------------------------------------- one row per kind


def _seed_row(c: ConfigRow) -> TightRow:
    measured = c.gap.mean
    if measured == 0:
        ratio, note = None, "mean gap = 0: no ratio"
    else:
        ratio = c.bound / abs(measured)
        note = "mean gap < 0: ratio against |mean gap| (the bound is on |E gen|)" if measured < 0 else ""
    return TightRow(c.task, c.mode, c.rank, c.n, c.bits, c.alpha, c.init, "seed", WHAT["seed"],
                    float(c.bound), measured, MEASURED["seed"], c.gap.low, c.gap.high, ratio,
                    c.bound >= LOSS_RANGE, c.seeds, note, information=f"q = {c.bits} bits, σ = 1/2",
                    train_error=c.train_mean)


def _base(key: tuple) -> dict:
    return dict(zip(CONFIG_KEYS, key))


def _fast_row(key: tuple, runs: list[dict], confidence: float, notes: list[str]) -> TightRow | None:
    label = _label(key)
    have = [r for r in runs if _values([r], "code_length_bits") and _values([r], "train_error")
            and _values([r], "gap")]
    if not have:
        return None
    if len(have) < len(runs):
        notes.append(f"fast ({label}): {len(runs) - len(have)} run(s) without a code length left out")
    n, bits = int(key[3]), int(key[4])
    code = float(np.mean(_values(have, "code_length_bits")))
    dims = sorted(set(_values(have, "trainable_params")))
    if len(dims) > 1:
        notes.append(f"fast ({label}): trainable_params differ ({dims[0]:g}..{dims[-1]:g}), largest used")
    chosen = max([float(r.get("choice_bits") or 0.0) for r in have] or [0.0])  # tuned lr/steps: log2(candidates)
    if dims and bits * dims[-1] + chosen <= code:
        info_bits = bits * dims[-1] + chosen
        information = (f"q·d_train = {bits}·{dims[-1]:g} = {bits * dims[-1]:g} bits"
                       + (f" + {chosen:.4g} bits for the tuned lr and steps" if chosen else ""))
    else:
        info_bits = code
        information = f"mean code length = {code:.6g} bits (an estimate of E|c|)"
    train = float(np.mean(_values(have, "train_error")))
    population = fast_rate_mi_bound(train, info_bits * LN2, n)
    bound = population - train
    gap = mean_ci(_values(have, "gap"), confidence)
    ratio, note = _ratio(bound, gap.mean, "mean gap")
    vacuous = bound >= LOSS_RANGE or population >= LOSS_RANGE
    if population >= LOSS_RANGE:
        note = _join(note, "the bound on E L_μ reaches 1")
    return TightRow(**_base(key), kind="fast", what=WHAT["fast"], bound=bound, measured=gap.mean,
                    measured_what=MEASURED["fast"], measured_low=gap.low, measured_high=gap.high,
                    ratio=ratio, vacuous=vacuous, runs=len(have), note=note, information=information,
                    train_error=train, code_length_bits=code)


def _delta_text(deltas: list[float]) -> str:
    return "/".join(f"{d:g}" for d in deltas) or "?"


def _cert_row(key: tuple, runs: list[dict], confidence: float, notes: list[str],
              prefix: str = "") -> TightRow | None:
    """The certificates of the sweep's grid, or (``prefix="adaptive_"``) of each run's chosen grid,
    beside the test error of the very model each certifies."""
    label = _label(key)
    name = lambda field_: prefix + field_  # noqa: E731
    test_field = name("test_error")
    have = [r for r in runs if _values([r], name("cert_best")) and _values([r], test_field)]
    if not have:
        return None
    if len(have) < len(runs):
        notes.append(f"cert ({label}): {len(runs) - len(have)} run(s) without a certificate left out")
    certs = np.array(_values(have, name("cert_best")))
    deltas = sorted(set(_values(have, name("cert_delta"))))
    if len(deltas) > 1:
        notes.append(f"cert ({label}): the runs' certificates use different δ ({_delta_text(deltas)})")
    test = mean_ci(_values(have, test_field), confidence)
    mean_of = lambda field_: float(np.mean(v)) if (v := _values(have, field_)) else None  # noqa: E731
    bound = float(certs.mean())
    ratio, note = _ratio(bound, test.mean, "mean test error")
    above = int(np.sum(certs >= LOSS_RANGE))
    if 0 < above < certs.size:
        note = _join(note, f"{above} of {certs.size} runs' certificates ≥ 1")
    methods = sorted({str(r[name("cert_method")]) for r in have if r.get(name("cert_method"))})
    if methods:
        note = _join(note, f"best method: {', '.join(methods)}")
    what = WHAT["cert"].format(delta=_delta_text(deltas))
    if prefix:
        grids = sorted({(int(r[name("grid_bits")]), float(r[name("grid_clip")])) for r in have})
        count = sorted({int(r[name("grid_candidates")]) for r in have})
        shown = ", ".join(f"{b} bits clip {c:g}" for b, c in grids[:4]) + (", ..." if len(grids) > 4 else "")
        what += (f"; grid chosen per run among {'/'.join(map(str, count))} candidates after training, "
                 f"log2 of that paid in the code (chosen: {shown}); measured = that model's test error")
    return TightRow(**_base(key), kind="cert", what=what, grid="chosen" if prefix else "sweep",
                    bound=bound, measured=test.mean, measured_what=MEASURED["cert"],
                    measured_low=test.low, measured_high=test.high, ratio=ratio,
                    vacuous=bound >= LOSS_RANGE, runs=len(have), note=note,
                    train_error=mean_of(name("train_error")), bound_min=float(certs.min()),
                    bound_max=float(certs.max()), test_set_bound=mean_of(name("test_set_bound")),
                    unquantised_test_error=mean_of("unquantised_test_error"),
                    code_length_bits=mean_of(name("code_length_bits")),
                    delta=deltas[0] if len(deltas) == 1 else None)


def _cmi_row(key: tuple, runs: list[dict], pair_losses: Mapping | None, confidence: float,
             notes: list[str]) -> TightRow | None:
    label, n = _label(key), int(key[3])
    if pair_losses is None:
        return None
    have = [r for r in runs if r.get("key") is not None and r["key"] in pair_losses]
    if len(have) < len(runs):
        notes.append(f"cmi ({label}): {len(runs) - len(have)} run(s) without per-example losses "
                     "left out")
    by_j: dict = {}
    for r in have:  # the later record per mask wins
        by_j.setdefault(r["supersample"], {})[_mask_index(r)] = r
    if not by_j:
        return None
    counts = {j: len(masks) for j, masks in by_j.items()}
    k2 = min(counts.values())
    if len(set(counts.values())) > 1:
        notes.append(f"cmi ({label}): supersamples have unequal numbers of masks "
                     f"({', '.join(f'j={j}: {c}' for j, c in sorted(counts.items()))}); the lowest "
                     f"{k2} mask indices of each used (k2 = {k2})")
    if k2 < 2:
        notes.append(f"cmi ({label}): k2 = {k2} mask(s) in a supersample; a CMI estimate needs k2 ≥ 2")
        return None
    used = [[by_j[j][m] for m in sorted(by_j[j])[:k2]] for j in sorted(by_j)]
    pairs = [[_pair_array(r["key"], pair_losses[r["key"]], n) for r in row] for row in used]
    losses = np.array([[p[0] for p in row] for row in pairs])
    masks = np.array([[p[1] for p in row] for row in pairs])
    try:
        s = cmi_summary(losses, masks)
    except InputError as exc:
        raise InputError(f"pair_losses of ({label}): {exc}") from None
    flat = [r for row in used for r in row]
    estimates = {name: getattr(s, name) for name in CMI_ESTIMATORS if getattr(s, name) is not None}
    estimator = min(estimates, key=estimates.__getitem__)
    bound = float(estimates[estimator])
    gaps = _values(flat, "gap")
    gap = mean_ci(gaps, confidence) if gaps else Interval(s.gap, math.nan, math.nan, 0, math.nan,
                                                          confidence, "from the per-example losses")
    if len(gaps) < len(flat):
        notes.append(f"cmi ({label}): {len(flat) - len(gaps)} run(s) without a recorded gap; "
                     "the gap of the per-example losses used")
        gap = Interval(s.gap, math.nan, math.nan, len(flat), math.nan, confidence,
                       "from the per-example losses")
    elif abs(gap.mean - s.gap) > GAP_TOLERANCE:
        notes.append(f"cmi ({label}): the records' mean gap {gap.mean:.6g} differs from the "
                     f"per-example losses' {s.gap:.6g}")
    ratio, note = _ratio(bound, gap.mean, "mean gap")
    one_sided = estimator != "ld_cmi"  # ld-CMI bounds |E gen|, the other two E L_μ − E L_S
    reaches = one_sided and s.train_error + bound >= LOSS_RANGE
    if reaches:
        note = _join(note, "the implied bound on E L_μ reaches 1")
    if s.interpolation is not None:
        note = _join(note, f"interpolation estimate of E L_μ (zero training error): {s.interpolation:.4g}")
    note = _join(note, f"plug-in bias ≈ {s.bias_delta_loss:.3g} nats/pair (ΔL), "
                 f"{s.bias_loss_pair:.3g} (L pair)" if s.bias_delta_loss is not None
                 else f"plug-in bias ≈ {s.bias_loss_pair:.3g} nats/pair (L pair)")
    corrected = cmi_summary(losses, masks, correction=True)  # Miller–Madow: each Î minus its bias
    fixed = {name: getattr(corrected, name) for name in CMI_ESTIMATORS if getattr(corrected, name) is not None}
    best_fixed = min(fixed, key=fixed.__getitem__)
    note = _join(note, f"with the Miller–Madow bias correction (no longer an upper estimate): "
                       f"{fixed[best_fixed]:.4g} ({best_fixed})")
    return TightRow(**_base(key), kind="cmi", what=WHAT["cmi"].format(k1=s.k1, k2=s.k2), bound=bound,
                    measured=gap.mean, measured_what=MEASURED["cmi"], measured_low=gap.low,
                    measured_high=gap.high, ratio=ratio, vacuous=bound >= LOSS_RANGE or reaches,
                    runs=len(flat), note=note, train_error=s.train_error, estimator=estimator,
                    k1=s.k1, k2=s.k2, bias_delta_loss=s.bias_delta_loss,
                    bias_loss_pair=s.bias_loss_pair, estimates=s.to_dict())


# ---------------------------------------------------------------- all rows


def tightness_rows(records, pair_losses=None, bounds=None, confidence: float = 0.95) -> Tightness:
    """Every bound kind of ``bounds`` (default: all the records allow) beside what it bounds.

    ``records``: run records of the seed sweep (``kind`` "seeds" or absent) and of the supersample
    sweep (``kind`` "cmi"). ``pair_losses``: {record key: (losses int8 (n, 2), mask uint8 (n,))} for
    the CMI runs. ``bounds``: a subset of ``BOUND_KINDS`` (a list or a comma-separated string);
    naming a kind the records cannot give raises ``InputError`` saying what it needs.
    ``confidence``: of the Student-t intervals of the measured means.
    """
    wanted = _check_bounds(bounds)
    confidence = check_real("confidence", confidence, 0.0, 1.0, open_low=True, open_high=True)
    if pair_losses is not None and not isinstance(pair_losses, Mapping):
        raise InputError(f"pair_losses must be a mapping record key -> (losses, mask) or None, got "
                         f"{type(pair_losses).__name__}")
    recs = normalize_records(records)
    for i, r in enumerate(recs):
        r["kind"] = _record_kind(i, r)
        if r["kind"] == "cmi" and r.get("supersample") is None:
            raise InputError(f"records[{i}] of kind 'cmi' lacks its supersample index 'supersample'")
    kinds = wanted or BOUND_KINDS
    notes: list[str] = []
    rows: list[TightRow] = []
    no_seed_bound = []
    has_cmi_runs = False
    for key, group in group_records(recs, CONFIG_KEYS).items():
        seeds = [r for r in group if r["kind"] == "seeds"]
        cmis = [r for r in group if r["kind"] == "cmi"]
        has_cmi_runs |= bool(cmis)
        mine: list[TightRow] = []
        if seeds and "seed" in kinds:
            for c in config_rows(seeds, confidence, notes):
                if c.applicable:
                    mine.append(_seed_row(c))
                else:
                    no_seed_bound.append(f"({_label(key)}): {c.note}")
        if seeds and _quantised_zero_one(seeds):
            runs = _dedupe(seeds)
            if "fast" in kinds and (row := _fast_row(key, runs, confidence, notes)):
                mine.append(row)
            if "cert" in kinds and (row := _cert_row(key, runs, confidence, notes)):
                mine.append(row)
            if "cert" in kinds and (row := _cert_row(key, runs, confidence, notes, prefix="adaptive_")):
                mine.append(row)
        if cmis and "cmi" in kinds:
            if _quantised_zero_one(cmis):
                if (row := _cmi_row(key, cmis, pair_losses, confidence, notes)):
                    mine.append(row)
            else:
                notes.append(f"cmi ({_label(key)}): no cmi row (not quantised, or not a 0-1 loss)")
        rows += sorted(mine, key=lambda r: BOUND_KINDS.index(r.kind))
    if no_seed_bound:
        notes.append(f"{len(no_seed_bound)} configuration(s) have no seed row (bound not applicable): "
                     + "; ".join(no_seed_bound))
    if has_cmi_runs and pair_losses is None and "cmi" in kinds:
        notes.append("the records hold supersample (cmi) runs but no pair_losses were given: no cmi rows")
    present = tuple(k for k in BOUND_KINDS if any(r.kind == k for r in rows))
    for kind in wanted or ():
        if kind not in present:
            why = "these records have none"
            if kind == "cmi" and has_cmi_runs:
                why = ("these records have cmi runs, but " + ("no pair_losses were given"
                       if pair_losses is None else "none usable (see the notes: k2 ≥ 2 masks per "
                       "supersample with their per-example losses, quantised, 0-1 loss)"))
            related = [n for n in notes if n.startswith(f"{kind} (")]
            raise InputError(f"bounds: {kind!r} {NEEDS[kind]}; {why}"
                             + (f". Notes: {' | '.join(related)}" if related else ""))
    return Tightness(rows, notes, present, confidence, _comparisons(rows))


# ---------------------------------------------------------------- B-only against LoRA


def _scale(r: TightRow):
    return None if r.alpha is None or r.rank <= 0 else round(r.alpha / r.rank, 12)


def _match(bs: list[TightRow], ls: list[TightRow]) -> list[tuple[TightRow, TightRow]]:
    """Pairs with the same init and alpha, else the same init and α/r, else the only ones."""
    for f in (lambda r: (r.init, r.alpha), lambda r: (r.init, _scale(r))):
        pairs = [(b, lo) for b in bs for lo in ls if f(b) == f(lo)]
        if pairs and len({id(b) for b, _ in pairs}) == len({id(lo) for _, lo in pairs}) == len(pairs):
            return pairs
    return [(bs[0], ls[0])] if len(bs) == len(ls) == 1 else []


def _g(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _comparisons(rows: list[TightRow]) -> list[str]:
    cells: dict = {}
    for r in rows:
        if r.kind == "cert" and r.mode in ("b_only", "lora"):
            cells.setdefault((r.task, r.n, -1 if r.bits is None else r.bits, r.rank, r.grid or ""), {}) \
                .setdefault(r.mode, []).append(r)
    out = []
    for (task, n, bits, rank, grid), cell in sorted(cells.items()):
        if "b_only" not in cell or "lora" not in cell:
            continue
        for b, lo in _match(cell["b_only"], cell["lora"]):
            x, y = b.code_length_bits, lo.code_length_bits
            saved = f" ({y - x:.6g} saved)" if x is not None and y is not None else ""
            tag = f" (init {b.init}, α {b.alpha:g} vs {lo.alpha:g})" if len(cell["b_only"]) > 1 and \
                b.alpha is not None and lo.alpha is not None else ""
            which = "certificate on its chosen grid" if grid == "chosen" else "certificate"
            out.append(f"{task}, n={n}, q={b.bits}: B-only's {which} vs LoRA's at rank {rank}{tag}: "
                       f"mean code length {_g(x, 6)} vs {_g(y, 6)} bits{saved}, certificate "
                       f"{_g(b.bound)} vs {_g(lo.bound)}, test error {_g(b.measured)} vs "
                       f"{_g(lo.measured)}")
    return out


# ---------------------------------------------------------------- text


def _ci(r: TightRow) -> str:
    if not (math.isfinite(r.measured_low) and math.isfinite(r.measured_high)):
        return "[no CI]"
    sign = "+" if r.measured_what == "mean gap" else ""
    return f"[{r.measured_low:{sign}.4f}, {r.measured_high:{sign}.4f}]"


def _measured(r: TightRow) -> str:
    sign = "+" if r.measured_what == "mean gap" else ""
    return f"{r.measured:{sign}.4f} {_ci(r)}"


def _details(r: TightRow) -> str:
    """The row's extra numbers, in words."""
    if r.kind == "seed":
        return f"recorded seed bound ({r.information})"
    if r.kind == "fast":
        return (f"information: {r.information}; bound on E L_μ {r.bound + r.train_error:.6g} "
                f"with mean train error {r.train_error:.4g}")
    if r.kind == "cert":
        parts = [f"min–max {r.bound_min:.4g}–{r.bound_max:.4g}",
                 f"test-set bound {_g(r.test_set_bound)}",
                 f"unquantised test error {_g(r.unquantised_test_error)}",
                 f"mean code length {_g(r.code_length_bits, 6)} bits"]
        return "; ".join(parts)
    est = r.estimates or {}
    values = ", ".join(f"{name} {est[name]:.4g}" for name in CMI_ESTIMATORS if est.get(name) is not None)
    return f"k1×k2 = {r.k1}×{r.k2}; smallest: {r.estimator} ({values})"


def _kinds_text(t: Tightness) -> tuple[str, str]:
    deltas = sorted({r.delta for r in t.rows if r.kind == "cert" and r.delta is not None})
    shapes = sorted({f"{r.k1}×{r.k2}" for r in t.rows if r.kind == "cmi"})
    return _delta_text(deltas) if deltas else "—", ", ".join(shapes) or "—"


def format_tightness(t: Tightness) -> str:
    """Plain-text table for a terminal, at most 110 columns: a line per row, its details beneath."""
    if not isinstance(t, Tightness):
        raise InputError(f"t must be a Tightness (from tightness_rows), got {type(t).__name__}")
    pct = f"{100 * t.confidence:g}%"
    fmt = "{:<17} {:<6} {:>4} {:>6} {:>4} {:<5} {:>8} {:<8} {:>27} {:>7} {:<3} {:>4}"
    out = [fmt.format("task", "mode", "rank", "n", "bits", "kind", "bound", "measured",
                      f"value [{pct} CI]", "ratio", "vac", "runs")]
    wrap = textwrap.TextWrapper(width=110, initial_indent="    ", subsequent_indent="      ")
    for r in t.rows:
        short = "mean gap" if r.measured_what == MEASURED["seed"] else "test err"
        out.append(fmt.format(r.task[:17], r.mode, r.rank, r.n, _g(r.bits), _kind(r), f"{r.bound:.4g}",
                              short, _measured(r), "—" if r.ratio is None else f"{r.ratio:.3g}",
                              "yes" if r.vacuous else "no", r.runs))
        out += wrap.wrap(_join(r.what, _details(r), r.note))
    if not t.rows:
        out.append("no bound to show")
    out += [line for c in t.comparisons for line in textwrap.wrap(c, 110, subsequent_indent="  ")]
    out += [line for n in t.notes for line in textwrap.wrap("note: " + n, 110, subsequent_indent="  ")]
    return "\n".join(line[:110].rstrip() for line in out)


def _kind(r: TightRow) -> str:
    return "cert*" if r.grid == "chosen" else r.kind


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def tightness_markdown(t: Tightness) -> str:
    """The Markdown section "## Tightness: every bound beside what it bounds" (legend, table, notes)."""
    if not isinstance(t, Tightness):
        raise InputError(f"t must be a Tightness (from tightness_rows), got {type(t).__name__}")
    pct = f"{100 * t.confidence:g}%"
    delta, shapes = _kinds_text(t)
    intro = ("Each row puts one bound of one configuration beside the measured quantity it bounds, "
             f"the mean over its runs with a {pct} Student-t interval; ratio = bound / measured "
             "(none when the measured value is ≤ 0). Losses are 0-1 errors.")
    legend = [
        ("**seed** — expectation bound on |E gen| (THEORY §1, σ = 1/2, q·d_train bits), against the "
         "mean gap (ratio against |mean gap|)."),
        ("**fast** — expectation bound on E gen (THEORY §3, fast rate): kl(E L_S ‖ E L_μ) ≤ I/n with "
         "I = min(q·d_train, mean code length)·ln 2, minus the mean training error; with the mean "
         "code length it is an estimate (the mean over runs estimates E|c|)."),
        (f"**cert** — high-probability certificate (THEORY §4, δ = {delta}) on each run's population "
         "error, the smallest of the methods each at δ/2 (union bound paid); the row shows the mean "
         "over runs against the mean test error, with the held-out test-set bound (Clopper–Pearson, "
         "δ) — the best any certificate could do — and the unquantised test error. **cert*** — the "
         "same on a grid each run chooses after training among fixed candidates (bits × clip), the "
         "choice paid with log2(candidates) bits in its code; measured against that model's own test "
         "error. Taking the best configuration of this table after seeing it would cost log2 of the "
         "number of configurations more bits."),
        ("**cmi** — estimate of an expectation bound on E gen (THEORY §5): the smallest of ld-CMI, "
         "binary-kl e-CMI and fast-rate CMI by plug-in mutual information over k1 supersamples × k2 "
         f"masks ({shapes}); not a certificate. The plug-in bias per pair is stated; the "
         "interpolation value (zero training error) estimates E L_μ and is given in the note."),
        ("**vacuous** — the bound reaches the loss range: ≥ 1 for a bound on a test error or on a "
         "gap, or (one-sided gap bounds) an implied bound on E L_μ that reaches 1."),
    ]
    lines = ["## Tightness: every bound beside what it bounds", "", intro, ""]
    lines += [f"- {item}" for item in legend] + [""]
    extra = [k for k in ("alpha", "init") if len({(r.rank, getattr(r, k)) for r in t.rows})
             > len({r.rank for r in t.rows})]
    header = ["task", "mode", "rank", "n", "bits", *extra, "kind", "what it is", "bound",
              f"measured ({pct} CI)", "bound / measured", "vacuous", "runs", "details", "note"]
    body = [[r.task, r.mode, r.rank, r.n, _g(r.bits), *(getattr(r, k) for k in extra), _kind(r), r.what,
             f"{r.bound:.4g}", f"{r.measured_what} {_measured(r)}",
             "—" if r.ratio is None else f"{r.ratio:.3g}", "yes" if r.vacuous else "no", r.runs,
             _details(r), r.note or "—"] for r in t.rows]
    if body:
        table = [[_cell(v) for v in row] for row in [header] + body]
        lines += ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    else:
        lines.append("No bound to show: no configuration has the data any bound kind needs.")
    if t.comparisons:
        lines += ["", "B-only against LoRA (certificates):", ""] + [f"- {c}" for c in t.comparisons]
    if t.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"
